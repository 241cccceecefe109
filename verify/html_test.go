package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/htmlpage"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/sr"
)

// naiveMaxWindow is maxWindow's reference: every window summed in full.
func naiveMaxWindow(d []float64, h, w, k int) (x, y int, sum float64) {
	sum = math.Inf(-1)
	for r := 0; r+k <= h; r++ {
		for c := 0; c+k <= w; c++ {
			var s float64
			for i := r; i < r+k; i++ {
				for j := c; j < c+k; j++ {
					s += d[i*w+j]
				}
			}
			if s > sum+1e-9 {
				x, y, sum = c, r, s
			}
		}
	}
	return x, y, sum
}

func TestHTMLMaxWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name    string
		h, w, k int
		fill    func(i int) float64
	}{
		{"random 8-bit differences", 37, 53, 9, func(int) float64 { return math.Round(rng.Float64() * 40) }},
		{"sparse", 30, 30, 5, func(int) float64 {
			if rng.IntN(50) == 0 {
				return 200
			}
			return 0
		}},
		{"window is the image", 12, 12, 12, func(i int) float64 { return float64(i % 7) }},
		{"one-pixel window", 9, 11, 1, func(i int) float64 { return float64((i * 37) % 23) }},
		{"all equal: first window", 10, 14, 4, func(int) float64 { return 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := make([]float64, tc.h*tc.w)
			for i := range d {
				d[i] = tc.fill(i)
			}
			x, y, s := maxWindow(d, tc.h, tc.w, tc.k)
			wx, wy, ws := naiveMaxWindow(d, tc.h, tc.w, tc.k)
			assert.InDelta(t, ws, s, 1e-6)
			assert.Equal(t, [2]int{wx, wy}, [2]int{x, y})
		})
	}
}

// detailPair returns an FP32 "output" of real content and a "quantized"
// one equal to it but for a disturbed block at (bx, by).
func detailPair(t *testing.T, w, h, bx, by, side int) (f, q *img.Image) {
	t.Helper()
	src, err := img.Read(filepath.Join(testImage, "chelsea.png"))
	require.NoError(t, err)
	f = img.Crop(src, min(100, src.W-w), min(50, src.H-h), w, h)
	require.Equal(t, [2]int{w, h}, [2]int{f.W, f.H})
	q = f.Clone()
	for c := 0; c < 3; c++ {
		for r := by; r < by+side; r++ {
			for x := bx; x < bx+side; x++ {
				q.Pix[(c*h+r)*w+x] = min(1, q.Pix[(c*h+r)*w+x]+0.1)
			}
		}
	}
	return f, q
}

func decodePNG(t *testing.T, p PNG) image.Image {
	t.Helper()
	m, err := png.Decode(bytes.NewReader(p.Data))
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, p.W, p.H), m.Bounds())
	return m
}

func TestHTMLDetail(t *testing.T) {
	for _, tc := range []struct {
		name                string
		w, h, shave         int
		hr                  bool
		wantSide, wantZoom  int
		wantThumbW, thumbsH int
	}{
		// 440×290 shaved by 4: 432×282, shrunk by 2 into 216×141.
		{"large, HR", 440, 290, 4, true, 48, 4, 216, 141},
		// 300×200 shaved by 4: 292×192, at full size.
		{"medium, HR", 300, 200, 4, true, 48, 4, 292, 192},
		// 40×34 shaved by 2: 36×30, window 30, zoomed 6 (≤ 192 px), thumbnails ×8.
		{"small, LR", 40, 34, 2, false, 30, 6, 288, 240},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bx, by := tc.w/2, tc.h/3
			f, q := detailPair(t, tc.w, tc.h, bx, by, 12)
			var gt *img.Image
			if tc.hr {
				gt = f.Clone()
			}
			d, err := detailOf(f, q, gt, tc.shave)
			require.NoError(t, err)
			assert.Equal(t, tc.wantSide, d.Side)
			assert.Equal(t, tc.wantZoom, d.Zoom)
			assert.Equal(t, [2]int{tc.w, tc.h}, [2]int{d.OutW, d.OutH})
			// The window holds the whole disturbed block.
			assert.LessOrEqual(t, d.X, bx)
			assert.LessOrEqual(t, d.Y, by)
			assert.GreaterOrEqual(t, d.X+d.Side, bx+12)
			assert.GreaterOrEqual(t, d.Y+d.Side, by+12)
			assert.Greater(t, d.MaxAbsDY, 5.0, "+0.1 on R, G and B is about 22 Y levels")
			assert.InDelta(t, d.MeanAbsDY, d.MeanAbsDYImage*float64((tc.w-2*tc.shave)*(tc.h-2*tc.shave))/float64(d.Side*d.Side), 1e-6,
				"all of the error lies in the window")

			n := d.Side * d.Zoom
			for _, p := range []PNG{d.FP32, d.Quantized, d.Heat} {
				decodePNG(t, p)
				assert.Equal(t, [2]int{n, n}, [2]int{p.W, p.H})
			}
			if tc.hr {
				decodePNG(t, d.GT)
			} else {
				assert.Nil(t, d.GT.Data)
			}
			for _, p := range []PNG{d.Thumb, d.HeatMap} {
				decodePNG(t, p)
				assert.Equal(t, [2]int{tc.wantThumbW, tc.thumbsH}, [2]int{p.W, p.H})
			}
			// The crop is the window, each pixel a Zoom×Zoom block.
			crop := decodePNG(t, d.FP32)
			r, g, b := rgb8(f, d.Y*f.W+d.X+1)
			R, G, B, _ := crop.At(d.Zoom+d.Zoom-1, d.Zoom-1).RGBA()
			assert.Equal(t, [3]uint8{r, g, b}, [3]uint8{uint8(R >> 8), uint8(G >> 8), uint8(B >> 8)})
			// The heat map is black where the outputs agree and bright
			// (the top of the scale) where they differ most.
			heat := decodePNG(t, d.HeatMap)
			assert.True(t, hasRGB(heat, inferno[255]), "the largest error at the top of the scale")
			assert.True(t, hasRGB(heat, inferno[0]), "no error is black")
			assert.True(t, hasRGB(heat, outlineColor), "window outlined")
		})
	}
}

// hasRGB reports whether some pixel of m is exactly c.
func hasRGB(m image.Image, c color.RGBA) bool {
	b := m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			R, G, B, _ := m.At(x, y).RGBA()
			if uint8(R>>8) == c.R && uint8(G>>8) == c.G && uint8(B>>8) == c.B {
				return true
			}
		}
	}
	return false
}

func TestHTMLDetailRefuses(t *testing.T) {
	f, q := detailPair(t, 20, 20, 2, 2, 4)
	_, err := detailOf(f, img.Crop(q, 0, 0, 19, 20), nil, 1)
	assert.ErrorContains(t, err, "size mismatch")
	_, err = detailOf(f, q, nil, 10)
	assert.ErrorContains(t, err, "shave 10")
}

// TestHTMLInferno: the colour map starts black and ends pale yellow as
// matplotlib's does, and its lightness rises monotonically, so larger
// errors always read brighter.
func TestHTMLInferno(t *testing.T) {
	near := func(want [3]float64, got color.RGBA) {
		assert.InDelta(t, want[0]*255, float64(got.R), 6, "%v", got)
		assert.InDelta(t, want[1]*255, float64(got.G), 6, "%v", got)
		assert.InDelta(t, want[2]*255, float64(got.B), 6, "%v", got)
	}
	near([3]float64{0.001462, 0.000466, 0.013866}, inferno[0])
	near([3]float64{0.735683, 0.215906, 0.330245}, inferno[128])
	near([3]float64{0.988362, 0.998364, 0.644924}, inferno[255])
	luma := func(c color.RGBA) float64 { return 0.299*float64(c.R) + 0.587*float64(c.G) + 0.114*float64(c.B) }
	for i := 1; i < len(inferno); i++ {
		assert.GreaterOrEqual(t, luma(inferno[i]), luma(inferno[i-1])-0.5, "step %d", i)
	}
	cb, err := ColorBar(256, 10)
	require.NoError(t, err)
	m := decodePNG(t, cb)
	R, G, B, _ := m.At(255, 5).RGBA()
	assert.Equal(t, inferno[255], color.RGBA{uint8(R >> 8), uint8(G >> 8), uint8(B >> 8), 255})
	_, err = ColorBar(1, 10)
	assert.Error(t, err)
}

// hostile is a name a model or an image could carry, which the page must
// show as text.
const hostile = `<script>alert("x")</script><img src=http://example.com/x.png>`

// htmlReport is a report as Run makes it with Detail, with two images.
func htmlReport(t *testing.T) *Report {
	t.Helper()
	var res []ImageResult
	for i, name := range []string{"baby.png", hostile + ".png"} {
		f, q := detailPair(t, 120, 90, 30+10*i, 20, 8)
		d, err := detailOf(f, q, f, 2)
		require.NoError(t, err)
		res = append(res, ImageResult{Image: name, LRWidth: 60, LRHeight: 45, PSNRvsFP32: 38.5 + float64(i),
			PSNRGT: &Pair{32.1, 31.9}, SSIMGT: &Pair{0.91, 0.905}, Detail: d})
	}
	r := newReport(res, true)
	r.Model, r.Quantized = "models/edsr_x2.onnx", "out/"+hostile+".onnx"
	r.Scale, r.InputRange = 2, 255
	r.LatencyMS, r.Speedup = Pair{FP32: 40.2, Quantized: 13.1}, 3.07
	r.Size, r.Runs, r.Warmup, r.Threads, r.EP = 64, 10, WarmupRuns, 2, "cpu"
	r.LatencyInput, r.ORTVersion = "baby.png", "1.24.1"
	r.Int8Conv = &ConvCoverage{Int8: 36, Total: 37, Float: []string{"/head/Conv_output_0_skip_nchwc"}}
	r.CPU = CPU{Model: "Test CPU", Flags: []string{"avx2", "avx512_vnni"}}
	return r
}

// htmlMetadata is what srq writes into a W4A4 dual model, plus a
// sensitivity analysis (not written by srq yet) made by hand.
func htmlMetadata() map[string]string {
	var layers, sens []map[string]any
	for i := range 6 {
		conv := "/body/body." + string(rune('0'+i)) + "/conv1/Conv"
		form := "shared-grid"
		if i == 4 {
			form = "two-branch"
		}
		layers = append(layers, map[string]any{"conv": conv, "input": "x", "kind": "dual", "bits": 4, "codes": 16 + 2*i, "quantizer": "q", "form": form})
		sens = append(sens, map[string]any{"conv": conv, "bits": 4 + 4*(i%2), "psnr_db": 40.5 + 0.3*float64(i), "score": 0.1 * float64(i)})
	}
	sens = append(sens, map[string]any{"conv": hostile, "bits": 8, "psnr_db": 39.9, "score": 1})
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	return map[string]string{
		MetaVersion:     "srq 0.4.0 (rev 0123456789ab)",
		MetaSetting:     `{"bits":"w4a4","method":"dual","percentile":99.999,"accounting":"reference","breakpoint":"p99","encoding":"int8","weights":"per-channel mse","first_last":"8","long_skip":"precise","skip":["a","b"],"carriers":"8-bit uniform","note":"` + strings.ReplaceAll(hostile, `"`, `\"`) + `"}`,
		MetaCalibration: `{"files":["a.png","b.png"],"sha256":"abc123","patches":8,"patch_size":32,"seed":1}`,
		MetaLayers:      js(layers),
		MetaSensitivity: js(sens),
		MetaAccuracy: `{"max_drop_db":0.05,"validation":["coffee.png@0,0","rocket.jpg@0,0"],"tile":256,"held_out":true,"candidates":12,"chosen":2,"met":true,` +
			`"steps":[{"widened":0,"drop_db":0.17,"drop_high_db":0.24,"psnr_vs_fp32_db":47.2,"speedup_est":2.5,"within":false},` +
			`{"widened":9,"added":["/IMDB1: block float","` + strings.ReplaceAll(hostile, `"`, `\"`) + `: float"],"drop_db":0.03,"drop_high_db":0.04,"psnr_vs_fp32_db":52.6,"speedup_est":1.8,"within":true},` +
			`{"widened":5,"removed":["/IMDB1: block float"],"drop_db":0.04,"drop_high_db":0.045,"psnr_vs_fp32_db":51.6,"speedup_est":2.0,"within":true}],` +
			`"widened":["/IMDB1/c1/Conv: float"],"latency":{"size":96}}`,
		"srq.ranges": `[{"value":"x","lo":0,"hi":1}]`,
		"other":      "ignored",
	}
}

var dataURI = regexp.MustCompile(`src="data:image/png;base64,([A-Za-z0-9+/=]+)"`)

func TestHTMLReport(t *testing.T) {
	r := htmlReport(t)
	acts := []Figure{{Title: "/body/body.0/conv1/Conv input", PNG: mustPNG(t)}}
	page, err := RenderHTML(r, HTMLExtras{Metadata: htmlMetadata(), Activations: acts})
	require.NoError(t, err)
	s := string(page)
	if dir := os.Getenv("SRQ_HTML_DIR"); dir != "" { // for looking at it
		require.NoError(t, os.WriteFile(filepath.Join(dir, "verify.html"), page, 0o644))
	}

	// Self-contained: every image inline and decodable, nothing fetched.
	imgs := strings.Count(s, "<img ")
	srcs := dataURI.FindAllStringSubmatch(s, -1)
	assert.Equal(t, imgs, len(srcs), "every <img> is a data: URI")
	// 2 images × (3 crops + heat + colour bar + 2 thumbnails) + 3 charts + 1 histogram.
	assert.Equal(t, 2*7+3+1, imgs)
	for _, m := range srcs {
		b, err := base64.StdEncoding.DecodeString(m[1])
		require.NoError(t, err)
		_, err = png.Decode(bytes.NewReader(b))
		require.NoError(t, err)
	}
	assert.NotContains(t, s, "ZgotmplZ", "no URL rejected by html/template")
	for _, ext := range []string{`src="http`, `href="http`, "url(", "@import", `<link`} {
		assert.NotContains(t, s, ext)
	}
	assert.Contains(t, s, "Content-Security-Policy")

	// Names from the model and the images are text, not markup.
	assert.NotContains(t, s, hostile)
	assert.NotContains(t, s, "<img src=http")
	assert.Contains(t, s, "&lt;script&gt;alert(")
	assert.Equal(t, 1, strings.Count(s, "<script>"), "only the page's own load check")

	// The summary and the metadata, readable.
	for _, want := range []string{
		"PSNR-Y vs FP32 output", "39.00 dB", "32.10 → 31.90", "drop <b>0.200 dB</b>", "3.07×", "36/37",
		"ONNX Runtime 1.24.1", "Test CPU", "avx512_vnni", "written by srq 0.4.0 (rev 0123456789ab)",
		"<th>bits</th><td>w4a4</td>", "<th>method</th><td>dual</td>", "<th>skip</th><td>a, b</td>",
		"<th>files</th><td>a.png, b.png</td>", "<th>patch_size</th><td>32</td>",
		"6 Conv inputs with a quantizer of their own (6× 4-bit dual)", "7 = 30 levels at 4 bits", "output noise per layer", "the longest bar is the most sensitive layer", "39.900 dB, score 1",
		"window 48×48 at (", "Y levels", `id="image-1"`, `href="#image-2"`,
		"Histograms of the FP32 model's Conv inputs (1 tensors)",
		"Accuracy control", "3 models measured on 2 validation tiles", "met the budget",
		"drop 0.040 dB (≤ 0.045), 5 of 12 widenings, PSNR-Y vs FP32 51.60 dB, speed-up 2.00x (est.), within, written; − /IMDB1: block float",
	} {
		assert.Contains(t, s, want)
	}
	assert.NotContains(t, s, "ignored")
	assert.Regexp(t, `<body data-images="pending">`, s)

	// Written atomically into a new folder.
	dir := filepath.Join(t.TempDir(), "a", "report")
	p, err := WriteHTML(dir, r, HTMLExtras{})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, htmlpage.Index), p)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Contains(t, string(b), "Where the quantized output differs most")
	assert.NotContains(t, string(b), "Per layer", "no metadata, no per-layer charts")
}

func mustPNG(t *testing.T) []byte {
	t.Helper()
	p, err := ColorBar(64, 8)
	require.NoError(t, err)
	return p.Data
}

// TestHTMLReportDegrades: a report without details (Config.Detail off),
// without ground truth, and with metadata srq cannot read still renders,
// naming what it left out.
func TestHTMLReportDegrades(t *testing.T) {
	r := htmlReport(t)
	r.HR, r.PSNRGT, r.SSIMGT, r.PSNRGTDrop, r.Int8Conv = false, nil, nil, nil, nil
	r.EP = "tensorrt"
	for i := range r.PerImage {
		r.PerImage[i].Detail, r.PerImage[i].PSNRGT, r.PerImage[i].SSIMGT = nil, nil, nil
	}
	page, err := RenderHTML(r, HTMLExtras{Metadata: map[string]string{
		MetaSetting: "[1, 2]", MetaLayers: "{", MetaSensitivity: `[{"conv": "a"}]`,
		MetaAccuracy: `{"chosen": 3, "steps": [{"widened": 0, "psnr_vs_fp32_db": 40, "speedup_est": 2}]}`,
	}})
	require.NoError(t, err)
	s := string(page)
	assert.Equal(t, 0, strings.Count(s, "<img "))
	assert.NotContains(t, s, "Where the quantized output differs most")
	assert.Contains(t, s, "not available on tensorrt")
	assert.Contains(t, s, "Metadata not shown: srq.setting: not a JSON object")
	assert.Contains(t, s, "Metadata not shown: srq.layers: not a JSON array of layers")
	assert.Contains(t, s, `Metadata not shown: srq.sensitivity: layer 0 (&#34;a&#34;) has no psnr_db`)
	assert.Contains(t, s, "Metadata not shown: srq.accuracy: chosen step 3 of 1")
	assert.NotContains(t, s, "SSIM-Y vs ground truth")

	_, err = RenderHTML(nil, HTMLExtras{})
	assert.Error(t, err)
}

func TestHTMLCheckDir(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file.txt")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	withIndexDir := filepath.Join(root, "busy")
	require.NoError(t, os.MkdirAll(filepath.Join(withIndexDir, htmlpage.Index), 0o755))
	inputDir := filepath.Join(root, "in")
	require.NoError(t, os.Mkdir(inputDir, 0o755))
	input := filepath.Join(inputDir, htmlpage.Index)
	require.NoError(t, os.WriteFile(input, []byte("an input"), 0o644))
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"existing folder", root, ""},
		{"new folder", filepath.Join(root, "new", "deeper"), ""},
		{"a file", file, "not a folder"},
		{"under a file", filepath.Join(file, "sub"), "is not a folder"},
		{"index.html is a folder", withIndexDir, "not a regular file"},
		{"index.html is an input", inputDir, "same file as the input"},
		{"empty", "", "empty path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckHTMLDir(tc.dir, []string{input})
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.want)
		})
	}
	_, err := os.Stat(filepath.Join(root, "new"))
	assert.True(t, os.IsNotExist(err), "checking creates nothing")
}

// TestHTMLRunDetail: Run with Detail keeps a rendered window per image and
// leaves the JSON report as it was.
func TestHTMLRunDetail(t *testing.T) {
	requireORT(t)
	paths, err := img.List(smallImages(t, 24, 20))
	require.NoError(t, err)
	cfg := Config{Threads: 1, Size: 8, Runs: 1, Probe: sr.ProbeOptions{Range: 255}}
	plain, err := Run(context.Background(), Source{"float.onnx", tinyFloatModel()}, Source{"qdq.onnx", tinyQDQModel()}, paths, cfg, nil)
	require.NoError(t, err)
	cfg.Detail = true
	r, err := Run(context.Background(), Source{"float.onnx", tinyFloatModel()}, Source{"qdq.onnx", tinyQDQModel()}, paths, cfg, nil)
	require.NoError(t, err)
	for i, x := range r.PerImage {
		assert.Nil(t, plain.PerImage[i].Detail)
		require.NotNil(t, x.Detail, x.Image)
		assert.Equal(t, 18, x.Detail.Side, "the image shaved by the scale (1) is smaller than the window")
		assert.Equal(t, [2]int{24, 20}, [2]int{x.Detail.OutW, x.Detail.OutH})
		assert.Nil(t, x.Detail.GT.Data, "no ground truth in LR mode")
	}
	a, err := withoutLatency(plain).JSON()
	require.NoError(t, err)
	b, err := withoutLatency(r).JSON()
	require.NoError(t, err)
	assert.Equal(t, string(a), string(b))
}

// TestHTMLReportKernels: the page shows the kernel check and the QDQ
// graph's own score, and a check that failed is marked above everything
// else, naming the Conv.
func TestHTMLReportKernels(t *testing.T) {
	r := htmlReport(t)
	drop := 0.031
	r.Reference = &ReferenceSummary{PSNRvsFP32: 52.4, PSNRGTDrop: &drop, Kernels: kernelcheck.Agreement{MaxDiff: 3, Over1: 0.01, Values: 1000}}
	r.Kernels = &kernelcheck.Report{ORTVersion: "1.24.1", Groups: 65, MaxCodeDiff: 1, ReferenceFused: []string{}, Disagree: []kernelcheck.Disagreement{}}
	page, err := RenderHTML(r, HTMLExtras{})
	require.NoError(t, err)
	s := string(page)
	assert.Contains(t, s, "65 fused groups agree with the QDQ graph")
	assert.Contains(t, s, "PSNR-Y vs FP32 52.40 dB, drop vs ground truth 0.031 dB")
	assert.NotContains(t, s, "computes the model wrong")

	r.Kernels.Disagree = []kernelcheck.Disagreement{{Node: "/head/Conv", Shape: "Conv 3→28, 3×3", MaxCodeDiff: 160, WrongShare: 0.12}}
	r.Kernels.MaxCodeDiff = 160
	page, err = RenderHTML(r, HTMLExtras{})
	require.NoError(t, err)
	s = string(page)
	assert.Contains(t, s, "ONNX Runtime 1.24.1 computes the model wrong")
	assert.Contains(t, s, `<span class="bad">WRONG</span>`)
	assert.Contains(t, s, "<code>/head/Conv</code> (Conv 3→28, 3×3): up to 160 codes off on 12.00% of its outputs")
}
