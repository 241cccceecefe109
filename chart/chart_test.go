package chart

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// peaked is a 2048-bin histogram of a narrow Gaussian with rare large
// values, the shape of an SR activation, on a grid anchored at 0 like
// calib.Stats'.
func peaked() Histogram {
	r := rand.New(rand.NewPCG(1, 2))
	const bins = 2048
	lo, width := -64.0, 0.125
	counts := make([]int64, bins)
	for range 200000 {
		v := r.NormFloat64() * 3
		if r.IntN(500) == 0 {
			v *= 15
		}
		if i := int(math.Floor((v - lo) / width)); i >= 0 && i < bins {
			counts[i]++
		}
	}
	return Histogram{Title: "/body/body.0/conv1/Conv_output_0", XLabel: "activation", Lo: lo, Width: width, Counts: counts, LogY: true,
		Markers: []Marker{{-8.5, "bp = p99 |x| = 8.5"}, {8.5, "bp = p99 |x| = 8.5"}, {-30, "percentile 99.999 clip"}, {41, "percentile 99.999 clip"}}}
}

func TestHistogramPNG(t *testing.T) {
	linear := peaked()
	linear.LogY = false
	oneBin := Histogram{Title: "constant", Lo: 3, Width: 0.5, Counts: []int64{0, 0, 7, 0}, LogY: true}
	allPositive := peaked()
	allPositive.Lo = 1 // markers below the data widen the x range
	for _, tc := range []struct {
		name string
		h    Histogram
		size Size
		want Size
	}{
		{"log counts, default size", peaked(), Size{}, DefaultSize},
		{"linear counts", linear, Size{W: 640, H: 400}, Size{W: 640, H: 400}},
		{"one occupied bin", oneBin, Size{W: 300, H: 200}, Size{W: 300, H: 200}},
		{"markers outside the data", allPositive, Size{}, DefaultSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := PNG(tc.h, tc.size)
			require.NoError(t, err)
			im, err := png.Decode(bytes.NewReader(b))
			require.NoError(t, err)
			assert.Equal(t, image.Rect(0, 0, tc.want.W, tc.want.H), im.Bounds())
			assert.Less(t, len(b), 1<<20, "a chart is a small file")
			assert.Greater(t, distinctColors(im), 3, "not a blank image")
			assert.True(t, hasColor(im, barColor), "bars drawn")
			if len(tc.h.Markers) > 0 {
				assert.True(t, hasColor(im, palette[0]), "first marker drawn")
				assert.True(t, hasColor(im, palette[1]), "second marker drawn")
			}
			if dir := os.Getenv("SRQ_CHART_DIR"); dir != "" { // for looking at them
				require.NoError(t, os.WriteFile(filepath.Join(dir, tc.name+".png"), b, 0o644))
			}
		})
	}
}

func TestHistogramErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Histogram
		size Size
		want string
	}{
		{"no samples", Histogram{Title: "t", Lo: 0, Width: 1, Counts: make([]int64, 8)}, Size{}, `"t" has no samples`},
		{"no bins", Histogram{Title: "t", Lo: 0, Width: 1}, Size{}, "no samples"},
		{"zero width", Histogram{Title: "t", Width: 0, Counts: []int64{1}}, Size{}, "width > 0"},
		{"NaN lo", Histogram{Title: "t", Lo: math.NaN(), Width: 1, Counts: []int64{1}}, Size{}, "finite lo"},
		{"negative count", Histogram{Title: "t", Width: 1, Counts: []int64{1, -1}}, Size{}, "bin 1 has count -1"},
		{"bad marker", Histogram{Title: "t", Width: 1, Counts: []int64{1}, Markers: []Marker{{math.Inf(1), "m"}}}, Size{}, `marker "m"`},
		{"negative bars", Histogram{Title: "t", Width: 1, Counts: []int64{1}, Bars: -1}, Size{}, "-1 bars"},
		{"tiny image", peaked(), Size{W: 50, H: 50}, "size 50x50"},
		{"huge image", peaked(), Size{W: 100000, H: 500}, "size 100000x500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PNG(tc.h, tc.size)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestRegroup(t *testing.T) {
	for _, tc := range []struct {
		name      string
		counts    []int64
		bars      int
		lo, width float64
		sums      []float64
	}{
		{"trims and keeps", []int64{0, 1, 2, 0, 3, 0}, 10, 1, 1, []float64{1, 2, 0, 3}},
		{"pairs", []int64{1, 2, 3, 4, 5}, 3, 0, 2, []float64{3, 7, 5}},
		{"one bar", []int64{0, 4, 4, 0}, 1, 1, 2, []float64{8}},
		{"empty", []int64{0, 0}, 4, 0, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, width, sums := regroup(0, 1, tc.counts, tc.bars)
			assert.Equal(t, tc.sums, sums)
			if sums != nil {
				assert.Equal(t, tc.lo, lo)
				assert.Equal(t, tc.width, width)
			}
		})
	}
	// 2048 bins of which 1100 are occupied: between 100 and 200 bars.
	counts := make([]int64, 2048)
	for i := 400; i < 1500; i++ {
		counts[i] = 1
	}
	_, _, sums := regroup(0, 1, counts, DefaultBars)
	assert.GreaterOrEqual(t, len(sums), DefaultBars/2)
	assert.LessOrEqual(t, len(sums), DefaultBars)
}

func TestCountTicks(t *testing.T) {
	labels := func(lo, hi float64) []string {
		var out []string
		for _, tk := range (countTicks{}).Ticks(lo, hi) {
			if tk.Label != "" {
				out = append(out, tk.Label)
			}
		}
		return out
	}
	assert.Equal(t, []string{"1", "10", "100", "1k", "10k", "100k", "1M", "10M"}, labels(0.5, 3e7))
	assert.Equal(t, []string{"300", "400", "500"}, labels(250, 550), "within a decade the 2..9 ticks are labelled")
	assert.Empty(t, (countTicks{}).Ticks(0, 10))
	assert.Equal(t, "2.5k", countLabel(2500))
	assert.Equal(t, "3G", countLabel(3e9))
}

// distinctColors counts the colours of im, up to 100.
func distinctColors(im image.Image) int {
	seen := map[color.RGBA]bool{}
	b := im.Bounds()
	for y := b.Min.Y; y < b.Max.Y && len(seen) < 100; y += 3 {
		for x := b.Min.X; x < b.Max.X; x++ {
			seen[color.RGBAModel.Convert(im.At(x, y)).(color.RGBA)] = true
		}
	}
	return len(seen)
}

// hasColor reports whether some pixel of im is within a small distance of c
// (anti-aliasing blends the edges).
func hasColor(im image.Image, c color.Color) bool {
	want := color.RGBAModel.Convert(c).(color.RGBA)
	b := im.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			got := color.RGBAModel.Convert(im.At(x, y)).(color.RGBA)
			if absDiff(got.R, want.R)+absDiff(got.G, want.G)+absDiff(got.B, want.B) < 12 {
				return true
			}
		}
	}
	return false
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}
