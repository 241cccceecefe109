package grad

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// randn returns n values ~ N(0, 1)·scale from a fixed seed.
func randn(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// awayFromZero moves values within margin of 0 out to ±margin, so that a
// finite difference does not straddle the kink of Relu-like ops.
func awayFromZero(v []float32, margin float32) {
	for i, x := range v {
		if x > -margin && x < margin {
			if x < 0 {
				v[i] = x - margin
			} else {
				v[i] = x + margin
			}
		}
	}
}

// fdCheck compares the gradient Backward gives each of params with central
// differences of eval, the loss Σ y·r for fixed random weights r (so every
// output element's gradient counts). eval must recompute the output from the
// current values of the params' Data (fdCheck perturbs them in place);
// analytic runs the op once on a tape and returns its output. Differences
// are taken in float64 on eval's result; eps is the step, and an entry
// passes when |analytic − numeric| <= atol + rtol·max(|a|, |n|).
func fdCheck(t *testing.T, params []*Var, analytic func(*Tape) (*Var, error), eval func() ([]float32, error), eps, atol, rtol float64) {
	t.Helper()
	tp := NewTape()
	y, err := analytic(tp)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(99, 7))
	r := randn(rng, len(y.Data), 1)
	for _, p := range params {
		p.Grad = nil
	}
	require.NoError(t, tp.Backward(y, r))
	loss := func() float64 {
		out, err := eval()
		require.NoError(t, err)
		require.Len(t, out, len(r))
		var s float64
		for i, v := range out {
			s += float64(v) * float64(r[i])
		}
		return s
	}
	for pi, p := range params {
		require.NotNil(t, p.Grad, "param %d got no gradient", pi)
		for i := range p.Data {
			orig := p.Data[i]
			h := float32(eps)
			p.Data[i] = orig + h
			lp := loss()
			p.Data[i] = orig - h
			lm := loss()
			p.Data[i] = orig
			// the step actually taken in float32
			num := (lp - lm) / (float64(orig+h) - float64(orig-h))
			a := float64(p.Grad[i])
			tol := atol + rtol*math.Max(math.Abs(a), math.Abs(num))
			if math.Abs(a-num) > tol {
				t.Errorf("param %d %v element %d: analytic %.6g, numeric %.6g", pi, p.Shape, i, a, num)
				return
			}
		}
	}
}

// opCase is an op on random Param inputs.
type opCase struct {
	name   string
	shapes [][]int
	kink   bool // inputs kept away from 0 (Relu, LeakyRelu, PRelu, MaxPool ties)
	build  func(tp *Tape, in []*Var) (*Var, error)
}

func runOpCase(t *testing.T, c opCase) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(c.name)), 11))
	params := make([]*Var, len(c.shapes))
	tp := NewTape()
	for i, s := range c.shapes {
		d := randn(rng, size(s), 1)
		if c.kink {
			awayFromZero(d, 0.02)
		}
		v, err := tp.Param(s, d)
		require.NoError(t, err)
		params[i] = v
	}
	eval := func() ([]float32, error) {
		tp := NewTape()
		y, err := c.build(tp, params)
		if err != nil {
			return nil, err
		}
		return y.Data, nil
	}
	fdCheck(t, params, func(tp *Tape) (*Var, error) { return c.build(tp, params) }, eval, 1e-3, 3e-3, 1e-2)
}
