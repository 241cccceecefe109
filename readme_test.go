package srq

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/ort/orttest"
)

// readmeOptOut starts the first line of a README shell block that the
// README test must not run; the rest of the line says why, and the test
// logs it.
const readmeOptOut = "# not run by the README test"

// readmeExample is one shell block of a README: the commands it runs, in
// order, and where it starts in the file.
type readmeExample struct {
	Line     int
	Commands []readmeCommand
	// Skip is the reason the block opted out (its first line), or "".
	Skip string
}

// readmeCommand is one command of a block: its shell text (continuation
// lines joined), the exit code its example promises and, for a `$ `
// command, the output lines the README shows under it.
type readmeCommand struct {
	Text   string
	Exit   int
	Output []string
}

// exitComment is how an example promises an exit code other than 0: a
// trailing comment "# exit N" (e.g. a gate that is meant to fail).
var exitComment = regexp.MustCompile(`#\s*exit (\d+)\b`)

// parseReadmeExamples returns the ```sh blocks of a markdown text. In a
// block with `$ ` prompts only the prompted lines are commands and the
// lines under each are the output it shows; in a block without prompts
// every line is a command. A line ending in a backslash continues on the
// next. Blocks in other languages (```text, ```go) are not examples.
func parseReadmeExamples(text string) ([]readmeExample, error) {
	var out []readmeExample
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```sh" {
			continue
		}
		start := i + 1
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		if i == len(lines) {
			return nil, fmt.Errorf("README.md:%d: ```sh block not closed", start)
		}
		ex := readmeExample{Line: start + 1}
		if len(body) > 0 && strings.HasPrefix(body[0], readmeOptOut) {
			ex.Skip = strings.TrimSpace(strings.TrimLeft(strings.TrimPrefix(body[0], readmeOptOut), ":"))
			out = append(out, ex)
			continue
		}
		prompted := false
		for _, l := range body {
			prompted = prompted || strings.HasPrefix(l, "$ ")
		}
		for j := 0; j < len(body); j++ {
			l := body[j]
			if prompted && !strings.HasPrefix(l, "$ ") {
				if n := len(ex.Commands); n > 0 && strings.TrimSpace(l) != "" {
					ex.Commands[n-1].Output = append(ex.Commands[n-1].Output, strings.TrimSpace(l))
				}
				continue
			}
			cmd := strings.TrimPrefix(l, "$ ")
			for strings.HasSuffix(cmd, `\`) && j+1 < len(body) {
				j++
				cmd = strings.TrimSuffix(cmd, `\`) + " " + strings.TrimSpace(body[j])
			}
			if strings.TrimSpace(cmd) == "" || strings.HasPrefix(strings.TrimSpace(cmd), "#") {
				continue
			}
			c := readmeCommand{Text: cmd}
			if m := exitComment.FindStringSubmatch(cmd); m != nil {
				c.Exit, _ = strconv.Atoi(m[1])
			}
			ex.Commands = append(ex.Commands, c)
		}
		out = append(out, ex)
	}
	return out, nil
}

// TestParseReadmeExamples: prompts, shown output, continuations, the
// opt-out line, promised exit codes, and blocks that are not shell.
func TestParseReadmeExamples(t *testing.T) {
	md := "intro\n```sh\n# not run by the README test: takes an hour\nmake bench\n```\n" +
		"```sh\nsrq a --x 1 \\\n  --y 2   # a comment\n\nsrq b  # exit 1: the gate fails\n```\n" +
		"```text\nsrq not-an-example\n```\n" +
		"```sh\n$ srq c | grep d\n  \"d\": 2\n...\n$ srq e > f.txt\n```\n"
	got, err := parseReadmeExamples(md)
	require.NoError(t, err)
	require.Len(t, got, 3)
	assert.Equal(t, readmeExample{Line: 3, Skip: "takes an hour"}, got[0])
	assert.Equal(t, []readmeCommand{{Text: "srq a --x 1  --y 2   # a comment"}, {Text: "srq b  # exit 1: the gate fails", Exit: 1}}, got[1].Commands)
	assert.Equal(t, []readmeCommand{{Text: "srq c | grep d", Output: []string{`"d": 2`, "..."}}, {Text: "srq e > f.txt"}}, got[2].Commands)

	_, err = parseReadmeExamples("```sh\nsrq a\n")
	assert.ErrorContains(t, err, "not closed")
}

// TestREADMEExamples runs every shell example of README.md, so the guide
// cannot go stale: each command must exit as its example says (0 unless
// it promises "# exit N"), and the output a `$ ` example shows must appear
// in what it prints ("..." lines excepted). The commands run in order in
// one working folder, so a later example may use what an earlier one
// wrote, with a freshly built srq first on PATH and ORT found through
// $SRQ_ORT_LIB. The folder sits beside a `shared` link to the real
// ../shared and holds a `testdata` link to this checkout's, so the
// README's `../shared/...` and `testdata/...` paths resolve as they do
// from the repository root. Blocks that name ../shared skip when it is
// absent; `make` belongs in blocks that opt out (readmeOptOut), since the
// test builds srq itself and `make test` runs this test.
func TestREADMEExamples(t *testing.T) {
	lib := orttest.Require(t)
	if testing.Short() {
		t.Skip("runs every README example: a minute or two")
	}
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	examples, err := parseReadmeExamples(string(b))
	require.NoError(t, err)
	require.NotEmpty(t, examples)

	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(bin, "srq"), "./cmd/srq")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	work := filepath.Join(root, "work")
	require.NoError(t, os.Mkdir(work, 0o755))
	testdata, err := filepath.Abs("testdata")
	require.NoError(t, err)
	require.NoError(t, os.Symlink(testdata, filepath.Join(work, "testdata")))
	shared, err := filepath.Abs(filepath.Join("..", "shared"))
	require.NoError(t, err)
	haveShared := false
	if _, err := os.Stat(shared); err == nil {
		haveShared = true
		require.NoError(t, os.Symlink(shared, filepath.Join(root, "shared")))
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "SRQ_ORT_LIB="+lib)

	start := time.Now()
	for _, ex := range examples {
		t.Run(fmt.Sprintf("line %d", ex.Line), func(t *testing.T) {
			if ex.Skip != "" {
				t.Skipf("README.md:%d opts out: %s", ex.Line, ex.Skip)
			}
			for _, c := range ex.Commands {
				if strings.Contains(c.Text, "../shared") && !haveShared {
					t.Skipf("README.md:%d needs %s (the shared models and data live beside the checkout)", ex.Line, shared)
				}
			}
			for _, c := range ex.Commands {
				if f := strings.Fields(c.Text); f[0] == "make" {
					t.Fatalf("README.md:%d: %q: the test does not run make; start the block with %q and a reason", ex.Line, c.Text, readmeOptOut)
				}
				runReadmeCommand(t, ex.Line, c, work, env)
			}
		})
	}
	t.Logf("README examples: %s", time.Since(start).Round(time.Second))
}

// runReadmeCommand runs one example command under bash (pipes and
// redirections as written; pipefail, so a grep that finds nothing fails)
// and checks its exit code and shown output.
func runReadmeCommand(t *testing.T, line int, c readmeCommand, dir string, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", c.Text)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "README.md:%d: %s: %v", line, c.Text, err)
		code = ee.ExitCode()
	}
	t.Logf("README.md:%d: %s (exit %d, %s)", line, c.Text, code, time.Since(t0).Round(100*time.Millisecond))
	if !assert.Equal(t, c.Exit, code, "README.md:%d: %s\nstdout:\n%s\nstderr:\n%s", line, c.Text, readmeTail(stdout.String()), readmeTail(stderr.String())) {
		return
	}
	for _, want := range c.Output {
		if want != "..." {
			assert.Contains(t, stdout.String(), want, "README.md:%d: %s shows this line of output", line, c.Text)
		}
	}
}

// readmeTail is the last lines of a command's output, enough to see its error.
func readmeTail(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 30 {
		lines = append([]string{"..."}, lines[len(lines)-30:]...)
	}
	return strings.Join(lines, "\n")
}
