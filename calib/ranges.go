package calib

import (
	"math"
	"sort"

	"github.com/srquant/srq/qdq"
)

// The range methods choose the clip range [lo, hi] of an asymmetric
// (unsigned, zero-point) activation quantizer, qdq.Asymmetric(lo, hi, bits),
// from a tensor's calibration statistics. Every method returns lo <= 0 <= hi
// (0 must be exactly representable; qdq.Asymmetric would extend the range
// anyway) inside [min(Min, 0), max(Max, 0)], and (0, 0) for empty Stats.

// RangeMinMax returns [min(Min, 0), max(Max, 0)]: nothing is clipped.
func RangeMinMax(s *Stats) (lo, hi float32) {
	if s.Count == 0 {
		return 0, 0
	}
	return min(s.Min, 0), max(s.Max, 0)
}

// RangePercentile returns lo = min(Percentile(100-p), 0) and
// hi = max(Percentile(p), 0), clipping the (100-p)% smallest and largest
// samples; p is clamped to [50, 100] (NaN counts as 100). Unlike ORT's
// percentile calibration, which takes a symmetric range from the histogram of
// |x|, each side is placed on its own tail, as suits a zero-point quantizer.
func RangePercentile(s *Stats, p float64) (lo, hi float32) {
	if s.Count == 0 {
		return 0, 0
	}
	if !(p < 100) {
		p = 100
	}
	p = max(p, 50)
	return min(s.Percentile(100-p), 0), max(s.Percentile(p), 0)
}

// RangeMSE returns the clip range that minimises the expected squared
// quantization error E[(x - fq(x))²] of qdq.Asymmetric(lo, hi, bits) over the
// histogram, in two stages:
//
//  1. Search with an O(log bins) model (step = (hi-lo)/(2^bits-1)): a sample
//     in the rounding cell of 0 (|x| < step/2) costs x², as it rounds to the
//     exactly representable 0 (exact zeros cost nothing); any other unclipped
//     sample costs step²/12; a clipped one its squared distance to the clip.
//     Per bin, from its centre c and width w: E[x²] = c² + w²/12. Coarse
//     symmetric shrink of [min(Min,0), max(Max,0)] by factors 2^(-j/16) down
//     to 2^-12, then coordinate descent over every occupied bin edge,
//     alternating hi and lo until stable.
//  2. Refine with the exact error of the real quantizer (float32 scale,
//     rounded zero point, its saturation) under the assumption that each
//     bin's samples are uniformly spread over the bin (zeros: a point mass
//     at 0): a multiplicative grid around the stage-1 range, symmetric and
//     then per side. MinMax is a candidate, so the result is never worse than
//     MinMax under this model.
//
// The step²/12 part of the model misjudges peaked data at low bit widths,
// where the position of the samples relative to the grid matters, which is
// why stage 2 exists. bits is clamped to [qdq.MinBits, qdq.MaxBits]. Cost:
// O(bins·log bins) for stage 1 and about 60 O(bins) evaluations for stage 2.
func RangeMSE(s *Stats, bits int) (lo, hi float32) {
	if s.Count == 0 || s.Count == s.Zeros {
		return 0, 0
	}
	m := newMSEModel(s)
	if len(m.n) == 0 {
		return 0, 0
	}
	_, qmax := qdq.UnsignedRange(bits)
	levels := float64(qmax)
	l1, h1 := m.searchApprox(levels)
	return m.refineExact(l1, h1, bits)
}

// mseModel is the histogram reduced to its occupied bins, for the error
// models of RangeMSE.
type mseModel struct {
	a, b, c []float64 // bin interval ∩ [Min, Max], and its centre
	n       []float64 // samples in the bin, exact zeros excluded
	// Prefix sums over bins [0, i): p0 = Σ n, p1 = Σ n·c, p2 = Σ n·(c² + w²/12);
	// suffix sums over bins [i, k): s0, s1, s2 likewise.
	p0, p1, p2 []float64
	s0, s1, s2 []float64
	lo, hi     float64 // min(Min, 0), max(Max, 0)
}

func newMSEModel(s *Stats) *mseModel {
	m := &mseModel{lo: min(float64(s.Min), 0), hi: max(float64(s.Max), 0)}
	occupied := 0
	for _, c := range s.counts {
		if c > 0 {
			occupied++
		}
	}
	m.a, m.b, m.c, m.n = make([]float64, 0, occupied), make([]float64, 0, occupied), make([]float64, 0, occupied), make([]float64, 0, occupied)
	w := math.Ldexp(1, s.exp)
	for i, cnt := range s.counts {
		g := s.base + int64(i)
		n := float64(cnt)
		if g == 0 {
			n -= float64(s.Zeros)
		}
		if n <= 0 {
			continue
		}
		a := max(float64(g)*w, float64(s.Min))
		b := min(float64(g+1)*w, float64(s.Max))
		m.a, m.b, m.c, m.n = append(m.a, a), append(m.b, b), append(m.c, (a+b)/2), append(m.n, n)
	}
	k := len(m.n)
	m.p0, m.p1, m.p2 = make([]float64, k+1), make([]float64, k+1), make([]float64, k+1)
	m.s0, m.s1, m.s2 = make([]float64, k+1), make([]float64, k+1), make([]float64, k+1)
	for i := range k {
		v := (m.b[i] - m.a[i]) * (m.b[i] - m.a[i]) / 12
		m.p0[i+1] = m.p0[i] + m.n[i]
		m.p1[i+1] = m.p1[i] + m.n[i]*m.c[i]
		m.p2[i+1] = m.p2[i] + m.n[i]*(m.c[i]*m.c[i]+v)
	}
	for i := k - 1; i >= 0; i-- {
		v := (m.b[i] - m.a[i]) * (m.b[i] - m.a[i]) / 12
		m.s0[i] = m.s0[i+1] + m.n[i]
		m.s1[i] = m.s1[i+1] + m.n[i]*m.c[i]
		m.s2[i] = m.s2[i+1] + m.n[i]*(m.c[i]*m.c[i]+v)
	}
	return m
}

// approx is stage 1's error model for the clip [lo, hi] on a grid of
// `levels` steps: bins whose centre lies outside are clipped; bins in the
// rounding cell of 0, |c| < step/2, round to 0 and cost their mean square;
// the other bins cost step²/12 per sample.
func (m *mseModel) approx(lo, hi, levels float64) float64 {
	step := (hi - lo) / levels
	jl := sort.SearchFloat64s(m.c, lo)                                   // bins [0, jl) have c < lo
	jh := sort.Search(len(m.c), func(i int) bool { return m.c[i] > hi }) // bins [jh, k) have c > hi
	zl := max(sort.SearchFloat64s(m.c, -step/2), jl)                     // zero cell: bins [zl, zh)
	zh := min(sort.SearchFloat64s(m.c, step/2), jh)
	e := (m.p0[jh] - m.p0[jl] - (m.p0[zh] - m.p0[zl])) * step * step / 12
	e += m.p2[zh] - m.p2[zl]
	// Σ n((c - hi)² + v) = S2 - 2·hi·S1 + hi²·S0 over the clipped bins.
	e += m.s2[jh] - 2*hi*m.s1[jh] + hi*hi*m.s0[jh]
	e += m.p2[jl] - 2*lo*m.p1[jl] + lo*lo*m.p0[jl]
	return e
}

// searchApprox is stage 1 of RangeMSE.
func (m *mseModel) searchApprox(levels float64) (lo, hi float64) {
	lo, hi = m.lo, m.hi
	best := m.approx(lo, hi, levels)
	for j := 1; j <= 12*16; j++ {
		t := math.Exp2(-float64(j) / 16)
		if e := m.approx(m.lo*t, m.hi*t, levels); e < best {
			best, lo, hi = e, m.lo*t, m.hi*t
		}
	}
	// Coordinate descent over occupied bin edges (and the extremes).
	for range 8 {
		moved := false
		if m.hi > 0 {
			for _, b := range m.b {
				if b > 0 && b != hi {
					if e := m.approx(lo, b, levels); e < best {
						best, hi, moved = e, b, true
					}
				}
			}
		}
		if m.lo < 0 {
			for _, a := range m.a {
				if a < 0 && a != lo {
					if e := m.approx(a, hi, levels); e < best {
						best, lo, moved = e, a, true
					}
				}
			}
		}
		if !moved {
			break
		}
	}
	return lo, hi
}

// exact is stage 2's error: Σ over bins of n·E[(x - fq(x))²] for x uniform
// on the bin, with fq the real quantizer qdq.Asymmetric(lo, hi, bits) (as
// float32 endpoints, which is what RangeMSE returns). Code k dequantizes to
// g_k = (k - zp)·d and takes the cell [g_k - d/2, g_k + d/2), the end cells
// extending to ±∞ (saturation); over a segment [x1, x2] of one cell,
// ∫(x - g)² dx = ((x2-g)³ - (x1-g)³)/3. Bins are sorted, so one forward walk
// over the cells serves all of them.
func (m *mseModel) exact(lo, hi float64, bits int) float64 {
	p := qdq.Asymmetric(float32(lo), float32(hi), bits)
	d, zp := float64(p.Scale), float64(p.ZeroPoint)
	qmax := float64(p.QMax)
	k := float64(p.QMin)
	upper := func(k float64) float64 { // upper edge of code k's cell
		if k >= qmax {
			return math.Inf(1)
		}
		return (k + 0.5 - zp) * d
	}
	ub := upper(k)
	var e float64
	for i, n := range m.n {
		a, b := m.a[i], m.b[i]
		for a >= ub {
			k++
			ub = upper(k)
		}
		if b <= a { // a point: Min == Max inside one bin
			g := (k - zp) * d
			e += n * (a - g) * (a - g)
			continue
		}
		var s float64
		x1, kk, kub := a, k, ub
		for {
			g := (kk - zp) * d
			u := x1 - g
			if b <= kub {
				v := b - g
				s += v*v*v - u*u*u
				break
			}
			v := kub - g
			s += v*v*v - u*u*u
			x1 = kub
			kk++
			kub = upper(kk)
		}
		e += n * s / (3 * (b - a))
	}
	return e
}

// refineExact is stage 2 of RangeMSE.
func (m *mseModel) refineExact(lo, hi float64, bits int) (float32, float32) {
	clampLo := func(v float64) float64 { return min(max(v, m.lo), 0) }
	clampHi := func(v float64) float64 { return max(min(v, m.hi), 0) }
	bestLo, bestHi := m.lo, m.hi // MinMax
	best := m.exact(bestLo, bestHi, bits)
	try := func(l, h float64) {
		if e := m.exact(l, h, bits); e < best {
			best, bestLo, bestHi = e, l, h
		}
	}
	try(lo, hi)
	lo, hi = bestLo, bestHi
	for j := -8; j <= 8; j++ {
		t := math.Exp2(float64(j) / 8)
		try(clampLo(lo*t), clampHi(hi*t))
	}
	for range 2 {
		lo, hi = bestLo, bestHi
		if m.hi > 0 {
			for j := -4; j <= 4; j++ {
				try(lo, clampHi(hi*math.Exp2(float64(j)/16)))
			}
		}
		lo, hi = bestLo, bestHi
		if m.lo < 0 {
			for j := -4; j <= 4; j++ {
				try(clampLo(lo*math.Exp2(float64(j)/16)), hi)
			}
		}
	}
	return float32(bestLo), float32(bestHi)
}
