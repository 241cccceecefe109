package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/expected"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/ort/orttest"
	"github.com/srquant/srq/verify"
)

// sharedDir holds the project's shared models and benchmark data; tests that
// need it skip when it is absent.
const sharedDir = "../../../shared"

func needShared(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(sharedDir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not present (the shared models and data live beside the checkout): %v", p, err)
	}
	return p
}

// TestInspectSharedModels: scale and input range are detected on every
// shared model, including the third-party CARN-M and IMDN exports.
func TestInspectSharedModels(t *testing.T) {
	needORT(t)
	for _, tc := range []struct {
		model string
		scale int
		rng   float32
	}{
		{"edsr_x2.onnx", 2, 255}, {"edsr_x4.onnx", 4, 255}, {"srresnet_x4.onnx", 4, 1},
		{"rcan_x4.onnx", 4, 255}, {"carn_m_x4.onnx", 4, 1}, {"imdn_x4.onnx", 4, 1},
	} {
		t.Run(tc.model, func(t *testing.T) {
			p := needShared(t, filepath.Join("models", tc.model))
			code, out, errOut := runSRQ("inspect", "--json", p)
			require.Equal(t, exitOK, code, errOut)
			var r map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &r))
			assert.EqualValues(t, tc.scale, r["scale"])
			assert.EqualValues(t, tc.rng, r["input_range"])
		})
	}
}

// TestUpscaleReproducesSet5: `srq upscale` with EDSR x2 on the Set5 LR
// images reproduces the README's FP32 PSNR-Y (37.28 dB, Pillow-bicubic LR,
// shave = scale) within 0.01 dB.
func TestUpscaleReproducesSet5(t *testing.T) {
	needORT(t)
	if testing.Short() {
		t.Skip("slow: EDSR x2 on all of Set5")
	}
	model := needShared(t, "models/edsr_x2.onnx")
	hrDir := needShared(t, "data/Set5")
	lrDir := needShared(t, "data/Set5_LRbicx2")
	hrs, err := img.List(hrDir)
	require.NoError(t, err)
	var sum float64
	for _, hrPath := range hrs {
		out := filepath.Join(t.TempDir(), "sr.png")
		code, _, errOut := runSRQ("upscale", "--model", model, "--threads", "2", filepath.Join(lrDir, filepath.Base(hrPath)), out)
		require.Equal(t, exitOK, code, errOut)
		sr, err := img.Read(out)
		require.NoError(t, err)
		hr, err := img.Read(hrPath)
		require.NoError(t, err)
		hr = img.Crop(hr, 0, 0, hr.W-hr.W%2, hr.H-hr.H%2)
		p, err := verify.PSNRY(sr, hr, 2)
		require.NoError(t, err)
		sum += p
	}
	mean := sum / float64(len(hrs))
	t.Logf("srq upscale, EDSR x2, Set5: mean PSNR-Y %.4f dB", mean)
	assert.Len(t, hrs, 5)
	assert.InDelta(t, 37.28, mean, 0.01)
}

// TestQuantizeSharedModels quantizes every model of internal/expected's
// Shared with srq's W8A8 defaults on expected.TestPatches calibration
// patches and verifies it on Set5, gating as a pipeline would, with srq
// verify's own --max-drop and --min-psnr: the PSNR-Y change against the
// ground truth may come out at most expected.DropMargin below the
// measured one, the PSNR-Y against FP32 at most expected.PSNRMargin below.
// Its int8 coverage (srq verify's int8_conv, read from ORT's optimized
// graph) must be the measured one, Conv for Conv, and the graph ORT runs
// must show every speed rewrite the README names (expected.Graph: op
// counts, float islands, the widened image Conv). A pass that breaks one
// network's structure, as a grouped upsampler once did, shows here too.
func TestQuantizeSharedModels(t *testing.T) {
	needORT(t)
	if testing.Short() {
		t.Skip("slow: six models on Set5")
	}
	set5 := needShared(t, "data/Set5")
	images := needShared(t, "images")
	for _, m := range expected.Shared {
		t.Run(m.File, func(t *testing.T) {
			if m.Slow && os.Getenv("SRQ_SLOW") == "" {
				t.Skipf("%s takes minutes to quantize and verify (session creation of its QDQ graph alone is tens of seconds on 2 cores); SRQ_SLOW=1 runs it", m.File)
			}
			model := needShared(t, filepath.Join("models", m.File+".onnx"))
			dir := t.TempDir()
			q, report := filepath.Join(dir, "q.onnx"), filepath.Join(dir, "r.json")
			code, _, errOut := runSRQ("quantize", "--model", model, "--calib", images, "--patches", strconv.Itoa(expected.TestPatches),
				"--patch-size", strconv.Itoa(expected.TestPatchSize), "--threads", "2", "--speed-check", "0", "--out", q)
			require.Equal(t, exitOK, code, errOut)
			maxDrop := -m.Test.Set5 + expected.DropMargin
			minPSNR := m.Test.Set5VsFP32 - expected.PSNRMargin
			args := []string{"verify", "--model", model, "--quantized", q, "--images", set5, "--hr", "--runs", "1", "--size", "32",
				"--threads", "2", "--json", report, "--min-psnr", fmt.Sprintf("%.4f", minPSNR)}
			if !m.VsFP32Only {
				args = append(args, "--max-drop", fmt.Sprintf("%.4f", maxDrop))
			}
			code, out, errOut := runSRQ(args...)
			var r struct {
				GT       verify.Pair          `json:"psnr_gt_db"`
				Drop     float64              `json:"psnr_gt_drop_db"`
				VsFP32   float64              `json:"psnr_vs_fp32_db"`
				Coverage *verify.ConvCoverage `json:"int8_conv"`
				Kernels  *kernelcheck.Report  `json:"kernel_check"`
			}
			b, err := os.ReadFile(report)
			require.NoError(t, err, "no report (exit %d): %s", code, errOut)
			require.NoError(t, json.Unmarshal(b, &r))
			require.NotNil(t, r.Coverage)
			// The int8 kernels of this machine's ORT compute every fused
			// group as the QDQ graph means it (on an AMX CPU with ORT
			// 1.24.x a defective Conv shape fails here, and srq quantize
			// would have refused to write the model).
			require.NotNil(t, r.Kernels)
			assert.True(t, r.Kernels.OK(), "kernel check: %s", r.Kernels.Summary())
			t.Logf("Set5 Δ %.4f dB (measured %.4f), vs FP32 %.4f dB (measured %.4f), %s", -r.Drop, m.Test.Set5, r.VsFP32, m.Test.Set5VsFP32, r.Coverage)
			assert.Equal(t, exitOK, code, "%s\n%s", out, errOut)
			assert.InDelta(t, m.Test.Set5FP32, r.GT.FP32, expected.FP32Tolerance, "FP32 PSNR-Y on Set5")
			assert.Equal(t, [2]int{m.Test.Int8Convs, m.Test.Convs}, [2]int{r.Coverage.Int8, r.Coverage.Total}, "int8 Convs / Convs: %v float", r.Coverage.Float)

			qb, err := os.ReadFile(q)
			require.NoError(t, err)
			g := orttest.Summarize(orttest.Optimized(t, qb))
			assert.Equal(t, m.Graph.Ops, g.Ops, "op counts in ORT's optimized graph")
			assert.Equal(t, m.Graph.Float, g.Float, "float ops (reading a DequantizeLinear) in ORT's optimized graph")
			assert.Equal(t, m.Graph.ImageConvOut, g.ImageConvOut, "output channels of the int8 Conv that writes the image")
		})
	}
}

// TestUpscaleTileWarning: --tile on a network that pools over the whole
// image (IMDN's contrast attention, RCAN's channel attention) warns on
// stderr with the difference measured against the untiled output; on
// EDSR x2, a plain CNN, it says nothing and the output is the untiled one
// (bit-identical on Set5's baby; over all of chelsea.png float rounding
// flips 3 of 1.6 M values by one level).
func TestUpscaleTileWarning(t *testing.T) {
	needORT(t)
	if testing.Short() {
		t.Skip("runs IMDN and RCAN x4 on a 128x128 image three times each")
	}
	baby := needShared(t, "data/Set5_LRbicx4/baby.png")
	re := regexp.MustCompile(`^warning: \S+: --tile 64: the network reduces over the whole image \((\S+)[^)]*\), so each 64-pixel tile sees its own statistics and the tiled output differs from the untiled one; measured on a 128x128 LR crop at \(0,0\), tiled against untiled: max difference (\d+) levels? \(8-bit RGB\), PSNR (\d+\.\d\d) dB\n$`)
	for _, tc := range []struct{ model, node string }{
		{"imdn_x4.onnx", "/IMDB1/cca/ReduceMean"},
		{"rcan_x4.onnx", "/body/body.0/body/body.0/body/body.3/du/du.0/GlobalAveragePool"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			model := needShared(t, filepath.Join("models", tc.model))
			out := filepath.Join(t.TempDir(), "sr.png")
			code, stdout, stderr := runSRQ("upscale", "--model", model, "--tile", "64", "--threads", "2", baby, out)
			require.Equal(t, exitOK, code, stderr)
			assert.Contains(t, stdout, "128x128 -> 512x512")
			m := re.FindStringSubmatch(stderr)
			require.NotNil(t, m, "warning with a measured difference, got %q", stderr)
			assert.Equal(t, tc.node, strings.TrimSuffix(m[1], ","))
			levels, err := strconv.Atoi(m[2])
			require.NoError(t, err)
			psnr, err := strconv.ParseFloat(m[3], 64)
			require.NoError(t, err)
			assert.Greater(t, levels, 0)
			assert.Less(t, psnr, 80.0)
			t.Logf("%s: %d levels, %.2f dB", tc.model, levels, psnr)

			// Without tiling, or with windows that cover the image, no warning.
			code, _, stderr = runSRQ("upscale", "--model", model, "--tile", "64", "--overlap", "32", "--threads", "2", baby, out)
			require.Equal(t, exitOK, code, stderr)
			assert.Empty(t, stderr)
		})
	}
	t.Run("edsr_x2", func(t *testing.T) {
		dir := t.TempDir()
		tiled, whole := filepath.Join(dir, "tiled.png"), filepath.Join(dir, "whole.png")
		code, _, stderr := runSRQ("upscale", "--model", tdModel, "--tile", "64", "--threads", "2", baby, tiled)
		require.Equal(t, exitOK, code, stderr)
		assert.Empty(t, stderr, "a plain CNN tiles exactly: no warning")
		code, _, stderr = runSRQ("upscale", "--model", tdModel, "--threads", "2", baby, whole)
		require.Equal(t, exitOK, code, stderr)
		a, err := img.Read(tiled)
		require.NoError(t, err)
		b, err := img.Read(whole)
		require.NoError(t, err)
		assert.Equal(t, img.ToUint8(b), img.ToUint8(a), "tiled output bit-identical to the untiled one")
	})
}

// TestVerifyTileWarning: srq verify --tile on IMDN warns on stderr and
// records the measurement in the JSON report; the table is unchanged.
func TestVerifyTileWarning(t *testing.T) {
	needORT(t)
	if testing.Short() {
		t.Skip("runs IMDN x4 on a 128x128 image four times")
	}
	model := needShared(t, "models/imdn_x4.onnx")
	dir := t.TempDir()
	b, err := os.ReadFile(needShared(t, "data/Set5_LRbicx4/baby.png"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "baby.png"), b, 0o644))
	code, stdout, stderr := runSRQ("verify", "--model", model, "--quantized", model, "--images", dir,
		"--tile", "64", "--size", "16", "--runs", "1", "--threads", "2", "--json", "-")
	require.Equal(t, exitOK, code, stderr)
	assert.Regexp(t, `warning: \S+imdn_x4.onnx: --tile 64: the network reduces over the whole image .* max difference \d+ levels? \(8-bit RGB\), PSNR \d+\.\d\d dB; the numbers below compare tiled outputs\n`, stderr)
	var r verify.Report
	require.NoError(t, json.Unmarshal([]byte(stdout), &r))
	require.NotNil(t, r.Tiling)
	assert.Equal(t, 64, r.Tiling.Tile)
	assert.Equal(t, 16, r.Tiling.Overlap)
	assert.Greater(t, r.Tiling.MaxDiff, 0)
	assert.Len(t, r.Tiling.Reductions, 12)
}
