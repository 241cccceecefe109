package calib

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/qdq"
)

// measuredQ is the mean of (x − q(x))² over the samples.
func measuredQ(x []float32, q qdq.Quantizer) float64 {
	var s float64
	for _, v := range x {
		d := float64(v) - float64(q.FakeQuant(v))
		s += d * d
	}
	return s / float64(len(x))
}

// srActivations imitates an SR residual stream: a narrow Laplacian band and
// 0.2% of large, mostly positive outliers.
func srActivations(r *rand.Rand, n int) []float32 {
	x := laplace(r, n, 3)
	for i := range x {
		if r.IntN(500) == 0 {
			x[i] = float32(40 + 200*r.Float64())
			if r.IntN(4) == 0 {
				x[i] = -x[i] / 2
			}
		}
	}
	return x
}

func TestLevelsErrorMatchesExact(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	x := srActivations(r, 100000)
	m := newMSEModel(statsOf(x))
	for _, bits := range []int{2, 4, 8} {
		for _, c := range [][2]float64{{m.lo, m.hi}, {m.lo / 4, m.hi / 8}, {-3, 10}} {
			p := qdq.Asymmetric(float32(c[0]), float32(c[1]), bits)
			var levels []float64
			for q := p.QMin; q <= p.QMax; q++ {
				levels = append(levels, float64(p.Dequantize(q)))
			}
			want := m.exact(float64(float32(c[0])), float64(float32(c[1])), bits)
			assert.InEpsilon(t, want, m.levelsError(levels), 1e-6, "bits %d clip %v", bits, c)
		}
	}
}

func TestRangeDualSearch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 9))
	x := srActivations(r, 200000)
	s := statsOf(x)
	for _, acc := range []qdq.Accounting{qdq.Reference, qdq.Strict} {
		t.Run(string(acc), func(t *testing.T) {
			d, err := RangeDual(s, DualOptions{Bits: 4, Accounting: acc, Breakpoint: BPSearch})
			require.NoError(t, err)
			require.True(t, d.HasTail(), "outlier-heavy data gets tails: %s", d)
			lo, hi := RangeMinMax(s)
			assert.Equal(t, lo, d.Spec.Lo)
			assert.Equal(t, hi, d.Spec.Hi)

			// The model the search minimises agrees with the samples.
			got := measuredQ(x, d)
			m := newMSEModel(s)
			var levels []float64
			for _, l := range d.Levels() {
				levels = append(levels, float64(l))
			}
			assert.InEpsilon(t, got, m.levelsError(levels)/float64(s.Count), 0.05)

			// Better than every uniform 4-bit range srq has, and than the
			// published 99th-percentile start.
			ulo, uhi := RangeMSE(s, 4)
			uniform := qdq.UniformOf(qdq.Asymmetric(ulo, uhi, 4), 4)
			assert.Less(t, got, measuredQ(x, uniform)/2, "dual %s vs uniform MSE clip", d)
			p99, err := RangeDual(s, DualOptions{Bits: 4, Accounting: acc, Breakpoint: BPPercentile, Percentile: 99})
			require.NoError(t, err)
			assert.LessOrEqual(t, got, measuredQ(x, p99)*1.01)
			if acc == qdq.Strict {
				codes, _ := qdq.CodeCount(d)
				assert.LessOrEqual(t, codes, 16)
			}
		})
	}
}

func TestRangeDualPercentile(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 9))
	x := srActivations(r, 100000)
	s := statsOf(x)
	d, err := RangeDual(s, DualOptions{Bits: 4, Accounting: qdq.Reference, Breakpoint: BPPercentile, Percentile: 99})
	require.NoError(t, err)
	p99 := float64(s.AbsPercentile(99))
	// The breakpoints are the dense grid's end levels: within half a dense
	// step of the 99th percentile of |x| on the longer side.
	assert.InDelta(t, p99, float64(max(-d.BPLo(), d.BPHi())), float64(d.Dense.Scale)/2+1e-6)
}

func TestRangeDualByHand(t *testing.T) {
	s := statsOf([]float32{-2, -1, 0, 1, 3, 50})
	d, err := RangeDual(s, DualOptions{Bits: 4, Accounting: qdq.Reference, BP: 4})
	require.NoError(t, err)
	assert.InDelta(t, 4, float64(d.BPHi()), float64(d.Dense.Scale))
	for _, bp := range []float32{50, 51, -1} {
		_, err := RangeDual(s, DualOptions{Bits: 4, Accounting: qdq.Reference, BP: bp})
		assert.ErrorContains(t, err, "outside (0, 50)", "bp %g", bp)
	}
}

func TestRangeDualOneSidedAndDegenerate(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	x := srActivations(r, 50000)
	for i, v := range x {
		x[i] = max(v, 0) // after ReLU
	}
	d, err := RangeDual(statsOf(x), DualOptions{Bits: 4, Accounting: qdq.Reference, Breakpoint: BPSearch})
	require.NoError(t, err)
	assert.Equal(t, float32(0), d.Levels()[0], "no negative level after ReLU")
	assert.Equal(t, 0, d.NLo)

	d, err = RangeDual(statsOf(make([]float32, 100)), DualOptions{Bits: 4, Accounting: qdq.Reference, Breakpoint: BPSearch})
	require.NoError(t, err)
	assert.Equal(t, float32(0), d.FakeQuant(0))
	assert.False(t, d.HasTail())

	_, err = RangeDual(statsOf(x), DualOptions{Bits: 4, Accounting: qdq.Reference, Breakpoint: "guess"})
	assert.ErrorContains(t, err, `"guess"`)
	assert.False(t, math.IsNaN(float64(d.Dense.Scale)))
}
