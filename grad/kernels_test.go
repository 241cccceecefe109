package grad

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeKernels is GoConv that counts its calls, declines (ok=false) or fails
// the products named.
type fakeKernels struct {
	GoConv
	calls            map[string]int
	decline, failing map[string]bool
}

func (k *fakeKernels) do(op string, f func() (bool, error)) (bool, error) {
	k.calls[op]++
	switch {
	case k.failing[op]:
		return false, errors.New(op + " failed")
	case k.decline[op]:
		return false, nil
	}
	return f()
}

func (k *fakeKernels) Forward(x, w []float32, xs, ws []int, o ConvOpts, y []float32) (bool, error) {
	return k.do("fwd", func() (bool, error) { return k.GoConv.Forward(x, w, xs, ws, o, y) })
}

func (k *fakeKernels) BackwardData(dy, w []float32, xs, ws []int, o ConvOpts, dx []float32) (bool, error) {
	return k.do("dx", func() (bool, error) { return k.GoConv.BackwardData(dy, w, xs, ws, o, dx) })
}

func (k *fakeKernels) BackwardWeight(x, dy []float32, xs, ws []int, o ConvOpts, dw []float32) (bool, error) {
	return k.do("dw", func() (bool, error) { return k.GoConv.BackwardWeight(x, dy, xs, ws, o, dw) })
}

// convGrads runs Conv(x, w, b), then Relu, and Backward from a fixed dY
// seed on a fresh tape with kernels k (nil: Go), and returns y and the
// three gradients, with the error Backward returned.
func convGrads(t *testing.T, k ConvKernels, xs, ws []int, o ConvOpts) (y, dx, dw, db []float32, err error) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	tp := NewTape()
	tp.Kernels = k
	x, _ := tp.Param(xs, randn(rng, size(xs), 1))
	w, _ := tp.Param(ws, randn(rng, size(ws), 0.3))
	b, _ := tp.Param([]int{ws[0]}, randn(rng, ws[0], 0.1))
	x.Grad = randn(rng, size(xs), 1) // gradients accumulate onto what is there
	yv, err := tp.Conv(x, w, b, o)
	require.NoError(t, err)
	r := tp.Relu(yv)
	err = tp.Backward(r, randn(rng, r.Len(), 1))
	return yv.Data, x.Grad, w.Grad, b.Grad, err
}

// TestTapeConvKernels: a Tape's Conv runs each product on its Kernels,
// falls back to Go for the ones they decline, and reports their errors; the
// numbers are the Go kernels' throughout.
func TestTapeConvKernels(t *testing.T) {
	for _, c := range convCases() {
		t.Run(c.name, func(t *testing.T) {
			y0, dx0, dw0, db0, err := convGrads(t, nil, c.x, c.w, c.o)
			require.NoError(t, err)
			for _, declined := range []string{"", "fwd", "dx", "dw"} {
				k := &fakeKernels{GoConv: GoConv{Workers: 2}, calls: map[string]int{}, decline: map[string]bool{declined: true}}
				y, dx, dw, db, err := convGrads(t, k, c.x, c.w, c.o)
				require.NoError(t, err)
				require.Equal(t, map[string]int{"fwd": 1, "dx": 1, "dw": 1}, k.calls)
				for _, pair := range [][2][]float32{{y0, y}, {dx0, dx}, {dw0, dw}, {db0, db}} {
					require.InDeltaSlice(t, pair[0], pair[1], 1e-4, "declined %q", declined)
				}
			}
		})
	}
	c := convCases()[0]
	k := &fakeKernels{calls: map[string]int{}, failing: map[string]bool{"dw": true}}
	_, _, _, _, err := convGrads(t, k, c.x, c.w, c.o)
	require.ErrorContains(t, err, "weight gradient: dw failed")
	tp := NewTape()
	tp.Kernels = &fakeKernels{calls: map[string]int{}, failing: map[string]bool{"fwd": true}}
	x, _ := tp.Const(c.x, make([]float32, size(c.x)))
	w, _ := tp.Param(c.w, make([]float32, size(c.w)))
	_, err = tp.Conv(x, w, nil, c.o)
	require.ErrorContains(t, err, "fwd failed")
}
