package main

import (
	"bytes"
	"os"
	"path/filepath"
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

// TestSensitivityRefuses: every bad input of `srq sensitivity` is one error
// line naming the flag it came from, exit code 2, before any measurement,
// and nothing is written (neither the JSON nor the chart, nor over an
// input).
func TestSensitivityRefuses(t *testing.T) {
	needORT(t) // the one-channel model is refused by its probe
	fixtures := t.TempDir()
	emptyDir := filepath.Join(fixtures, "empty")
	require.NoError(t, os.Mkdir(emptyDir, 0o755))
	gray := oneChannelModel(t, fixtures)
	calibImage := filepath.Join(tdImages, "chelsea.png")
	modelBefore, err := os.ReadFile(tdModel)
	require.NoError(t, err)
	imageBefore, err := os.ReadFile(calibImage)
	require.NoError(t, err)

	tests := []struct {
		name string
		// args are added to --model tdModel --calib tdImages (later flags
		// win); OUT stands for a file in a fresh folder.
		args []string
		want string
	}{
		{"missing --model", []string{"--model", ""}, "--model is required"},
		{"missing --calib", []string{"--calib", ""}, "--calib is required"},
		{"positional argument", []string{"extra"}, "expected no positional arguments"},
		{"malformed bits", []string{"--bits", "int4"}, `--bits: bits "int4": want wNaM`},
		{"bits above 8", []string{"--bits", "w9a9"}, `--bits: bits "w9a9": weight and activation widths must be in 2..8`},
		{"unknown method", []string{"--method", "entropy"}, `--method: method "entropy": want minmax, percentile, mse or dual`},
		{"bad accounting", []string{"--accounting", "paper"}, `--accounting: bit accounting "paper": want reference or strict`},
		{"bad breakpoint", []string{"--breakpoint", "-3"}, `--breakpoint: breakpoint "-3": want search, pP`},
		{"bad percentile", []string{"--percentile", "101"}, "--percentile 101: want a value in [50, 100]"},
		{"bad weights", []string{"--weights", "per-row"}, `--weights "per-row": want per-channel or per-tensor`},
		{"no patches", []string{"--patches", "0"}, "--patches, --patch-size: want positive integers"},
		{"bad patch size", []string{"--patch-size", "-4"}, "--patches, --patch-size: want positive integers"},
		{"bad threads", []string{"--threads", "-1"}, "--threads: 0 or more"},
		{"bad input range", []string{"--input-range", "2"}, "--input-range 2: want 1 or 255"},
		{"empty calibration folder", []string{"--calib", emptyDir}, "no .png/.jpg/.jpeg/.bmp/.webp files in folder " + emptyDir},
		{"missing calibration folder", []string{"--calib", filepath.Join(fixtures, "nope")}, "cannot read folder"},
		{"missing model", []string{"--model", filepath.Join(fixtures, "nope.onnx")}, "nope.onnx"},
		{"one-channel model", []string{"--model", gray}, ": not an NCHW 3-channel image input"},
		{"json is the model", []string{"--json", tdModel}, "--json " + tdModel + ": is the same file as the input " + tdModel},
		{"json is a calibration image", []string{"--json", calibImage}, "--json " + calibImage + ": is the same file as the input"},
		{"json folder missing", []string{"--json", filepath.Join(fixtures, "no", "s.json")}, "--json " + filepath.Join(fixtures, "no", "s.json") + ": folder " + filepath.Join(fixtures, "no") + " does not exist"},
		{"json is a folder", []string{"--json", fixtures}, "--json " + fixtures + ": not a regular file"},
		// The audit's bug: a --plot path was reported as --json.
		{"plot folder missing", []string{"--plot", "nodir/p.png"}, "--plot nodir/p.png: folder nodir does not exist"},
		{"plot is the model", []string{"--plot", tdModel}, "--plot " + tdModel + ": is the same file as the input " + tdModel},
		{"plot is a calibration image", []string{"--plot", calibImage}, "--plot " + calibImage + ": is the same file as the input"},
		{"plot is a folder", []string{"--plot", fixtures}, "--plot " + fixtures + ": not a regular file"},
		{"plot to stdout", []string{"--plot", "-"}, "--plot -: a PNG chart goes to a file"},
		{"plot and json the same file", []string{"--json", "OUT", "--plot", "OUT"}, ": same file as --json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"sensitivity", "--model", tdModel, "--calib", tdImages, "--patches", "4", "--patch-size", "16", "--threads", "1"}
			for _, a := range tc.args {
				if a == "OUT" {
					a = filepath.Join(dir, "s.out")
				}
				args = append(args, a)
			}
			code, stdout, stderr := runSRQ(args...)
			assertOneLineError(t, code, stdout, stderr, "srq sensitivity: ", tc.want)
			assert.Empty(t, dirEntries(t, dir), "nothing written")
		})
	}
	after, err := os.ReadFile(tdModel)
	require.NoError(t, err)
	assert.Equal(t, modelBefore, after, "the model is untouched")
	after, err = os.ReadFile(calibImage)
	require.NoError(t, err)
	assert.Equal(t, imageBefore, after, "the calibration image is untouched")
	assert.Equal(t, []string{"empty", "gray.onnx"}, dirEntries(t, fixtures))
	assert.NoDirExists(t, "nodir")
}
