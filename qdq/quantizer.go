package qdq

import (
	"fmt"
	"math"
)

// Quantizer is an activation quantizer: a non-decreasing step function from
// float32 onto a finite, sorted set of levels, built from ONNX
// QuantizeLinear/DequantizeLinear arithmetic so that a graph can compute it
// exactly. The kinds (Uniform, Dual) are values behind this interface:
// calibration asks a quantizer for its levels to measure its error, and the
// graph passes ask it for its parts and its fine grid to write it in ONNX.
// Nothing outside qdq switches on the kind.
type Quantizer interface {
	// Kind names the family in reports and model metadata.
	Kind() Kind
	// FakeQuant returns the level x maps to: the sum over Parts of each
	// part's Q→Clip→DQ output, in float32 as ONNX Runtime computes it.
	FakeQuant(x float32) float32
	// Levels returns the distinct values FakeQuant can return, ascending.
	// Every decision boundary lies halfway between two adjacent levels.
	Levels() []float32
	// Parts decomposes the quantizer into uniform pieces; FakeQuant is their
	// sum. A graph writes each part as QuantizeLinear → Clip (codes) →
	// DequantizeLinear on a uint8 container, on x or on its residual.
	Parts() []Part
	// Fine returns one 8-bit grid (uint8, scale and zero point) on which
	// every level is a code, if there is one: then a graph that rounds x to
	// the levels in float and quantizes the result with Fine feeds ORT's
	// int8 kernels the exact levels. ok is false when the levels do not fit
	// on one grid of at most 256 codes.
	Fine() (grid Params, ok bool)
	// FineTails says which codes of the Fine grid are levels: every code
	// in [lo, hi] (the dense region) and every k-th code beyond them, to
	// the ends of the grid's window. A uniform grid is all dense (k = 1).
	FineTails() (lo, hi int32, k int)
	// FineSpan is the number of steps of the finest grid that the levels
	// span: Fine needs it to be at most 255.
	FineSpan() int
	// Neighbours returns quantizers of the same kind and width around this
	// one, for a search of its free parameters: a uniform grid with each end
	// of its range pulled in (the clip), a dual-region one with its
	// breakpoint moved (its range already holds every value).
	Neighbours() []Quantizer
	// Bits is the nominal width (the b of a "b-bit" setting).
	Bits() int
	// String describes the quantizer in one line for reports.
	String() string
}

// Kind names a quantizer family.
type Kind string

const (
	KindUniform Kind = "uniform"
	KindDual    Kind = "dual"
)

// Part is one uniform piece of a Quantizer, written in ONNX as
//
//	DequantizeLinear(Clip(QuantizeLinear(in, Scale, ZeroPoint), QMin, QMax), Scale, ZeroPoint)
//
// on a uint8 container (QMin >= 0; the Clip is left out when [QMin, QMax] is
// [0, 255]). in is the quantizer's input x, or with Residual its residual
// r = x − Clip(x, Lo, Hi): zero inside [Lo, Hi], the overshoot outside (the
// tails of a dual-region quantizer).
type Part struct {
	Params
	Residual bool
	Lo, Hi   float32 // the clip of the residual (Residual only)
}

// input returns the value the part quantizes.
func (p Part) input(x float32) float32 {
	if !p.Residual {
		return x
	}
	return x - min(max(x, p.Lo), p.Hi)
}

// FakeQuant returns the part's output for the quantizer input x.
func (p Part) FakeQuant(x float32) float32 { return p.Params.FakeQuant(p.input(x)) }

// Uniform is the uniform (affine) quantizer of Params: Scale, ZeroPoint and
// the code window [QMin, QMax] (2^b codes for a b-bit grid). It is its own
// single part and its own fine grid when the window fits in a uint8.
type Uniform struct {
	Params
	bits int
}

// NewUniform returns the b-bit uniform quantizer of [lo, hi]: Asymmetric(lo,
// hi, bits), codes [0, 2^bits − 1] in a uint8 container. bits must be in
// [MinBits, 8].
func NewUniform(lo, hi float32, bits int) (Uniform, error) {
	if err := checkActBits(bits); err != nil {
		return Uniform{}, err
	}
	return Uniform{Params: Asymmetric(lo, hi, bits), bits: bits}, nil
}

// UniformOf wraps existing Params (a window inside [0, 255]) as a Quantizer
// of nominal width bits.
func UniformOf(p Params, bits int) Uniform { return Uniform{Params: p, bits: bits} }

// checkActBits accepts the activation widths a uint8 container holds.
func checkActBits(bits int) error {
	if bits < MinBits || bits > 8 {
		return fmt.Errorf("qdq: activation bit width %d outside [%d, 8]", bits, MinBits)
	}
	return nil
}

func (u Uniform) Kind() Kind                  { return KindUniform }
func (u Uniform) Bits() int                   { return u.bits }
func (u Uniform) Parts() []Part               { return []Part{{Params: u.Params}} }
func (u Uniform) FakeQuant(x float32) float32 { return u.Params.FakeQuant(x) }

func (u Uniform) FineTails() (lo, hi int32, k int) { return u.QMin, u.QMax, 1 }
func (u Uniform) FineSpan() int                    { return int(u.QMax - u.QMin) }

// clipFactors scale each end of a uniform range in Neighbours.
var clipFactors = []float64{0.6, 0.8, 1}

func (u Uniform) Neighbours() []Quantizer {
	lo, hi := u.Range()
	var out []Quantizer
	for _, f := range clipFactors {
		for _, g := range clipFactors {
			if n, err := NewUniform(lo*float32(f), hi*float32(g), u.bits); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func (u Uniform) Fine() (Params, bool) {
	return u.Params, u.QMin >= 0 && u.QMax <= 255
}

func (u Uniform) Levels() []float32 {
	out := make([]float32, 0, u.QMax-u.QMin+1)
	for q := u.QMin; q <= u.QMax; q++ {
		out = append(out, u.Dequantize(q))
	}
	return out
}

func (u Uniform) String() string {
	lo, hi := u.Range()
	return fmt.Sprintf("uniform %d-bit [%.4g, %.4g] scale %.4g zero %d", u.bits, lo, hi, u.Scale, u.ZeroPoint)
}

// sumParts is FakeQuant for any quantizer made of parts.
func sumParts(ps []Part, x float32) float32 {
	var y float32
	for i, p := range ps {
		if i == 0 {
			y = p.FakeQuant(x)
		} else {
			y += p.FakeQuant(x)
		}
	}
	return y
}

// CodeCount returns the number of levels of q, and ceil(log2) of it: the bits
// a code of q really needs.
func CodeCount(q Quantizer) (codes, bits int) {
	codes = len(q.Levels())
	bits = int(math.Ceil(math.Log2(float64(max(codes, 2)))))
	return codes, bits
}
