package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/ort/orttest"
)

// sweepEnv names the environment variable that runs the tuning and
// sensitivity sweep over the shared models: SRQ_SWEEP=1, every model but
// CRAFT (13 minutes on the 2-core CI machine, RCAN x4 alone 6);
// SRQ_SWEEP=NAME,NAME, the ones named (file names without .onnx;
// craft_x4 alone takes 17 minutes). Unset, the sweep is skipped: this
// package's other tests already take most of go test's 10-minute default
// there, and quant's TestTuneShapes covers each layer shape on small
// networks.
const sweepEnv = "SRQ_SWEEP"

// sweepModels are the shared models the sweep runs by default. CRAFT
// (craft_x4) takes minutes per command and is run by name only.
var sweepModels = []string{"carn_m_x4", "imdn_x4", "span_x4", "realesr_animevideo_x4", "edsr_x2", "edsr_x4", "srresnet_x4", "rcan_x4"}

// TestTuneSensitivitySharedModels: `srq quantize --tune` at W4A4 dual and
// `srq sensitivity` complete (exit 0, no panic) on every shared model,
// whose Conv shapes are the ones tuning must handle: CARN-M's group-4
// Convs, IMDN's Split-fed and Concat-fed Convs, SPAN's attention,
// Real-ESRGAN's PReLU stack, EDSR/SRResNet/RCAN's plain 3x3 and 1x1 Convs.
// Each command runs as its own process: a panic in any goroutine (the
// reconstruction numerics run on worker goroutines) is a failed command
// here, not a crashed test binary. Few, small patches: this checks that
// every layer shape is handled, not the tuned quality (srq verify and
// BENCHMARKS.md do that). Which models run: see sweepEnv.
func TestTuneSensitivitySharedModels(t *testing.T) {
	lib := orttest.Require(t)
	if testing.Short() {
		t.Skip("quantizes and measures every shared model (minutes)")
	}
	var models []string
	switch sel := os.Getenv(sweepEnv); sel {
	case "":
		t.Skipf("minutes per model: %s=1 runs every shared model but craft_x4, %s=carn_m_x4,imdn_x4 the ones named", sweepEnv, sweepEnv)
	case "1":
		models = sweepModels
	default:
		models = strings.Split(sel, ",")
	}
	images := needShared(t, "images")
	bin := buildSRQ(t)
	for _, m := range models {
		t.Run(m, func(t *testing.T) {
			model := needShared(t, filepath.Join("models", m+".onnx"))
			q := filepath.Join(t.TempDir(), "q.onnx")
			// tuneMinPatches (20) and a few to tune on.
			runProcess(t, bin, lib, "quantize", "--model", model, "--calib", images, "--bits", "w4a4", "--method", "dual", "--tune",
				"--patches", "24", "--patch-size", "32", "--threads", "2", "--speed-check", "0", "--out", q)
			assert.FileExists(t, q)
			runProcess(t, bin, lib, "sensitivity", "--model", model, "--calib", images, "--bits", "w4a4", "--method", "dual",
				"--patches", "8", "--patch-size", "32", "--threads", "2")
		})
	}
}

// runProcess runs srq with args in its own process, ORT library lib, and
// requires exit 0 without a panic.
func runProcess(t *testing.T, bin, lib string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SRQ_ORT_LIB="+lib)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("srq %s: %s", args[0], time.Since(start).Round(100*time.Millisecond))
	assert.NotContains(t, stderr.String(), "panic:", "srq %s panicked", args[0])
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("srq %s exited %d\nstderr (last lines):\n%s", args[0], exit.ExitCode(), lastLines(stderr.String(), 40))
	}
	require.NoError(t, err)
	if args[0] == "quantize" {
		for _, l := range strings.Split(stdout.String(), "\n") {
			if strings.HasPrefix(l, "tuned ") || strings.Contains(l, "left as calibrated:") {
				t.Log(strings.TrimSpace(l))
			}
		}
	}
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-n):], "\n")
}

// TestPrintUntuned: one line per reason, the Convs it applies to sorted,
// the first three named.
func TestPrintUntuned(t *testing.T) {
	var b bytes.Buffer
	printUntuned(&b, map[string]string{
		"/a/Conv": "a 3-D weight [8 8 3 3 3]: only 2-D Convs (OIHW weights) are modelled",
		"/d/Conv": "time budget (1s) spent", "/c/Conv": "time budget (1s) spent", "/b/Conv": "time budget (1s) spent", "/e/Conv": "time budget (1s) spent",
	})
	assert.Equal(t, "          1 left as calibrated: a 3-D weight [8 8 3 3 3]: only 2-D Convs (OIHW weights) are modelled (/a/Conv)\n"+
		"          4 left as calibrated: time budget (1s) spent (/b/Conv, /c/Conv, /d/Conv and 1 more)\n", b.String())
	b.Reset()
	printUntuned(&b, nil)
	assert.Empty(t, b.String())
}
