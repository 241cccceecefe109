package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/quant"
)

// sensitivityFixture is a result as quant.Sensitivity returns it (most
// sensitive first) with scores over 23 orders of magnitude, as RCAN's are.
func sensitivityFixture() (*sensitivityOpts, quant.Config, *quant.SensitivityResult) {
	cfg := quant.DefaultConfig()
	cfg.Bits, cfg.Method = quant.Bits{W: 4, A: 4}, quant.Dual
	res := &quant.SensitivityResult{Patches: 16, Spearman: 0.5, SpearmanLowBit: 0.4,
		Whole: quant.WholeSensitivity{All: 30, Weights: 35, Inputs: 32},
		Layers: []quant.LayerSensitivity{
			{Conv: "/tail/Conv", Bits: 8, PSNR: 31.5, InputStd: 40, Score: 0.9},
			{Conv: "/body/0/Conv", Bits: 4, PSNR: 38.25, InputStd: 12, Score: 0.09999},
			{Conv: "/body/1/Conv", Bits: 4, PSNR: 42, InputStd: 3, Score: 1e-5},
			{Conv: "/head/Conv", Bits: 8, PSNR: 55, InputStd: 0.1, Score: 2e-23},
		}}
	return &sensitivityOpts{model: "m.onnx"}, cfg, res
}

func TestPrintSensitivity(t *testing.T) {
	o, cfg, res := sensitivityFixture()
	var b bytes.Buffer
	printSensitivity(&b, o, cfg, res)
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"layer sensitivity of m.onnx at w4a4 dual (each layer quantized alone, 16 patches), most sensitive first\n",
		"score: the method's own sensitivity estimate, a softmax over layers of the input's std, as a share of all layers (%); score rank: 1 = highest score\n",
		"  conv          bits  PSNR vs fp32 (dB)   input std   score %  score rank\n",
		"  /tail/Conv       8              31.50          40     90.00         1/4\n",
		"  /body/0/Conv     4              38.25          12     10.00         2/4\n",
		"  /body/1/Conv     4              42.00           3     <0.01         3/4\n",
		"  /head/Conv       8              55.00         0.1     <0.01         4/4\n",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "e-", "no exponent notation")
}

// TestSensitivityBars: the chart's longest bar is the most sensitive
// layer (lowest PSNR), and bar lengths differ as the PSNRs do.
func TestSensitivityBars(t *testing.T) {
	_, cfg, res := sensitivityFixture()
	b := sensitivityBars("m", cfg, res)
	require.Len(t, b.Values, 4)
	assert.Equal(t, []string{"/tail/Conv", "/body/0/Conv", "/body/1/Conv", "/head/Conv"}, b.Labels)
	assert.Equal(t, []string{"8-bit", "4-bit", "4-bit", "8-bit"}, b.Groups)
	length := func(i int) float64 { return b.Values[i] - b.Base }
	for i := 1; i < len(b.Values); i++ {
		assert.Greater(t, length(i-1), length(i), "bar %d", i)
	}
	assert.InDelta(t, 55-31.5, length(0)-length(3), 1e-9, "a dB of bar is a dB of PSNR")
	assert.Greater(t, length(3), 0.0, "the least sensitive layer still has a bar")
	assert.True(t, strings.Contains(b.XLabel, "longer bar: more sensitive"), b.XLabel)
}
