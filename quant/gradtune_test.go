package quant_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/gtune"
	"github.com/srquant/srq/quant"
)

// TestQuantizeGradTune: gradient tuning after the layer-wise tuner, on the
// committed EDSR x2 at W4A4 dual (biases, weight steps and input quantizers), scores the model before and after it on
// the held-out patches and ships the better one; the setting records the
// steps; two runs write the same bytes.
func TestQuantizeGradTune(t *testing.T) {
	requireORT(t)
	cfg := smallConfig()
	cfg.Patches = 24 // 16 held out
	cfg.Bits, cfg.Method, cfg.Tune, cfg.GradSteps = quant.Bits{W: 4, A: 4}, quant.Dual, true, 6
	// Learn the input quantizers too (off by default): every one of EDSR
	// x2's is a chain the tuner reproduces, to float32 rounding.
	restore := quant.SetGradOptions(func(o *gtune.Options) { o.ActLR = 0.002 })
	defer restore()
	var logs []string
	res, model := quantizeFileEv(t, edsrX2, images, cfg, quant.Events{Log: func(s string) { logs = append(logs, s) }})
	tn := res.Tuning
	require.NotNil(t, tn)
	before, ok := tn.HeldOut["held-out images: before gradient tuning"]
	require.True(t, ok, "held-out scores: %v", tn.HeldOut)
	after, ok := tn.HeldOut["held-out images: gradient tuning"]
	require.True(t, ok)
	t.Logf("held-out PSNR-Y vs FP32: %.3f dB before gradient tuning, %.3f after; kept %q", before, after, tn.Kept)
	assert.Equal(t, after > before, strings.HasSuffix(tn.Kept, "+ gradient tuning"), "the better model ships")
	all := strings.Join(logs, "\n")
	// Whole images held out: the third of testdata/images' three photos.
	assert.Contains(t, all, "gradient tuning: 36 Convs' biases and per-channel weight steps, 34 input quantizers, 6 steps of 4 patches (32x32 crops), 8 patches of the last image held out")
	assert.NotContains(t, all, "kept as they are")
	meta := map[string]string{}
	for _, p := range res.Model.MetadataProps {
		meta[p.Key] = p.Value
	}
	assert.Contains(t, meta[quant.MetaSetting], `"grad_steps":6`)
	assert.NotEmpty(t, model)

	t.Run("bilinear Resize", func(t *testing.T) {
		path, c := esaTuneSetup(t)
		c.GradSteps = 4
		// The small ESA network's strided Conv, MaxPool and bilinear
		// Resize run on the tape.
		res, _ := quantizeFile(t, path, images, c)
		require.NotNil(t, res.Tuning)
		assert.Empty(t, res.Tuning.GradientSkipped)
		assert.Contains(t, res.Tuning.HeldOut, "held-out images: gradient tuning")
	})
	t.Run("left out with a reason", func(t *testing.T) {
		_, c := esaTuneSetup(t)
		c.GradSteps = 4
		// A bicubic Resize, which the tape does not model: the layer-wise
		// tuner's model ships, saying so.
		g := esaNet()
		g.Producer("c3").SetAttrString("mode", "cubic")
		path, _ := writeGraph(t, g, "esa_cubic.onnx")
		res, _ := quantizeFile(t, path, images, c)
		require.NotNil(t, res.Tuning)
		assert.Equal(t, `esa.resize (Resize): grad: Resize mode "cubic": want nearest or linear`, res.Tuning.GradientSkipped)
		assert.NotContains(t, res.Tuning.HeldOut, "held-out images: gradient tuning")
	})
}
