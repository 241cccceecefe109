package qdq

import (
	"fmt"
	"math"

	"github.com/srquant/srq/internal/enum"
)

// Accounting says how a dual-region quantizer spends its b bits. Reports and
// model metadata name it, because the two differ by about one bit.
type Accounting string

const (
	// Reference is the accounting of the published code: a b-bit dense grid
	// (2^b codes) plus an unsigned (b−1)-bit grid on each tail (2^(b−1) − 1
	// levels beyond the breakpoint), so a "4-bit" tensor has up to
	// 16 + 7 + 7 levels. Use it to compare with the paper's tables.
	Reference Accounting = "reference"
	// Strict spends at most 2^b levels in all, dense region and tails
	// together, so a "4-bit" tensor really fits in 4 bits. By default each
	// tail gets max(1, 2^(b−2) − 1) levels (the paper's text) and the dense
	// region the rest.
	Strict Accounting = "strict"
)

// ParseAccounting checks an --accounting value.
func ParseAccounting(s string) (Accounting, error) {
	return enum.Parse("bit accounting", s, Reference, Strict)
}

// DualSpec describes a dual-region quantizer before its grids are built.
type DualSpec struct {
	Lo, Hi float32 // the range; Lo <= 0 <= Hi, Lo < Hi
	// BP is the breakpoint, > 0: the dense region is [−BP, BP] ∩ [Lo, Hi],
	// the tails are what lies beyond. BP >= max(−Lo, Hi) leaves no tail: the
	// quantizer is then the uniform one of [Lo, Hi].
	BP         float32
	Bits       int // 2..8
	Accounting Accounting
	// TailLevels, for Strict only, is the number of levels each tail gets
	// beyond the breakpoint (0: the default split); the dense region gets
	// the remaining codes.
	TailLevels int
}

// Dual is the outlier-aware dual-region quantizer: a dense uniform grid on
// the region around 0 that holds almost all values, and a coarser uniform
// grid on each tail, for the rare large values that carry an SR network's
// colour. Written as parts:
//
//	FakeQuant(x) = Dense.FakeQuant(x) + Tail.FakeQuant(x − Clip(x, BPLo, BPHi))
//
// Dense saturates to its window, whose end levels are the breakpoints BPLo
// <= 0 < BPHi; the residual is 0 inside them, and the Tail grid rounds it in
// steps of K dense steps (K a whole number, so that every level is a
// multiple of the dense step and the quantizer can run on one 8-bit grid
// when the range allows, see Fine; and odd, so that no point of that grid
// lies halfway between two tail levels, where float rounding, not the
// quantizer, would decide). Both tails share the step: the longer tail gets
// the accounting's levels, the shorter one as many as it needs.
//
// Errors: inside the dense region at most half a dense step; in a tail at
// most half a tail step; beyond the outermost level, the distance to it
// (saturation). The quantizer is monotone, exact on its levels, and rounds
// to the nearest level (ties as ONNX: half to even, in code space).
type Dual struct {
	Dense Params // dense grid, codes [QMin, QMax] in a uint8
	// Tail rounds the residual: Scale = K·Dense.Scale, ZeroPoint = NLo,
	// codes [0, NLo+NHi]. Unused when NLo+NHi == 0.
	Tail     Params
	K        int // tail step in dense steps
	NLo, NHi int // levels below BPLo and above BPHi
	Spec     DualSpec
}

// NewDual builds the dual-region quantizer of spec.
//
//  1. Dense region [dl, du] = [max(Lo, −BP), min(Hi, BP)], quantized by
//     Affine(dl, du, 0, n−1) (zero exactly representable, as srq's uniform
//     quantizer): n = 2^b codes (Reference) or 2^b minus the tail levels
//     (Strict). Its end levels are the breakpoints BPLo and BPHi.
//  2. Tails: t levels each (Reference 2^(b−1) − 1; Strict TailLevels or
//     max(1, 2^(b−2) − 1)); step K·s with s the dense step and K the
//     smallest odd whole number for which t steps cover the longer tail
//     (Hi − BPHi or BPLo − Lo); the shorter tail gets
//     ceil(length / (K·s)) levels.
func NewDual(spec DualSpec) (Dual, error) {
	d := Dual{Spec: spec}
	b := spec.Bits
	if err := checkActBits(b); err != nil {
		return d, err
	}
	lo, hi, bp := float64(spec.Lo), float64(spec.Hi), float64(spec.BP)
	switch {
	case !finite(lo) || !finite(hi) || lo > 0 || hi < 0 || !(hi > lo):
		return d, fmt.Errorf("qdq: dual-region range [%g, %g] must be finite with lo <= 0 <= hi, lo < hi", spec.Lo, spec.Hi)
	case !finite(bp) || !(bp > 0):
		return d, fmt.Errorf("qdq: breakpoint %g must be a finite positive number", spec.BP)
	case spec.TailLevels < 0:
		return d, fmt.Errorf("qdq: %d tail levels", spec.TailLevels)
	}
	// A side has a tail when its end lies beyond the breakpoint; the other
	// side saturates at its dense end level (within half a dense step of
	// its end, as Affine rounds the zero point).
	upperTail, lowerTail := hi > bp, lo < -bp
	tails := 0
	if upperTail {
		tails++
	}
	if lowerTail {
		tails++
	}
	var dense, t int
	switch spec.Accounting {
	case Reference:
		if spec.TailLevels != 0 {
			return d, fmt.Errorf("qdq: the reference accounting fixes the tail levels at 2^(b-1)-1; TailLevels is for strict")
		}
		dense, t = 1<<b, 1<<(b-1)-1
	case Strict:
		t = spec.TailLevels
		if t == 0 {
			t = max(1, 1<<(b-2)-1)
		}
		dense = 1<<b - tails*t
		if dense < 2 {
			return d, fmt.Errorf("qdq: %d tail levels leave %d of the %d codes of %d bits to the dense region", t, dense, 1<<b, b)
		}
	default:
		return d, fmt.Errorf("qdq: bit accounting %q: want reference or strict", spec.Accounting)
	}
	d.Dense = Affine(float32(max(lo, -bp)), float32(min(hi, bp)), 0, int32(dense-1))
	bpLo, bpHi := d.BPLo(), d.BPHi()
	s := float64(d.Dense.Scale)
	var upper, lower float64
	if upperTail {
		upper = max(hi-float64(bpHi), 0)
	}
	if lowerTail {
		lower = max(float64(bpLo)-lo, 0)
	}
	if max(upper, lower) == 0 {
		return d, nil
	}
	d.K = max(1, int(math.Ceil(max(upper, lower)/(float64(t)*s))))
	if d.K%2 == 0 {
		d.K++ // odd: no code of the fine grid lies halfway between two tail levels
	}
	step := float64(d.K) * s
	levels := func(length float64) int {
		if length <= 0 {
			return 0
		}
		return min(t, int(math.Ceil(length/step)))
	}
	d.NHi, d.NLo = levels(upper), levels(lower)
	d.Tail = Params{Scale: float32(d.K) * d.Dense.Scale, ZeroPoint: int32(d.NLo), QMin: 0, QMax: int32(d.NLo + d.NHi)}
	return d, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// BPLo and BPHi are the breakpoints: the dense grid's end levels.
func (d Dual) BPLo() float32 { return d.Dense.Dequantize(d.Dense.QMin) }
func (d Dual) BPHi() float32 { return d.Dense.Dequantize(d.Dense.QMax) }

// HasTail reports whether any level lies beyond the dense region.
func (d Dual) HasTail() bool { return d.NLo+d.NHi > 0 }

func (d Dual) Kind() Kind { return KindDual }
func (d Dual) Bits() int  { return d.Spec.Bits }

func (d Dual) Parts() []Part {
	ps := []Part{{Params: d.Dense}}
	if d.HasTail() {
		ps = append(ps, Part{Params: d.Tail, Residual: true, Lo: d.BPLo(), Hi: d.BPHi()})
	}
	return ps
}

func (d Dual) FakeQuant(x float32) float32 {
	y := d.Dense.FakeQuant(x)
	if !d.HasTail() {
		return y
	}
	r := x - min(max(x, d.BPLo()), d.BPHi())
	return y + d.Tail.FakeQuant(r)
}

func (d Dual) Levels() []float32 {
	out := make([]float32, 0, int(d.Dense.QMax-d.Dense.QMin)+1+d.NLo+d.NHi)
	lo, hi := d.BPLo(), d.BPHi()
	for j := d.NLo; j >= 1; j-- {
		out = append(out, lo+d.Tail.Dequantize(int32(d.NLo-j)))
	}
	for q := d.Dense.QMin; q <= d.Dense.QMax; q++ {
		out = append(out, d.Dense.Dequantize(q))
	}
	for j := 1; j <= d.NHi; j++ {
		out = append(out, hi+d.Tail.Dequantize(int32(d.NLo+j)))
	}
	return out
}

// Fine returns the uint8 grid of step Dense.Scale on which every level is a
// code, when its span, (dense codes − 1) + (NLo + NHi)·K steps, is at most
// 255. The fine codes of the dense levels are consecutive; the tail levels
// are every K-th code beyond them.
func (d Dual) Fine() (Params, bool) {
	span := d.FineSpan()
	if span > 255 {
		return Params{}, false
	}
	zp := d.Dense.ZeroPoint - d.Dense.QMin + int32(d.NLo*d.K)
	return Params{Scale: d.Dense.Scale, ZeroPoint: zp, QMin: 0, QMax: int32(span)}, true
}

// FineTails returns the fine codes of BPLo and BPHi and the tail step K (see
// Quantizer.FineTails); meaningful when Fine is.
func (d Dual) FineTails() (lo, hi int32, k int) {
	lo = int32(d.NLo * d.K)
	hi = lo + d.Dense.QMax - d.Dense.QMin
	return lo, hi, max(d.K, 1)
}

// FineSpan returns the number of dense steps the levels span.
func (d Dual) FineSpan() int { return int(d.Dense.QMax-d.Dense.QMin) + (d.NLo+d.NHi)*d.K }

// bpFactors scale the breakpoint in Neighbours.
var bpFactors = []float64{0.6, 0.75, 0.9, 1, 1.1, 1.25, 1.5}

func (d Dual) Neighbours() []Quantizer {
	bp := float64(max(-d.BPLo(), d.BPHi()))
	var out []Quantizer
	for _, f := range bpFactors {
		spec := d.Spec
		spec.BP = float32(bp * f)
		if spec.BP <= 0 || spec.BP >= max(-spec.Lo, spec.Hi) {
			continue
		}
		if n, err := NewDual(spec); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func (d Dual) String() string {
	return fmt.Sprintf("dual %d-bit %s [%.4g, %.4g] bp %.4g/%.4g dense step %.4g (%d codes) tail step %dx (%d+%d levels)",
		d.Spec.Bits, d.Spec.Accounting, d.Spec.Lo, d.Spec.Hi, d.BPLo(), d.BPHi(), d.Dense.Scale, d.Dense.QMax-d.Dense.QMin+1, d.K, d.NLo, d.NHi)
}
