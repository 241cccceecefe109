package srq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/verify"
)

const (
	edsrX2 = "testdata/models/edsr_x2.onnx"
	images = "testdata/images"
)

// requireORT initialises ONNX Runtime or skips the test.
func requireORT(t *testing.T) {
	t.Helper()
	if _, err := ort.FindLibrary(""); err != nil {
		t.Skipf("ONNX Runtime library not installed (run `make setup`): %v", err)
	}
	require.NoError(t, Init(""))
}

func TestSelfCheck(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.onnx")
	require.NoError(t, os.WriteFile(bad, []byte("not a model"), 0o644))
	for _, p := range []string{bad, filepath.Join(dir, "missing.onnx")} {
		_, err := selfCheck(p, 1)
		assert.Error(t, err, p)
	}
	s, err := selfCheck(edsrX2, 1)
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

// TestQuantizeSpeedCheck: the speed check times both models on the asked
// size and reports a ratio that matches its medians; bad settings fail
// before any work, leaving nothing behind.
func TestQuantizeSpeedCheck(t *testing.T) {
	requireORT(t)
	imgs, err := ListImages(images)
	require.NoError(t, err)
	cfg := quant.DefaultConfig()
	cfg.Threads, cfg.Patches = 1, 8
	out := filepath.Join(t.TempDir(), "q.onnx")
	res, err := Quantize(context.Background(), QuantizeOptions{Model: edsrX2, Images: imgs, Out: out, Config: cfg, SpeedCheck: 24})
	require.NoError(t, err)
	require.NotNil(t, res.Speed)
	sp := res.Speed
	assert.Equal(t, 24, sp.Size)
	assert.Equal(t, SpeedCheckRuns, sp.FP32.Runs)
	assert.Equal(t, SpeedCheckRuns, sp.Quantized.Runs)
	assert.Greater(t, sp.Quantized.MedianMS, 0.0)
	assert.InDelta(t, sp.FP32.MedianMS/sp.Quantized.MedianMS, sp.Speedup, 1e-9)
	assert.FileExists(t, out)

	for _, tc := range []struct {
		name string
		o    QuantizeOptions
		want string
	}{
		{"negative size", QuantizeOptions{Model: edsrX2, Images: imgs, Out: filepath.Join(t.TempDir(), "q.onnx"), Config: cfg, SpeedCheck: -1}, "speed check size -1"},
		{"no output", QuantizeOptions{Model: edsrX2, Images: imgs, Config: cfg, SpeedCheck: 24}, "needs an output path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Quantize(context.Background(), tc.o)
			assert.ErrorContains(t, err, tc.want)
			if tc.o.Out != "" {
				assert.NoFileExists(t, tc.o.Out)
			}
		})
	}
}

// TestSpeedCheckSlower: a quantized model is slower only when its speed-up
// is below 1 (the CLI warns then); equal speed is not slower, and no check
// is not slower.
func TestSpeedCheckSlower(t *testing.T) {
	for _, tc := range []struct {
		s    *SpeedCheck
		want bool
	}{
		{&SpeedCheck{Speedup: 0.5}, true},
		{&SpeedCheck{Speedup: 0.999}, true},
		{&SpeedCheck{Speedup: 1}, false},
		{&SpeedCheck{Speedup: 3.1}, false},
		{nil, false},
	} {
		assert.Equal(t, tc.want, tc.s.Slower(), "%+v", tc.s)
	}
}

// TestQuantizeCancel: a quantization whose context ends stops promptly with
// the context's error and leaves nothing in the output folder.
func TestQuantizeCancel(t *testing.T) {
	requireORT(t)
	imgs, err := ListImages(images)
	require.NoError(t, err)
	dir := t.TempDir()
	out := filepath.Join(dir, "q.onnx")
	cfg := quant.DefaultConfig()
	cfg.Threads = 1
	ctx, cancel := context.WithCancel(context.Background())
	// One calibration batch (8 patches) is timed in this run, under this
	// machine's load; stopping must take less than two of them, where
	// ignoring the cancel until the end of calibration would take six.
	var first, stopped time.Time
	progress := func(stage string, done, total int) {
		switch {
		case stage != "calibration":
		case done == 8:
			first = time.Now()
		case done == 16:
			cancel() // mid-calibration
			stopped = time.Now()
		}
	}
	_, err = Quantize(ctx, QuantizeOptions{Model: edsrX2, Images: imgs, Out: out, Config: cfg, Progress: progress})
	took := time.Since(stopped)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
	batch := stopped.Sub(first)
	t.Logf("stopped %s after the cancel; one calibration batch took %s", took.Round(time.Millisecond), batch.Round(time.Millisecond))
	assert.Less(t, took, max(2*batch, 500*time.Millisecond))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no model, no temporary file")
}

// TestVerifyCancel: a verification whose context ends after its first
// image stops with the context's error, before the other images and the
// latency runs, and writes no report.
func TestVerifyCancel(t *testing.T) {
	requireORT(t)
	src, err := img.Read(filepath.Join(images, "chelsea.png"))
	require.NoError(t, err)
	dir := t.TempDir()
	var imgs []string
	for i := range 8 {
		p := filepath.Join(dir, fmt.Sprintf("crop%d.png", i))
		require.NoError(t, img.WritePNG(p, img.Crop(src, 20*i, 40, 112, 96)))
		imgs = append(imgs, p)
	}
	report := filepath.Join(t.TempDir(), "report")
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	var stopped time.Time
	var seen []int
	progress := func(stage string, done, total int) {
		seen = append(seen, done)
		if stage == "verify" && done == 1 {
			cancel()
			stopped = time.Now()
		}
	}
	// The FP32 model against itself on eight 112×96 crops, each about as
	// long as the first.
	_, err = Verify(ctx, VerifyOptions{Model: edsrX2, Quantized: edsrX2, Images: imgs, Progress: progress, Report: report,
		Config: verify.Config{Threads: 1, Size: 64, Runs: 10}})
	took := time.Since(stopped)
	require.ErrorIs(t, err, context.Canceled)
	first := stopped.Sub(start)
	t.Logf("stopped %s after the cancel; the first image (with opening both sessions) took %s", took.Round(time.Millisecond), first.Round(time.Millisecond))
	assert.Equal(t, []int{1}, seen, "no image after the cancel")
	assert.Less(t, took, max(first/2, 500*time.Millisecond), "stops long before the seven other images are done")
	assert.NoDirExists(t, report, "no report")
}

func TestQuantizeRefusesToOverwriteTheModel(t *testing.T) {
	imgs, err := ListImages(images)
	require.NoError(t, err)
	_, err = Quantize(context.Background(), QuantizeOptions{Model: edsrX2, Images: imgs, Out: edsrX2, Config: quant.DefaultConfig()})
	assert.ErrorContains(t, err, "output path is the same file as the model")
}

// TestVerifyReport: Verify with Report writes the HTML page, reading what
// the quantized model says about itself from its metadata — here a copy
// of the FP32 model carrying a hand-made setting and per-layer
// sensitivity —, and refuses a report folder it cannot write before
// running anything.
func TestVerifyReport(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err := Verify(context.Background(), VerifyOptions{Model: edsrX2, Quantized: edsrX2, Images: []string{"x.png"},
		Config: verify.Config{Size: 8, Runs: 1}, Report: filepath.Join(file, "report")})
	assert.ErrorContains(t, err, "is not a folder")

	requireORT(t)
	m, err := onnx.Load(edsrX2)
	require.NoError(t, err)
	m.MetadataProps = append(m.MetadataProps,
		&onnx.StringStringEntryProto{Key: "srq.setting", Value: `{"bits":"w8a8","method":"percentile"}`},
		&onnx.StringStringEntryProto{Key: "srq.sensitivity", Value: `[{"conv":"/head/Conv","psnr_db":41.25,"score":0.5},{"conv":"/tail/Conv","psnr_db":39.5,"score":1}]`})
	tagged := filepath.Join(dir, "tagged.onnx")
	require.NoError(t, onnx.Save(tagged, m, onnx.SaveOptions{}))
	src, err := img.Read(filepath.Join(images, "chelsea.png"))
	require.NoError(t, err)
	crop := filepath.Join(dir, "crop.png")
	require.NoError(t, img.WritePNG(crop, img.Crop(src, 150, 60, 64, 48)))

	report := filepath.Join(dir, "report")
	r, err := Verify(context.Background(), VerifyOptions{Model: edsrX2, Quantized: tagged, Images: []string{crop},
		Config: verify.Config{HR: true, Size: 8, Runs: 1, Threads: 1}, Report: report})
	require.NoError(t, err)
	require.NotNil(t, r.PerImage[0].Detail, "Report turns the details on")
	b, err := os.ReadFile(filepath.Join(report, "index.html"))
	require.NoError(t, err)
	page := string(b)
	for _, want := range []string{"<th>bits</th><td>w8a8</td>", `alt="output noise per layer"`, "41.250 dB, score 0.5", "/tail/Conv", "crop.png"} {
		assert.Contains(t, page, want)
	}
}
