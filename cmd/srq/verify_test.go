package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/expected"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/quant"
)

const (
	testModel  = "../../testdata/models/edsr_x2.onnx"
	testImages = "../../testdata/images"
)

// cli runs srq in-process and returns the exit code and both streams.
func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// verifyFixture is what the verify CLI tests share: a quantized EDSR x2
// (quant.Quantize with a small calibration), folders of small real-image
// crops, and a scale-1 model.
type verifyFixture struct {
	dir, quantized, lr, hr, empty, x1 string
}

func newVerifyFixture(t *testing.T) verifyFixture {
	t.Helper()
	lib, err := ort.FindLibrary("")
	if err != nil {
		t.Skipf("ONNX Runtime library not installed (run `make setup`): %v", err)
	}
	require.NoError(t, ort.Init(lib))
	f := verifyFixture{dir: t.TempDir()}

	m, err := onnx.Load(testModel)
	require.NoError(t, err)
	data, err := onnx.Marshal(m)
	require.NoError(t, err)
	calib := []string{filepath.Join(testImages, "chelsea.png"), filepath.Join(testImages, "rocket.jpg")}
	cfg := quant.DefaultConfig()
	cfg.Patches, cfg.PatchSize, cfg.Batch, cfg.Threads = 4, 24, 4, 2
	res, err := quant.Quantize(context.Background(), m, data, testModel, calib, cfg, quant.Events{})
	require.NoError(t, err)
	f.quantized = filepath.Join(f.dir, "edsr_x2_q.onnx")
	require.NoError(t, onnx.Save(f.quantized, res.Model, onnx.SaveOptions{}))

	// LR inputs of 20×17 and HR ground truth of 41×34 (cropped to 40×34).
	f.lr, f.hr, f.empty = filepath.Join(f.dir, "lr"), filepath.Join(f.dir, "hr"), filepath.Join(f.dir, "empty")
	for _, d := range []string{f.lr, f.hr, f.empty} {
		require.NoError(t, os.Mkdir(d, 0o755))
	}
	for _, name := range []string{"chelsea.png", "rocket.jpg"} {
		im, err := img.Read(filepath.Join(testImages, name))
		require.NoError(t, err)
		require.NoError(t, img.WritePNG(filepath.Join(f.lr, name+".png"), img.Crop(im, 100, 60, 20, 17)))
		require.NoError(t, img.WritePNG(filepath.Join(f.hr, name+".png"), img.Crop(im, 100, 60, 41, 34)))
	}
	f.x1 = filepath.Join(f.dir, "x1.onnx")
	require.NoError(t, os.WriteFile(f.x1, scale1Model(t), 0o644))
	return f
}

// scale1Model is a one-Conv model (3→3 channels, 1×1, identity weights):
// a valid image model of scale 1, to pair with an x2 model.
func scale1Model(t *testing.T) []byte {
	t.Helper()
	io := func(name string) *onnx.ValueInfoProto {
		d := func(p string) *onnx.TensorShapeProto_Dimension {
			return &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: p}}
		}
		c := &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 3}}
		return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
			ElemType: int32(onnx.TensorProto_FLOAT), Shape: &onnx.TensorShapeProto{Dim: []*onnx.TensorShapeProto_Dimension{d("N"), c, d("H"), d("W")}},
		}}}}
	}
	w := []float32{1, 0, 0, 0, 1, 0, 0, 0, 1}
	m := &onnx.ModelProto{IrVersion: 8, OpsetImport: []*onnx.OperatorSetIdProto{{Version: 17}}, Graph: &onnx.GraphProto{
		Name:        "x1",
		Input:       []*onnx.ValueInfoProto{io("input")},
		Output:      []*onnx.ValueInfoProto{io("output")},
		Initializer: []*onnx.TensorProto{{Name: "w", Dims: []int64{3, 3, 1, 1}, DataType: int32(onnx.TensorProto_FLOAT), FloatData: w}},
		Node:        []*onnx.NodeProto{{OpType: "Conv", Name: "conv", Input: []string{"input", "w"}, Output: []string{"output"}}},
	}}
	b, err := onnx.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestVerifyCLI(t *testing.T) {
	f := newVerifyFixture(t)
	base := []string{"verify", "--model", testModel, "--quantized", f.quantized, "--size", "16", "--runs", "2", "--threads", "1"}
	args := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }

	t.Run("LR images, JSON file", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "report.json")
		code, stdout, stderr := cli(args("--images", f.lr, "--json", out)...)
		require.Equal(t, exitOK, code, stderr)
		assert.Contains(t, stdout, "chelsea.png.png")
		assert.Contains(t, stdout, "latency 16x16 LR, median of 2 runs")
		assert.Contains(t, stdout, "wrote "+out)

		var r map[string]any
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &r))
		for _, k := range []string{"model", "quantized", "scale", "images", "psnr_vs_fp32_db", "latency_ms", "speedup",
			"int8_conv", "ep", "threads", "size", "per_image", "ort_version", "input_range", "resampler", "cpu"} {
			assert.Contains(t, r, k)
		}
		assert.NotContains(t, r, "psnr_gt_db", "no ground truth without --hr")
		assert.Equal(t, float64(2), r["scale"])
		assert.Equal(t, float64(2), r["images"])
		assert.Equal(t, "cpu", r["ep"])
		psnr := r["psnr_vs_fp32_db"].(float64)
		t.Logf("PSNR-Y vs FP32: %.4f dB", psnr)
		want := expected.Bundled.VerifyFixture
		assert.Greater(t, psnr, want-expected.PSNRMargin, "a W8A8 EDSR stays close to its FP32 output: measured %.2f dB", want)
		assert.Less(t, psnr, 999.0)
		cov := r["int8_conv"].(map[string]any)
		assert.Equal(t, cov["total"].(float64)-1, cov["int8"], "every conv but the float head copy of the long skip runs in int8: %v", cov)
		assert.GreaterOrEqual(t, cov["total"].(float64), 33.0)
		assert.Equal(t, []any{"/head/Conv_output_0_skip_nchwc"}, cov["float"])
		assert.Contains(t, stdout, "convs in int8")
	})

	t.Run("HR images, JSON on stdout, table on stderr", func(t *testing.T) {
		code, stdout, stderr := cli(args("--images", f.hr, "--hr", "--json", "-", "--max-drop", "5")...)
		require.Equal(t, exitOK, code, stderr)
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &r), "stdout must be pure JSON")
		for _, k := range []string{"psnr_gt_db", "ssim_gt", "psnr_gt_drop_db"} {
			assert.Contains(t, r, k)
		}
		gt := r["psnr_gt_db"].(map[string]any)
		assert.Greater(t, gt["fp32"].(float64), 20.0)
		per := r["per_image"].([]any)
		require.Len(t, per, 2)
		first := per[0].(map[string]any)
		assert.Equal(t, float64(20), first["lr_width"], "41 px is cropped to 40, then halved")
		assert.Contains(t, stderr, "SSIM q")
		assert.Contains(t, stderr, "LR by pillow-bicubic")
	})

	t.Run("model against itself: infinite PSNR", func(t *testing.T) {
		code, stdout, stderr := cli("verify", "--model", testModel, "--quantized", testModel, "--images", f.lr,
			"--size", "8", "--runs", "1", "--json", "-", "--min-psnr", "100")
		require.Equal(t, exitOK, code, stderr)
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &r))
		assert.Equal(t, 999.0, r["psnr_vs_fp32_db"])
		assert.Contains(t, stderr, "inf")
	})

	gates := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"min-psnr met", []string{"--images", f.lr, "--min-psnr", "20"}, exitOK, ""},
		{"min-psnr missed", []string{"--images", f.lr, "--min-psnr", "500"}, exitGate, "below the minimum 500.00 dB"},
		{"max-drop met", []string{"--images", f.hr, "--hr", "--max-drop", "10"}, exitOK, ""},
		{"max-drop missed", []string{"--images", f.hr, "--hr", "--max-drop", "-10"}, exitGate, "above the maximum -10.0000 dB"},
		{"min-speedup met", []string{"--images", f.lr, "--min-speedup", "0.01"}, exitOK, ""},
		{"min-speedup missed", []string{"--images", f.lr, "--min-speedup", "1000"}, exitGate, "below the minimum 1000.00x"},
	}
	for _, tc := range gates {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "r.json")
			code, _, stderr := cli(args(append(tc.args, "--json", out)...)...)
			assert.Equal(t, tc.code, code, stderr)
			assert.Contains(t, stderr, tc.msg)
			assert.FileExists(t, out, "the report is written whether or not a gate passes")
		})
	}

	modelCopy := filepath.Join(f.dir, "copy.onnx")
	b, err := os.ReadFile(testModel)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(modelCopy, b, 0o644))
	bad := []struct {
		name string
		args []string
		msg  []string
	}{
		{"missing model", []string{"verify", "--model", "nope.onnx", "--quantized", f.quantized, "--images", f.lr}, []string{"nope.onnx"}},
		{"missing quantized", []string{"verify", "--model", testModel, "--quantized", "gone.onnx", "--images", f.lr}, []string{"gone.onnx"}},
		{"no --quantized", []string{"verify", "--model", testModel, "--images", f.lr}, []string{"--quantized is required"}},
		{"different scales", args("--quantized", f.x1, "--images", f.lr, "--input-range", "255"), []string{"scale mismatch", "is x2", "x1.onnx is x1"}},
		{"empty image folder", args("--images", f.empty), []string{"no .png/.jpg/.jpeg/.bmp/.webp files in folder " + f.empty}},
		{"missing image folder", args("--images", filepath.Join(f.dir, "nope")), []string{"cannot read folder"}},
		{"json is the model", args("--images", f.lr, "--model", modelCopy, "--json", modelCopy), []string{"same file as the input " + modelCopy}},
		{"json is an image", args("--images", f.lr, "--json", filepath.Join(f.lr, "rocket.jpg.png")), []string{"same file as the input"}},
		{"json folder missing", args("--images", f.lr, "--json", filepath.Join(f.dir, "no", "r.json")), []string{"does not exist"}},
		{"runs 0", args("--images", f.lr, "--runs", "0"), []string{"--runs 0"}},
		{"size 0", args("--images", f.lr, "--size", "0"), []string{"--size 0"}},
		{"max-drop needs --hr", args("--images", f.lr, "--max-drop", "1"), []string{"needs --hr"}},
		{"positional argument", args("--images", f.lr, "extra"), []string{"no positional arguments"}},
		{"cuda on the CPU build", args("--images", f.lr, "--ep", "cuda"), []string{`execution provider "cuda" is not available`, "libonnxruntime"}},
		{"tensorrt on the CPU build", args("--images", f.lr, "--ep", "tensorrt"), []string{`execution provider "tensorrt" is not available`, "libonnxruntime"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if ep, ok := strings.CutSuffix(tc.name, " on the CPU build"); ok {
				skipIfProvider(t, ep)
			}
			out := t.TempDir()
			before := dirEntries(t, f.dir)
			lrBefore := dirEntries(t, f.lr)
			a := append(append([]string{}, tc.args...), "--json", filepath.Join(out, "r.json"))
			if strings.Contains(strings.Join(tc.args, " "), "--json") {
				a = tc.args
			}
			code, stdout, stderr := cli(a...)
			assert.Equal(t, exitFailure, code, stderr)
			assert.Empty(t, stdout)
			for _, m := range tc.msg {
				assert.Contains(t, stderr, m)
			}
			assert.True(t, strings.HasPrefix(stderr, "srq verify: ") && strings.Count(stderr, "\n") == 1 && strings.HasSuffix(stderr, "\n"),
				"one error line: %q", stderr)
			assert.Empty(t, dirEntries(t, out), "nothing written on error")
			assert.Equal(t, before, dirEntries(t, f.dir))
			assert.Equal(t, lrBefore, dirEntries(t, f.lr))
		})
	}
	got, err := os.ReadFile(modelCopy)
	require.NoError(t, err)
	assert.Equal(t, b, got, "the model named by --json is untouched")
}

// skipIfProvider skips a test of what happens without execution provider
// ep when the installed ONNX Runtime library has it (a GPU build on a
// machine with the driver): the refusal it checks cannot happen there.
func skipIfProvider(t *testing.T, ep string) {
	t.Helper()
	b, err := os.ReadFile(testModel)
	require.NoError(t, err)
	s, err := ort.NewSession(b, testModel, ort.Options{EP: ep, Threads: 1})
	if err == nil {
		s.Close()
		t.Skipf("this ONNX Runtime library has the %s provider; the test covers builds without it", ep)
	}
}

func TestVerifyHelp(t *testing.T) {
	code, stdout, _ := cli("verify", "--help")
	require.Equal(t, exitOK, code)
	for _, want := range []string{"--min-psnr", "PSNR-Y of the quantized output against the FP32 output", "--max-drop", "needs --hr", "--runs", "10 or more"} {
		assert.Contains(t, stdout, want)
	}
}
