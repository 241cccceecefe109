package calib

import (
	"fmt"
	"math"

	"github.com/srquant/srq/qdq"
)

// BreakpointMethod chooses the breakpoint of a dual-region quantizer.
type BreakpointMethod string

const (
	// BPSearch minimises the expected squared quantization error
	// E[(x − q(x))²] over the histogram: 81 breakpoints from max|x| down to
	// 2^−10·max|x| in steps of 2^(1/8), then 16 between the neighbours of
	// the best. With the strict accounting every tail/dense split is tried
	// at each breakpoint too. Breakpoint max|x| (no tail) is a candidate,
	// so the result is never worse than the uniform grid of the same range.
	BPSearch BreakpointMethod = "search"
	// BPPercentile starts at the P-th percentile of |x| (the published
	// method starts at P = 99 and learns from there).
	BPPercentile BreakpointMethod = "percentile"
)

// DualOptions configures RangeDual.
type DualOptions struct {
	Bits       int
	Accounting qdq.Accounting
	Breakpoint BreakpointMethod
	Percentile float64 // of |x|, for BPPercentile (e.g. 99)
	// BP, if positive, is the breakpoint itself (given by hand); it must
	// lie in (0, max|x|).
	BP float32
}

// Search grid of BPSearch.
const (
	bpCoarse  = 80 // breakpoints max|x|·2^(−i/8), i = 0..80
	bpPerStep = 8
	bpFine    = 16
)

// RangeDual returns the dual-region quantizer of a tensor from its
// calibration statistics: the range [min(Min, 0), max(Max, 0)] (nothing is
// clipped: the tails are what the quantizer is for) and the breakpoint of
// o. An all-zero tensor gets the range [0, 1] and no tail.
func RangeDual(s *Stats, o DualOptions) (qdq.Dual, error) {
	lo, hi := RangeMinMax(s)
	if !(hi > lo) {
		return qdq.NewDual(qdq.DualSpec{Lo: 0, Hi: 1, BP: 1, Bits: o.Bits, Accounting: o.Accounting})
	}
	amax := max(-lo, hi)
	spec := qdq.DualSpec{Lo: lo, Hi: hi, Bits: o.Bits, Accounting: o.Accounting}
	switch {
	case o.BP != 0:
		if !(o.BP > 0 && o.BP < amax) {
			return qdq.Dual{}, fmt.Errorf("breakpoint %g outside (0, %g), the range of |x|", o.BP, amax)
		}
		spec.BP = o.BP
		return qdq.NewDual(spec)
	case o.Breakpoint == BPPercentile:
		spec.BP = max(s.AbsPercentile(o.Percentile), amax*0x1p-10)
		return qdq.NewDual(spec)
	case o.Breakpoint == BPSearch:
		return searchDual(newMSEModel(s), spec, amax)
	}
	return qdq.Dual{}, fmt.Errorf("breakpoint method %q: want search or percentile", o.Breakpoint)
}

// searchDual is BPSearch.
func searchDual(m *mseModel, spec qdq.DualSpec, amax float32) (qdq.Dual, error) {
	splits := []int{0}
	if spec.Accounting == qdq.Strict {
		splits = splits[:0]
		for t := 1; t <= 1<<(spec.Bits-1)-1; t++ {
			splits = append(splits, t)
		}
	}
	var best qdq.Dual
	bestErr := math.Inf(1)
	var bestI int
	levels := make([]float64, 0, 512)
	try := func(bp float32) {
		for _, t := range splits {
			s := spec
			s.BP, s.TailLevels = bp, t
			d, err := qdq.NewDual(s)
			if err != nil {
				continue // this split leaves no dense codes
			}
			levels = levels[:0]
			for _, l := range d.Levels() {
				levels = append(levels, float64(l))
			}
			if e := m.levelsError(levels); e < bestErr {
				best, bestErr = d, e
			}
		}
	}
	for i := 0; i <= bpCoarse; i++ {
		before := bestErr
		try(amax * float32(math.Exp2(-float64(i)/bpPerStep)))
		if bestErr < before {
			bestI = i
		}
	}
	// Fine: between the coarse neighbours of the best breakpoint.
	hi := float64(amax) * math.Exp2(-float64(bestI-1)/bpPerStep)
	lo := float64(amax) * math.Exp2(-float64(bestI+1)/bpPerStep)
	for j := 1; j < bpFine; j++ {
		if bp := float32(lo + (hi-lo)*float64(j)/bpFine); bp < amax {
			try(bp)
		}
	}
	if math.IsInf(bestErr, 1) {
		return qdq.Dual{}, fmt.Errorf("no dual-region quantizer of %d bits fits [%g, %g]", spec.Bits, spec.Lo, spec.Hi)
	}
	return best, nil
}

// levelsError is the exact stage's error model (see exact) for any
// nearest-level quantizer with ascending levels: each bin's samples uniform
// over the bin, exact zeros a point mass at 0, which must be a level (it is
// for every quantizer srq builds). Level i takes the cell between the
// midpoints to its neighbours; the outermost cells extend to ±∞
// (saturation).
func (m *mseModel) levelsError(levels []float64) float64 {
	if len(levels) == 0 {
		return math.Inf(1)
	}
	k := 0
	upper := func(k int) float64 { // upper edge of level k's cell
		if k >= len(levels)-1 {
			return math.Inf(1)
		}
		return (levels[k] + levels[k+1]) / 2
	}
	ub := upper(k)
	var e float64
	for i, n := range m.n {
		a, b := m.a[i], m.b[i]
		for a >= ub {
			k++
			ub = upper(k)
		}
		if b <= a {
			d := a - levels[k]
			e += n * d * d
			continue
		}
		var s float64
		x1, kk, kub := a, k, ub
		for {
			g := levels[kk]
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
