package quant_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/expected"
	"github.com/srquant/srq/internal/version"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/sr"
	"github.com/srquant/srq/verify"
)

const (
	edsrX2    = "../testdata/models/edsr_x2.onnx"
	images    = "../testdata/images"
	chelsea   = "../testdata/images/chelsea.png"
	sharedDir = "../../shared"
)

// requireORT initialises ORT or skips when the library is not installed.
func requireORT(t testing.TB) { orttest.Require(t) }

// smallConfig calibrates on 8 patches of 32x32: enough to exercise every
// stage, fast enough (about 2 s on EDSR x2, 2 threads) to run several times.
func smallConfig() quant.Config {
	cfg := quant.DefaultConfig()
	cfg.Patches, cfg.PatchSize, cfg.Threads = 8, 32, 2
	return cfg
}

// quantizeFile loads model path fresh (Quantize's result shares weight bytes
// with its input) and quantizes it on the images in dir.
func quantizeFile(t *testing.T, path, dir string, cfg quant.Config) (*quant.Result, []byte) {
	t.Helper()
	return quantizeFileEv(t, path, dir, cfg, quant.Events{Log: func(s string) { t.Log(s) }})
}

// quantizeFileEv is quantizeFile reporting to ev.
func quantizeFileEv(t *testing.T, path, dir string, cfg quant.Config, ev quant.Events) (*quant.Result, []byte) {
	t.Helper()
	m, err := onnx.Load(path)
	require.NoError(t, err)
	data, err := onnx.Marshal(m)
	require.NoError(t, err)
	imgs, err := img.List(dir)
	require.NoError(t, err)
	res, err := quant.Quantize(context.Background(), m, data, path, imgs, cfg, ev)
	require.NoError(t, err)
	b, err := onnx.Marshal(res.Model)
	require.NoError(t, err)
	require.NoError(t, onnx.Validate(res.Model))
	return res, b
}

// TestQuantizeEDSR runs the pipeline on the committed EDSR x2 and checks
// what a deployment depends on; one seed-1 run is shared by the subtests.
func TestQuantizeEDSR(t *testing.T) {
	requireORT(t)
	cfg := smallConfig()
	res, model := quantizeFile(t, edsrX2, images, cfg)
	assert.Equal(t, 2, res.Scale)
	assert.Equal(t, float32(255), res.InputRange)
	// 38 convs: the output mean shift folds into the tail, the input mean
	// shift into the head, and the long skip adds a float copy of the head.
	assert.Equal(t, 37, res.Convs)
	assert.Equal(t, 36, res.ConvsInt8)
	assert.Equal(t, map[string]string{"/Add": "long skip kept precise"}, res.Skipped, "the model's own nodes only")
	assert.Equal(t, "srq", res.Model.GetProducerName())
	assert.Equal(t, version.Number(), res.Model.GetProducerVersion(), "srq's version, not the exporter's")
	assert.True(t, strings.HasPrefix(res.Model.GetProducerVersion(), version.Release))
	assert.Equal(t, map[string]string{"/head/Conv_skip": "float copy of the head conv /head/Conv, for the precise long skip (--long-skip precise)"}, res.Added)
	assert.Equal(t, 8, res.Patches)
	require.NotEmpty(t, res.Ranges)
	reasons := map[string]string{}
	for _, r := range res.Ranges {
		reasons[r.Value] = r.Reason
	}
	assert.Equal(t, "image grid", reasons["input_padded"], "the head reads the image itself, padded with the mean")
	assert.Equal(t, "two-part encoding", reasons["/Add_output_0"], "the upsampler reads the long-skip sum in two parts")
	assert.Equal(t, "image grid", reasons["output_wide"], "the widened image Conv writes the image grid")
	assert.Nil(t, res.Tuning, "tuning is off by default")

	t.Run("deterministic", func(t *testing.T) {
		_, again := quantizeFile(t, edsrX2, images, cfg)
		assert.True(t, bytes.Equal(model, again), "same config and seed must give the same bytes")
	})

	t.Run("seed changes ranges", func(t *testing.T) {
		c := cfg
		c.Seed = 2
		other, b := quantizeFile(t, edsrX2, images, c)
		require.Len(t, other.Ranges, len(res.Ranges))
		differ := 0
		for i, r := range res.Ranges {
			require.Equal(t, r.Value, other.Ranges[i].Value)
			if r.Lo != other.Ranges[i].Lo || r.Hi != other.Ranges[i].Hi {
				differ++
			}
		}
		t.Logf("%d of %d ranges differ between seeds 1 and 2", differ, len(res.Ranges))
		assert.Positive(t, differ)
		assert.False(t, bytes.Equal(model, b))
	})

	t.Run("ORT fuses every body conv", func(t *testing.T) {
		// ORT writes the graph it actually runs: every Conv but the float
		// head copy of the long skip must be an int8 QLinearConv, the
		// residual stream must stay channels-last (a Transpose pair per
		// conv would cost 25%), and the float ops are the padded input,
		// the skip Add and the two-part encoding of its sum.
		ops := optimizedOps(t, model)
		assert.Equal(t, 36, ops["QLinearConv"])
		assert.Equal(t, 1, ops["Conv"], "the float head copy")
		assert.Equal(t, 4, ops["QuantizeLinear"], "padded input, head output, skip sum and its two-part form")
		assert.Equal(t, 4, ops["DequantizeLinear"], "body output, skip sum, head output for the body, graph output")
		assert.Zero(t, ops["DepthToSpace"], "the pixel shuffle runs as a channels-last Transpose")
		assert.LessOrEqual(t, ops["Transpose"], 5, "the residual stream stays channels-last")
	})

	t.Run("long skip int8", func(t *testing.T) {
		// Without the precise long skip every conv is int8 and
		// the graph is one channels-last int8 chain.
		c := cfg
		c.LongSkip = passes.LongSkipInt8
		r, b := quantizeFile(t, edsrX2, images, c)
		assert.Equal(t, 36, r.Convs, "the head conv absorbs the input mean shift")
		assert.Equal(t, 36, r.ConvsInt8)
		assert.Empty(t, r.Skipped)
		assert.Empty(t, r.Added)
		ops := optimizedOps(t, b)
		assert.Equal(t, 36, ops["QLinearConv"])
		assert.Zero(t, ops["Conv"], "float convs left")
		assert.Equal(t, 3, ops["Transpose"], "input to NHWC, the shuffle, output to NCHW")
		// The precise long skip must be what it claims: closer to FP32.
		pi, pp := psnrVsFP32(t, b), psnrVsFP32(t, model)
		t.Logf("PSNR-Y vs FP32: long skip int8 %.2f dB, precise %.2f dB", pi, pp)
		assert.Greater(t, pp, pi)
		assert.Greater(t, pi, expected.Bundled.W8A8LongSkipInt8-expected.PSNRMargin, "measured %.2f dB", expected.Bundled.W8A8LongSkipInt8)
	})

	t.Run("PSNR vs FP32", func(t *testing.T) {
		// A broken scale, zero point or bias costs tens of dB; a range
		// rule that widens the ranges a little costs one or two (every
		// carrier range ×1.5: 54.83 dB).
		psnr := psnrVsFP32(t, model)
		t.Logf("PSNR-Y quantized vs FP32 on a 96x96 crop of chelsea: %.2f dB", psnr)
		assert.Greater(t, psnr, expected.Bundled.W8A8-expected.PSNRMargin, "measured %.2f dB", expected.Bundled.W8A8)
	})
}

// optimizedOps counts the operators of the graph ORT optimizes model into.
func optimizedOps(t *testing.T, model []byte) map[string]int {
	t.Helper()
	g, err := graph.FromModel(orttest.Optimized(t, model))
	require.NoError(t, err)
	ops := map[string]int{}
	for _, n := range g.Nodes {
		ops[n.OpType]++
	}
	t.Logf("ORT optimized graph: %v", ops)
	return ops
}

// psnrVsFP32 upscales a 96x96 crop of chelsea.png with the FP32 EDSR x2 and
// with model and returns the PSNR-Y between the two outputs (shave 2).
func psnrVsFP32(t *testing.T, model []byte) float64 {
	t.Helper()
	fp, err := os.ReadFile(edsrX2)
	require.NoError(t, err)
	return chelseaPSNR(t, fp, model, 96, sr.ProbeOptions{Scale: 2, Range: 255})
}

// psnrVsGT upscales chelsea.png (cropped to 450×300), downscaled by 2 with
// Pillow-exact bicubic, with model and returns the PSNR-Y against the
// photo (shave 2): the README's metric, on which it compares encodings.
func psnrVsGT(t *testing.T, model []byte) float64 {
	t.Helper()
	src, err := img.Read(chelsea)
	require.NoError(t, err)
	hr := img.Crop(src, 0, 0, 450, 300)
	m, err := sr.Open(model, "model", ort.Options{Threads: 2}, sr.ProbeOptions{Scale: 2, Range: 255})
	require.NoError(t, err)
	defer m.Close()
	out, err := m.Upscale(context.Background(), img.ResizeBicubic(hr, 225, 150), 0, 0)
	require.NoError(t, err)
	psnr, err := verify.PSNRY(out, hr, 2)
	require.NoError(t, err)
	return psnr
}

// TestQuantizeSet5 quantizes the shared EDSR x2 with the default config on
// the shared images and measures the Set5 PSNR-Y drop against the ground
// truth (Pillow-bicubic LR from ../shared/data, shave 2).
func TestQuantizeSet5(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: default calibration (32 patches of 64x64) and Set5 twice")
	}
	model := filepath.Join(sharedDir, "models", "edsr_x2.onnx")
	hrDir := filepath.Join(sharedDir, "data", "Set5")
	lrDir := filepath.Join(sharedDir, "data", "Set5_LRbicx2")
	for _, p := range []string{model, hrDir, lrDir, filepath.Join(sharedDir, "images")} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not found (../shared is absent here)", p)
		}
	}
	requireORT(t)
	cfg := quant.DefaultConfig()
	cfg.Threads = 2
	_, q := quantizeFile(t, model, filepath.Join(sharedDir, "images"), cfg)
	fp, err := os.ReadFile(model)
	require.NoError(t, err)
	names, err := img.List(hrDir)
	require.NoError(t, err)
	require.Len(t, names, 5)
	var mean [2]float64
	for i, b := range [][]byte{fp, q} {
		m, err := sr.Open(b, "model", ort.Options{Threads: 2}, sr.ProbeOptions{Scale: 2, Range: 255})
		require.NoError(t, err)
		for _, hrPath := range names {
			hr, err := img.Read(hrPath)
			require.NoError(t, err)
			lr, err := img.Read(filepath.Join(lrDir, filepath.Base(hrPath)))
			require.NoError(t, err)
			gt := img.Crop(hr, 0, 0, lr.W*2, lr.H*2)
			out, err := m.Upscale(context.Background(), lr, 0, 0)
			require.NoError(t, err)
			psnr, err := verify.PSNRY(out, gt, 2)
			require.NoError(t, err)
			mean[i] += psnr / float64(len(names))
		}
		require.NoError(t, m.Close())
	}
	delta := mean[1] - mean[0]
	t.Logf("Set5 x2 PSNR-Y: FP32 %.2f dB, quantized %.2f dB, Δ %.4f dB", mean[0], mean[1], delta)
	assert.InDelta(t, 37.28, mean[0], 0.02, "FP32 reference from ../shared/README.md")
	// The README's setting, so the README's own number.
	claim, ok := expected.Lookup("edsr_x2")
	require.True(t, ok)
	assert.Greater(t, delta, claim.README.Set5-expected.DropMargin, "README: %.3f dB", claim.README.Set5)
}

func TestQuantizeBadInput(t *testing.T) {
	requireORT(t)
	m, err := onnx.Load(edsrX2)
	require.NoError(t, err)
	data, err := onnx.Marshal(m)
	require.NoError(t, err)
	imgs, err := img.List(images)
	require.NoError(t, err)
	tests := []struct {
		name string
		edit func(c *quant.Config)
		imgs []string
		want string
	}{
		{"no patches", func(c *quant.Config) { c.Patches = 0 }, imgs, "positive patch count"},
		{"unknown skip", func(c *quant.Config) { c.Skip = []string{"/nope/Conv"} }, imgs, "/nope/Conv"},
		{"unreadable image", nil, []string{"../testdata/images/LICENSE.md"}, "LICENSE.md"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig()
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			_, err := quant.Quantize(context.Background(), m, data, edsrX2, tc.imgs, cfg, quant.Events{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseBits(t *testing.T) {
	tests := []struct {
		in   string
		want quant.Bits
		err  string
	}{
		{"w8a8", quant.Bits{W: 8, A: 8}, ""},
		{"W8A8", quant.Bits{W: 8, A: 8}, ""},
		{"w4a4", quant.Bits{W: 4, A: 4}, ""},
		{"w8a6", quant.Bits{W: 8, A: 6}, ""},
		{"w2a8", quant.Bits{W: 2, A: 8}, ""},
		{"w1a8", quant.Bits{}, "must be in 2..8"},
		{"w4a9", quant.Bits{}, "must be in 2..8"},
		{"w16a16", quant.Bits{}, "must be in 2..8"},
		{"8", quant.Bits{}, "want wNaM"},
		{"", quant.Bits{}, "want wNaM"},
		{"wa8", quant.Bits{}, "want wNaM"},
		{"w8a", quant.Bits{}, "want wNaM"},
		{"wxa8", quant.Bits{}, "want wNaM"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			b, err := quant.ParseBits(tc.in)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.Contains(t, err.Error(), `"`+tc.in+`"`, "error names the value")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, b)
			assert.Equal(t, strings.ToLower(tc.in), b.String())
		})
	}
}

func TestParseMethod(t *testing.T) {
	for _, s := range []string{"minmax", "percentile", "mse", "dual"} {
		m, err := quant.ParseMethod(s)
		require.NoError(t, err)
		assert.Equal(t, quant.Method(s), m)
	}
	for _, s := range []string{"", "MSE", "entropy", "max"} {
		_, err := quant.ParseMethod(s)
		require.Error(t, err, s)
		assert.Contains(t, err.Error(), "want minmax, percentile, mse or dual")
	}
}

func TestParseBreakpoint(t *testing.T) {
	tests := []struct {
		in   string
		want quant.Breakpoint
		err  string
	}{
		{"search", quant.Breakpoint{Method: calib.BPSearch}, ""},
		{"p99", quant.Breakpoint{Method: calib.BPPercentile, Percentile: 99}, ""},
		{"P99.9", quant.Breakpoint{Method: calib.BPPercentile, Percentile: 99.9}, ""},
		{"12.5", quant.Breakpoint{Value: 12.5}, ""},
		{"p100", quant.Breakpoint{}, "0 < P < 100"},
		{"p", quant.Breakpoint{}, "0 < P < 100"},
		{"0", quant.Breakpoint{}, "positive number"},
		{"-1", quant.Breakpoint{}, "positive number"},
		{"inf", quant.Breakpoint{}, "positive number"},
		{"guess", quant.Breakpoint{}, "positive number"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			b, err := quant.ParseBreakpoint(tc.in)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, b)
			again, err := quant.ParseBreakpoint(b.String())
			require.NoError(t, err)
			assert.Equal(t, b, again, "String round-trips")
		})
	}
}

// TestQuantizeLowBit runs the low-bit settings on the committed EDSR x2:
// every Conv but the first and last reads a 4-bit input through its own
// quantizer, the dual-region quantizer runs on ORT's int8 kernels with its
// exact levels, and it is closer to FP32 than every uniform 4-bit method.
func TestQuantizeLowBit(t *testing.T) {
	requireORT(t)
	cfg := smallConfig()
	cfg.Bits = quant.Bits{W: 4, A: 4}
	psnr := map[quant.Method]float64{}
	var dual []byte
	for _, m := range []quant.Method{quant.MinMax, quant.Percentile, quant.MSE, quant.Dual} {
		c := cfg
		c.Method = m
		res, model := quantizeFile(t, edsrX2, images, c)
		require.Len(t, res.Layers, 34, "%s: 37 convs, the head copy float, first and last at 8 bits", m)
		for _, l := range res.Layers {
			assert.Equal(t, 4, l.Bits, l.Conv)
			if m == quant.Dual {
				assert.Equal(t, "dual", l.Kind, l.Conv)
				assert.Equal(t, string(passes.FormShared), l.Form, "%s: %s", l.Conv, l.Quantizer)
				assert.LessOrEqual(t, l.Codes, 16+7+7, "reference accounting")
			} else {
				assert.Equal(t, "uniform", l.Kind, l.Conv)
				assert.Equal(t, string(passes.FormGrid), l.Form, l.Conv)
				assert.Equal(t, 16, l.Codes, l.Conv)
			}
		}
		ops := optimizedOps(t, model)
		assert.Equal(t, 36, ops["QLinearConv"], "%s: every conv but the float head copy runs int8", m)
		psnr[m] = psnrVsFP32(t, model)
		t.Logf("%s W4A4: PSNR-Y vs FP32 %.2f dB", m, psnr[m])
		want, ok := expected.Bundled.W4A4[string(m)]
		require.True(t, ok, "no measurement for %s in internal/expected", m)
		assert.Greater(t, psnr[m], want-expected.PSNRMargin, "%s: measured %.2f dB", m, want)
		if m == quant.Dual {
			dual = model
		}

		meta := map[string]string{}
		for _, p := range res.Model.MetadataProps {
			meta[p.Key] = p.Value
		}
		assert.Contains(t, meta[quant.MetaVersion], "srq ")
		assert.Contains(t, meta[quant.MetaCalibration], `"files":["brick.png","chelsea.png","rocket.jpg"]`)
		assert.Regexp(t, `"sha256":"[0-9a-f]{64}"`, meta[quant.MetaCalibration])
		assert.Contains(t, meta[quant.MetaRanges], `"value":"input_padded"`)
		assert.Contains(t, meta[quant.MetaSetting], `"bits":"w4a4"`)
		assert.Contains(t, meta[quant.MetaSetting], `"method":"`+string(m)+`"`)
		assert.Contains(t, meta[quant.MetaLayers], `"form":`)
		if m == quant.Dual {
			assert.Contains(t, meta[quant.MetaSetting], `"accounting":"reference"`)
		}
	}
	for _, m := range []quant.Method{quant.MinMax, quant.Percentile, quant.MSE} {
		assert.Greater(t, psnr[quant.Dual], psnr[m]+1, "dual-region vs uniform %s", m)
	}

	t.Run("strict accounting", func(t *testing.T) {
		c := cfg
		c.Method, c.Accounting = quant.Dual, qdq.Strict
		res, model := quantizeFile(t, edsrX2, images, c)
		for _, l := range res.Layers {
			assert.LessOrEqual(t, l.Codes, 16, "%s: %s", l.Conv, l.Quantizer)
		}
		// 16 levels in all cost the reference accounting much of its gain
		// (EDSR x4 Set5 −1.94 dB against −0.59).
		p := psnrVsFP32(t, model)
		t.Logf("dual strict W4A4: PSNR-Y vs FP32 %.2f dB", p)
		assert.Greater(t, p, expected.Bundled.W4A4DualStrict-expected.PSNRMargin, "measured %.2f dB", expected.Bundled.W4A4DualStrict)
		assert.Less(t, p, psnr[quant.Dual], "strict accounting spends fewer levels than the reference one")
	})

	t.Run("simulate", func(t *testing.T) {
		// The simulate encoding writes the same quantizers with float ops:
		// ORT runs those convs in float, and the int8 encoding reproduces
		// its accuracy against the ground truth.
		c := cfg
		c.Method, c.Encoding = quant.Dual, passes.EncodingSimulate
		res, model := quantizeFile(t, edsrX2, images, c)
		for _, l := range res.Layers {
			assert.Equal(t, string(passes.FormFloat), l.Form, l.Conv)
		}
		ops := optimizedOps(t, model)
		assert.Equal(t, 2, ops["QLinearConv"], "only the 8-bit first and last convs run int8")
		p := psnrVsFP32(t, model)
		t.Logf("dual W4A4 simulate: PSNR-Y vs FP32 %.2f dB", p)
		assert.Greater(t, p, expected.Bundled.W4A4DualSimulate-expected.PSNRMargin, "measured %.2f dB", expected.Bundled.W4A4DualSimulate)
		gi, gs := psnrVsGT(t, dual), psnrVsGT(t, model)
		t.Logf("dual W4A4 PSNR-Y vs ground truth: int8 %.4f dB, simulate %.4f dB", gi, gs)
		assert.InDelta(t, gs, gi, expected.SimulateAgreement)
	})
}

// TestQuantizeTwoBranch: at 6 bits most dual-region levels do not fit one
// 8-bit grid; those Convs run as two int8 Convs whose partial outputs get
// their own calibrated grids, and the model stays as close to FP32 as the
// float-ops (simulate) form of the same quantizers.
func TestQuantizeTwoBranch(t *testing.T) {
	requireORT(t)
	cfg := smallConfig()
	cfg.Bits, cfg.Method = quant.Bits{W: 6, A: 6}, quant.Dual
	res, model := quantizeFile(t, edsrX2, images, cfg)
	forms := map[string]int{}
	for _, l := range res.Layers {
		forms[l.Form]++
	}
	t.Logf("forms %v", forms)
	require.Positive(t, forms[string(passes.FormTwoBranch)])
	assert.Equal(t, 34, forms[string(passes.FormTwoBranch)]+forms[string(passes.FormShared)])
	partials := 0
	for _, r := range res.Ranges {
		if strings.Contains(r.Reason, "branch of") {
			partials++
			assert.Less(t, r.Lo, r.Hi, r.Value)
		}
	}
	assert.Equal(t, 2*forms[string(passes.FormTwoBranch)], partials, "a calibrated grid for each partial output")
	ops := optimizedOps(t, model)
	assert.Equal(t, 36+forms[string(passes.FormTwoBranch)], ops["QLinearConv"], "every branch on int8 kernels")
	p := psnrVsFP32(t, model)

	cfg.Encoding = passes.EncodingSimulate
	_, sim := quantizeFile(t, edsrX2, images, cfg)
	ps := psnrVsFP32(t, sim)
	t.Logf("W6A6 dual PSNR-Y vs FP32: int8 %.2f dB, simulate %.2f dB", p, ps)
	b := expected.Bundled
	assert.Greater(t, p, b.W6A6Dual-expected.PSNRMargin, "int8: measured %.2f dB", b.W6A6Dual)
	assert.Greater(t, ps, b.W6A6DualSimulate-expected.PSNRMargin, "simulate: measured %.2f dB", b.W6A6DualSimulate)
	// Against FP32 the two-branch form carries the 8-bit grids of its
	// partial outputs on top (0.06 dB here); against the ground truth,
	// the README's metric, the encodings agree.
	gi, gs := psnrVsGT(t, model), psnrVsGT(t, sim)
	t.Logf("W6A6 dual PSNR-Y vs ground truth: int8 %.4f dB, simulate %.4f dB", gi, gs)
	assert.InDelta(t, gs, gi, expected.SimulateAgreement)
}

// TestQuantizeRefusesQuantizedModel: a model srq wrote (or any QDQ model)
// is refused, not quantized twice.
func TestQuantizeRefusesQuantizedModel(t *testing.T) {
	requireORT(t)
	cfg := smallConfig()
	_, b := quantizeFile(t, edsrX2, images, cfg)
	m, err := onnx.LoadBytes(b, "q.onnx", "")
	require.NoError(t, err)
	imgs, err := img.List(images)
	require.NoError(t, err)
	_, err = quant.Quantize(context.Background(), m, b, "q.onnx", imgs, cfg, quant.Events{})
	assert.ErrorContains(t, err, "q.onnx: already quantized by srq ")
	assert.ErrorContains(t, err, "(w8a8 percentile); quantize its FP32 original instead")

	m.MetadataProps = nil // a QDQ model from another tool
	_, err = quant.Quantize(context.Background(), m, b, "q.onnx", imgs, cfg, quant.Events{})
	assert.ErrorContains(t, err, "q.onnx: already quantized: it contains")
}

// TestQuantizeTune: tuning on the committed EDSR x2 at W4A4 dual measures
// every stage on the held-out patches, keeps the best one, records what it
// did per layer, and is deterministic.
func TestQuantizeTune(t *testing.T) {
	requireORT(t)
	cfg := smallConfig()
	cfg.Patches = 24 // 16 held out
	cfg.Bits, cfg.Method, cfg.Tune, cfg.BiasCorrection = quant.Bits{W: 4, A: 4}, quant.Dual, true, true
	cfg.GradSteps = 0 // TestQuantizeGradTune
	res, model := quantizeFile(t, edsrX2, images, cfg)
	tn := res.Tuning
	require.NotNil(t, tn)
	assert.Equal(t, 34, tn.Layers)
	assert.Zero(t, tn.Skipped)
	require.Len(t, tn.HeldOut, 5)
	for name, p := range tn.HeldOut {
		assert.LessOrEqual(t, p, tn.HeldOut[tn.Kept], "kept %q, but %q is better", tn.Kept, name)
	}
	t.Logf("held-out PSNR-Y vs FP32: %v; kept %q", tn.HeldOut, tn.Kept)
	assert.Greater(t, tn.HeldOut[tn.Kept], tn.HeldOut["calibrated"], "GPTQ helps on data that did not choose it")
	tuned := 0
	for _, l := range res.Layers {
		if strings.Contains(l.Tuned, "GPTQ weights") {
			tuned++
		}
	}
	assert.Equal(t, 34, tuned, "every layer says what tuning did")
	meta := map[string]string{}
	for _, p := range res.Model.MetadataProps {
		meta[p.Key] = p.Value
	}
	assert.Contains(t, meta[quant.MetaLayers], `"tuned":"GPTQ weights`)
	assert.Contains(t, meta[quant.MetaSetting], `"tune":true`)
	assert.Contains(t, meta[quant.MetaSetting], `"rotate":true`, "tuning rotates by default")
	assert.NotEmpty(t, model)

	t.Run("deterministic", func(t *testing.T) {
		// A second tuning of EDSR x2 would cost as much as the first: the
		// byte comparison runs on the small ESA network instead (every
		// stage of tuning, its windows fake-quantized on all cores), with
		// one and two ORT threads.
		path, c := esaTuneSetup(t)
		c.BiasCorrection = true
		res, first := quantizeFile(t, path, images, c)
		require.NotNil(t, res.Tuning)
		// Every Conv but the first and last, the strided 3x3 and the 1x1
		// that read the same tensor included (their windows were once
		// sampled with one geometry, and GPTQ failed on the 3x3).
		require.Equal(t, 7, res.Tuning.Layers)
		_, again := quantizeFile(t, path, images, c)
		assert.True(t, bytes.Equal(first, again), "tuning is deterministic")
		c.Threads = 1
		_, one := quantizeFile(t, path, images, c)
		assert.True(t, bytes.Equal(first, one), "tuning gives the same bytes on one ORT thread as on two")
	})
}

// TestRotation: --rotate auto turns the channel spaces exactly when tuning.
func TestRotation(t *testing.T) {
	for _, tc := range []struct {
		rotate quant.Rotation
		tune   bool
		want   bool
	}{
		{quant.RotateAuto, false, false},
		{quant.RotateAuto, true, true},
		{quant.RotateOn, false, true},
		{quant.RotateOff, true, false},
	} {
		cfg := quant.DefaultConfig()
		cfg.Rotate, cfg.Tune = tc.rotate, tc.tune
		assert.Equal(t, tc.want, quant.SettingOf(cfg).Rotate, "--rotate %s, tune %v", tc.rotate, tc.tune)
	}
	for _, s := range []string{"auto", "on", "off"} {
		r, err := quant.ParseRotation(s)
		require.NoError(t, err)
		assert.Equal(t, quant.Rotation(s), r)
	}
	_, err := quant.ParseRotation("yes")
	assert.EqualError(t, err, `rotation "yes": want auto, on or off`)
}

// TestSkipStaysFloat: a Conv kept float between quantized values stays
// float in ORT. ORT's WeightBiasQuantization (at every optimisation level)
// quantizes the float weights of a Conv that reads a per-tensor
// DequantizeLinear and fuses it into QLinearConv; srq gives such a Conv a
// per-channel DequantizeLinear of its own, outside that rewrite.
func TestSkipStaysFloat(t *testing.T) {
	requireORT(t)
	const skipped = "/body/body.3/body/body.2/Conv"
	cfg := smallConfig()
	cfg.Skip = []string{skipped}
	res, model := quantizeFile(t, edsrX2, images, cfg)
	assert.Equal(t, 35, res.ConvsInt8, "the head copy and the skipped Conv are float")
	cov := verify.Coverage(orttest.Optimized(t, model))
	assert.Equal(t, 37, cov.Total)
	assert.Equal(t, 35, cov.Int8, "ORT runs the skipped Conv float too: %v", cov.Ops)
}

// writeGraph writes g as a valid ONNX model file name in t's temp dir and
// returns its path and bytes.
func writeGraph(t *testing.T, g *graph.Graph, name string) (string, []byte) {
	t.Helper()
	m, err := g.ToModel()
	require.NoError(t, err)
	require.NoError(t, onnx.Validate(m))
	data, err := onnx.Marshal(m)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path, data
}

// chelseaPSNR upscales a side×side crop of chelsea.png with the float and
// the quantized model and returns the PSNR-Y of the quantized output
// against the float one (shave = scale).
func chelseaPSNR(t *testing.T, float, quantized []byte, side int, probe sr.ProbeOptions) float64 {
	t.Helper()
	src, err := img.Read(chelsea)
	require.NoError(t, err)
	lr := img.Crop(src, 150, 60, side, side)
	var outs [2]*img.Image
	for i, b := range [][]byte{float, quantized} {
		s, err := sr.Open(b, "chelsea", ort.Options{Threads: 2}, probe)
		require.NoError(t, err)
		outs[i], err = s.Upscale(context.Background(), lr, 0, 0)
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	psnr, err := verify.PSNRY(outs[1], outs[0], probe.Scale)
	require.NoError(t, err)
	return psnr
}

// esaTuneSetup writes the small ESA network to a file and returns it with a
// W4A4 dual --tune setting for it (20 patches: 4 to tune on, 16 held out).
func esaTuneSetup(t *testing.T) (string, quant.Config) {
	t.Helper()
	path, _ := writeGraph(t, esaNet(), "esa.onnx")
	c := smallConfig()
	c.Patches, c.Probe = 20, sr.ProbeOptions{Scale: 2, Range: 1}
	c.Bits, c.Method, c.Tune = quant.Bits{W: 4, A: 4}, quant.Dual, true
	return path, c
}
