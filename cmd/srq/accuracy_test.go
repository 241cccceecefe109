package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/quant"
)

// TestQuantizeMaxDrop runs accuracy control from the command line on the
// bundled EDSR x2: a budget the base model meets (nothing widened, the
// steps printed and recorded), and one no model meets (exit 1, nothing
// written; with --keep-best the best model measured written anyway).
func TestQuantizeMaxDrop(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "latency")
	run := func(out string, extra ...string) (int, string, string) {
		args := append([]string{"quantize", "--model", tdModel, "--calib", tdImages, "--out", out, "--latency-cache", cache, "--speed-check", "0"}, quickFlags...)
		return runSRQ(append(args, extra...)...)
	}

	met := filepath.Join(dir, "met.onnx")
	code, stdout, stderr := run(met, "--max-drop", "5")
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stderr, "max-drop step 1, the base model: drop ")
	assert.NotContains(t, stderr, "timing the rungs", "a model within the budget as it is needs no ranking")
	assert.Contains(t, stdout, "accuracy  drop at most 5 dB vs ground truth, on 2 validation tiles of 256 HR px (rocket.jpg: every 4th --calib image, held out of calibration)")
	assert.Contains(t, stdout, "within, written")
	assert.Contains(t, stdout, "widened   none: the quantized model is within the budget as it is")
	m, err := onnx.Load(met)
	require.NoError(t, err)
	meta := map[string]string{}
	for _, p := range m.GetMetadataProps() {
		meta[p.GetKey()] = p.GetValue()
	}
	assert.Contains(t, meta[quant.MetaAccuracy], `"met":true`)
	assert.Contains(t, meta[quant.MetaSetting], `"max_drop_db":5`)
	assert.Contains(t, meta[quant.MetaCalibration], `"files":["brick.png","chelsea.png"]`, "the validation image is not calibrated on")

	unmet := filepath.Join(dir, "unmet.onnx")
	code, stdout, stderr = run(unmet, "--max-drop-vs-fp32", "200", "--max-steps", "1")
	assert.Equal(t, exitGate, code, stderr)
	assert.Contains(t, stderr, "no model within 200 dB PSNR-Y vs FP32: none of the 1 models measured (--max-steps 1) is within it")
	assert.Contains(t, stderr, "nothing written (--keep-best writes it)")
	assert.Empty(t, stdout)
	_, err = os.Stat(unmet)
	assert.True(t, os.IsNotExist(err), "nothing written")

	code, stdout, stderr = run(unmet, "--max-drop-vs-fp32", "200", "--max-steps", "1", "--keep-best")
	assert.Equal(t, exitGate, code, stderr)
	assert.Contains(t, stdout, "wrote "+unmet)
	assert.Contains(t, stderr, "kept the best model measured (--keep-best) in "+unmet)
	_, err = os.Stat(unmet)
	assert.NoError(t, err)
}
