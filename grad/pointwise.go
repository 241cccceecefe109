package grad

import (
	"fmt"
	"math"
	"slices"
)

// A QDQ graph spends most of its nodes on chains of element-wise steps
// with constant parameters: QuantizeLinear → Clip → DequantizeLinear, and
// srq's dual-region form, which is several such pairs joined by LeakyRelus.
// Recorded one op at a time, each would cost a pass over the tensor and a
// buffer forward and backward; Pointwise runs a whole chain as one pass,
// and its backward pass recomputes the chain per element to multiply the
// steps' local derivatives (the package's straight-through rule for the
// roundings).

// PointKind is one element-wise step.
type PointKind uint8

const (
	// PointQuantize is QuantizeLinear to codes held in float32:
	// clamp(round_half_even(x/A) + B, Lo, Hi); derivative 1/A inside
	// [Lo, Hi] (before the clamp), 0 outside.
	PointQuantize PointKind = iota
	// PointDequantize is DequantizeLinear of codes: (x − B)·A.
	PointDequantize
	// PointClip is Clip to [Lo, Hi]; derivative 1 inside, 0 outside.
	PointClip
	// PointLeaky is LeakyRelu with slope A below 0 (Relu: A = 0).
	PointLeaky
	// PointAdd, PointMul, PointDiv apply the constant A; PointRSub is A − x.
	PointAdd
	PointMul
	PointDiv
	PointRSub
	// PointSigmoid is the logistic function.
	PointSigmoid
	// PointSqrt is the square root; its derivative at 0 is taken as 0 (a
	// channel with no contrast, where IMDN's contrast-aware attention
	// takes it).
	PointSqrt
)

// Point is one step of a Pointwise chain.
type Point struct {
	Kind   PointKind
	A, B   float32
	Lo, Hi float32
}

// eval returns the step's output at x and its derivative there.
func (p Point) eval(x float32) (y, d float32) {
	switch p.Kind {
	case PointQuantize:
		q := float32(math.RoundToEven(float64(x/p.A))) + p.B
		if q < p.Lo {
			return p.Lo, 0
		}
		if q > p.Hi {
			return p.Hi, 0
		}
		return q, 1 / p.A
	case PointDequantize:
		return (x - p.B) * p.A, p.A
	case PointClip:
		if x < p.Lo {
			return p.Lo, 0
		}
		if x > p.Hi {
			return p.Hi, 0
		}
		return x, 1
	case PointLeaky:
		if x < 0 {
			return p.A * x, p.A
		}
		return x, 1
	case PointAdd:
		return x + p.A, 1
	case PointMul:
		return x * p.A, p.A
	case PointDiv:
		return x / p.A, 1 / p.A
	case PointRSub:
		return p.A - x, -1
	case PointSigmoid:
		s := sigmoid(x)
		return s, s * (1 - s)
	case PointSqrt:
		y := float32(math.Sqrt(float64(x)))
		if !(y > 0) {
			return y, 0
		}
		return y, 0.5 / y
	}
	return x, 1
}

// Check reports a step that cannot be evaluated (a zero or non-finite
// scale or divisor, an empty clip).
func (p Point) Check() error {
	switch p.Kind {
	case PointQuantize, PointDequantize, PointDiv:
		if p.A == 0 || math.IsNaN(float64(p.A)) || math.IsInf(float64(p.A), 0) {
			return fmt.Errorf("grad: element-wise step %d with scale %g", p.Kind, p.A)
		}
	}
	if (p.Kind == PointQuantize || p.Kind == PointClip) && !(p.Lo <= p.Hi) {
		return fmt.Errorf("grad: element-wise step %d with range [%g, %g]", p.Kind, p.Lo, p.Hi)
	}
	return nil
}

// pointBlock is the number of elements a Pointwise chain runs step by
// step: small enough to stay in cache, large enough that the switch on
// the step's kind is paid once per block, not per element.
const pointBlock = 2048

// Pointwise applies the chain of steps to every element of x. The
// gradient is the product of the steps' derivatives at each element,
// computed in the forward pass and kept (one float32 per element) when a
// gradient is wanted.
func (t *Tape) Pointwise(x *Var, chain []Point) (*Var, error) {
	if err := checkVars("Pointwise", x); err != nil {
		return nil, err
	}
	for _, p := range chain {
		if err := p.Check(); err != nil {
			return nil, err
		}
	}
	y := out(slices.Clone(x.Shape), x)
	var d []float32
	if y.needsGrad {
		d = make([]float32, len(x.Data))
	}
	n := len(x.Data)
	parallel((n+pointBlock-1)/pointBlock, t.Workers, func(_, lo, hi int) {
		for b := lo; b < hi; b++ {
			i0, i1 := b*pointBlock, min((b+1)*pointBlock, n)
			v := y.Data[i0:i1]
			copy(v, x.Data[i0:i1])
			var dv []float32
			if d != nil {
				dv = d[i0:i1]
				for i := range dv {
					dv[i] = 1
				}
			}
			for _, p := range chain {
				p.apply(v, dv)
			}
		}
	})
	t.recordElementwise(x, y, d)
	return y, nil
}

// recordElementwise records the backward step of an op whose output
// element i depends on input element i alone, with derivative d[i] (d
// nil: 1, a copy).
func (t *Tape) recordElementwise(x, y *Var, d []float32) {
	if !y.needsGrad {
		return
	}
	t.record(func() {
		if y.Grad == nil {
			return
		}
		dx := x.grad()
		if d == nil {
			for i, g := range y.Grad {
				dx[i] += g
			}
			return
		}
		for i, g := range y.Grad {
			dx[i] += g * d[i]
		}
	})
}

// apply runs the step on v in place and multiplies d (nil: not wanted)
// by its derivative.
func (p Point) apply(v, d []float32) {
	switch p.Kind {
	case PointDequantize:
		for i, x := range v {
			v[i] = (x - p.B) * p.A
		}
		scaleAll(d, p.A)
	case PointMul:
		for i, x := range v {
			v[i] = x * p.A
		}
		scaleAll(d, p.A)
	case PointAdd:
		for i, x := range v {
			v[i] = x + p.A
		}
	case PointLeaky:
		for i, x := range v {
			if x < 0 {
				v[i] = p.A * x
				if d != nil {
					d[i] *= p.A
				}
			}
		}
	default:
		for i, x := range v {
			y, dd := p.eval(x)
			v[i] = y
			if d != nil {
				d[i] *= dd
			}
		}
	}
}

func scaleAll(d []float32, a float32) {
	for i := range d {
		d[i] *= a
	}
}
