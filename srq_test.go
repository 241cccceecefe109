package srq

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/quant"
)

const (
	edsrX2 = "testdata/models/edsr_x2.onnx"
	images = "testdata/images"
)

// requireORT initialises ONNX Runtime or skips the test.
func requireORT(t *testing.T) {
	t.Helper()
	if _, err := ort.FindLibrary(""); err != nil {
		t.Skipf("ONNX Runtime library not installed (run `make setup`): %v", err)
	}
	require.NoError(t, Init(""))
}

func TestSelfCheck(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.onnx")
	require.NoError(t, os.WriteFile(bad, []byte("not a model"), 0o644))
	assert.Error(t, selfCheck(bad, 1))
	assert.Error(t, selfCheck(filepath.Join(dir, "missing.onnx"), 1))
	assert.NoError(t, selfCheck(edsrX2, 1))
}

// TestQuantizeCancel: a quantization whose context ends stops promptly with
// the context's error and leaves nothing in the output folder.
func TestQuantizeCancel(t *testing.T) {
	requireORT(t)
	imgs, err := ListImages(images)
	require.NoError(t, err)
	dir := t.TempDir()
	out := filepath.Join(dir, "q.onnx")
	cfg := quant.DefaultConfig()
	cfg.Threads = 1
	ctx, cancel := context.WithCancel(context.Background())
	var stopped time.Time
	progress := func(stage string, done, total int) {
		if stage == "calibration" && done == 8 {
			cancel() // mid-calibration
			stopped = time.Now()
		}
	}
	_, err = Quantize(ctx, QuantizeOptions{Model: edsrX2, Images: imgs, Out: out, Config: cfg, Progress: progress})
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
	assert.Less(t, time.Since(stopped), time.Second)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no model, no temporary file")
}

func TestQuantizeRefusesToOverwriteTheModel(t *testing.T) {
	imgs, err := ListImages(images)
	require.NoError(t, err)
	_, err = Quantize(context.Background(), QuantizeOptions{Model: edsrX2, Images: imgs, Out: edsrX2, Config: quant.DefaultConfig()})
	assert.ErrorContains(t, err, "output path is the same file as the model")
}
