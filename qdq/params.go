// Package qdq is srq's quantizer arithmetic, with the exact semantics of ONNX
// QuantizeLinear/DequantizeLinear as ONNX Runtime's CPU kernels compute them:
// x/scale in float32, round half to even, saturate to the integer grid.
//
// Everything is parameterised by the integer grid [QMin, QMax] (and so by the
// bit width), so the same code serves U8/S8 deploy models and the 2..8-bit
// simulation grids (ONNX INT4/UINT4 or clipped int8 containers).
package qdq

import (
	"fmt"
	"math"
)

// MinBits and MaxBits bound the bit widths the constructors accept. 16 is the
// widest QuantizeLinear integer type (INT16/UINT16, opset 21); below 2 bits a
// signed symmetric grid has no nonzero level.
const (
	MinBits = 2
	MaxBits = 16
)

// DegenerateScale is the scale the constructors return for an all-zero range
// (or one narrower than the smallest normal float32). Every sample of such a
// tensor quantizes to the zero point and dequantizes to exactly 0 whatever the
// scale; 1 (ONNX Runtime's own choice in quantize_static and
// DynamicQuantizeLinear) keeps unseen values representable and keeps bias
// scales (input scale × weight scale) far from float32 underflow.
const DegenerateScale float32 = 1

// CheckBits reports whether bits is a width the constructors accept.
func CheckBits(bits int) error {
	if bits < MinBits || bits > MaxBits {
		return fmt.Errorf("qdq: bit width %d outside [%d, %d]", bits, MinBits, MaxBits)
	}
	return nil
}

// clampBits maps an out-of-range width to the nearest valid one, so that the
// constructors never panic; configuration code is expected to call CheckBits.
func clampBits(bits int) int {
	return min(max(bits, MinBits), MaxBits)
}

// UnsignedRange returns the unsigned grid [0, 2^bits - 1] (bits clamped to
// [MinBits, MaxBits]).
func UnsignedRange(bits int) (qmin, qmax int32) {
	return 0, int32(1)<<clampBits(bits) - 1
}

// SignedRange returns the signed grid for bits (clamped to [MinBits, MaxBits]):
// with qmax = 2^(bits-1) - 1, the narrow range [-qmax, qmax] (symmetric, ONNX
// Runtime's convention for S8 weights) or the full range [-qmax-1, qmax].
func SignedRange(bits int, narrow bool) (qmin, qmax int32) {
	qmax = int32(1)<<(clampBits(bits)-1) - 1
	if narrow {
		return -qmax, qmax
	}
	return -qmax - 1, qmax
}

// Params is an affine quantizer on the integer grid [QMin, QMax]:
//
//	q = saturate(round_half_even(x / Scale) + ZeroPoint) to [QMin, QMax]
//	x̂ = (q - ZeroPoint) * Scale
//
// which are ONNX QuantizeLinear and DequantizeLinear. x/Scale is a float32
// division, as ONNX Runtime computes it (not x * (1/Scale), which differs in
// the last bit and so flips some ties). Valid Params have a finite Scale > 0,
// QMin < QMax and QMin <= ZeroPoint <= QMax.
type Params struct {
	Scale      float32
	ZeroPoint  int32
	QMin, QMax int32
}

// Validate reports why p is not a usable quantizer, naming the bad field.
func (p Params) Validate() error {
	s := float64(p.Scale)
	switch {
	case math.IsNaN(s) || math.IsInf(s, 0) || s <= 0:
		return fmt.Errorf("qdq: scale %g is not a finite positive number", p.Scale)
	case p.QMin >= p.QMax:
		return fmt.Errorf("qdq: empty integer grid [%d, %d]", p.QMin, p.QMax)
	case p.ZeroPoint < p.QMin || p.ZeroPoint > p.QMax:
		return fmt.Errorf("qdq: zero point %d outside grid [%d, %d]", p.ZeroPoint, p.QMin, p.QMax)
	}
	return nil
}

// Quantize returns saturate(round_half_even(x/Scale) + ZeroPoint) in
// [QMin, QMax]. ±Inf saturate to the matching end of the grid. NaN (and a
// NaN quotient from a NaN or zero scale with x = 0), which ONNX leaves
// undefined for integer outputs, maps to QMin, as ORT's SSE2 and NEON
// kernels do (their max(x, lower bound) returns the bound for NaN).
func (p Params) Quantize(x float32) int32 {
	z := newQuantizer(p)
	return z.q(x)
}

// Dequantize returns float32(q - ZeroPoint) * Scale, computed as ORT does:
// int32 subtraction, conversion to float32, one float32 multiply. q is not
// checked against [QMin, QMax].
func (p Params) Dequantize(q int32) float32 {
	return float32(q-p.ZeroPoint) * p.Scale
}

// FakeQuant returns Dequantize(Quantize(x)): the value a Q→DQ pair produces.
// For x inside the grid's range [(QMin-ZeroPoint)·Scale, (QMax-ZeroPoint)·Scale]
// the error |x - x̂| is at most Scale/2 (plus float32 rounding); outside it
// the output saturates to the nearest end.
func (p Params) FakeQuant(x float32) float32 {
	return p.Dequantize(p.Quantize(x))
}

// Range returns the representable interval [(QMin-ZeroPoint)·Scale,
// (QMax-ZeroPoint)·Scale], the smallest and largest values FakeQuant returns.
func (p Params) Range() (lo, hi float32) {
	return p.Dequantize(p.QMin), p.Dequantize(p.QMax)
}

// finite32 maps NaN to 0 and ±Inf to ±MaxFloat32 so that range endpoints
// coming from broken statistics never produce NaN or Inf parameters.
func finite32(x float32) float32 {
	switch {
	case x != x:
		return 0
	case x > math.MaxFloat32:
		return math.MaxFloat32
	case x < -math.MaxFloat32:
		return -math.MaxFloat32
	}
	return x
}

// Affine returns the quantizer mapping [lo, hi] onto the grid [qmin, qmax]
// (qmin < qmax; otherwise the grid [0, 1] is used):
//
//	lo' = min(lo, 0), hi' = max(hi, 0)        (0 must be exactly representable)
//	Scale = (hi' - lo') / (qmax - qmin)       (one rounding to float32)
//	ZeroPoint = round_half_even(qmin - lo'/Scale), clamped to [qmin, qmax]
//
// This is ONNX Runtime's quantize_static / DynamicQuantizeLinear rule. When
// (hi'-lo')/(qmax-qmin) is below the smallest normal float32 (all-zero
// range), Scale = DegenerateScale and ZeroPoint = the grid point nearest 0.
// NaN endpoints count as 0 and ±Inf as ±MaxFloat32; the result is always a
// valid Params.
func Affine(lo, hi float32, qmin, qmax int32) Params {
	if qmin >= qmax {
		qmin, qmax = 0, 1
	}
	lo, hi = min(finite32(lo), 0), max(finite32(hi), 0)
	scale := float32((float64(hi) - float64(lo)) / (float64(qmax) - float64(qmin)))
	scale = min(scale, math.MaxFloat32)              // only a one-step grid over ±MaxFloat32 overflows
	if scale < math.SmallestNonzeroFloat32*(1<<23) { // below the smallest normal
		return Params{Scale: DegenerateScale, ZeroPoint: min(max(0, qmin), qmax), QMin: qmin, QMax: qmax}
	}
	zp := math.RoundToEven(float64(qmin) - float64(lo)/float64(scale))
	zp = min(max(zp, float64(qmin)), float64(qmax))
	return Params{Scale: scale, ZeroPoint: int32(zp), QMin: qmin, QMax: qmax}
}

// Asymmetric returns the unsigned quantizer for [lo, hi] on [0, 2^bits - 1]
// (bits clamped to [MinBits, MaxBits]): Affine(lo, hi, 0, 2^bits-1), so
// Scale = (max(hi,0) - min(lo,0)) / (2^bits - 1) and ZeroPoint =
// round_half_even(-min(lo,0)/Scale). This is the U8 activation quantizer
// (bits = 8) and its UINT4 / clipped-uint8 low-bit variants.
func Asymmetric(lo, hi float32, bits int) Params {
	qmin, qmax := UnsignedRange(bits)
	return Affine(lo, hi, qmin, qmax)
}

// Symmetric returns the signed quantizer with ZeroPoint 0 and
// Scale = |absmax| / qmax, qmax = 2^(bits-1) - 1 (bits clamped to
// [MinBits, MaxBits]), on [-qmax, qmax] when narrow (ORT's S8 weight
// convention: the grid is symmetric, ±absmax exactly representable) or on
// [-qmax-1, qmax] otherwise (the extra code is one more step of negative
// headroom; the scale is the same). absmax = 0 (or below qmax times the
// smallest normal float32) gives Scale = DegenerateScale; NaN counts as 0 and
// Inf as MaxFloat32.
func Symmetric(absmax float32, bits int, narrow bool) Params {
	qmin, qmax := SignedRange(bits, narrow)
	a := finite32(absmax)
	if a < 0 {
		a = -a
	}
	scale := a / float32(qmax)
	if scale < math.SmallestNonzeroFloat32*(1<<23) {
		scale = DegenerateScale
	}
	return Params{Scale: scale, ZeroPoint: 0, QMin: qmin, QMax: qmax}
}
