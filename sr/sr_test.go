package sr

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

const (
	edsrX2     = "../testdata/models/edsr_x2.onnx"
	chelsea    = "../testdata/images/chelsea.png"
	sharedDir  = "../../shared/models"
	maxDiff255 = 1.0 / 255
)

// requireORT initialises ORT or skips when the library is not installed.
func requireORT(t testing.TB) { orttest.Require(t) }

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

func open(t *testing.T, model []byte, name string, p ProbeOptions) *Model {
	t.Helper()
	m, err := Open(model, name, ort.Options{}, p)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, m.Close()) })
	return m
}

func TestOpenDetects(t *testing.T) {
	requireORT(t)
	tests := []struct {
		file  string
		scale int
		rng   float32
	}{
		{edsrX2, 2, 255},
		{filepath.Join(sharedDir, "edsr_x2.onnx"), 2, 255},
		{filepath.Join(sharedDir, "edsr_x4.onnx"), 4, 255},
		{filepath.Join(sharedDir, "rcan_x4.onnx"), 4, 255},
		{filepath.Join(sharedDir, "srresnet_x4.onnx"), 4, 1},
		{filepath.Join(sharedDir, "carn_m_x4.onnx"), 4, 1},
		{filepath.Join(sharedDir, "imdn_x4.onnx"), 4, 1},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			if _, err := os.Stat(tc.file); err != nil {
				t.Skipf("%s not available (../shared is optional): %v", tc.file, err)
			}
			m := open(t, readFile(t, tc.file), tc.file, ProbeOptions{})
			assert.Equal(t, tc.scale, m.Scale)
			assert.Equal(t, tc.rng, m.Range)
			assert.Equal(t, "input", m.Input)
			assert.Equal(t, "output", m.Output)
		})
	}
}

func TestOpenOverrides(t *testing.T) {
	requireORT(t)
	model := readFile(t, edsrX2)

	// A range given by the caller wins over detection (EDSR is really 255).
	m := open(t, model, edsrX2, ProbeOptions{Range: 1})
	assert.Equal(t, float32(1), m.Range)
	assert.Equal(t, 2, m.Scale)
	m = open(t, model, edsrX2, ProbeOptions{Scale: 2, Range: 255})
	assert.Equal(t, float32(255), m.Range)

	tests := []struct {
		name string
		p    ProbeOptions
		want string
	}{
		{"contradicting scale", ProbeOptions{Scale: 3}, edsrX2 + ": scale 3 requested, but the model upscales 20x24 to 40x48 (x2)"},
		{"negative scale", ProbeOptions{Scale: -2}, "scale -2"},
		{"odd range", ProbeOptions{Range: 100}, "input range 100: want 1 or 255"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(model, edsrX2, ort.Options{}, tc.p)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestOpenRejects(t *testing.T) {
	requireORT(t)
	notSR := "does not look like an SR model"
	tests := []struct {
		name  string
		model func(*testing.T) []byte
		want  []string
	}{
		{"classifier", classifierModel, []string{`output "y" has shape [1 3] for input [1 3 24 20]`, notSR}},
		{"stride-2 conv", downsampleModel, []string{"shape [1 3 12 10]", notSR}},
		{"non-integer scale", func(t *testing.T) []byte { return resizeModel(t, 1.5, 1.5) }, []string{"[1 3 36 30]", notSR}},
		{"different H and W scales", func(t *testing.T) []byte { return resizeModel(t, 2, 3) }, []string{"[1 3 48 60]", notSR}},
		{"one output channel", grayOutModel, []string{"[1 1 48 40]", notSR}},
		{"vector input", vectorModel, []string{`model.onnx: input "x" has shape [1 1000]: not an NCHW 3-channel image input`}},
		{"gray input", grayInModel, []string{`input "x" has shape [? 1 ? ?]: not an NCHW 3-channel image input`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.model(t), "model.onnx", ort.Options{}, ProbeOptions{})
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Contains(t, err.Error(), "model.onnx")
			assert.NotContains(t, err.Error(), "\n")
			t.Log(err)
		})
	}

	_, err := Open(readFile(t, edsrX2), edsrX2, ort.Options{EP: "nope"}, ProbeOptions{})
	assert.ErrorContains(t, err, `unknown execution provider "nope"`)
}

func TestRun(t *testing.T) {
	requireORT(t)
	m := open(t, readFile(t, edsrX2), edsrX2, ProbeOptions{})
	batch := make([]float32, 2*3*5*6)
	for i := range batch {
		batch[i] = 100
	}
	out, err := m.Run(context.Background(), batch, 2, 5, 6)
	require.NoError(t, err)
	assert.Len(t, out, 2*3*10*12)

	_, err = m.Run(context.Background(), batch[1:], 2, 5, 6)
	assert.ErrorContains(t, err, "needs 180 values, got 179")
	_, err = m.Run(context.Background(), nil, 0, 5, 6)
	assert.ErrorContains(t, err, "sizes must be positive")
}

// maxAbsDiff is the largest per-value difference of two same-sized images.
func maxAbsDiff(t *testing.T, a, b *img.Image) float64 {
	t.Helper()
	require.Equal(t, []int{a.C, a.H, a.W}, []int{b.C, b.H, b.W})
	d := 0.0
	for i := range a.Pix {
		d = math.Max(d, math.Abs(float64(a.Pix[i]-b.Pix[i])))
	}
	return d
}

// psnr of a against b, both 0..1.
func psnr(a, b *img.Image) float64 {
	var se float64
	for i := range a.Pix {
		d := float64(a.Pix[i] - b.Pix[i])
		se += d * d
	}
	return 10 * math.Log10(float64(len(a.Pix))/se)
}

// TestTilingExact uses toy convolutional x2 models whose receptive-field
// radius r is known: tiles with overlap ≥ r reproduce the untiled output up
// to float rounding, and overlap r-1 does not (so the test can fail).
func TestTilingExact(t *testing.T) {
	requireORT(t)
	im := synthImage(37, 29) // odd sizes: uneven tiles and shifted windows
	for _, convs := range []int{0, 2} {
		r := convs + 1
		m := open(t, convSRModel(t, convs), "toy.onnx", ProbeOptions{Range: 1})
		require.Equal(t, 2, m.Scale)
		full, err := m.Upscale(context.Background(), im, 0, 0)
		require.NoError(t, err)
		require.Equal(t, []int{3, 74, 58}, []int{full.C, full.H, full.W})
		for _, tile := range []int{1, 5, 8, 16, 29, 100} {
			tiled, err := m.Upscale(context.Background(), im, tile, r)
			require.NoError(t, err)
			assert.LessOrEqual(t, maxAbsDiff(t, full, tiled), 1e-6, "convs %d tile %d overlap %d", convs, tile, r)
			if tile < 29 {
				tiled, err = m.Upscale(context.Background(), im, tile, r-1)
				require.NoError(t, err)
				assert.Greater(t, maxAbsDiff(t, full, tiled), 1e-3, "convs %d tile %d overlap %d", convs, tile, r-1)
			}
		}
	}
}

// TestTilingEDSR checks tiled EDSR x2 against the untiled run on a crop of
// chelsea.png (TestTilingEDSRWholeImage does the whole image). Measured on
// the whole image with tile 64: max abs diff 0.075/255 at overlap 8,
// 5e-5/255 (float rounding) at 16 and 32, 28/255 without overlap.
func TestTilingEDSR(t *testing.T) {
	requireORT(t)
	m := open(t, readFile(t, edsrX2), edsrX2, ProbeOptions{})
	full, err := img.Read(chelsea)
	require.NoError(t, err)
	im := img.Crop(full, 170, 80, 96, 72) // the cat's face: fur, whiskers, eye

	whole, err := m.Upscale(context.Background(), im, 0, 0)
	require.NoError(t, err)
	// The model really super-resolves (range handled right): close to bicubic.
	assert.Greater(t, psnr(whole, img.ResizeBicubic(im, 192, 144)), 28.0)

	overlaps := []int{8, 16}
	if !testing.Short() {
		overlaps = append(overlaps, 32, -1)
	}
	for _, ov := range overlaps {
		tiled, err := m.Upscale(context.Background(), im, 24, ov)
		require.NoError(t, err)
		d := maxAbsDiff(t, whole, tiled)
		t.Logf("tile 24 overlap %d: max abs diff %.3g/255", ov, d*255)
		assert.LessOrEqual(t, d, maxDiff255, "overlap %d", ov)
	}
	tiled, err := m.Upscale(context.Background(), im, 24, 0)
	require.NoError(t, err)
	assert.Greater(t, maxAbsDiff(t, whole, tiled), 5*maxDiff255, "tiles without context must show seams")
}

func TestTilingEDSRWholeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("upscales all of chelsea.png twice (~10 s on 2 cores)")
	}
	requireORT(t)
	m := open(t, readFile(t, edsrX2), edsrX2, ProbeOptions{})
	im, err := img.Read(chelsea)
	require.NoError(t, err)
	whole, err := m.Upscale(context.Background(), im, 0, 0)
	require.NoError(t, err)
	tiled, err := m.Upscale(context.Background(), im, 128, DefaultOverlap)
	require.NoError(t, err)
	d := maxAbsDiff(t, whole, tiled)
	t.Logf("chelsea 451x300, tile 128, overlap %d: max abs diff %.3g/255", DefaultOverlap, d*255)
	assert.LessOrEqual(t, d, maxDiff255)
}

func TestUpscaleErrors(t *testing.T) {
	requireORT(t)
	m := open(t, convSRModel(t, 0), "toy.onnx", ProbeOptions{Range: 1})
	tests := []struct {
		name string
		im   *img.Image
		tile int
		want string
	}{
		{"nil", nil, 0, "toy.onnx: upscale: want a non-empty 3-channel image, got nil"},
		{"gray", img.New(1, 4, 4), 0, "got 1 channels, 4x4"},
		{"empty", img.New(3, 0, 4), 0, "want a non-empty"},
		{"short pixels", &img.Image{C: 3, H: 2, W: 2, Pix: make([]float32, 11)}, 0, "11 values"},
		{"negative tile", img.New(3, 4, 4), -1, "tile -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Upscale(context.Background(), tc.im, tc.tile, 0)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestUpscaleClipsAndScales(t *testing.T) {
	requireORT(t)
	// The toy model computes positive-weight sums ~ the input; fed 0..255 by
	// Upscale (Range 255) it must come back in 0..1, and bright inputs that
	// overshoot must clip at 1.
	m := open(t, convSRModel(t, 0), "toy.onnx", ProbeOptions{Range: 255})
	im := img.New(3, 6, 6)
	for i := range im.Pix {
		im.Pix[i] = 1
	}
	out, err := m.Upscale(context.Background(), im, 0, 0)
	require.NoError(t, err)
	hi := float32(0)
	for _, v := range out.Pix {
		require.GreaterOrEqual(t, v, float32(0))
		require.LessOrEqual(t, v, float32(1))
		hi = max(hi, v)
	}
	assert.Equal(t, float32(1), hi)
}

func TestSplitsAndWindow(t *testing.T) {
	assert.Equal(t, []int{0, 10}, splits(10, 10))
	assert.Equal(t, []int{0, 5, 10}, splits(10, 9))
	assert.Equal(t, []int{0, 3, 6, 10}, splits(10, 4))
	assert.Equal(t, []int{0, 1, 2, 3}, splits(3, 1))
	// Windows keep their size and stay inside the image.
	assert.Equal(t, 0, window(0, 4, 12, 30))
	assert.Equal(t, 6, window(10, 4, 12, 30))
	assert.Equal(t, 18, window(25, 4, 12, 30))
	assert.Equal(t, 0, window(3, 4, 10, 10))
}

// TestUpscaleCancel: Upscale returns the context's error when its context
// has ended before it starts, and abandons a running ORT call when the
// context ends during it: the stop comes after one node, not after the
// rest of the network.
func TestUpscaleCancel(t *testing.T) {
	requireORT(t)
	m, err := Open(readFile(t, edsrX2), "edsr_x2", ort.Options{Threads: 1}, ProbeOptions{})
	require.NoError(t, err)
	defer m.Close()
	src, err := img.Read(chelsea)
	require.NoError(t, err)
	lr := img.Crop(src, 100, 40, 128, 96)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = m.Upscale(ctx, lr, 0, 0)
	require.ErrorIs(t, err, context.Canceled)
	_, err = m.Upscale(ctx, lr, 32, 8)
	require.ErrorIs(t, err, context.Canceled, "tiled")

	// A whole run, timed under this machine's load, then one cancelled a
	// quarter of the way through.
	_, err = m.Upscale(context.Background(), lr, 0, 0) // warm-up: the first run at a shape plans its memory
	require.NoError(t, err)
	start := time.Now()
	_, err = m.Upscale(context.Background(), lr, 0, 0)
	require.NoError(t, err)
	whole := time.Since(start)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	cancelled := make(chan time.Time, 1)
	time.AfterFunc(whole/4, func() { cancelled <- time.Now(); cancel() })
	_, err = m.Upscale(ctx, lr, 0, 0)
	stop := time.Now()
	require.ErrorIs(t, err, context.Canceled, "a run of %s cancelled after %s", whole, whole/4)
	took := stop.Sub(<-cancelled)
	t.Logf("a whole run takes %s; stopped %s after the cancel", whole.Round(time.Millisecond), took.Round(time.Millisecond))
	assert.Less(t, took, whole/2, "ORT stops between two nodes (EDSR x2 has about 70)")

	out, err := m.Upscale(context.Background(), img.Crop(lr, 0, 0, 8, 8), 0, 0)
	require.NoError(t, err, "the model stays usable")
	assert.Equal(t, [3]int{3, 16, 16}, [3]int{out.C, out.H, out.W})
}

// TestOpenReadsIO: the scale and input range srq recorded in a model's
// metadata (MetaIO) replace detection — the bundled EDSR x2 takes 0..255,
// and a record saying 0..1 wins, as it must for a quantized model that
// probing misjudges — and explicit options still replace the record. A
// malformed record is an error naming the key.
func TestOpenReadsIO(t *testing.T) {
	orttest.Require(t)
	withIO := func(t *testing.T, value string) []byte {
		m, err := onnx.LoadBytes(readFile(t, edsrX2), edsrX2, "")
		require.NoError(t, err)
		m.MetadataProps = append(m.MetadataProps, &onnx.StringStringEntryProto{Key: MetaIO, Value: value})
		b, err := onnx.Marshal(m)
		require.NoError(t, err)
		return b
	}
	for _, tc := range []struct {
		name      string
		value     string
		p         ProbeOptions
		wantRange float32
		wantErr   string
	}{
		{"recorded", `{"scale":2,"input_range":1}`, ProbeOptions{}, 1, ""},
		{"option wins", `{"scale":2,"input_range":1}`, ProbeOptions{Range: 255}, 255, ""},
		{"wrong scale", `{"scale":3,"input_range":255}`, ProbeOptions{}, 0, "scale 3 requested"},
		{"malformed", `{"scale":2,"input_range":7}`, ProbeOptions{}, 0, "metadata srq.io: scale 2, input range 7"},
		{"not JSON", `x`, ProbeOptions{}, 0, "metadata srq.io: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Open(withIO(t, tc.value), edsrX2, ort.Options{Threads: 1}, tc.p)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			defer m.Close()
			assert.Equal(t, 2, m.Scale)
			assert.Equal(t, tc.wantRange, m.Range)
		})
	}
}
