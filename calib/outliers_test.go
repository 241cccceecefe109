package calib

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
)

// outlierFixture is a hand-built NCHW tensor over n RGB patches: Gaussian
// noise (σ = 1) in every channel, plus large values (±20..40) in the hot
// channels at the pixels that see colour (pixelChroma above a threshold).
// The patches are grey but for one 4×4 block in 8, a saturated red (chroma
// 0.7..1): outliers that carry colour, the shape the method attributes to
// SR activations.
type outlierFixture struct {
	patches    []*img.Image
	x          []float32 // N×C×H×W
	n, c, h, w int
}

func newOutlierFixture(r *rand.Rand, n, c, inSide, side int, hot []int, threshold float64) outlierFixture {
	f := outlierFixture{n: n, c: c, h: side, w: side}
	hw := inSide * inSide
	for range n {
		im := img.New(3, inSide, inSide)
		for by := 0; by < inSide; by += 4 {
			for bx := 0; bx < inSide; bx += 4 {
				red := r.IntN(8) == 0
				for y := by; y < by+4; y++ {
					for x := bx; x < bx+4; x++ {
						i := y*inSide + x
						g := r.Float32()
						im.Pix[i], im.Pix[hw+i], im.Pix[2*hw+i] = g, g, g
						if red {
							im.Pix[i], im.Pix[hw+i], im.Pix[2*hw+i] = 0.7+0.3*r.Float32(), 0, 0
						}
					}
				}
			}
		}
		f.patches = append(f.patches, im)
	}
	f.x = make([]float32, n*c*side*side)
	for i := range n {
		chroma := Chroma(f.patches[i])
		for ch := range c {
			for y := range side {
				for xx := range side {
					v := float32(r.NormFloat64())
					if slices.Contains(hot, ch) && pixelChroma(chroma, inSide, side, y, xx) > threshold {
						v = float32(20 + 20*r.Float64())
						if r.IntN(2) == 0 {
							v = -v
						}
					}
					f.x[((i*c+ch)*side+y)*side+xx] = v
				}
			}
		}
	}
	return f
}

// pixelChroma is the chroma that pixel (y, x) of a side×side tensor sees in
// an inSide×inSide patch: that of the input pixel it maps to at the input's
// resolution or above, else the mean over the block it covers (the test's
// sides divide evenly).
func pixelChroma(chroma []float32, inSide, side, y, x int) float64 {
	if side >= inSide {
		return float64(chroma[(y*inSide/side)*inSide+x*inSide/side])
	}
	b := inSide / side
	var s float64
	for yy := y * b; yy < (y+1)*b; yy++ {
		for xx := x * b; xx < (x+1)*b; xx++ {
			s += float64(chroma[yy*inSide+xx])
		}
	}
	return s / float64(b*b)
}

// feed runs both passes of an accumulator over the fixture in batches of
// the given sizes.
func (f outlierFixture) feed(t *testing.T, batches []int) (*outlierAcc, OutlierStats) {
	t.Helper()
	a := newOutlierAcc(DefaultBins)
	chroma := make([][]float32, f.n)
	for i, p := range f.patches {
		chroma[i] = Chroma(p)
	}
	per := f.c * f.h * f.w
	inSide := f.patches[0].H
	for pass := range 2 {
		start := 0
		for _, b := range batches {
			x := f.x[start*per : (start+b)*per]
			if pass == 0 {
				a.addPass1(x)
			} else {
				a.addPass2([]int64{int64(b), int64(f.c), int64(f.h), int64(f.w)}, x, chroma, inSide, inSide)
			}
			start += b
		}
		require.Equal(t, f.n, start, "batches must cover the patches")
		if pass == 0 {
			a.endPass1()
		}
	}
	s, err := a.result()
	require.NoError(t, err)
	return a, s
}

// absQuantile is the exact p-th percentile of |x|: the smallest |x| with at
// least p% of the samples at or below it.
func absQuantile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func TestOutlierStatsAgainstFloat64(t *testing.T) {
	for _, tc := range []struct {
		name         string
		inSide, side int     // input patch and tensor sides
		batches      []int   // patches per capture batch
		hot          []int   // channels that carry the colour outliers
		threshold    float64 // chroma from which a pixel has outliers
		corrAbove    float64 // expected minimum colour correlation
	}{
		{"same resolution", 16, 16, []int{2, 1}, []int{2, 5}, 0.5, 0.6},
		{"after pixel shuffle", 8, 16, []int{1, 1, 1}, []int{0}, 0.5, 0.6},
		{"strided", 16, 4, []int{5, 3}, []int{1, 6, 7}, 0.5, 0.6},
		{"global pool", 16, 1, []int{40, 60}, []int{4}, 0.2, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(tc.side)))
			patches := 0
			for _, b := range tc.batches {
				patches += b
			}
			f := newOutlierFixture(r, patches, 8, tc.inSide, tc.side, tc.hot, tc.threshold)
			a, s := f.feed(t, tc.batches)
			t.Logf("bp %.3g, outliers %.3g%%, kurtosis %.3g, channels %d/%d, r %.3f, chroma %.3f vs %.3f",
				s.Breakpoint, 100*s.OutlierFraction, s.ExcessKurtosis, s.Channels90, s.Channels, s.ChromaCorrelation, s.ChromaMeanOutlierPixels, s.ChromaMeanAllPixels)

			// Direct float64 reference over the whole tensor.
			n := float64(len(f.x))
			abs := make([]float64, len(f.x))
			var sum float64
			for i, v := range f.x {
				abs[i], sum = math.Abs(float64(v)), sum+float64(v)
			}
			mean := sum / n
			var m2, m4 float64
			for _, v := range f.x {
				d := float64(v) - mean
				m2 += d * d
				m4 += d * d * d * d
			}
			slices.Sort(abs)
			_, width, _ := s.Stats.Histogram()
			assert.InDelta(t, absQuantile(abs, 99), float64(s.AbsP99), width, "p99")
			assert.InDelta(t, absQuantile(abs, 99.9), float64(s.AbsP999), width, "p99.9")
			assert.InDelta(t, absQuantile(abs, 99.99), float64(s.AbsP9999), width, "p99.99")
			assert.Equal(t, s.AbsP99, s.Breakpoint)
			assert.Equal(t, a.bp, s.Breakpoint)
			assert.Equal(t, int64(len(f.x)), s.Count)
			assert.Equal(t, slices.Min(f.x), s.Min)
			assert.Equal(t, slices.Max(f.x), s.Max)
			assert.InDelta(t, float64(s.Breakpoint)/abs[len(abs)-1], s.BreakpointRatio, 1e-12)
			assert.InDelta(t, mean, s.Mean, 1e-12)
			assert.InDelta(t, math.Sqrt(m2/n), s.Std, 1e-9)
			assert.InDelta(t, n*m4/(m2*m2)-3, s.ExcessKurtosis, 1e-9)
			assert.Greater(t, s.ExcessKurtosis, 3.0, "heavy tails")

			// Exact counts against the accumulator's bp.
			bp := float64(s.Breakpoint)
			hw := f.h * f.w
			chanCount := make([]int64, f.c)
			pixCount := make([]float64, f.n*hw)
			var outliers int64
			for i := range f.n {
				for ch := range f.c {
					for j := range hw {
						if math.Abs(float64(f.x[(i*f.c+ch)*hw+j])) > bp {
							outliers++
							chanCount[ch]++
							pixCount[i*hw+j]++
						}
					}
				}
			}
			assert.Equal(t, outliers, s.Outliers)
			assert.InDelta(t, float64(outliers)/n, s.OutlierFraction, 1e-15)
			assert.Equal(t, chanCount, s.ChannelOutliers)
			sorted := slices.Clone(chanCount)
			slices.Sort(sorted)
			slices.Reverse(sorted)
			var cum int64
			chan90 := 0
			for cum < int64(math.Ceil(0.9*float64(outliers))) {
				cum += sorted[chan90]
				chan90++
			}
			assert.Equal(t, chan90, s.Channels90)
			assert.LessOrEqual(t, s.Channels90, len(tc.hot))
			for ch, c := range chanCount {
				if !slices.Contains(tc.hot, ch) {
					assert.Zero(t, c, "channel %d has no colour outliers", ch)
				}
			}

			// Colour: per-pixel outlier counts against the input's chroma.
			chroma := make([]float64, f.n*hw)
			var outPix int64
			var chromaOut float64
			for i := range f.n {
				c := Chroma(f.patches[i])
				for y := range f.h {
					for xx := range f.w {
						v := pixelChroma(c, tc.inSide, f.h, y, xx)
						chroma[i*hw+y*f.w+xx] = v
						if pixCount[i*hw+y*f.w+xx] > 0 {
							outPix++
							chromaOut += v
						}
					}
				}
			}
			assert.Equal(t, int64(f.n*hw), s.Pixels)
			assert.Equal(t, outPix, s.OutlierPixels)
			assert.InDelta(t, meanOf(chroma), s.ChromaMeanAllPixels, 1e-12)
			assert.InDelta(t, chromaOut/float64(outPix), s.ChromaMeanOutlierPixels, 1e-12)
			assert.Greater(t, s.ChromaMeanOutlierPixels, s.ChromaMeanAllPixels)
			assert.InDelta(t, pearsonTwoPass(pixCount, chroma), s.ChromaCorrelation, 1e-9)
			assert.Greater(t, s.ChromaCorrelation, tc.corrAbove)
			assert.Equal(t, [3]int{f.c, f.h, f.w}, [3]int{s.Channels, s.Height, s.Width})
		})
	}
}

func meanOf(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// pearsonTwoPass is the textbook centred Pearson correlation.
func pearsonTwoPass(a, b []float64) float64 {
	ma, mb := meanOf(a), meanOf(b)
	var sab, saa, sbb float64
	for i := range a {
		sab += (a[i] - ma) * (b[i] - mb)
		saa += (a[i] - ma) * (a[i] - ma)
		sbb += (b[i] - mb) * (b[i] - mb)
	}
	return sab / math.Sqrt(saa*sbb)
}

// TestOutlierStatsParallelAndBatching: the result does not depend on the
// number of cores or on how patches are split into capture batches (beyond
// float rounding of the first pass's mean).
func TestOutlierStatsParallelAndBatching(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	f := newOutlierFixture(r, 4, 8, 64, 128, []int{3}, 0.5) // 2^19 values: parallel path
	prev := runtime.GOMAXPROCS(1)
	_, serial := f.feed(t, []int{4})
	runtime.GOMAXPROCS(max(prev, 2))
	_, parallel := f.feed(t, []int{4})
	_, split := f.feed(t, []int{1, 3})
	runtime.GOMAXPROCS(prev)
	serial.Stats, parallel.Stats, split.Stats = nil, nil, nil
	assert.Equal(t, serial, parallel)
	assert.Equal(t, serial.ChannelOutliers, split.ChannelOutliers)
	assert.Equal(t, serial.Outliers, split.Outliers)
	assert.InDelta(t, serial.ExcessKurtosis, split.ExcessKurtosis, 1e-9)
	assert.InDelta(t, serial.ChromaCorrelation, split.ChromaCorrelation, 1e-12)
}

func TestOutlierPass2DoesNotAllocate(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	f := newOutlierFixture(r, 2, 4, 16, 16, []int{1}, 0.5)
	a, _ := f.feed(t, []int{2})
	chroma := [][]float32{Chroma(f.patches[0]), Chroma(f.patches[1])}
	dims := []int64{2, 4, 16, 16}
	allocs := testing.AllocsPerRun(20, func() {
		a.seen = 0
		a.addPass2(dims, f.x, chroma, 16, 16)
	})
	assert.Zero(t, allocs)
}

func TestOutlierAccErrors(t *testing.T) {
	chroma := [][]float32{make([]float32, 4), make([]float32, 4)}
	for _, tc := range []struct {
		name  string
		feed  func(a *outlierAcc)
		wantE string
	}{
		{"not NCHW", func(a *outlierAcc) { a.addPass2([]int64{1, 4}, make([]float32, 4), chroma, 2, 2) }, "want NCHW"},
		{"short data", func(a *outlierAcc) { a.addPass2([]int64{1, 2, 2, 2}, make([]float32, 4), chroma, 2, 2) }, "holds 4 values"},
		{"more patches than chroma", func(a *outlierAcc) { a.addPass2([]int64{3, 1, 2, 2}, make([]float32, 12), chroma, 2, 2) }, "only 2 given"},
		{"channels change", func(a *outlierAcc) {
			a.addPass2([]int64{1, 1, 2, 2}, make([]float32, 4), chroma, 2, 2)
			a.addPass2([]int64{1, 2, 1, 2}, make([]float32, 4), chroma, 2, 2)
		}, "1 channels in one batch and 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newOutlierAcc(DefaultBins)
			a.addPass1([]float32{1, 2, 3})
			a.endPass1()
			tc.feed(a)
			_, err := a.result()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantE)
		})
	}
}

func TestOutlierStatsEdgeCases(t *testing.T) {
	grey := img.New(3, 2, 2)
	for i := range grey.Pix {
		grey.Pix[i] = 0.5
	}
	chroma := [][]float32{Chroma(grey)}
	dims := []int64{1, 2, 2, 2}
	for _, tc := range []struct {
		name string
		x    []float32
		want func(t *testing.T, s OutlierStats)
	}{
		{"constant", []float32{3, 3, 3, 3, 3, 3, 3, 3}, func(t *testing.T, s OutlierStats) {
			assert.Zero(t, s.Outliers)
			assert.Zero(t, s.Channels90)
			assert.Zero(t, s.ExcessKurtosis)
			assert.Zero(t, s.ChromaCorrelation)
			assert.Zero(t, s.ChromaMeanOutlierPixels)
			assert.InDelta(t, 1, s.BreakpointRatio, 1e-6)
		}},
		{"all zeros", make([]float32, 8), func(t *testing.T, s OutlierStats) {
			assert.Zero(t, s.BreakpointRatio)
			assert.Zero(t, s.Std)
		}},
		{"non-finite skipped", []float32{1, float32(math.NaN()), 2, float32(math.Inf(1)), 1, 2, 1, 2}, func(t *testing.T, s OutlierStats) {
			assert.Equal(t, int64(6), s.Count)
			assert.Equal(t, int64(2), s.NonFinite)
			assert.InDelta(t, 1.5, s.Mean, 1e-12)
			assert.InDelta(t, 0.5, s.Std, 1e-12)
			assert.InDelta(t, -2, s.ExcessKurtosis, 1e-12) // two-point distribution
			assert.Equal(t, float32(2), s.Breakpoint)
			assert.Zero(t, s.Outliers, "+Inf is not an outlier, it is not a sample")
			assert.Zero(t, s.OutlierPixels)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newOutlierAcc(DefaultBins)
			a.addPass1(tc.x)
			a.endPass1()
			a.addPass2(dims, tc.x, chroma, 2, 2)
			s, err := a.result()
			require.NoError(t, err)
			assert.False(t, math.IsNaN(s.ChromaCorrelation) || math.IsNaN(s.ExcessKurtosis) || math.IsNaN(s.BreakpointRatio))
			tc.want(t, s)
		})
	}
}

func TestChannelsHolding(t *testing.T) {
	for _, tc := range []struct {
		counts []int64
		want   int
	}{
		{nil, 0},
		{[]int64{0, 0, 0}, 0},
		{[]int64{0, 10, 0}, 1},
		{[]int64{1, 9, 0}, 1},    // 9 of 10 is exactly 90%
		{[]int64{2, 8, 0}, 2},    // 8 of 10 is not
		{[]int64{5, 5, 5, 5}, 4}, // 3 of 4 is 75%
		{[]int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 9},
	} {
		assert.Equal(t, tc.want, channelsHolding(tc.counts, 90), "%v", tc.counts)
	}
}

func TestPearson(t *testing.T) {
	sums := func(a, b []float64) (n, sa, saa, sb, sbb, sab float64) {
		for i := range a {
			sa, saa, sb, sbb, sab = sa+a[i], saa+a[i]*a[i], sb+b[i], sbb+b[i]*b[i], sab+a[i]*b[i]
		}
		return float64(len(a)), sa, saa, sb, sbb, sab
	}
	for _, tc := range []struct {
		name string
		a, b []float64
		want float64
	}{
		{"perfect", []float64{0, 1, 2, 3}, []float64{0.1, 0.2, 0.3, 0.4}, 1},
		{"anti", []float64{0, 1, 2, 3}, []float64{3, 2, 1, 0}, -1},
		{"constant a", []float64{2, 2, 2}, []float64{0, 1, 0}, 0},
		{"constant b", []float64{0, 1, 0}, []float64{0.3, 0.3, 0.3}, 0},
		{"partial", []float64{0, 0, 1, 1}, []float64{0, 1, 0, 1}, 0},
	} {
		assert.InDelta(t, tc.want, pearson(sums(tc.a, tc.b)), 1e-12, tc.name)
	}
}

func TestChroma(t *testing.T) {
	im := &img.Image{C: 3, H: 1, W: 3, Pix: []float32{
		1, 0.5, 0.2, // R
		0, 0.5, 0.9, // G
		0, 0.5, 0.4, // B
	}}
	assert.InDeltaSlice(t, []float32{1, 0, 0.7}, Chroma(im), 1e-6)
	assert.Equal(t, []float32{0, 0}, Chroma(img.New(1, 1, 2)), "grey images have no chroma")
}
