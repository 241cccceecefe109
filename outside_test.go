package srq

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/ort"
)

// apiProgram is what a newcomer writes from `go doc github.com/srquant/srq`:
// find ONNX Runtime, inspect a model with a probe run.
const apiProgram = `package main

import (
	"context"
	"fmt"
	"os"

	"github.com/srquant/srq"
)

func main() {
	if err := srq.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	in, err := srq.Inspect(context.Background(), os.Args[1], srq.InspectOptions{Probe: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d convs, x%d, input 0..%g\n", in.Convs, in.Scale, in.InputRange)
}
`

// TestAPIOutsideCheckout builds a program in a module of its own (srq
// replaced by this checkout) and runs it away from the checkout, the way a
// pipeline that embeds srq runs: with nothing but SRQ_ORT_LIB set (either
// library name, `make setup`'s .ort/libonnxruntime.so link included), as a
// binary copied next to the library with no environment at all, and with
// no library anywhere, where the error must say what the API caller can do.
func TestAPIOutsideCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds a program with the go tool")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH: cannot build a program outside the module")
	}
	lib, err := ort.FindLibrary("")
	if err != nil {
		t.Skipf("ONNX Runtime library not installed (run `make setup`): %v", err)
	}
	lib, err = filepath.Abs(lib)
	require.NoError(t, err)
	root, err := os.Getwd()
	require.NoError(t, err)
	model, err := filepath.Abs(edsrX2)
	require.NoError(t, err)

	src := t.TempDir()
	goMod := "module example.com/srqapi\n\ngo 1.26\n\nrequire github.com/srquant/srq v0.0.0\n\nreplace github.com/srquant/srq => " + root + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(src, "go.mod"), []byte(goMod), 0o644))
	sum, err := os.ReadFile(filepath.Join(root, "go.sum")) // srq's dependencies, already verified
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(src, "go.sum"), sum, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "main.go"), []byte(apiProgram), 0o644))
	bin := filepath.Join(t.TempDir(), "srqapi")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=1")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	run := func(t *testing.T, exe, dir string, env ...string) (string, error) {
		t.Helper()
		c := exec.Command(exe, model)
		c.Dir, c.Env = dir, env
		b, err := c.CombinedOutput()
		return string(b), err
	}
	const want = "38 convs, x2, input 0..255\n"
	away := t.TempDir() // no .ort here or above

	t.Run("SRQ_ORT_LIB", func(t *testing.T) {
		out, err := run(t, bin, away, ort.EnvLibrary+"="+lib)
		require.NoError(t, err, out)
		assert.Equal(t, want, out)
	})
	t.Run("SRQ_ORT_LIB unversioned name", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "libonnxruntime.so")
		require.NoError(t, os.Symlink(lib, link))
		out, err := run(t, bin, away, ort.EnvLibrary+"="+link)
		require.NoError(t, err, out)
		assert.Equal(t, want, out)
	})
	t.Run("SRQ_ORT_LIB=.ort/libonnxruntime.so", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(root, ".ort", "libonnxruntime.so")); err != nil {
			t.Skip("no .ort/libonnxruntime.so link (run `make setup`)")
		}
		out, err := run(t, bin, root, ort.EnvLibrary+"=.ort/libonnxruntime.so")
		require.NoError(t, err, out)
		assert.Equal(t, want, out)
	})
	t.Run("copied beside the library", func(t *testing.T) {
		dir := t.TempDir()
		exe := filepath.Join(dir, "srqapi")
		b, err := os.ReadFile(bin)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(exe, b, 0o755))
		require.NoError(t, os.Symlink(lib, filepath.Join(dir, "libonnxruntime.so")))
		out, err := run(t, exe, away)
		require.NoError(t, err, out)
		assert.Equal(t, want, out)
	})
	t.Run("nowhere", func(t *testing.T) {
		for _, d := range ort.SystemDirs() {
			for _, n := range ort.LibraryNames() {
				if _, err := os.Stat(filepath.Join(d, n)); err == nil {
					t.Skipf("ONNX Runtime is installed in %s: the program finds it there", d)
				}
			}
		}
		out, err := run(t, bin, away)
		require.Error(t, err)
		assert.Equal(t, 1, strings.Count(out, "\n"), "one line: %s", out)
		for _, w := range []string{filepath.Join(away, ".ort"), "srq.Init", "$SRQ_ORT_LIB", "--ort-lib"} {
			assert.Contains(t, out, w)
		}
	})
}
