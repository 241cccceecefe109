package ortconv

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/grad"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

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

// requireClose: max |want − got| within float32 summation-order noise.
func requireClose(t testing.TB, want, got []float32, what string) {
	t.Helper()
	require.Len(t, got, len(want), what)
	var diff, scale float64
	for i := range want {
		diff = math.Max(diff, math.Abs(float64(want[i])-float64(got[i])))
		scale = math.Max(scale, math.Abs(float64(want[i])))
	}
	require.LessOrEqual(t, diff, 1e-5*math.Max(scale, 1), "%s: max |Go − ORT| %g of max %g", what, diff, scale)
}

var cases = []struct {
	name string
	x, w []int
	o    grad.ConvOpts
}{
	{"3x3 pad 1", []int{2, 8, 12, 12}, []int{8, 8, 3, 3}, grad.ConvOpts{Pads: [4]int{1, 1, 1, 1}}},
	{"stride 2 pad 1, odd size", []int{2, 4, 11, 11}, []int{6, 4, 3, 3}, grad.ConvOpts{Strides: [2]int{2, 2}, Pads: [4]int{1, 1, 1, 1}}},
	{"stride 2 pad 1, even size (output_padding)", []int{2, 4, 10, 10}, []int{6, 4, 3, 3}, grad.ConvOpts{Strides: [2]int{2, 2}, Pads: [4]int{1, 1, 1, 1}}},
	{"stride 2 no pad, a row unread", []int{1, 3, 10, 9}, []int{4, 3, 3, 3}, grad.ConvOpts{Strides: [2]int{2, 2}}},
	{"dilation 2 pad 2", []int{1, 3, 10, 9}, []int{5, 3, 3, 3}, grad.ConvOpts{Dilations: [2]int{2, 2}, Pads: [4]int{2, 2, 2, 2}}},
	{"dilation 2x1 asymmetric pads", []int{1, 3, 8, 7}, []int{5, 3, 3, 2}, grad.ConvOpts{Dilations: [2]int{2, 1}, Pads: [4]int{2, 1, 1, 0}}},
	{"1x1 stride 2x1", []int{3, 5, 5, 6}, []int{7, 5, 1, 1}, grad.ConvOpts{Strides: [2]int{2, 1}}},
	{"groups 2 stride 2 dilation 2 pad 2", []int{2, 4, 9, 9}, []int{4, 2, 3, 3}, grad.ConvOpts{Group: 2, Strides: [2]int{2, 2}, Dilations: [2]int{2, 2}, Pads: [4]int{2, 2, 2, 2}}},
	{"depthwise pad 1", []int{2, 4, 6, 6}, []int{4, 1, 3, 3}, grad.ConvOpts{Group: 4, Pads: [4]int{1, 1, 1, 1}}},
	{"EDSR body 64→64 3x3", []int{2, 64, 24, 24}, []int{64, 64, 3, 3}, grad.ConvOpts{Pads: [4]int{1, 1, 1, 1}}},
}

// TestKernelsMatchGo: Kernels' forward, dX and dW (accumulated onto what
// the gradients held) equal grad.GoConv's, and the swapped-Conv dW graph
// the taps one where it applies.
func TestKernelsMatchGo(t *testing.T) {
	orttest.Require(t)
	k := New(Options{})
	t.Cleanup(func() { require.NoError(t, k.Close()) })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(21, 22))
			ys, err := grad.ConvOutputShape(c.x, c.w, c.o)
			require.NoError(t, err)
			x, w, dy := randn(rng, size(c.x), 1), randn(rng, size(c.w), 0.05), randn(rng, size(ys), 1)
			dx0, dw0 := randn(rng, size(c.x), 1), randn(rng, size(c.w), 1)
			run := func(kern grad.ConvKernels) (y, dx, dw []float32) {
				y = make([]float32, size(ys))
				dx, dw = append([]float32(nil), dx0...), append([]float32(nil), dw0...)
				for _, f := range []func() (bool, error){
					func() (bool, error) { return kern.Forward(x, w, c.x, c.w, c.o, y) },
					func() (bool, error) { return kern.BackwardData(dy, w, c.x, c.w, c.o, dx) },
					func() (bool, error) { return kern.BackwardWeight(x, dy, c.x, c.w, c.o, dw) },
				} {
					ok, err := f()
					require.NoError(t, err)
					require.True(t, ok)
				}
				return y, dx, dw
			}
			yg, dxg, dwg := run(grad.GoConv{Workers: 2})
			yo, dxo, dwo := run(k)
			requireClose(t, yg, yo, "y")
			requireClose(t, dxg, dxo, "dX")
			requireClose(t, dwg, dwo, "dW")

			model, err := BackwardModel(c.x, c.w, c.o, true, DWSwappedConv)
			if err != nil {
				require.True(t, c.o.Group > 1 || c.name == "stride 2 no pad, a row unread", "%v", err)
				return
			}
			s, err := ort.NewSession(model, "swapped", ort.Options{Threads: 1})
			require.NoError(t, err)
			defer s.Close()
			res, err := s.Run(tensor(c.x, x), tensor(c.w, w), tensor(ys, dy))
			require.NoError(t, err)
			for i := range dxg {
				dxg[i] -= dx0[i]
			}
			for i := range dwg {
				dwg[i] -= dw0[i]
			}
			requireClose(t, dxg, res[0].Data, "dX (swapped graph)")
			requireClose(t, dwg, res[1].Data, "dW (swapped Conv)")
		})
	}
	require.Equal(t, 3*len(cases), k.Len(), "one session per Conv and product")
}

// tapeConv is an EDSR-body-like step on a tape: Conv (bias) then Relu, and
// Backward from dY.
func tapeConv(tb testing.TB, tp *grad.Tape, x, w, b *grad.Var, o grad.ConvOpts, dy []float32) *grad.Var {
	y, err := tp.Conv(x, w, b, o)
	require.NoError(tb, err)
	r := tp.Relu(y)
	require.NoError(tb, tp.Backward(r, dy))
	return y
}

// TestTapeConvORT: a Tape with Kernels gives the gradients a Tape without
// them does.
func TestTapeConvORT(t *testing.T) {
	orttest.Require(t)
	k := New(Options{})
	t.Cleanup(func() { require.NoError(t, k.Close()) })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			ys, err := grad.ConvOutputShape(c.x, c.w, c.o)
			require.NoError(t, err)
			xd, wd, bd, dy := randn(rng, size(c.x), 1), randn(rng, size(c.w), 0.05), randn(rng, c.w[0], 0.1), randn(rng, size(ys), 1)
			var got [2][4][]float32
			for i, kern := range []grad.ConvKernels{nil, k} {
				tp := grad.NewTape()
				tp.Kernels = kern
				x, _ := tp.Param(c.x, xd)
				w, _ := tp.Param(c.w, wd)
				b, _ := tp.Param([]int{c.w[0]}, bd)
				y := tapeConv(t, tp, x, w, b, c.o, dy)
				got[i] = [4][]float32{y.Data, x.Grad, w.Grad, b.Grad}
			}
			for j, what := range []string{"y", "dX", "dW", "db"} {
				requireClose(t, got[0][j], got[1][j], what)
			}
		})
	}
}

// BenchmarkTapeConv: forward and backward (dX, dW, db) of an EDSR body
// Conv, 64→64, 3×3, pad 1, with Relu, on 4 patches of 48², on a Tape in
// Go (GOMAXPROCS workers) and with ORT kernels at 1 and 2 threads.
func BenchmarkTapeConv(b *testing.B) {
	orttest.Require(b)
	xs, ws := []int{4, 64, 48, 48}, []int{64, 64, 3, 3}
	o := grad.ConvOpts{Pads: [4]int{1, 1, 1, 1}}
	rng := rand.New(rand.NewPCG(7, 8))
	xd, wd, bd, dy := randn(rng, size(xs), 1), randn(rng, size(ws), 0.05), randn(rng, 64, 0.1), randn(rng, size(xs), 1)
	for _, v := range []struct {
		name    string
		threads int
	}{{"go", 0}, {"ort-1thread", 1}, {"ort-2threads", 2}} {
		b.Run(v.name, func(b *testing.B) {
			tp := grad.NewTape()
			if v.threads > 0 {
				k := New(Options{Threads: v.threads})
				b.Cleanup(func() { _ = k.Close() })
				tp.Kernels = k
			}
			x, _ := tp.Param(xs, xd)
			w, _ := tp.Param(ws, wd)
			bias, _ := tp.Param([]int{64}, bd)
			tapeConv(b, tp, x, w, bias, o, dy) // builds the sessions
			b.ResetTimer()
			for b.Loop() {
				tapeConv(b, tp, x, w, bias, o, dy)
			}
		})
	}
}

// TestKernelsClose: after Close the kernels report an error; shapes ORT
// cannot take are declined, not failed.
func TestKernelsClose(t *testing.T) {
	orttest.Require(t)
	k := New(Options{})
	x, w := make([]float32, 2*3*4*4), make([]float32, 3*3*3*3)
	y := make([]float32, 2*3*2*2)
	ok, err := k.Forward(x, w, []int{2, 3, 4, 4}, []int{3, 3, 3, 3}, grad.ConvOpts{}, y)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = k.Forward(nil, w, []int{0, 3, 4, 4}, []int{3, 3, 3, 3}, grad.ConvOpts{}, nil)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, k.Close())
	require.NoError(t, k.Close())
	_, err = k.Forward(x, w, []int{2, 3, 4, 4}, []int{3, 3, 3, 3}, grad.ConvOpts{}, y)
	require.ErrorContains(t, err, "after Close")
}
