package calib

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/qdq"
)

// measuredMSE is the mean of (x - fq(x))² over the samples, with the real
// quantizer for the range: the ground truth the range methods aim at.
func measuredMSE(x []float32, lo, hi float32, bits int) float64 {
	p := qdq.Asymmetric(lo, hi, bits)
	var s float64
	for _, v := range x {
		d := float64(v) - float64(p.FakeQuant(v))
		s += d * d
	}
	return s / float64(len(x))
}

func statsOf(x []float32) *Stats {
	s := NewStats(DefaultBins)
	s.Add(x)
	return s
}

// laplace returns n Laplacian samples with scale b: heavy-tailed.
func laplace(r *rand.Rand, n int, b float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		u := r.Float64() - 0.5
		x[i] = float32(-b * math.Copysign(math.Log(1-2*math.Abs(u)), u))
	}
	return x
}

func TestRangeMinMax(t *testing.T) {
	lo, hi := RangeMinMax(statsOf([]float32{-1, 2, 5}))
	assert.Equal(t, [2]float32{-1, 5}, [2]float32{lo, hi})
	lo, hi = RangeMinMax(statsOf([]float32{2, 5}))
	assert.Equal(t, [2]float32{0, 5}, [2]float32{lo, hi}, "includes 0")
	lo, hi = RangeMinMax(statsOf([]float32{-2, -5}))
	assert.Equal(t, [2]float32{-5, 0}, [2]float32{lo, hi}, "includes 0")
}

func TestRangeUniform(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 200000)
	for i := range x {
		x[i] = float32(-1 + 4*r.Float64())
	}
	s := statsOf(x)
	mlo, mhi := RangeMinMax(s)
	lo, hi := RangeMSE(s, 8)
	// Nothing worth clipping: MSE stays within a step of MinMax.
	step := float64(mhi-mlo) / 255
	assert.InDelta(t, mlo, lo, 2*step)
	assert.InDelta(t, mhi, hi, 2*step)
	assert.LessOrEqual(t, measuredMSE(x, lo, hi, 8), measuredMSE(x, mlo, mhi, 8)*1.02)
	plo, phi := RangePercentile(s, 99.9)
	assert.InDelta(t, -1+0.001*4, plo, 0.01)
	assert.InDelta(t, 3-0.001*4, phi, 0.01)
}

// TestRangeOutliers: a Gaussian bulk with two huge outliers. Clipping an
// outlier of size M at c costs (M-c)² while it saves about
// N·(M² - c²)/(12·levels²) of rounding error on the N bulk samples, so at 8
// bits the optimum clips partially (about half of M here) and at 4 bits down
// to the bulk.
func TestRangeOutliers(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, 1<<20)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	x[0], x[1] = 400, -250
	s := statsOf(x)
	mlo, mhi := RangeMinMax(s)
	require.Equal(t, [2]float32{-250, 400}, [2]float32{mlo, mhi})
	for _, tc := range []struct {
		bits         int
		maxHi, minHi float32
	}{
		{8, 0.7 * 400, 5},
		{6, 100, 4},
		{4, 10, 2},
	} {
		lo, hi := RangeMSE(s, tc.bits)
		eMSE, eMM := measuredMSE(x, lo, hi, tc.bits), measuredMSE(x, mlo, mhi, tc.bits)
		t.Logf("%d bits: range [%g, %g], measured MSE %.3g vs MinMax %.3g", tc.bits, lo, hi, eMSE, eMM)
		assert.Less(t, hi, tc.maxHi, "bits %d: MSE clips the outliers", tc.bits)
		assert.Greater(t, hi, tc.minHi, "bits %d: but not the bulk", tc.bits)
		assert.Less(t, lo, -tc.minHi, "bits %d", tc.bits)
		assert.Less(t, eMSE, eMM, "bits %d", tc.bits)
		if tc.bits <= 6 {
			assert.Less(t, eMSE, eMM/2, "bits %d", tc.bits)
		}
	}
	plo, phi := RangePercentile(s, 99.99)
	t.Logf("percentile 99.99: [%g, %g]", plo, phi)
	assert.InDelta(t, 3.72, phi, 0.15, "99.99th percentile of N(0,1) is 3.72, the outliers do not move it")
	assert.InDelta(t, -3.72, plo, 0.15)
}

// TestRangeMSENearOptimal compares RangeMSE with a brute-force search of its
// own exact error model over a dense 2-D grid of ranges: the search must find
// the optimum to within 1%.
func TestRangeMSENearOptimal(t *testing.T) {
	if testing.Short() {
		t.Skip("dense 2-D search")
	}
	r := rand.New(rand.NewPCG(17, 18))
	for _, tc := range []struct {
		name string
		x    []float32
	}{
		{"gauss outliers", gaussOutliers(r, 200000, 0.3, 1)},
		{"laplace", laplace(r, 200000, 1)},
		{"relu", relu(r, 200000, 1)},
	} {
		s := statsOf(tc.x)
		m := newMSEModel(s)
		for _, bits := range []int{8, 4, 2} {
			lo, hi := RangeMSE(s, bits)
			got := m.exact(float64(lo), float64(hi), bits)
			best := got
			const steps = 60
			for i := 0; i <= steps; i++ {
				l := m.lo * math.Exp2(-12*float64(i)/steps)
				if m.lo == 0 && i > 0 {
					break
				}
				for j := 0; j <= steps; j++ {
					h := m.hi * math.Exp2(-12*float64(j)/steps)
					best = min(best, m.exact(l, h, bits))
				}
			}
			t.Logf("%s, %d bits: RangeMSE error / grid optimum = %.4f", tc.name, bits, got/best)
			assert.LessOrEqual(t, got, best*1.01, "%s, %d bits", tc.name, bits)
		}
	}
}

func TestRangeOneSided(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	x := relu(r, 100000, 2)
	x[5] = 60 // an outlier
	s := statsOf(x)
	for _, bits := range []int{8, 4, 2} {
		lo, hi := RangeMSE(s, bits)
		assert.Equal(t, float32(0), lo, "bits %d", bits)
		assert.Positive(t, hi)
		assert.Less(t, hi, float32(60))
	}
	lo, _ := RangePercentile(s, 99.99)
	assert.Equal(t, float32(0), lo)
	lo, _ = RangeMinMax(s)
	assert.Equal(t, float32(0), lo)
	// Negative-only data keeps hi at 0.
	for i := range x {
		x[i] = -x[i]
	}
	_, hi := RangeMSE(statsOf(x), 8)
	assert.Equal(t, float32(0), hi)
}

// TestRangeMSEHeavyTails is the acceptance check: on heavy-tailed data the
// chosen range gives a lower measured fake-quant error on the actual samples
// than MinMax, at every bit width, and it is no worse than the best
// percentile range by much.
func TestRangeMSEHeavyTails(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	cases := []struct {
		name string
		x    []float32
	}{
		{"laplace", laplace(r, 100000, 1)},
		{"laplace shifted", func() []float32 {
			x := laplace(r, 100000, 0.5)
			for i := range x {
				x[i] += 1
			}
			return x
		}()},
		{"relu laplace", func() []float32 {
			x := laplace(r, 100000, 2)
			for i := range x {
				x[i] = max(x[i], 0)
			}
			return x
		}()},
		{"gauss outliers", gaussOutliers(r, 100000, 0.3, 1)},
	}
	for _, tc := range cases {
		s := statsOf(tc.x)
		mlo, mhi := RangeMinMax(s)
		for _, bits := range []int{8, 6, 4, 3, 2} {
			lo, hi := RangeMSE(s, bits)
			eMSE := measuredMSE(tc.x, lo, hi, bits)
			eMM := measuredMSE(tc.x, mlo, mhi, bits)
			bestPct := math.Inf(1)
			for _, p := range []float64{99, 99.9, 99.99, 99.999} {
				plo, phi := RangePercentile(s, p)
				bestPct = min(bestPct, measuredMSE(tc.x, plo, phi, bits))
			}
			t.Logf("%s, %d bits: MSE/MinMax %.3f, MSE/best percentile %.3f", tc.name, bits, eMSE/eMM, eMSE/bestPct)
			assert.Less(t, eMSE, eMM, "%s, %d bits", tc.name, bits)
			assert.Less(t, eMSE, bestPct*1.05, "%s, %d bits", tc.name, bits)
		}
	}
}

// TestExactModelMatchesSamples checks stage 2's error model against the
// measured error on the samples it summarises.
func TestExactModelMatchesSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	x := laplace(r, 400000, 1)
	s := statsOf(x)
	m := newMSEModel(s)
	for _, bits := range []int{8, 4, 2} {
		for _, rng := range [][2]float32{{-3, 3}, {-8, 2}, {s.Min, s.Max}} {
			model := m.exact(float64(rng[0]), float64(rng[1]), bits) / float64(s.Count)
			meas := measuredMSE(x, rng[0], rng[1], bits)
			assert.InEpsilon(t, meas, model, 0.03, "bits %d range %v", bits, rng)
		}
	}
}

func TestRangesDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	x := gaussOutliers(r, 100000, 0, 1)
	s1, s2 := statsOf(x), statsOf(x)
	for _, bits := range []int{8, 4} {
		l1, h1 := RangeMSE(s1, bits)
		l2, h2 := RangeMSE(s2, bits)
		assert.Equal(t, [2]float32{l1, h1}, [2]float32{l2, h2})
	}
}

func TestRangePercentileClamps(t *testing.T) {
	s := statsOf([]float32{-4, -1, 0, 1, 2, 3, 10})
	lo, hi := RangePercentile(s, 30) // clamped to 50: both the median (1)
	assert.Equal(t, float32(0), lo)
	assert.InDelta(t, 1, hi, 0.01)
	lo, hi = RangePercentile(s, math.NaN())
	assert.Equal(t, [2]float32{-4, 10}, [2]float32{lo, hi})
}

// TestRangeMSESpeed guards against algorithmic blow-ups; the benchmark
// gives the real number (the target is < 5 ms per tensor).
func TestRangeMSESpeed(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	s := statsOf(gaussOutliers(r, 1<<20, 0.2, 1))
	start := time.Now()
	for range 10 {
		RangeMSE(s, 8)
	}
	per := time.Since(start) / 10
	t.Logf("RangeMSE: %v per tensor", per)
	assert.Less(t, per, 50*time.Millisecond)
}

func BenchmarkRangeMSE(b *testing.B) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, tc := range []struct {
		name string
		x    []float32
	}{
		{"gauss-outliers", gaussOutliers(r, 1<<20, 0.2, 1)},
		{"relu", relu(r, 1<<20, 1)},
		{"uniform", func() []float32 {
			x := make([]float32, 1<<20)
			for i := range x {
				x[i] = float32(r.Float64()*8 - 2)
			}
			return x
		}()},
	} {
		s := statsOf(tc.x)
		for _, bits := range []int{8, 4} {
			b.Run(tc.name+"/"+map[int]string{8: "8bit", 4: "4bit"}[bits], func(b *testing.B) {
				for b.Loop() {
					RangeMSE(s, bits)
				}
			})
		}
	}
}
