package grad

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLayoutAndPointwiseGradients: the layout ops and the smooth steps of a
// Pointwise chain against central differences; the rounding steps by the
// package's straight-through rule below.
func TestLayoutAndPointwiseGradients(t *testing.T) {
	smooth := []Point{
		{Kind: PointLeaky, A: 0.2}, {Kind: PointMul, A: 1.5}, {Kind: PointSigmoid},
		{Kind: PointAdd, A: 3}, {Kind: PointSqrt}, {Kind: PointDiv, A: 4}, {Kind: PointRSub, A: 1},
		{Kind: PointDequantize, A: 0.5, B: 2}, {Kind: PointClip, Lo: -5, Hi: 5},
	}
	for _, c := range []opCase{
		{name: "Transpose", shapes: [][]int{{2, 3, 4, 5}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Transpose(in[0], []int{0, 2, 3, 1}) }},
		{name: "Reshape", shapes: [][]int{{2, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Reshape(in[0], []int{6, 4}) }},
		{name: "Slice", shapes: [][]int{{2, 5, 7}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Slice(in[0], []int{0, 1, 2}, []int{2, 5, 7}, []int{1, 2, 3})
		}},
		{name: "Pointwise smooth chain", shapes: [][]int{{3, 17}}, kink: true, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Pointwise(in[0], smooth)
		}},
	} {
		t.Run(c.name, func(t *testing.T) { runOpCase(t, c) })
	}
}

// TestPointwiseQuantize: a QuantizeLinear → Clip → DequantizeLinear chain
// computes qdq's numbers (round half to even of the float32 quotient,
// saturation) and passes the gradient straight through inside the clip, 0
// outside.
func TestPointwiseQuantize(t *testing.T) {
	chain := []Point{
		{Kind: PointQuantize, A: 0.5, B: 10, Lo: 0, Hi: 255},
		{Kind: PointClip, Lo: 4, Hi: 15},
		{Kind: PointDequantize, A: 0.5, B: 10},
	}
	tp := NewTape()
	x, err := tp.Param([]int{6}, []float32{0.25, 0.75, -1.1, 1.3, -9, 9})
	require.NoError(t, err)
	y, err := tp.Pointwise(x, chain)
	require.NoError(t, err)
	// 0.25/0.5 = 0.5 → 0 (half to even); 0.75 → 1.5 → 2 → 1.0; −1.1 → −2.2
	// → −2 → −1.0; 1.3 → 2.6 → 3 → 1.5; ±9 clipped to codes 4 and 15.
	require.Equal(t, []float32{0, 1, -1, 1.5, -3, 2.5}, y.Data)
	require.NoError(t, tp.Backward(y, nil))
	require.Equal(t, []float32{1, 1, 1, 1, 0, 0}, x.Grad)
	_, err = tp.Pointwise(x, []Point{{Kind: PointQuantize, A: 0}})
	require.Error(t, err)
	_, err = tp.Pointwise(x, []Point{{Kind: PointClip, Lo: 1, Hi: float32(math.NaN())}})
	require.Error(t, err)
}
