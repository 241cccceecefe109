package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/sr"
)

// TestRunEDSRAgainstItself runs the whole verification with the FP32 model
// in both roles: outputs are identical (PSNR +Inf, written as MaxPSNR), the
// ground-truth metrics agree, nothing runs in int8, and the report is the
// same byte for byte apart from the latencies.
func TestRunEDSRAgainstItself(t *testing.T) {
	requireORT(t)
	data := readFile(t, edsrX2)
	dir := smallImages(t, 41, 34) // odd sizes: HR mode crops to 40×34
	paths, err := img.List(dir)
	require.NoError(t, err)
	cfg := Config{Threads: 1, HR: true, Size: 16, Runs: 1}
	src := Source{Path: edsrX2, Data: data}

	r, err := Run(context.Background(), src, src, paths, cfg, nil)
	require.NoError(t, err)
	assert.Equal(t, 2, r.Scale)
	assert.Equal(t, float32(255), r.InputRange)
	assert.Equal(t, 3, r.Images)
	assert.Equal(t, float64(MaxPSNR), r.PSNRvsFP32)
	require.NotNil(t, r.PSNRGT)
	assert.Equal(t, r.PSNRGT.FP32, r.PSNRGT.Quantized)
	assert.Greater(t, r.PSNRGT.FP32, 20.0, "EDSR on real crops is far better than noise")
	assert.Equal(t, r.SSIMGT.FP32, r.SSIMGT.Quantized)
	assert.Equal(t, 0.0, *r.PSNRGTDrop)
	for _, x := range r.PerImage {
		assert.Equal(t, float64(MaxPSNR), x.PSNRvsFP32, x.Image)
		assert.Equal(t, [2]int{20, 17}, [2]int{x.LRWidth, x.LRHeight}, x.Image)
		assert.True(t, x.SSIMGT.FP32 > 0 && x.SSIMGT.FP32 <= 1, "%s SSIM %v", x.Image, x.SSIMGT.FP32)
	}
	require.NotNil(t, r.Int8Conv)
	assert.Equal(t, 0, r.Int8Conv.Int8)
	assert.GreaterOrEqual(t, r.Int8Conv.Total, 33, "EDSR-baseline has 33+ convs: %v", r.Int8Conv.Ops)
	assert.Len(t, r.Int8Conv.Float, r.Int8Conv.Total)
	assert.Equal(t, 1, r.Latency["fp32"].Runs)
	assert.Greater(t, r.LatencyMS.FP32, 0.0)
	assert.Greater(t, r.Speedup, 0.0)
	assert.Equal(t, "cpu", r.EP)
	assert.NotEmpty(t, r.ORTVersion)
	assert.Equal(t, "brick.png.png", r.LatencyInput)

	b, err := r.JSON()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"model", "quantized", "scale", "images", "psnr_vs_fp32_db", "psnr_gt_db", "ssim_gt",
		"latency_ms", "speedup", "int8_conv", "ep", "threads", "size", "per_image", "ort_version", "input_range",
		"resampler", "cpu"} {
		assert.Contains(t, m, k)
	}

	// Determinism: a second run differs only in the latency fields.
	r2, err := Run(context.Background(), src, src, paths, cfg, nil)
	require.NoError(t, err)
	b2, err := withoutLatency(r2).JSON()
	require.NoError(t, err)
	b1, err := withoutLatency(r).JSON()
	require.NoError(t, err)
	assert.Equal(t, string(b1), string(b2))
}

func withoutLatency(r *Report) *Report {
	c := *r
	c.LatencyMS, c.Speedup, c.Latency = Pair{}, 0, nil
	return &c
}

// TestRunTinyQDQ: a hand-built QDQ conv against its float original: ORT
// runs it in int8 (1/1), and the quantized output differs from the FP32 one
// by output rounding only.
func TestRunTinyQDQ(t *testing.T) {
	requireORT(t)
	paths, err := img.List(smallImages(t, 24, 20))
	require.NoError(t, err)
	r, err := Run(context.Background(), Source{"float.onnx", tinyFloatModel()}, Source{"qdq.onnx", tinyQDQModel()}, paths,
		Config{Threads: 1, Size: 8, Runs: 2, Probe: sr.ProbeOptions{Range: 255}}, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, r.Scale)
	assert.Equal(t, &ConvCoverage{Int8: 1, Total: 1, Float: []string{}, Ops: map[string]int{"com.microsoft:QLinearConv": 1}}, r.Int8Conv)
	assert.Nil(t, r.PSNRGT)
	// Output rounding to the 8-bit grid errs by at most half a level,
	// so PSNR is high but finite; 8-bit metric rounding may hide some.
	assert.Greater(t, r.PSNRvsFP32, 45.0)
	assert.Less(t, r.PSNRvsFP32, float64(MaxPSNR))
	assert.False(t, math.IsInf(r.PSNRvsFP32, 0))
	assert.Equal(t, 2, r.Runs)
	var b bytes.Buffer
	require.NoError(t, r.WriteTable(&b))
	assert.Contains(t, b.String(), "1/1 convs in int8 (com.microsoft:QLinearConv 1)")
}

// TestConfigDefaults: DefaultConfig is what srq verify's flags default to,
// and a zero Config takes the defaults of Size and Runs instead of failing.
func TestConfigDefaults(t *testing.T) {
	assert.Equal(t, Config{EP: "cpu", Threads: 2, Size: 256, Runs: RecommendedRuns}, DefaultConfig())
	got, err := Config{}.resolve()
	require.NoError(t, err)
	assert.Equal(t, Config{Size: DefaultLatencySize, Runs: RecommendedRuns}, got, "zero threads stays ORT's default")
	got, err = Config{Size: 64, Runs: 3, Threads: 1}.resolve()
	require.NoError(t, err)
	assert.Equal(t, Config{Size: 64, Runs: 3, Threads: 1}, got, "set values are kept")
}

func TestRunRejects(t *testing.T) {
	requireORT(t)
	paths, err := img.List(smallImages(t, 24, 20))
	require.NoError(t, err)
	edsr := Source{edsrX2, readFile(t, edsrX2)}
	tiny := Source{"tiny.onnx", tinyFloatModel()}
	ok := Config{Threads: 1, Size: 8, Runs: 1, Probe: sr.ProbeOptions{Range: 255}}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	tests := []struct {
		name     string
		fp32, q  Source
		paths    []string
		cfg      Config
		contains []string
	}{
		{"scale mismatch", edsr, tiny, paths, ok, []string{"scale mismatch", edsrX2 + " is x2", "tiny.onnx is x1"}},
		{"no images", edsr, edsr, nil, ok, []string{"no images"}},
		{"size", edsr, edsr, paths, with(func(c *Config) { c.Size = -1 }), []string{"latency size -1: want at least 1 (0: 256)"}},
		{"runs", edsr, edsr, paths, with(func(c *Config) { c.Runs = -1 }), []string{"latency runs -1"}},
		{"threads", edsr, edsr, paths, with(func(c *Config) { c.Threads = -1 }), []string{"threads -1"}},
		{"tile", edsr, edsr, paths, with(func(c *Config) { c.Tile = -1 }), []string{"tile -1"}},
		{"cuda on a CPU build", edsr, edsr, paths, with(func(c *Config) { c.EP = "cuda" }), []string{`execution provider "cuda"`, "libonnxruntime"}},
		{"unknown EP", edsr, edsr, paths, with(func(c *Config) { c.EP = "npu" }), []string{`unknown execution provider "npu"`}},
		{"not a model", Source{"junk.onnx", []byte("junk")}, edsr, paths, ok, []string{"junk.onnx"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.fp32, tc.q, tc.paths, tc.cfg, nil)
			require.Error(t, err)
			for _, s := range tc.contains {
				assert.Contains(t, err.Error(), s)
			}
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}
