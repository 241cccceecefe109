package verify

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewReportMeans(t *testing.T) {
	res := []ImageResult{
		{Image: "a.png", PSNRvsFP32: 40.123456, PSNRGT: &Pair{30, 29.5}, SSIMGT: &Pair{0.9, 0.89}},
		{Image: "b.png", PSNRvsFP32: MaxPSNR, PSNRGT: &Pair{32, 32}, SSIMGT: &Pair{0.95, 0.95}},
	}
	r := newReport(res, true)
	assert.Equal(t, 2, r.Images)
	assert.InDelta(t, (40.123456+MaxPSNR)/2, r.PSNRvsFP32, 1e-4, "means are over capped values")
	assert.Equal(t, &Pair{31, 30.75}, r.PSNRGT)
	assert.InDelta(t, 0.25, *r.PSNRGTDrop, 1e-12)
	assert.InDelta(t, 0.925, r.SSIMGT.FP32, 1e-12)
	assert.Equal(t, 40.1235, r.PerImage[0].PSNRvsFP32, "per-image values are rounded to 1e-4")
	assert.Equal(t, Resampler, r.Resampler)

	lr := newReport([]ImageResult{{Image: "a.png", PSNRvsFP32: 41}}, false)
	assert.Nil(t, lr.PSNRGT)
	assert.Nil(t, lr.SSIMGT)
	assert.Nil(t, lr.PSNRGTDrop)
	b, err := lr.JSON()
	require.NoError(t, err)
	for _, k := range []string{"psnr_gt_db", "ssim_gt", "psnr_gt_drop_db"} {
		assert.NotContains(t, string(b), `"`+k+`"`, "ground-truth keys are omitted without HR")
	}
}

func TestCheckGates(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	hr := newReport([]ImageResult{{Image: "a", PSNRvsFP32: 45, PSNRGT: &Pair{30, 29.8}, SSIMGT: &Pair{0.9, 0.9}}}, true)
	lr := newReport([]ImageResult{{Image: "a", PSNRvsFP32: 45}}, false)
	same := newReport([]ImageResult{{Image: "a", PSNRvsFP32: MaxPSNR}}, false)
	fast, slow := newReport(nil, false), newReport(nil, false)
	fast.Speedup, slow.Speedup = 2.5, 0.8
	tests := []struct {
		name string
		r    *Report
		g    Gates
		want string // "" = pass
	}{
		{"no gates", hr, Gates{}, ""},
		{"min psnr met (inclusive)", hr, Gates{MinPSNR: f(45)}, ""},
		{"min psnr missed", hr, Gates{MinPSNR: f(45.5)}, "mean PSNR-Y vs FP32 45.00 dB is below the minimum 45.50 dB"},
		{"identical models pass any min psnr", same, Gates{MinPSNR: f(200)}, ""},
		{"max drop met", hr, Gates{MaxDrop: f(0.2)}, ""},
		{"max drop missed", hr, Gates{MaxDrop: f(0.1)}, "drop vs ground truth 0.2000 dB is above the maximum 0.1000 dB"},
		{"max drop needs HR", lr, Gates{MaxDrop: f(1)}, "needs ground-truth images"},
		{"both fail, both named", hr, Gates{MinPSNR: f(50), MaxDrop: f(0)}, "below the minimum 50.00 dB; mean PSNR-Y drop"},
		{"min speed-up met", fast, Gates{MinSpeedup: f(1)}, ""},
		{"min speed-up missed", slow, Gates{MinSpeedup: f(1)}, "speed-up 0.80x is below the minimum 1.00x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Check(tc.g)
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestWriteJSONAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "r.json")
	r := newReport([]ImageResult{{Image: "a", PSNRvsFP32: MaxPSNR}}, false)
	r.Int8Conv = &ConvCoverage{Float: []string{}, Ops: map[string]int{}}
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o600))
	require.NoError(t, r.WriteJSON(p))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, float64(MaxPSNR), m["psnr_vs_fp32_db"], "+Inf is written as MaxPSNR")
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1, "no temporary file is left behind")

	// A directory in the way is refused and left alone, with nothing written.
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))
	assert.ErrorContains(t, r.WriteJSON(sub), "not a regular file")
	assert.ErrorContains(t, r.WriteJSON(filepath.Join(dir, "missing", "r.json")), "missing")
	entries, _ = os.ReadDir(dir)
	assert.Len(t, entries, 2)
}

func TestWriteTable(t *testing.T) {
	r := newReport([]ImageResult{
		{Image: "baby.png", PSNRvsFP32: 47.5, PSNRGT: &Pair{38.41, 38.3}, SSIMGT: &Pair{0.9642, 0.964}},
		{Image: "bird.png", PSNRvsFP32: MaxPSNR, PSNRGT: &Pair{40, 40}, SSIMGT: &Pair{0.97, 0.97}},
	}, true)
	r.Model, r.Quantized, r.Scale, r.InputRange, r.EP, r.Threads = "m.onnx", "q.onnx", 2, 255, "cpu", 2
	r.Size, r.Runs, r.LatencyMS, r.Speedup = 256, 10, Pair{1500, 550}, 2.727
	r.Int8Conv = &ConvCoverage{Int8: 36, Total: 37, Float: []string{"tail"}, Ops: map[string]int{"com.microsoft:QLinearConv": 36, "ai.onnx:Conv": 1}}
	var b bytes.Buffer
	require.NoError(t, r.WriteTable(&b))
	out := b.String()
	for _, want := range []string{
		"q.onnx vs m.onnx: x2, input 0..255, 2 images (HR ground truth, LR by pillow-bicubic), ep cpu, 2 threads",
		"image     q vs fp32 (dB)  fp32 vs GT (dB)  q vs GT (dB)  Δ vs GT (dB)  SSIM fp32     SSIM q\n",
		"baby.png           47.50            38.41         38.30         -0.11     0.9642     0.9640\n",
		"bird.png             inf            40.00",
		"latency 256x256 LR, median of 10 runs: fp32 1500.0 ms, quantized 550.0 ms, speed-up 2.73x",
		"int8 coverage (ORT's optimized graph on cpu): 36/37 convs in int8",
		"float convs: tail",
	} {
		assert.Contains(t, out, want)
	}
	assert.Regexp(t, `(?m)^mean +523\.25 +39\.20 +39\.15 +-0\.05`, out)
	assert.Contains(t, out, "q vs fp32: quantized output against the FP32 output")
	assert.Contains(t, out, "Δ vs GT: q minus fp32 against the ground truth")
	assert.NotContains(t, out, "slower than FP32")

	r.LatencyMS, r.Speedup = Pair{500, 550}, 0.909
	b.Reset()
	require.NoError(t, r.WriteTable(&b))
	assert.Contains(t, b.String(), "warning: the quantized model is slower than FP32 here (cpu, 2 threads)")

	r.Int8Conv.Float = []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"}
	b.Reset()
	require.NoError(t, r.WriteTable(&b))
	assert.Contains(t, b.String(), "float convs: c0, c1, c2, c3, c4, c5, c6, c7, … (2 more in the JSON report)\n")

	r.Int8Conv, r.EP = nil, "tensorrt"
	b.Reset()
	require.NoError(t, r.WriteTable(&b))
	assert.Contains(t, b.String(), "int8 coverage: not available on tensorrt")
	assert.False(t, strings.Contains(b.String(), "float convs"))
}
