package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/ort/orttest"
)

// buildSRQ builds the srq command into a temporary folder, for tests that
// need a real process (signals, a second process's output). Without the
// VCS stamp, as the test binary itself: the srq.version a model records
// is then the same from both.
func buildSRQ(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "srq")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSignals sends SIGINT and SIGTERM to a real srq process in each long
// stage — calibration, tuning and verifying a folder, on the bundled EDSR
// x2 — once two of the stage's progress lines have been printed. It must
// exit with exitInterrupted, its last stderr line saying so, leave nothing
// in its output folder, and stop promptly: in less than twice the time the
// step between those two lines took in the same run, under the same load
// (at least a second), where finishing the stage would take many such
// steps. A fixed limit would fail on a loaded machine or pass a slow stop
// on a fast one.
func TestSignals(t *testing.T) {
	lib := orttest.Require(t)
	if testing.Short() {
		t.Skip("builds the srq binary")
	}
	bin := buildSRQ(t)

	// A quantized model to verify and twelve 96×96 crops to verify it on.
	fix := t.TempDir()
	q := filepath.Join(fix, "q.onnx")
	code, _, errOut := runSRQ(append([]string{"quantize", "--model", tdModel, "--calib", tdImages, "--out", q, "--speed-check", "0"}, quickFlags...)...)
	require.Equal(t, exitOK, code, errOut)
	crops := filepath.Join(fix, "crops")
	require.NoError(t, os.Mkdir(crops, 0o755))
	src, err := img.Read(tdChelsea)
	require.NoError(t, err)
	for i := range 12 {
		require.NoError(t, img.WritePNG(filepath.Join(crops, fmt.Sprintf("c%02d.png", i)), img.Crop(src, 25*i, 50, 96, 96)))
	}

	stages := []struct {
		name string
		// args run srq with OUT standing for the output folder.
		args          []string
		first, second string // progress lines: the step between them is timed, the signal follows the second
		command       string
	}{
		{"calibration", []string{"quantize", "--model", tdModel, "--calib", tdImages, "--out", "OUT/q.onnx", "--threads", "2", "--patch-size", "32"},
			"  calibration 8/", "  calibration 16/", "quantize"},
		{"tuning", []string{"quantize", "--model", tdModel, "--calib", tdImages, "--out", "OUT/q.onnx", "--threads", "2",
			"--bits", "w4a4", "--method", "dual", "--tune", "--patches", "20", "--patch-size", "16"},
			"  tuning 1/", "  tuning 2/", "quantize"},
		{"verify", []string{"verify", "--model", tdModel, "--quantized", q, "--images", crops, "--threads", "1", "--size", "64",
			"--json", "OUT/r.json", "--report", "OUT/report"},
			"  verify 1/", "  verify 2/", "verify"},
	}
	for _, st := range stages {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			t.Run(st.name+" "+sig.String(), func(t *testing.T) {
				outDir := t.TempDir()
				args := make([]string, len(st.args))
				for i, a := range st.args {
					args[i] = strings.ReplaceAll(a, "OUT", outDir)
				}
				cmd := exec.Command(bin, args...)
				cmd.Env = append(os.Environ(), "SRQ_ORT_LIB="+lib)
				stderr, err := cmd.StderrPipe()
				require.NoError(t, err)
				require.NoError(t, cmd.Start())
				lines := bufio.NewScanner(stderr)
				var seen []string
				var first, sent time.Time
				for lines.Scan() {
					seen = append(seen, lines.Text())
					if strings.HasPrefix(lines.Text(), st.first) {
						first = time.Now()
					}
					if strings.HasPrefix(lines.Text(), st.second) {
						require.NoError(t, cmd.Process.Signal(sig))
						sent = time.Now()
						break
					}
				}
				require.False(t, sent.IsZero(), "no %q line: %v", st.second, seen)
				for lines.Scan() {
					seen = append(seen, lines.Text())
				}
				err = cmd.Wait()
				took := time.Since(sent)
				var exit *exec.ExitError
				require.ErrorAs(t, err, &exit, "stderr: %v", seen)
				assert.Equal(t, exitInterrupted, exit.ExitCode(), "stderr: %v", seen)
				assert.Equal(t, "srq "+st.command+": interrupted, nothing written", seen[len(seen)-1])
				assert.Empty(t, dirEntries(t, outDir), "no output, no temporary file")
				step := sent.Sub(first)
				t.Logf("exited %s after %s; one step took %s", took.Round(time.Millisecond), sig, step.Round(time.Millisecond))
				assert.Less(t, took, max(2*step, time.Second))
			})
		}
	}
}

// TestQuantizeDeterministicAcrossThreads: the same flags and seed give the
// same bytes whatever the thread counts and whichever process writes them:
// srq quantize --threads 2 in this process against --threads 1 in another
// one with GOMAXPROCS=1. At W6A6 dual: 8-bit carriers as at W8A8, every
// Conv input's own quantizer, and the two-branch Convs' second calibration
// run. (Tuning: quant's TestQuantizeTune.)
func TestQuantizeDeterministicAcrossThreads(t *testing.T) {
	lib := orttest.Require(t)
	if testing.Short() {
		t.Skip("builds the srq binary")
	}
	bin := buildSRQ(t)
	for _, setting := range [][]string{{"--bits", "w6a6", "--method", "dual"}} {
		t.Run(strings.Join(setting, " "), func(t *testing.T) {
			dir := t.TempDir()
			base := append([]string{"quantize", "--model", tdModel, "--calib", tdImages, "--patches", "8", "--patch-size", "32", "--speed-check", "0"}, setting...)
			two, one := filepath.Join(dir, "two.onnx"), filepath.Join(dir, "one.onnx")
			code, _, errOut := runSRQ(append(base, "--threads", "2", "--out", two)...)
			require.Equal(t, exitOK, code, errOut)
			cmd := exec.Command(bin, append(base, "--threads", "1", "--out", one)...)
			cmd.Env = append(os.Environ(), "SRQ_ORT_LIB="+lib, "GOMAXPROCS=1")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			a, err := os.ReadFile(two)
			require.NoError(t, err)
			b, err := os.ReadFile(one)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(a, b), "--threads 2 and --threads 1 (GOMAXPROCS=1, another process) wrote different models")
		})
	}
}
