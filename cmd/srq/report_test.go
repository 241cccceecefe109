package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/internal/htmlpage"
)

// needChromium returns Debian's chromium, or skips: the HTML reports are
// then checked as text only, not as a browser shows them.
func needChromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not on PATH (apt-get install chromium; .ci/run installs it): not opening the HTML report in a browser")
	}
	return p
}

// chromium runs headless Chromium on a local page with what it may need
// and no more: no GPU, no network services, a fresh profile. mode is
// --dump-dom (the DOM after the load event, on stdout) or --screenshot=PNG;
// the window is 1280 pixels wide and height high.
func chromium(t *testing.T, bin, page, mode string, height int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	abs, err := filepath.Abs(page)
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(),
		fmt.Sprintf("--window-size=1280,%d", height), mode, "file://"+abs)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "chromium %s: %s", mode, errb.String())
	return out.String()
}

var dataImages = regexp.MustCompile(`<body[^>]*\bdata-images="(\d+)/(\d+)"`)

// browserCheck opens page in Chromium: every image must have decoded
// (the page's load script counts them into <body data-images>), at least
// min of them, and the screenshot must show something. It returns the
// screenshot's path (kept in $SRQ_REPORT_SHOTS, if set, for looking at),
// the top height pixels of the page.
func browserCheck(t *testing.T, bin, page string, min int, name string, height int) string {
	t.Helper()
	dom := chromium(t, bin, page, "--dump-dom", height)
	m := dataImages.FindStringSubmatch(dom)
	require.NotNil(t, m, "no data-images attribute after load: the script did not run")
	loaded, _ := strconv.Atoi(m[1])
	total, _ := strconv.Atoi(m[2])
	assert.Equal(t, total, loaded, "every image decodes in the browser")
	assert.GreaterOrEqual(t, total, min)

	dir := os.Getenv("SRQ_REPORT_SHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, name+".png")
	chromium(t, bin, page, "--screenshot="+shot, height)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	im, err := png.Decode(f)
	require.NoError(t, err)
	assert.Equal(t, image.Rect(0, 0, 1280, height), im.Bounds())
	assert.Greater(t, colours(im), 200, "the screenshot shows the page, not a blank window")
	return shot
}

// colours counts the distinct colours of im, up to 1000.
func colours(im image.Image) int {
	seen := map[[3]uint32]bool{}
	b := im.Bounds()
	for y := b.Min.Y; y < b.Max.Y && len(seen) < 1000; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := im.At(x, y).RGBA()
			seen[[3]uint32{r, g, bl}] = true
		}
	}
	return len(seen)
}

var srcData = regexp.MustCompile(`<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"`)

// checkSelfContained requires every <img> of page to be an inline PNG
// that decodes, and nothing to be fetched from elsewhere.
func checkSelfContained(t *testing.T, page string) {
	t.Helper()
	srcs := srcData.FindAllStringSubmatch(page, -1)
	assert.Equal(t, strings.Count(page, "<img "), len(srcs), "every <img> is a data: URI")
	for _, m := range srcs {
		b, err := base64.StdEncoding.DecodeString(m[1])
		require.NoError(t, err)
		_, err = png.Decode(bytes.NewReader(b))
		require.NoError(t, err)
	}
	for _, ext := range []string{`src="http`, `href="http`, "url(", "@import", "<link", `src="file:`} {
		assert.NotContains(t, page, ext)
	}
}

// readPage returns the path and text of the report srq said it wrote
// into dir, checked self-contained.
func readPage(t *testing.T, out, dir string) (string, string) {
	t.Helper()
	page := filepath.Join(dir, htmlpage.Index)
	assert.Contains(t, out, "wrote "+page+"\n")
	b, err := os.ReadFile(page)
	require.NoError(t, err)
	checkSelfContained(t, string(b))
	return page, string(b)
}

// TestVerifyReportInChromium quantizes the bundled EDSR x2 to W4A4 dual,
// verifies it on two crops of a real photo with --report and --calib, and
// opens the page in headless Chromium.
func TestVerifyReportInChromium(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	q := filepath.Join(dir, "edsr_x2_w4a4.onnx")
	code, _, errOut := runSRQ(append([]string{"quantize", "--model", tdModel, "--calib", tdImages, "--bits", "w4a4", "--method", "dual", "--out", q}, quickFlags...)...)
	require.Equal(t, exitOK, code, errOut)
	hr := filepath.Join(dir, "hr")
	require.NoError(t, os.Mkdir(hr, 0o755))
	require.NoError(t, os.Rename(writeCrop(t, 150, 60, 96, 96), filepath.Join(hr, "eye.png")))
	require.NoError(t, os.Rename(writeCrop(t, 40, 150, 120, 80), filepath.Join(hr, "fur.png")))

	report := filepath.Join(dir, "report", "verify") // created by srq
	code, out, errOut := runSRQ("verify", "--model", tdModel, "--quantized", q, "--images", hr, "--hr", "--runs", "1", "--size", "32",
		"--threads", "2", "--report", report, "--calib", tdImages)
	require.Equal(t, exitOK, code, errOut)
	page, s := readPage(t, out, report)
	for _, want := range []string{
		"PSNR-Y vs FP32 output", "PSNR-Y vs ground truth", "Speed-up", "36/37",
		"<th>bits</th><td>w4a4</td>", "<th>method</th><td>dual</td>", "<th>patch_size</th><td>32</td>",
		`id="image-1"`, `id="image-2"`, "eye.png", "fur.png", "Ground truth", "Y levels",
		`alt="codes per Conv input"`, "34 Conv inputs with a quantizer of their own (34× 4-bit dual)",
		"Histograms of the FP32 model's Conv inputs (37 tensors)",
	} {
		assert.Contains(t, s, want)
	}
	// 2 images × (3 crops, heat map, colour bar, 2 thumbnails), the codes
	// chart, 37 histograms.
	assert.Equal(t, 2*7+1+37, strings.Count(s, "<img "))

	bin := needChromium(t)
	browserCheck(t, bin, page, 2*7+1+37, "verify", 3000)
}

// TestVerifyReportEDSRx4Set5: the report of the shared EDSR x4 at W4A4
// dual on Set5 (ground truth) is self-contained, names every image and
// renders in headless Chromium with every image loaded.
func TestVerifyReportEDSRx4Set5(t *testing.T) {
	needORT(t)
	if testing.Short() {
		t.Skip("slow: EDSR x4 on Set5")
	}
	model := needShared(t, "models/edsr_x4.onnx")
	set5 := needShared(t, "data/Set5")
	dir := t.TempDir()
	q := filepath.Join(dir, "edsr_x4_w4a4.onnx")
	code, _, errOut := runSRQ("quantize", "--model", model, "--calib", needShared(t, "images"), "--bits", "w4a4", "--method", "dual",
		"--patches", "16", "--patch-size", "48", "--threads", "2", "--speed-check", "0", "--out", q)
	require.Equal(t, exitOK, code, errOut)

	report := filepath.Join(dir, "report")
	code, out, errOut := runSRQ("verify", "--model", model, "--quantized", q, "--images", set5, "--hr", "--runs", "1", "--size", "32",
		"--threads", "2", "--report", report)
	require.Equal(t, exitOK, code, errOut)
	page, s := readPage(t, out, report)
	for _, want := range []string{"baby.png", "bird.png", "butterfly.png", "head.png", "woman.png",
		"<th>bits</th><td>w4a4</td>", "<th>method</th><td>dual</td>", "PSNR-Y vs ground truth", "Y levels", `alt="codes per Conv input"`} {
		assert.Contains(t, s, want)
	}
	// 5 images × (3 crops, heat map, colour bar, 2 thumbnails), the codes chart.
	assert.Equal(t, 5*7+1, strings.Count(s, "<img "))
	browserCheck(t, needChromium(t), page, 5*7+1, "edsr_x4_set5", 6000) // down to the codes chart
}

func TestVerifyReportRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	modelDir := filepath.Join(dir, "models")
	require.NoError(t, os.Mkdir(modelDir, 0o755))
	asIndex := filepath.Join(modelDir, htmlpage.Index)
	b, err := os.ReadFile(tdModel)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(asIndex, b, 0o644))
	base := []string{"verify", "--model", tdModel, "--quantized", tdModel, "--images", tdImages}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"folder under a file", []string{"--report", filepath.Join(file, "r")}, "--report " + filepath.Join(file, "r") + ": cannot create it: " + file + " is not a folder"},
		{"a file", []string{"--report", file}, "--report " + file + ": not a folder"},
		{"index.html is the model", []string{"--model", asIndex, "--report", modelDir}, "is the same file as the input " + asIndex},
		{"calib without report", []string{"--calib", tdImages}, "--calib draws activation histograms for the HTML report and needs --report"},
		{"calib folder missing", []string{"--report", filepath.Join(dir, "r"), "--calib", filepath.Join(dir, "nope")}, "calibration images"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runSRQ(append(append([]string{}, base...), tc.args...)...)
			assertOneLineError(t, code, out, errOut, "srq verify: ", tc.want)
		})
	}
	assert.Equal(t, []string{"file", "models"}, dirEntries(t, dir), "nothing created")
	got, err := os.ReadFile(asIndex)
	require.NoError(t, err)
	assert.Equal(t, b, got)
}

// TestBenchReport runs a tiny bench with --report: W8A8 and W4A4 rows for
// two methods on the bundled EDSR x2 and a one-image set, and checks the
// page: the tables of BENCHMARKS.md and one chart of PSNR against bits.
func TestBenchReport(t *testing.T) {
	needORT(t)
	dir, models, data := benchFixture(t)
	md, report := filepath.Join(dir, "BENCH.md"), filepath.Join(dir, "html")

	code, out, errOut := runSRQ("bench", "--models", models, "--data", data, "--sets", "Tiny",
		"--calib", tdImages, "--bits", "w8a8,w4a4", "--methods", "percentile,dual", "--sizes", "32", "--runs", "1",
		"--patches", "4", "--threads", "2", "--tune-every-model=false", "--out", md, "--report", report)
	require.Equal(t, exitOK, code, errOut)
	page, s := readPage(t, out, report)
	for _, want := range []string{
		"<h2>W8A8</h2>", "<h2>Low bits</h2>", "Quality against activation bits", "Mean PSNR-Y against the ground truth on Tiny",
		`<th class="num">Tiny FP32</th>`, "<td>edsr_x2</td><td>w4a4</td><td>dual</td>", "34 shared-grid",
	} {
		assert.Contains(t, s, want)
	}
	assert.NotContains(t, s, "<h2>Variants</h2>")
	assert.NotContains(t, s, "failed")
	assert.Equal(t, 1, strings.Count(s, "<img "), "one chart: one model")
	// Every table row of the markdown is a row of the page.
	mdText, err := os.ReadFile(md)
	require.NoError(t, err)
	assert.Equal(t, strings.Count(string(mdText), "\n| edsr_x2 |"), strings.Count(s, "<tr><td>edsr_x2</td>"))

	t.Run("in chromium", func(t *testing.T) {
		browserCheck(t, needChromium(t), page, 1, "bench", 3000)
	})
}

func TestBenchReportNumericCells(t *testing.T) {
	for _, tc := range []struct {
		cell string
		want bool
	}{
		{"32.10", true}, {"-0.20", true}, {"36/37", true}, {"3.08x", true}, {"34.84 (-0.02)", true}, {"25 (3.22x)", true},
		{"34 grid", false}, {"–", false}, {"edsr_x4", false}, {"w4a4", false}, {"failed: 3 errors", false}, {"", false},
	} {
		assert.Equal(t, tc.want, numeric(tc.cell), tc.cell)
	}
}
