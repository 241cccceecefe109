package grad

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func convCases() []struct {
	name string
	x, w []int
	bias bool
	o    ConvOpts
} {
	return []struct {
		name string
		x, w []int
		bias bool
		o    ConvOpts
	}{
		{"3x3 pad 1", []int{2, 4, 5, 5}, []int{6, 4, 3, 3}, true, ConvOpts{Pads: [4]int{1, 1, 1, 1}}},
		{"stride 2 pad 1", []int{2, 3, 7, 7}, []int{4, 3, 3, 3}, true, ConvOpts{Strides: [2]int{2, 2}, Pads: [4]int{1, 1, 1, 1}}},
		{"groups 2", []int{1, 4, 6, 6}, []int{6, 2, 3, 3}, true, ConvOpts{Group: 2}},
		{"depthwise pad 1", []int{2, 4, 6, 6}, []int{4, 1, 3, 3}, true, ConvOpts{Group: 4, Pads: [4]int{1, 1, 1, 1}}},
		{"dilation 2x1 asymmetric pads", []int{1, 3, 8, 7}, []int{5, 3, 3, 2}, false, ConvOpts{Dilations: [2]int{2, 1}, Pads: [4]int{2, 1, 1, 0}}},
		{"1x1 stride 2x1", []int{3, 5, 5, 6}, []int{7, 5, 1, 1}, true, ConvOpts{Strides: [2]int{2, 1}}},
		{"groups 2 stride 2 dilation 2 pad 2", []int{2, 4, 9, 9}, []int{4, 2, 3, 3}, true, ConvOpts{Group: 2, Strides: [2]int{2, 2}, Dilations: [2]int{2, 2}, Pads: [4]int{2, 2, 2, 2}}},
	}
}

func TestConvGradient(t *testing.T) {
	for _, c := range convCases() {
		t.Run(c.name, func(t *testing.T) {
			shapes := [][]int{c.x, c.w}
			if c.bias {
				shapes = append(shapes, []int{c.w[0]})
			}
			runOpCase(t, opCase{name: c.name, shapes: shapes, build: func(tp *Tape, in []*Var) (*Var, error) {
				var b *Var
				if c.bias {
					b = in[2]
				}
				return tp.Conv(in[0], in[1], b, c.o)
			}})
		})
	}
}

// TestConvForward compares Conv with a direct float64 loop over the ONNX
// definition, one worker and several.
func TestConvForward(t *testing.T) {
	for _, c := range convCases() {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			tp := NewTape()
			x, _ := tp.Const(c.x, randn(rng, size(c.x), 1))
			w, _ := tp.Const(c.w, randn(rng, size(c.w), 1))
			var b *Var
			if c.bias {
				b, _ = tp.Const([]int{c.w[0]}, randn(rng, c.w[0], 1))
			}
			want := naiveConv(x, w, b, c.o.norm())
			for _, workers := range []int{1, 3} {
				tp.Workers = workers
				y, err := tp.Conv(x, w, b, c.o)
				require.NoError(t, err)
				require.Equal(t, want.Shape, y.Shape)
				for i := range y.Data {
					require.InDelta(t, want.Data[i], y.Data[i], 1e-4, "element %d", i)
				}
			}
		})
	}
}

func naiveConv(x, w, b *Var, o ConvOpts) *Var {
	g, err := newConvGeom(x, w, o)
	if err != nil {
		panic(err)
	}
	y := &Var{Shape: []int{g.n, g.m, g.ho, g.wo}, Data: make([]float32, g.n*g.m*g.ho*g.wo)}
	for n := range g.n {
		for m := range g.m {
			gi := m / g.mg
			for oy := range g.ho {
				for ox := range g.wo {
					var s float64
					if b != nil {
						s = float64(b.Data[m])
					}
					for c := range g.cg {
						for ky := range g.kh {
							for kx := range g.kw {
								iy, ix := oy*g.sy-g.pt+ky*g.dy, ox*g.sx-g.pl+kx*g.dx
								if iy < 0 || iy >= g.h || ix < 0 || ix >= g.w {
									continue
								}
								s += float64(x.Data[((n*g.c+gi*g.cg+c)*g.h+iy)*g.w+ix]) * float64(w.Data[((m*g.cg+c)*g.kh+ky)*g.kw+kx])
							}
						}
					}
					y.Data[((n*g.m+m)*g.ho+oy)*g.wo+ox] = float32(s)
				}
			}
		}
	}
	return y
}

func TestOpGradients(t *testing.T) {
	cases := []opCase{
		{name: "Add same shape", shapes: [][]int{{2, 3, 4}, {2, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Add(in[0], in[1]) }},
		{name: "Add broadcast [1,C,1,1]", shapes: [][]int{{2, 3, 4, 5}, {1, 3, 1, 1}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Add(in[0], in[1]) }},
		{name: "Sub broadcast both", shapes: [][]int{{2, 1, 4}, {3, 1}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Sub(in[0], in[1]) }},
		{name: "Mul broadcast [C,1,1]", shapes: [][]int{{2, 3, 4, 4}, {3, 1, 1}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Mul(in[0], in[1]) }},
		{name: "Mul self", shapes: [][]int{{3, 5}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Mul(in[0], in[0]) }},
		{name: "Relu", shapes: [][]int{{2, 3, 4, 4}}, kink: true, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Relu(in[0]), nil }},
		{name: "LeakyRelu", shapes: [][]int{{2, 3, 4, 4}}, kink: true, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.LeakyRelu(in[0], 0.2), nil }},
		{name: "PRelu per channel", shapes: [][]int{{2, 3, 4, 4}, {3, 1, 1}}, kink: true, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.PRelu(in[0], in[1]) }},
		{name: "Sigmoid", shapes: [][]int{{2, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Sigmoid(in[0]), nil }},
		{name: "Concat channels", shapes: [][]int{{2, 3, 2, 2}, {2, 1, 2, 2}, {2, 2, 2, 2}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Concat(1, in...) }},
		{name: "Concat last axis", shapes: [][]int{{2, 3, 2}, {2, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Concat(-1, in...) }},
		{name: "Split channels", shapes: [][]int{{2, 6, 3, 3}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			ys, err := tp.Split(in[0], 1, 1, 3, 2)
			if err != nil {
				return nil, err
			}
			return tp.Concat(1, ys[2], ys[0], ys[1])
		}},
		{name: "Split one piece unused", shapes: [][]int{{2, 6, 3}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			ys, err := tp.Split(in[0], -1, 2, 1)
			if err != nil {
				return nil, err
			}
			return ys[0], nil
		}},
		{name: "DepthToSpace DCR", shapes: [][]int{{2, 8, 3, 3}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.DepthToSpace(in[0], 2, "DCR") }},
		{name: "DepthToSpace CRD", shapes: [][]int{{1, 18, 2, 3}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.DepthToSpace(in[0], 3, "CRD") }},
		{name: "Pad constant", shapes: [][]int{{1, 2, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Pad(in[0], PadOpts{Pads: []int{0, 0, 1, 2, 0, 0, 2, 1}, Value: 0.5})
		}},
		{name: "Pad reflect", shapes: [][]int{{1, 2, 4, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Pad(in[0], PadOpts{Pads: []int{0, 0, 2, 1, 0, 0, 1, 3}, Mode: "reflect"})
		}},
		{name: "Pad edge with crop", shapes: [][]int{{1, 2, 4, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Pad(in[0], PadOpts{Pads: []int{0, 0, 2, -1, 0, 0, -1, 3}, Mode: "edge"})
		}},
		{name: "Resize nearest x2 asymmetric floor", shapes: [][]int{{1, 2, 3, 3}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Resize(in[0], ResizeOpts{Height: 6, Width: 6, CoordMode: "asymmetric", NearestMode: "floor"})
		}},
		{name: "Resize nearest x3 half pixel", shapes: [][]int{{2, 1, 2, 3}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Resize(in[0], ResizeOpts{Height: 6, Width: 9})
		}},
		{name: "Resize linear 3x4 to 7x9 half pixel", shapes: [][]int{{2, 1, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Resize(in[0], ResizeOpts{Height: 7, Width: 9, Mode: "linear"})
		}},
		{name: "Resize linear x2 align corners", shapes: [][]int{{1, 2, 3, 3}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Resize(in[0], ResizeOpts{Height: 6, Width: 6, Mode: "linear", CoordMode: "align_corners"})
		}},
		{name: "GlobalAveragePool", shapes: [][]int{{2, 3, 4, 5}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.GlobalAveragePool(in[0]) }},
		{name: "ReduceSum axis -1", shapes: [][]int{{2, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.ReduceSum(in[0], []int{-1}, true) }},
		{name: "Div by a computed spread", shapes: [][]int{{2, 3, 4}, {2, 1, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.Div(in[0], tp.Sigmoid(in[1])) // away from zero
		}},
		{name: "Erf", shapes: [][]int{{2, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Erf(in[0]), nil }},
		{name: "Pow 2", shapes: [][]int{{2, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Pow(in[0], 2), nil }},
		{name: "Pow 3", shapes: [][]int{{3, 5}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Pow(in[0], 3), nil }},
		{name: "ReduceMean axes 1 -1 no keepdims", shapes: [][]int{{2, 3, 4, 5}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.ReduceMean(in[0], []int{1, -1}, false) }},
		{name: "MaxPool 3x3 stride 2 pad 1", shapes: [][]int{{2, 2, 7, 7}}, kink: true, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.MaxPool(in[0], PoolOpts{Kernel: [2]int{3, 3}, Strides: [2]int{2, 2}, Pads: [4]int{1, 1, 1, 1}})
		}},
		{name: "MaxPool 2x2", shapes: [][]int{{1, 3, 4, 6}}, kink: true, build: func(tp *Tape, in []*Var) (*Var, error) {
			return tp.MaxPool(in[0], PoolOpts{Kernel: [2]int{2, 2}, Strides: [2]int{2, 2}})
		}},
		{name: "MatMul 2-D", shapes: [][]int{{5, 6}, {6, 7}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.MatMul(in[0], in[1]) }},
		{name: "MatMul batched attention", shapes: [][]int{{2, 2, 5, 3}, {2, 2, 3, 5}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.MatMul(in[0], in[1]) }},
		{name: "MatMul broadcast weight", shapes: [][]int{{2, 4, 6}, {6, 5}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.MatMul(in[0], in[1]) }},
		{name: "Softmax last axis", shapes: [][]int{{2, 3, 6}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Softmax(in[0], -1) }},
		{name: "Softmax axis 1", shapes: [][]int{{2, 4, 3}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.Softmax(in[0], 1) }},
		{name: "LayerNorm last axis", shapes: [][]int{{2, 3, 8}, {8}, {8}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.LayerNorm(in[0], in[1], in[2], -1, 1e-5) }},
		{name: "LayerNorm two axes no bias", shapes: [][]int{{3, 2, 4}, {2, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.LayerNorm(in[0], in[1], nil, 1, 1e-5) }},
		{name: "MSE", shapes: [][]int{{2, 3, 4}, {2, 3, 4}}, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.MSE(in[0], in[1]) }},
		{name: "L1", shapes: [][]int{{2, 3, 4}, {2, 3, 4}}, kink: true, build: func(tp *Tape, in []*Var) (*Var, error) { return tp.L1(in[0], in[1]) }},
		{name: "chain Conv Relu DepthToSpace Add", shapes: [][]int{{1, 2, 4, 4}, {8, 2, 3, 3}, {1, 2, 8, 8}}, kink: true, build: func(tp *Tape, in []*Var) (*Var, error) {
			y, err := tp.Conv(in[0], in[1], nil, ConvOpts{Pads: [4]int{1, 1, 1, 1}})
			if err != nil {
				return nil, err
			}
			y, err = tp.DepthToSpace(tp.Sigmoid(y), 2, "CRD")
			if err != nil {
				return nil, err
			}
			return tp.Add(y, in[2])
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runOpCase(t, c) })
	}
}

// TestShapeErrors: bad shapes are errors, not panics.
func TestShapeErrors(t *testing.T) {
	tp := NewTape()
	v := func(s ...int) *Var {
		x, err := tp.Param(s, make([]float32, size(s)))
		require.NoError(t, err)
		return x
	}
	_, err := tp.Param([]int{2, 2}, make([]float32, 3))
	assert.Error(t, err)
	for name, f := range map[string]func() error{
		"Conv channels":     func() error { _, err := tp.Conv(v(1, 3, 4, 4), v(2, 2, 3, 3), nil, ConvOpts{}); return err },
		"Conv group":        func() error { _, err := tp.Conv(v(1, 3, 4, 4), v(2, 1, 3, 3), nil, ConvOpts{Group: 2}); return err },
		"Conv kernel":       func() error { _, err := tp.Conv(v(1, 1, 2, 2), v(1, 1, 3, 3), nil, ConvOpts{}); return err },
		"Conv bias":         func() error { _, err := tp.Conv(v(1, 1, 4, 4), v(2, 1, 3, 3), v(3), ConvOpts{}); return err },
		"Add broadcast":     func() error { _, err := tp.Add(v(2, 3), v(2, 4)); return err },
		"Concat":            func() error { _, err := tp.Concat(1, v(1, 2, 3), v(2, 2, 3)); return err },
		"Split":             func() error { _, err := tp.Split(v(4, 3), 0, 1, 2); return err },
		"DepthToSpace":      func() error { _, err := tp.DepthToSpace(v(1, 6, 2, 2), 2, ""); return err },
		"Pad reflect":       func() error { _, err := tp.Pad(v(1, 3), PadOpts{Pads: []int{0, 3, 0, 0}, Mode: "reflect"}); return err },
		"MatMul":            func() error { _, err := tp.MatMul(v(2, 3), v(4, 2)); return err },
		"LayerNorm":         func() error { _, err := tp.LayerNorm(v(2, 3), v(2), nil, -1, 1e-5); return err },
		"MaxPool":           func() error { _, err := tp.MaxPool(v(1, 1, 2, 2), PoolOpts{Kernel: [2]int{3, 3}}); return err },
		"FakeQuantStep":     func() error { _, err := tp.FakeQuantStep(v(2, 3), v(2), 0, -7, 7, 1); return err },
		"FakeQuantRange":    func() error { _, err := tp.FakeQuantRange(v(2, 3), v(1), v(1), 0, 15); return err },
		"SoftRound":         func() error { _, err := tp.SoftRound(v(2, 3), v(2, 3), []float32{1, 1, 1}, -7, 7); return err },
		"Backward constant": func() error { c, _ := tp.Const([]int{1}, []float32{1}); return tp.Backward(c, nil) },
		"short Data":        func() error { _, err := tp.Softmax(&Var{Shape: []int{2, 3}, Data: make([]float32, 5)}, 1); return err },
		"nil input":         func() error { _, err := tp.Concat(0, v(2), nil); return err },
		"short bias": func() error {
			_, err := tp.Conv(v(1, 1, 4, 4), v(2, 1, 3, 3), &Var{Shape: []int{2}}, ConvOpts{})
			return err
		},
	} {
		assert.Error(t, f(), name)
	}
}

// TestBackwardAccumulates: a Param's gradient sums over Backward calls, and
// a Const gets none.
func TestBackwardAccumulates(t *testing.T) {
	tp := NewTape()
	w, _ := tp.Param([]int{2}, []float32{1, 2})
	c, _ := tp.Const([]int{2}, []float32{3, 4})
	for range 2 {
		y, err := tp.Mul(w, c)
		require.NoError(t, err)
		z, err := tp.ReduceMean(y, nil, false)
		require.NoError(t, err)
		require.NoError(t, tp.Backward(z, nil))
		assert.Zero(t, tp.Len())
	}
	assert.Equal(t, []float32{3, 4}, w.Grad)
	assert.Nil(t, c.Grad)
	w.ZeroGrad()
	assert.Equal(t, []float32{0, 0}, w.Grad)
	assert.False(t, math.IsNaN(float64(w.Data[0])))
}

// TestConvWorkersAgree: the parallel paths (pairs of sample and group over
// goroutines, or one GEMM's rows over goroutines when there are fewer pairs
// than workers) compute what one worker does.
func TestConvWorkersAgree(t *testing.T) {
	for _, c := range convCases() {
		t.Run(c.name, func(t *testing.T) {
			grads := func(workers int, x0 []int) [][]float32 {
				rng := rand.New(rand.NewPCG(3, 4))
				tp := NewTape()
				tp.Workers = workers
				x, _ := tp.Param(x0, randn(rng, size(x0), 1))
				w, _ := tp.Param(c.w, randn(rng, size(c.w), 1))
				b, _ := tp.Param([]int{c.w[0]}, randn(rng, c.w[0], 1))
				y, err := tp.Conv(x, w, b, c.o)
				require.NoError(t, err)
				require.NoError(t, tp.Backward(y, randn(rng, len(y.Data), 1)))
				return [][]float32{y.Data, x.Grad, w.Grad, b.Grad}
			}
			one := append([]int{1}, c.x[1:]...)
			for _, x0 := range [][]int{c.x, one} {
				want := grads(1, x0)
				for _, workers := range []int{2, 5} {
					got := grads(workers, x0)
					for k := range want {
						for i := range want[k] {
							require.InDelta(t, want[k][i], got[k][i], 1e-4, "workers %d, batch %d: tensor %d element %d", workers, x0[0], k, i)
						}
					}
				}
			}
		})
	}
}
