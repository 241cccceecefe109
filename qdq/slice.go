package qdq

import (
	"fmt"
)

// Integer is the set of integer containers a quantized tensor is stored in:
// ONNX INT8/UINT8/INT16/UINT16/INT32, and INT4/UINT4 unpacked one per byte.
type Integer interface {
	~int8 | ~uint8 | ~int16 | ~uint16 | ~int32
}

// containerRange returns the value range of T, derived from its size and
// signedness so that named types (~int8, ...) work too.
func containerRange[T Integer]() (lo, hi int64) {
	if T(0)-1 > 0 { // unsigned: wraps around
		return 0, int64(^T(0))
	}
	bits := 0 // value bits below the sign
	for v := T(1); v > 0; v <<= 1 {
		bits++
	}
	return -(int64(1) << bits), int64(1)<<bits - 1
}

// checkFits reports an error when p's grid does not fit in T, so a slice
// quantizer never wraps around silently.
func checkFits[T Integer](p Params) error {
	lo, hi := containerRange[T]()
	if int64(p.QMin) < lo || int64(p.QMax) > hi {
		return fmt.Errorf("qdq: grid [%d, %d] does not fit in a %T container", p.QMin, p.QMax, T(0))
	}
	return nil
}

func checkLen(dst, src int) error {
	if dst != src {
		return fmt.Errorf("qdq: destination has %d elements, source %d", dst, src)
	}
	return nil
}

// quantizer holds the per-call constants of the slice loops.
type quantizer struct {
	scale      float32
	lo, hi     float64 // QMin - ZeroPoint and QMax - ZeroPoint: the grid around 0
	zp         int32
	qmin, qmax int32
}

func newQuantizer(p Params) quantizer {
	return quantizer{
		scale: p.Scale,
		lo:    float64(p.QMin) - float64(p.ZeroPoint),
		hi:    float64(p.QMax) - float64(p.ZeroPoint),
		zp:    p.ZeroPoint,
		qmin:  p.QMin,
		qmax:  p.QMax,
	}
}

// roundMagic is 1.5·2^52: for |v| < 2^51, (v + roundMagic) - roundMagic is v
// rounded to an integer in the current rounding mode, which in Go is always
// round half to even.
const roundMagic = 1.5 * (1 << 52)

// q is Params.Quantize with the constants hoisted: saturation is decided on
// the quotient before rounding (as ORT's kernels do), which is equivalent
// because the bounds are integers, and leaves |v| < 2^32 for the rounding.
func (z *quantizer) q(x float32) int32 {
	v := float64(x / z.scale)
	if !(v > z.lo) { // also NaN
		return z.qmin
	}
	if v >= z.hi {
		return z.qmax
	}
	return int32(int64((v+roundMagic)-roundMagic) + int64(z.zp)) // int64: exact for any int32 grid
}

// QuantizeSlice sets dst[i] = p.Quantize(src[i]) (see Params.Quantize for
// the formula, rounding and NaN rule). It fails when the lengths differ or
// p's grid [QMin, QMax] does not fit in T. No allocation.
func QuantizeSlice[T Integer](dst []T, src []float32, p Params) error {
	if err := checkLen(len(dst), len(src)); err != nil {
		return err
	}
	if err := checkFits[T](p); err != nil {
		return err
	}
	z := newQuantizer(p)
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = T(z.q(x))
	}
	return nil
}

// QuantizeInt8 is QuantizeSlice for INT8 (and unpacked INT4) tensors.
func QuantizeInt8(dst []int8, src []float32, p Params) error { return QuantizeSlice(dst, src, p) }

// QuantizeUint8 is QuantizeSlice for UINT8 (and unpacked UINT4) tensors.
func QuantizeUint8(dst []uint8, src []float32, p Params) error { return QuantizeSlice(dst, src, p) }

// DequantizeSlice sets dst[i] = p.Dequantize(int32(src[i])) =
// float32(src[i] - ZeroPoint) * Scale. It fails when the lengths differ.
func DequantizeSlice[T Integer](dst []float32, src []T, p Params) error {
	if err := checkLen(len(dst), len(src)); err != nil {
		return err
	}
	dst = dst[:len(src)]
	for i, q := range src {
		dst[i] = float32(int32(q)-p.ZeroPoint) * p.Scale
	}
	return nil
}

// FakeQuantSlice sets dst[i] = p.FakeQuant(src[i]), the output of a Q→DQ
// pair; dst may be src. It fails when the lengths differ. No allocation.
func FakeQuantSlice(dst, src []float32, p Params) error {
	if err := checkLen(len(dst), len(src)); err != nil {
		return err
	}
	z := newQuantizer(p)
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = float32(z.q(x)-p.ZeroPoint) * p.Scale
	}
	return nil
}

// channelBlock returns the number of consecutive elements per channel of a
// tensor laid out [len(ps), ...] (axis 0), or an error when n does not split
// evenly into len(ps) channels.
func channelBlock(n int, ps []Params) (int, error) {
	if len(ps) == 0 || n%len(ps) != 0 {
		return 0, fmt.Errorf("qdq: %d elements do not split into %d channels", n, len(ps))
	}
	return n / len(ps), nil
}

// QuantizePerChannel quantizes a tensor laid out [C, ...] (axis 0, e.g. Conv
// weights OIHW) with ps[c] for the elements of channel c; len(src) must be a
// multiple of len(ps) = C and every grid must fit in T. No allocation.
func QuantizePerChannel[T Integer](dst []T, src []float32, ps []Params) error {
	if err := checkLen(len(dst), len(src)); err != nil {
		return err
	}
	block, err := channelBlock(len(src), ps)
	if err != nil {
		return err
	}
	for c, p := range ps {
		if err := QuantizeSlice(dst[c*block:(c+1)*block], src[c*block:(c+1)*block], p); err != nil {
			return fmt.Errorf("channel %d: %w", c, err)
		}
	}
	return nil
}

// FakeQuantPerChannel is FakeQuantSlice per channel of a tensor laid out
// [len(ps), ...] (axis 0); dst may be src. No allocation.
func FakeQuantPerChannel(dst, src []float32, ps []Params) error {
	if err := checkLen(len(dst), len(src)); err != nil {
		return err
	}
	block, err := channelBlock(len(src), ps)
	if err != nil {
		return err
	}
	for c, p := range ps {
		// Lengths match by construction, so this cannot fail.
		_ = FakeQuantSlice(dst[c*block:(c+1)*block], src[c*block:(c+1)*block], p)
	}
	return nil
}
