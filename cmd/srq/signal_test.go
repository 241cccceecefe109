package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/ort/orttest"
)

// TestInterrupt sends SIGINT to a real `srq quantize` (EDSR x4 from
// ../shared when present, else the bundled EDSR x2) once calibration has
// started: it must exit within a second with exitInterrupted, one line on
// stderr, and leave nothing in the output folder.
func TestInterrupt(t *testing.T) {
	lib := orttest.Require(t)
	if testing.Short() {
		t.Skip("builds the srq binary")
	}
	bin := buildSRQ(t)
	model := tdModel
	if p := filepath.Join(sharedDir, "models", "edsr_x4.onnx"); fileExists(p) {
		model = p
	}
	outDir := t.TempDir()
	cmd := exec.Command(bin, "quantize", "--model", model, "--calib", tdImages, "--out", filepath.Join(outDir, "q.onnx"), "--threads", "2")
	cmd.Env = append(os.Environ(), "SRQ_ORT_LIB="+lib)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := bufio.NewScanner(stderr)
	var seen []string
	for lines.Scan() {
		seen = append(seen, lines.Text())
		if strings.Contains(lines.Text(), "calibration 8/") {
			break
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	sent := time.Now()
	for lines.Scan() {
		seen = append(seen, lines.Text())
	}
	err = cmd.Wait()
	took := time.Since(sent)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "stderr: %v", seen)
	assert.Equal(t, exitInterrupted, exit.ExitCode(), "stderr: %v", seen)
	assert.Less(t, took, time.Second)
	assert.Equal(t, "srq quantize: interrupted, nothing written", seen[len(seen)-1])
	entries, err := os.ReadDir(outDir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no model, no temporary file")
	t.Logf("%s: exited %s after SIGINT", filepath.Base(model), took.Round(time.Millisecond))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
