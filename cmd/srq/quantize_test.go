package main

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// quickFlags make a quantize run take about 2 s on EDSR x2.
var quickFlags = []string{"--patches", "8", "--patch-size", "32", "--threads", "2"}

// dirEntries lists a folder's names, to check that a failed run wrote nothing.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// oneChannelModel writes a valid x2 SR-shaped model whose input has one
// channel (a grayscale network), which srq must refuse.
func oneChannelModel(t *testing.T, dir string) string {
	t.Helper()
	g := graph.New("gray", map[string]int64{"": 17})
	g.Inputs = []*graph.Value{{Name: "input", DType: onnx.TensorProto_FLOAT,
		Shape: graph.Shape{{Value: -1, Param: "n"}, {Value: 1}, {Value: -1, Param: "h"}, {Value: -1, Param: "w"}}}}
	g.Outputs = []*graph.Value{{Name: "output", DType: onnx.TensorProto_FLOAT}}
	g.SetInitializer(graph.NewFloat32("w", []int64{4, 1, 3, 3}, make([]float32, 36)))
	conv := &graph.Node{Name: "conv", OpType: "Conv", Inputs: []string{"input", "w"}, Outputs: []string{"c"}}
	conv.SetAttrInts("pads", []int64{1, 1, 1, 1})
	d2s := &graph.Node{Name: "d2s", OpType: "DepthToSpace", Inputs: []string{"c"}, Outputs: []string{"output"}}
	d2s.SetAttrInt("blocksize", 2)
	g.AddNode(conv)
	g.AddNode(d2s)
	m, err := g.ToModel()
	require.NoError(t, err)
	p := filepath.Join(dir, "gray.onnx")
	require.NoError(t, onnx.Save(p, m, onnx.SaveOptions{}))
	return p
}

// TestQuantizeRefuses covers the bad inputs: each is one clear error
// line, exit code 2, and nothing written.
func TestQuantizeRefuses(t *testing.T) {
	needORT(t)
	fixtures := t.TempDir()
	emptyDir := filepath.Join(fixtures, "empty")
	textDir := filepath.Join(fixtures, "text")
	require.NoError(t, os.Mkdir(emptyDir, 0o755))
	require.NoError(t, os.Mkdir(textDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(textDir, "notes.txt"), []byte("no images"), 0o644))
	gray := oneChannelModel(t, fixtures)

	tests := []struct {
		name string
		// args are added to --model tdModel --calib tdImages --out OUT
		// (later flags win); OUT is a file in a fresh folder.
		args []string
		want string
	}{
		{"empty calibration folder", []string{"--calib", emptyDir}, "no .png/.jpg/.jpeg/.bmp/.webp files in folder " + emptyDir},
		{"calibration folder without images", []string{"--calib", textDir}, "no .png/.jpg/.jpeg/.bmp/.webp files in folder " + textDir},
		{"missing calibration folder", []string{"--calib", filepath.Join(fixtures, "nope")}, "cannot read folder"},
		{"one-channel model", []string{"--model", gray}, ": not an NCHW 3-channel image input"},
		{"missing model", []string{"--model", filepath.Join(fixtures, "nope.onnx")}, "nope.onnx"},
		{"unknown method", []string{"--method", "entropy"}, `--method: method "entropy": want minmax, percentile, mse or dual`},
		{"weight bits above 8", []string{"--bits", "w9a4"}, `--bits: bits "w9a4": weight and activation widths must be in 2..8`},
		{"activation bits below 2", []string{"--bits", "w4a1"}, `--bits: bits "w4a1": weight and activation widths must be in 2..8`},
		{"breakpoint outside the range", []string{"--method", "dual", "--bits", "w4a4", "--breakpoint", "1e6"}, `: --breakpoint 1e+06: breakpoint 1e+06 outside (0, `},
		{"negative breakpoint", []string{"--method", "dual", "--breakpoint", "-3"}, `--breakpoint: breakpoint "-3": want search, pP (e.g. p99) or a positive number`},
		{"bad breakpoint percentile", []string{"--method", "dual", "--breakpoint", "p100"}, `--breakpoint: breakpoint "p100": a percentile is pP with 0 < P < 100`},
		{"bad rotation", []string{"--rotate=yes"}, `--rotate: rotation "yes": want auto, on or off`},
		{"bad accounting", []string{"--accounting", "paper"}, `--accounting: bit accounting "paper": want reference or strict`},
		{"bad encoding", []string{"--encoding", "int4"}, `--encoding: encoding "int4": want int8, shared-grid or simulate`},
		{"layer that cannot be exact in int8", []string{"--method", "dual", "--bits", "w6a6", "--encoding", "shared-grid"}, `: --encoding shared-grid: layer "/body/body.`},
		{"layer encoding of no such layer", []string{"--bits", "w4a4", "--layer-encoding", "/nope/Conv=simulate"}, `--layer-encoding: no low-bit or dual-region Conv named /nope/Conv`},
		{"layer encoding without a value", []string{"--layer-encoding", "/head/Conv"}, `--layer-encoding "/head/Conv": want NODE=ENCODING`},
		{"gradient steps without tuning", []string{"--grad-steps", "10"}, "--bias-correction, --grad-steps and --time-budget are part of --tune"},
		{"negative gradient steps", []string{"--tune", "--grad-steps", "-1", "--patches", "20"}, "--grad-steps -1: must not be negative"},
		{"tuning on too few patches", []string{"--tune", "--bits", "w4a4"}, "tuning needs at least 20 calibration patches (16 held out), got 8"},
		{"malformed bits", []string{"--bits", "int8"}, `--bits: bits "int8": want wNaM`},
		{"bad weights", []string{"--weights", "per-row"}, `--weights "per-row": want per-channel or per-tensor`},
		{"bad weight method", []string{"--weight-method", "kl"}, `--weight-method "kl": want mse or minmax`},
		{"bad first-last", []string{"--first-last", "4"}, `--first-last: first/last policy "4"`},
		{"bad long-skip", []string{"--long-skip", "fp32"}, `--long-skip: long-skip policy "fp32": want precise or int8`},
		{"bad percentile", []string{"--percentile", "101"}, "--percentile 101: want a value in [50, 100]"},
		{"no patches", []string{"--patches", "0"}, "--patches 0: want a positive integer"},
		{"bad patch size", []string{"--patch-size", "-4"}, "--patch-size -4"},
		{"bad batch", []string{"--batch", "0"}, "--batch 0"},
		{"bad threads", []string{"--threads", "-1"}, "--threads -1"},
		{"bad speed check", []string{"--speed-check", "-1"}, "--speed-check -1"},
		{"bad input range", []string{"--input-range", "2"}, "--input-range 2: want 1 or 255"},
		{"wrong scale", []string{"--scale", "3"}, "scale 3 requested"},
		{"unknown skip", []string{"--skip", "/head/Conv,/nope/Conv"}, "--skip: no quantizable node named /nope/Conv"},
		{"positional argument", []string{"extra"}, "expected no positional arguments"},
		{"missing --model", []string{"--model", ""}, "--model is required"},
		{"missing --calib", []string{"--calib", ""}, "--calib is required"},
		{"missing --out", []string{"--out", ""}, "--out is required"},
		{"output is the model", []string{"--out", tdModel}, "output path is the same file as the model"},
		{"output is the model, other spelling", []string{"--out", "../srq/" + tdModel}, "output path is the same file as the model"},
		{"output is a directory", []string{"--out", fixtures}, "output path is a directory"},
		{"output folder missing", []string{"--out", filepath.Join(fixtures, "nope", "q.onnx")}, "output folder " + filepath.Join(fixtures, "nope") + " does not exist"},
		{"ranges json is the output", []string{"--ranges-json", "SAME"}, "--ranges-json"},
		{"negative max drop", []string{"--max-drop", "-0.1"}, "--max-drop -0.1: want a drop in dB"},
		{"validation without a budget", []string{"--val", tdImages}, "--val and --keep-best are part of --max-drop"},
		{"keep-best without a budget", []string{"--keep-best"}, "--val and --keep-best are part of --max-drop"},
		{"missing validation folder", []string{"--max-drop", "0.1", "--val", filepath.Join(fixtures, "nope")}, "--val: "},
		{"no steps", []string{"--max-drop", "0.1", "--max-steps", "0"}, "--max-steps 0: accuracy control measures at least one model"},
		{"drop without ground truth", []string{"--max-drop", "0.1", "--calib-lr"}, "--max-drop measures the drop against the ground truth, and --calib-lr images are LR inputs without it; use --max-drop-vs-fp32"},
	}
	// These errors need the calibration statistics, so the progress lines
	// come first; the error is still one line.
	calibrates := map[string]bool{"breakpoint outside the range": true, "layer that cannot be exact in int8": true}
	modelBefore, err := os.ReadFile(tdModel)
	require.NoError(t, err)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "q.onnx")
			args := append([]string{"quantize", "--model", tdModel, "--calib", tdImages, "--out", out}, quickFlags...)
			for _, a := range tc.args {
				if a == "SAME" {
					a = out
				}
				args = append(args, a)
			}
			code, stdout, stderr := runSRQ(args...)
			if calibrates[tc.name] {
				lines := strings.SplitAfter(stderr, "\n")
				require.GreaterOrEqual(t, len(lines), 2)
				assert.Contains(t, lines[0], "calibrating")
				stderr = lines[len(lines)-2] + lines[len(lines)-1]
			}
			assertOneLineError(t, code, stdout, stderr, "srq quantize: ", tc.want)
			assert.Empty(t, dirEntries(t, dir), "nothing written")
		})
	}
	after, err := os.ReadFile(tdModel)
	require.NoError(t, err)
	assert.Equal(t, modelBefore, after, "the model is untouched")
	assert.Equal(t, []string{"empty", "gray.onnx", "text"}, dirEntries(t, fixtures))
}

// rangesLine reads the count from the summary's "ranges    N activation tensors" line.
var rangesLine = regexp.MustCompile(`(?m)^ranges    (\d+) activation tensors`)

func TestQuantizeCLI(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "q.onnx")
	rj := filepath.Join(dir, "ranges.json")

	// Verbose, external data and a ranges dump.
	args := append([]string{"quantize", "--model", tdModel, "--calib", tdImages, "--out", out,
		"--ranges-json", rj, "--external-data", "-v"}, quickFlags...)
	code, stdout, stderr := runSRQ(args...)
	require.Equal(t, exitOK, code, stderr)
	t.Logf("summary:\n%s", stdout)
	assert.Contains(t, stderr, "calibrating ")
	assert.Contains(t, stderr, "  calibration 8/8\n", "progress lines in a log")
	assert.NotContains(t, stderr, "srq quantize:")
	assert.NotContains(t, stderr, "warning:", "W8A8 EDSR x2 runs about 3x faster than FP32: no slower-than-FP32 warning")
	for _, want := range []string{
		"wrote " + out + " (x2, input range 0..255)\n",
		"setting   w8a8, activations percentile 99.999, weights per-channel mse, first/last 8, long skip precise\n",
		"convs     36/37 quantized\n",
		// The float head copy is srq's own node: reported as what it is,
		// not among the user's nodes that stay float.
		"added     /head/Conv_skip: float copy of the head conv /head/Conv, for the precise long skip (--long-skip precise)\n",
		"skipped   1:\n  /Add (long skip kept precise)\n",
		"time      calibration ",
		"(8 patches of 32x32)",
		"speed     96x96 LR, median of 3 runs: fp32 ",
	} {
		assert.Contains(t, stdout, want)
	}
	m := rangesLine.FindStringSubmatch(stdout)
	require.NotNil(t, m, stdout)
	nRanges, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	assert.NotContains(t, stdout, "more\n", "-v lists every range")

	var rf rangesFile
	b, err := os.ReadFile(rj)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rf))
	require.Len(t, rf.Ranges, nRanges)
	assert.Equal(t, "percentile", rf.Method)
	assert.Equal(t, 8, rf.Patches)
	for _, r := range rf.Ranges {
		assert.Contains(t, stdout, "\n  "+r.Value+" ", "-v row for %s", r.Value)
		assert.LessOrEqual(t, r.Lo, float32(0), r.Value)
		assert.Greater(t, r.Hi, r.Lo, r.Value)
		assert.Positive(t, r.Scale, r.Value)
	}
	assert.Equal(t, "input_padded", rf.Ranges[0].Value, "the head reads the image padded with the mean")
	assert.Equal(t, "image grid", rf.Ranges[0].Reason)

	_, err = os.Stat(out + ".data")
	require.NoError(t, err, "--external-data writes the weights beside the model")
	q, err := onnx.Load(out)
	require.NoError(t, err)
	g, err := graph.FromModel(q)
	require.NoError(t, err)
	ops := map[string]int{}
	for _, n := range g.Nodes {
		ops[n.OpType]++
	}
	assert.Equal(t, 37, ops["Conv"])
	assert.GreaterOrEqual(t, ops["QuantizeLinear"], nRanges)
	assert.Equal(t, "input", g.Inputs[0].Name)
	assert.Equal(t, "output", g.Outputs[0].Name)

	// The default summary, into another folder: same model, table cut short.
	out2 := filepath.Join(t.TempDir(), "q.onnx")
	args = append([]string{"quantize", "--model", tdModel, "--calib", tdImages, "--out", out2, "--speed-check", "0"}, quickFlags...)
	code, stdout, stderr = runSRQ(args...)
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stdout, "(first and last 4; -v for all):\n")
	assert.Contains(t, stdout, "  ... "+strconv.Itoa(nRanges-8)+" more\n")
	q2, err := onnx.Load(out2)
	require.NoError(t, err)
	b1, err := onnx.Marshal(q)
	require.NoError(t, err)
	b2, err := onnx.Marshal(q2)
	require.NoError(t, err)
	assert.Equal(t, b1, b2, "same flags and seed, same model, with or without external data")
}

// TestProvenance: a model srq wrote says how it was made (`srq inspect`
// prints it, --json carries it), and handing it back to `srq quantize` is
// refused with one clear line instead of a double quantization.
func TestProvenance(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	q := filepath.Join(dir, "q.onnx")
	args := append([]string{"quantize", "--model", tdModel, "--calib", tdImages, "--out", q, "--bits", "w4a4", "--method", "dual"}, quickFlags...)
	code, _, errOut := runSRQ(args...)
	require.Equal(t, exitOK, code, errOut)

	code, out, errOut := runSRQ("inspect", "--no-probe", q)
	require.Equal(t, exitOK, code, errOut)
	assert.Regexp(t, `(?m)^quantized   by srq \d+\.\d+\.\d+`, out)
	assert.Contains(t, out, `setting     {"bits":"w4a4","method":"dual"`)
	assert.Contains(t, out, "calibrated  on 3 images (brick.png, chelsea.png, rocket.jpg), sha256 ")
	assert.Contains(t, out, "layers      34 Conv inputs with their own quantizer: 34 shared-grid")

	code, out, errOut = runSRQ("inspect", "--no-probe", "--json", q)
	require.Equal(t, exitOK, code, errOut)
	var r struct {
		Provenance map[string]json.RawMessage `json:"provenance"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	for _, k := range []string{"srq.version", "srq.setting", "srq.calibration", "srq.layers", "srq.ranges"} {
		assert.Contains(t, r.Provenance, k)
	}
	code, out, errOut = runSRQ("inspect", "--no-probe", "--json", tdModel)
	require.Equal(t, exitOK, code, errOut)
	assert.NotContains(t, out, "provenance", "an FP32 export has none")

	again := filepath.Join(dir, "again.onnx")
	args = append([]string{"quantize", "--model", q, "--calib", tdImages, "--out", again}, quickFlags...)
	code, out, errOut = runSRQ(args...)
	assertOneLineError(t, code, out, errOut, "srq quantize: ", q+": already quantized by srq ")
	assert.NoFileExists(t, again)
}

// TestSensitivity: `srq sensitivity` ranks every quantized Conv of the
// bundled EDSR x2 by the output PSNR with that layer alone quantized, writes
// the JSON and a decodable PNG chart, and reports the rank correlation with
// the method's own score.
func TestSensitivity(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	js, plot := filepath.Join(dir, "s.json"), filepath.Join(dir, "s.png")
	code, out, errOut := runSRQ("sensitivity", "--model", tdModel, "--calib", tdImages, "--patches", "4", "--patch-size", "32",
		"--threads", "2", "--json", js, "--plot", plot)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "layer sensitivity of "+tdModel+" at w4a4 dual")
	assert.Regexp(t, `rank correlation \(Spearman\) of the two measures: [+-]\d\.\d\d \(layers at 4 bits only: [+-]\d\.\d\d\)`, out)
	assert.Regexp(t, `all 36 layers at once: \d+\.\d\d dB; their weights alone: \d+\.\d\d dB; their inputs alone: \d+\.\d\d dB`, out)
	var r struct {
		Layers []struct {
			Conv  string  `json:"conv"`
			Bits  int     `json:"bits"`
			PSNR  float64 `json:"psnr_db"`
			Score float64 `json:"score"`
		} `json:"layers"`
		Patches int `json:"patches"`
		Whole   struct {
			All     float64 `json:"all_psnr_db"`
			Weights float64 `json:"weights_only_psnr_db"`
			Inputs  float64 `json:"inputs_only_psnr_db"`
		} `json:"whole"`
	}
	b, err := os.ReadFile(js)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &r))
	require.Len(t, r.Layers, 36, "every quantized Conv but the float head copy")
	assert.Equal(t, 4, r.Patches)
	var sum float64
	for i, l := range r.Layers {
		sum += l.Score
		if i > 0 {
			assert.GreaterOrEqual(t, l.PSNR, r.Layers[i-1].PSNR, "sorted, most sensitive first")
		}
		assert.Greater(t, l.PSNR, 30.0, l.Conv)
	}
	assert.InDelta(t, 1, sum, 1e-6, "scores are a softmax")
	// Errors add: the whole setting is worse than either half of it and
	// than the most sensitive layer alone.
	w := r.Whole
	t.Logf("whole: %+v", w)
	assert.Less(t, w.All, w.Weights)
	assert.Less(t, w.All, w.Inputs)
	assert.Less(t, w.All, r.Layers[0].PSNR)
	assert.Greater(t, w.All, 20.0)
	f, err := os.Open(plot)
	require.NoError(t, err)
	defer f.Close()
	_, err = png.Decode(f)
	require.NoError(t, err)
}
