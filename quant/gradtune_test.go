package quant_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/sr"
)

// TestQuantizeGradTune: gradient tuning after the layer-wise tuner, on the
// committed EDSR x2 at W4A4 dual, scores the model before and after it on
// the held-out patches and ships the better one; the setting records the
// steps; two runs write the same bytes.
func TestQuantizeGradTune(t *testing.T) {
	requireORT(t)
	cfg := smallConfig()
	cfg.Patches = 24 // 16 held out
	cfg.Bits, cfg.Method, cfg.Tune, cfg.GradSteps = quant.Bits{W: 4, A: 4}, quant.Dual, true, 6
	var logs []string
	res, model := quantizeFileEv(t, edsrX2, images, cfg, quant.Events{Log: func(s string) { logs = append(logs, s) }})
	tn := res.Tuning
	require.NotNil(t, tn)
	before, ok := tn.HeldOut["before gradient tuning"]
	require.True(t, ok, "held-out scores: %v", tn.HeldOut)
	after, ok := tn.HeldOut["gradient tuning"]
	require.True(t, ok)
	t.Logf("held-out PSNR-Y vs FP32: %.3f dB before gradient tuning, %.3f after; kept %q", before, after, tn.Kept)
	assert.Equal(t, after > before, strings.HasSuffix(tn.Kept, "+ gradient tuning"), "the better model ships")
	assert.Contains(t, strings.Join(logs, "\n"), "gradient tuning: 36 Convs' biases, 6 steps")
	meta := map[string]string{}
	for _, p := range res.Model.MetadataProps {
		meta[p.Key] = p.Value
	}
	assert.Contains(t, meta[quant.MetaSetting], `"grad_steps":6`)
	assert.NotEmpty(t, model)

	t.Run("left out with a reason", func(t *testing.T) {
		m, err := esaNet().ToModel()
		require.NoError(t, err)
		data, err := onnx.Marshal(m)
		require.NoError(t, err)
		path := filepath.Join(t.TempDir(), "esa.onnx")
		require.NoError(t, os.WriteFile(path, data, 0o644))
		c := smallConfig()
		c.Patches, c.Probe = 20, sr.ProbeOptions{Scale: 2, Range: 1}
		c.Bits, c.Method, c.Tune, c.GradSteps = quant.Bits{W: 4, A: 4}, quant.Dual, true, 4
		// The small ESA network upsamples bilinearly, which the tape does
		// not model: the layer-wise tuner's model ships, saying so.
		res, _ := quantizeFile(t, path, images, c)
		require.NotNil(t, res.Tuning)
		assert.Equal(t, "esa.resize (Resize): Resize mode linear is not modelled", res.Tuning.GradientSkipped)
		assert.NotContains(t, res.Tuning.HeldOut, "gradient tuning")
	})
}
