package calib

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gaussOutliers returns n Gaussian samples (sigma) of which about one in
// 10^4 is multiplied by 100: the shape of SR activations.
func gaussOutliers(r *rand.Rand, n int, mean, sigma float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		v := mean + r.NormFloat64()*sigma
		if r.IntN(10000) == 0 {
			v *= 100
		}
		x[i] = float32(v)
	}
	return x
}

// relu returns max(x, 0) of Gaussian samples: half exact zeros.
func relu(r *rand.Rand, n int, sigma float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(max(r.NormFloat64()*sigma, 0))
	}
	return x
}

// bruteHist recomputes s's histogram from all samples on s's final layout.
func bruteHist(s *Stats, xs ...[]float32) []int64 {
	lo, w, counts := s.Histogram()
	want := make([]int64, len(counts))
	base := int64(math.Round(lo / w))
	for _, x := range xs {
		for _, v := range x {
			if v-v != 0 {
				continue
			}
			want[int64(math.Floor(float64(v)/w))-base]++
		}
	}
	return want
}

// requireSameState requires two Stats to hold the same histogram and
// counts; sums may differ by rounding.
func requireSameState(t *testing.T, want, got *Stats) {
	t.Helper()
	require.Equal(t, want.Min, got.Min)
	require.Equal(t, want.Max, got.Max)
	require.Equal(t, want.Count, got.Count)
	require.Equal(t, want.Zeros, got.Zeros)
	require.Equal(t, want.NonFinite, got.NonFinite)
	wl, ww, wc := want.Histogram()
	gl, gw, gc := got.Histogram()
	require.Equal(t, wl, gl)
	require.Equal(t, ww, gw)
	require.Equal(t, wc, gc)
	require.InDelta(t, want.Sum, got.Sum, 1e-9*math.Max(1, math.Abs(want.Sum))+1e-6)
	require.InDelta(t, want.SumSq, got.SumSq, 1e-9*want.SumSq+1e-6)
}

func TestStatsBasics(t *testing.T) {
	x := []float32{1, -2, 0, 3.5, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), 0.25}
	s := NewStats(64)
	s.Add(x)
	assert.Equal(t, float32(-2), s.Min)
	assert.Equal(t, float32(3.5), s.Max)
	assert.Equal(t, int64(6), s.Count)
	assert.Equal(t, int64(2), s.Zeros)
	assert.Equal(t, int64(2), s.NonFinite)
	assert.InDelta(t, 2.75/6, s.Mean(), 1e-12)
	finite := []float64{1, -2, 0, 3.5, 0, 0.25}
	var ss float64
	for _, v := range finite {
		ss += (v - 2.75/6) * (v - 2.75/6)
	}
	assert.InDelta(t, math.Sqrt(ss/6), s.Std(), 1e-12)
	lo, w, counts := s.Histogram()
	assert.Len(t, counts, 64)
	assert.Equal(t, bruteHist(s, x), counts)
	assert.LessOrEqual(t, lo, -2.0)
	assert.Greater(t, lo+64*w, 3.5)
	// 0 is a bin edge and w a power of two.
	assert.Equal(t, lo/w, math.Round(lo/w))
	frac, _ := math.Frexp(w)
	assert.Equal(t, 0.5, frac)
}

func TestStatsStreamingIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// Batches that keep widening the range, on both sides, by small and huge
	// factors, then shrink again.
	batches := [][]float32{
		gaussOutliers(r, 1000, 0.1, 0.01),
		gaussOutliers(r, 1000, 1, 0.5),
		relu(r, 3000, 3),
		gaussOutliers(r, 500, -40, 10),
		gaussOutliers(r, 2000, 0, 1),
		{1e6, -3e5},
		gaussOutliers(r, 100, 0, 1e-3),
	}
	single := NewStats(256)
	single.Add(slices.Concat(batches...))
	require.Equal(t, bruteHist(single, batches...), single.counts)

	streamed := NewStats(256)
	for i, b := range batches {
		streamed.Add(b)
		require.Equal(t, bruteHist(streamed, batches[:i+1]...), streamed.counts, "after batch %d", i)
	}
	requireSameState(t, single, streamed)

	// Any order, and merging parts, give the same state.
	for trial := range 5 {
		perm := r.Perm(len(batches))
		parts := []*Stats{NewStats(256), NewStats(256), NewStats(256)}
		for i, k := range perm {
			parts[i%3].Add(batches[k])
		}
		merged := NewStats(256)
		for _, p := range parts {
			require.NoError(t, merged.Merge(p))
		}
		requireSameState(t, single, merged)
		require.NoError(t, parts[trial%3].Merge(parts[(trial+1)%3]))
	}
}

func TestStatsParallelMatchesSerial(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := gaussOutliers(r, 3*parallelMin+12345, 0.5, 2)
	x[777] = float32(math.NaN())
	x[parallelMin+5] = float32(math.Inf(-1))
	// Serial: pieces below the parallel threshold.
	serial := NewStats(DefaultBins)
	for i := 0; i < len(x); i += chunkSize {
		serial.Add(x[i:min(i+chunkSize, len(x))])
	}
	par := NewStats(DefaultBins)
	par.Add(x)
	requireSameState(t, serial, par)
	require.Equal(t, bruteHist(par, x), par.counts)
	assert.Equal(t, int64(2), par.NonFinite)

	// Same data, any number of cores: bit-identical, sums included.
	prev := runtime.GOMAXPROCS(1)
	one := NewStats(DefaultBins)
	one.Add(x)
	runtime.GOMAXPROCS(max(prev, 2))
	many := NewStats(DefaultBins)
	many.Add(x)
	runtime.GOMAXPROCS(prev)
	requireSameState(t, one, many)
	assert.Equal(t, one.Sum, many.Sum)
	assert.Equal(t, one.SumSq, many.SumSq)
}

func TestStatsEdgeCases(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name string
		x    []float32
	}{
		{"empty", nil},
		{"all NaN", []float32{nan, nan}},
		{"all zeros", make([]float32, 1000)},
		{"constant positive", slices.Repeat([]float32{5}, 100)},
		{"constant negative", slices.Repeat([]float32{-3e-20}, 100)},
		{"single huge", []float32{math.MaxFloat32}},
		{"extremes", []float32{-math.MaxFloat32, math.MaxFloat32, 0}},
		{"subnormal", []float32{math.SmallestNonzeroFloat32, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStats(DefaultBins)
			s.Add(tc.x)
			s.Add(tc.x) // twice: the re-binning path with an unchanged range
			for _, p := range []float64{-1, 0, 0.01, 1, 50, 99, 99.99, 100, 200, math.NaN()} {
				v := s.Percentile(p)
				require.False(t, math.IsNaN(float64(v)) || math.IsInf(float64(v), 0), "Percentile(%g) = %g", p, v)
				if s.Count > 0 {
					require.GreaterOrEqual(t, v, s.Min)
					require.LessOrEqual(t, v, s.Max)
				}
				a := s.AbsPercentile(p)
				require.False(t, math.IsNaN(float64(a)) || math.IsInf(float64(a), 0), "AbsPercentile(%g) = %g", p, a)
			}
			for name, f := range map[string]func() (float32, float32){
				"minmax":     func() (float32, float32) { return RangeMinMax(s) },
				"percentile": func() (float32, float32) { return RangePercentile(s, 99.99) },
				"mse8":       func() (float32, float32) { return RangeMSE(s, 8) },
				"mse2":       func() (float32, float32) { return RangeMSE(s, 2) },
			} {
				lo, hi := f()
				require.False(t, math.IsNaN(float64(lo)) || math.IsNaN(float64(hi)), name)
				require.LessOrEqual(t, lo, float32(0), name)
				require.GreaterOrEqual(t, hi, float32(0), name)
				if s.Count > 0 {
					require.GreaterOrEqual(t, lo, min(s.Min, 0), name)
					require.LessOrEqual(t, hi, max(s.Max, 0), name)
				}
			}
			if s.Count > 0 {
				require.Equal(t, bruteHist(s, tc.x, tc.x), s.counts)
			}
		})
	}
	// The zero value is usable, for Add and for Merge.
	var z Stats
	z.Add([]float32{1, 2})
	assert.Equal(t, DefaultBins, z.Bins())
	assert.Equal(t, int64(2), z.Count)
	var zm Stats
	require.NoError(t, zm.Merge(&z))
	requireSameState(t, &z, &zm)
}

func TestStatsMergeErrors(t *testing.T) {
	a, b := NewStats(64), NewStats(128)
	a.Add([]float32{1})
	b.Add([]float32{2})
	assert.ErrorContains(t, a.Merge(b), "64 and 128")
	assert.Error(t, a.Merge(nil))
	assert.Error(t, a.Merge(a))
	// Merging empty statistics changes nothing but NonFinite.
	e := NewStats(128)
	e.Add([]float32{float32(math.NaN())})
	before := *a
	require.NoError(t, a.Merge(e))
	assert.Equal(t, before.Count, a.Count)
	assert.Equal(t, int64(1), a.NonFinite)
}

func TestStatsReset(t *testing.T) {
	s := NewStats(64)
	s.Add([]float32{1, 2, 3})
	s.Reset()
	assert.Zero(t, s.Count)
	assert.Equal(t, float32(0), s.Percentile(50))
	s.Add([]float32{-1})
	assert.Equal(t, float32(-1), s.Min)
	assert.Equal(t, float32(-1), s.Max)
	assert.Equal(t, []int64{1}, slices.DeleteFunc(slices.Clone(s.counts), func(c int64) bool { return c == 0 }))
}

// exactQuantile is the order statistic the percentile interpolates.
func exactQuantile(sorted []float64, p float64) float64 {
	return sorted[min(int(p/100*float64(len(sorted))), len(sorted)-1)]
}

func TestPercentile(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name string
		x    []float32
	}{
		{"gaussian", gaussOutliers(r, 200000, 0, 1)},
		{"relu", relu(r, 200000, 2)},
		{"shifted", gaussOutliers(r, 200000, 100, 0.01)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStats(DefaultBins)
			s.Add(tc.x)
			_, w, _ := s.Histogram()
			sorted := make([]float64, 0, len(tc.x))
			abs := make([]float64, 0, len(tc.x))
			for _, v := range tc.x {
				sorted = append(sorted, float64(v))
				abs = append(abs, math.Abs(float64(v)))
			}
			slices.Sort(sorted)
			slices.Sort(abs)
			prev := float32(math.Inf(-1))
			for _, p := range []float64{0.01, 0.1, 1, 5, 25, 49.9, 50, 50.1, 75, 95, 99, 99.9, 99.99} {
				got := s.Percentile(p)
				require.InDelta(t, exactQuantile(sorted, p), float64(got), w, "p=%g", p)
				require.GreaterOrEqual(t, got, prev, "monotone in p")
				prev = got
				require.InDelta(t, exactQuantile(abs, p), float64(s.AbsPercentile(p)), w, "|x| p=%g", p)
			}
			assert.Equal(t, s.Min, s.Percentile(0))
			assert.Equal(t, s.Max, s.Percentile(100))
		})
	}
	// ReLU data: half the samples are exactly 0, so every percentile up to
	// the zeros' share is exactly 0.
	s := NewStats(DefaultBins)
	s.Add(relu(r, 10000, 1))
	share := 100 * float64(s.Zeros) / float64(s.Count)
	assert.Equal(t, float32(0), s.Percentile(share-1))
	assert.Positive(t, s.Percentile(share+1))
}

func TestStatsAddDoesNotAllocate(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	small := gaussOutliers(r, parallelMin-1, 0, 1)
	s := NewStats(DefaultBins)
	s.Add(small)
	assert.Zero(t, testing.AllocsPerRun(5, func() { s.Add(small) }), "serial Add")
	big := gaussOutliers(r, 2*parallelMin, 0, 1)
	s.Add(big)
	allocs := testing.AllocsPerRun(5, func() { s.Add(big) })
	assert.LessOrEqual(t, allocs, float64(8*runtime.GOMAXPROCS(0)), "parallel Add: goroutine bookkeeping only")
	t.Logf("parallel Add allocations per call: %.0f (GOMAXPROCS %d)", allocs, runtime.GOMAXPROCS(0))
}

// BenchmarkStatsAdd measures one batch of the largest tensors srq
// calibrates (32 patches × 64 channels × 128 × 128 ≈ 33.5M floats), scaled
// down to 8 patches to keep the benchmark's memory modest.
func BenchmarkStatsAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []struct {
		name string
		x    []float32
	}{
		{"gauss", gaussOutliers(r, 8*64*128*128, 0, 1)},
		{"relu", relu(r, 8*64*128*128, 1)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := NewStats(DefaultBins)
			s.Add(tc.x)
			b.SetBytes(int64(4 * len(tc.x)))
			for b.Loop() {
				s.Add(tc.x)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(tc.x)), "ns/element")
		})
	}
}
