package grad

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

// bwdGraph says which parts of a Conv's backward pass an ONNX graph
// computes, and how it computes dW.
type bwdGraph struct {
	DX bool
	// DW is "" (no dW), "conv" (DESIGN.md's swapped Conv) or "taps" (one
	// Gemm per kernel tap).
	DW string
}

// The backward pass of a Conv (group 1) written in ONNX, to run in ORT:
//
//	dX = ConvTranspose(dY, W; same strides, pads, dilations; output_padding
//	     for the rows the forward's stride dropped)
//
// and dW either as DESIGN.md proposes,
//
//	"conv": dW = Transpose(Conv(Transpose(X), Transpose(dY); dilations =
//	        forward strides, strides = forward dilations, the forward's
//	        pads less the rows no window reached)), every Transpose
//	        swapping axes 0 and 1,
//
// or as one GEMM per kernel tap over the batch and the pixels,
//
//	"taps": Xp = Pad(Transpose(X)) [C, N, Hp, Wp]; for each tap (ky, kx)
//	        dW[:, :, ky, kx] = Gemm(dYᵀ as [M, N·P], Slice(Xp at the tap,
//	        forward strides) as [C, N·P], transB),
//
// the second because ORT runs the first as an im2col whose GEMM has 9
// columns (the 3×3 output), a shape its kernels are slow on.
//
// Inputs X, W, dY; outputs dX and/or dW.
func convBackwardModel(x, w []int, o ConvOpts, which bwdGraph) ([]byte, error) {
	o = o.norm()
	if o.Group != 1 {
		return nil, fmt.Errorf("convBackwardModel: group %d (one Conv per group would be needed)", o.Group)
	}
	xv, _ := newVar(x, make([]float32, size(x)))
	wv, _ := newVar(w, make([]float32, size(w)))
	g, err := newConvGeom(xv, wv, o)
	if err != nil {
		return nil, err
	}
	dims := func(s ...int) []int64 {
		d := make([]int64, len(s))
		for i, v := range s {
			d[i] = int64(v)
		}
		return d
	}
	gr := graph.New("conv_backward", map[string]int64{"": 17})
	in := func(name string, s []int) {
		gr.Inputs = append(gr.Inputs, &graph.Value{Name: name, DType: onnx.TensorProto_FLOAT, Shape: graph.ShapeOf(dims(s...)...)})
	}
	in("X", x)
	in("W", w)
	in("dY", []int{g.n, g.m, g.ho, g.wo})
	node := func(op string, ins []string, outName string, edit func(*graph.Node)) string {
		n := &graph.Node{Name: outName, OpType: op, Inputs: ins, Outputs: []string{outName}}
		if edit != nil {
			edit(n)
		}
		gr.AddNode(n)
		return outName
	}
	ints := func(name string, v ...int) string {
		gr.SetInitializer(graph.NewInt64(name, []int64{int64(len(v))}, dims(v...)))
		return name
	}
	output := func(name string) {
		gr.Outputs = append(gr.Outputs, &graph.Value{Name: name, DType: onnx.TensorProto_FLOAT})
	}
	swap01 := func(n *graph.Node) { n.SetAttrInts("perm", []int64{1, 0, 2, 3}) }
	// Rows (columns) past the last window the forward read.
	ey, ex := g.dy*(g.kh-1)+1, g.dx*(g.kw-1)+1
	remY := (g.h + o.Pads[0] + o.Pads[2] - ey) % g.sy
	remX := (g.w + o.Pads[1] + o.Pads[3] - ex) % g.sx
	if remY > o.Pads[2] || remX > o.Pads[3] {
		return nil, fmt.Errorf("convBackwardModel: the stride drops input rows, not only padding (would need a Slice)")
	}
	if which.DX {
		node("ConvTranspose", []string{"dY", "W"}, "dX", func(n *graph.Node) {
			n.SetAttrInts("strides", dims(g.sy, g.sx))
			n.SetAttrInts("dilations", dims(g.dy, g.dx))
			n.SetAttrInts("pads", dims(o.Pads[:]...))
			n.SetAttrInts("output_padding", dims(remY, remX))
		})
		output("dX")
	}
	switch which.DW {
	case "":
		return marshal(gr)
	case "conv":
		node("Transpose", []string{"X"}, "Xt", swap01)
		node("Transpose", []string{"dY"}, "dYt", swap01)
		node("Conv", []string{"Xt", "dYt"}, "dWt", func(n *graph.Node) {
			n.SetAttrInts("strides", dims(g.dy, g.dx))
			n.SetAttrInts("dilations", dims(g.sy, g.sx))
			n.SetAttrInts("pads", dims(o.Pads[0], o.Pads[1], o.Pads[2]-remY, o.Pads[3]-remX))
		})
		node("Transpose", []string{"dWt"}, "dW", swap01)
	case "taps":
		node("Transpose", []string{"X"}, "Xt", swap01)
		node("Pad", []string{"Xt", ints("pads", 0, 0, o.Pads[0], o.Pads[1], 0, 0, o.Pads[2], o.Pads[3])}, "Xp", nil)
		node("Transpose", []string{"dY"}, "dYt", swap01)
		node("Reshape", []string{"dYt", ints("mshape", g.m, -1)}, "dY2", nil)
		ints("cshape", g.c, -1)
		ints("axes", 2, 3)
		ints("steps", g.sy, g.sx)
		ints("tapshape", g.m, g.c, 1)
		var taps []string
		for ky := range g.kh {
			for kx := range g.kw {
				t := fmt.Sprintf("t%d_%d", ky, kx)
				starts := ints(t+"_starts", ky*g.dy, kx*g.dx)
				ends := ints(t+"_ends", ky*g.dy+(g.ho-1)*g.sy+1, kx*g.dx+(g.wo-1)*g.sx+1)
				sl := node("Slice", []string{"Xp", starts, ends, "axes", "steps"}, t+"_x", nil)
				s2 := node("Reshape", []string{sl, "cshape"}, t+"_x2", nil)
				gm := node("Gemm", []string{"dY2", s2}, t+"_dw", func(n *graph.Node) { n.SetAttrInt("transB", 1) })
				taps = append(taps, node("Reshape", []string{gm, "tapshape"}, t+"_dw3", nil))
			}
		}
		cat := node("Concat", taps, "dWcat", func(n *graph.Node) { n.SetAttrInt("axis", 2) })
		node("Reshape", []string{cat, ints("wshape", g.m, g.c/g.g, g.kh, g.kw)}, "dW", nil)
	default:
		return nil, fmt.Errorf("convBackwardModel: dW method %q", which.DW)
	}
	output("dW")
	return marshal(gr)
}

func marshal(gr *graph.Graph) ([]byte, error) {
	m, err := gr.ToModel()
	if err != nil {
		return nil, err
	}
	return onnx.Marshal(m)
}

// convBackwardPair runs one Conv's backward pass in Go and in ORT on the
// same random X, W, dY and returns both (dX, dW) pairs.
type backwardPair struct {
	x, w, y *Var
	g       convGeom
	sess    *ort.Session
	feeds   []*ort.Tensor
	workers int
}

func newBackwardPair(tb testing.TB, x, w []int, o ConvOpts, threads int, which bwdGraph) *backwardPair {
	tb.Helper()
	orttest.Require(tb)
	rng := rand.New(rand.NewPCG(21, 22))
	tp := NewTape()
	tp.Workers = threads
	xv, _ := tp.Param(x, randn(rng, size(x), 1))
	wv, _ := tp.Param(w, randn(rng, size(w), 0.05))
	g, err := newConvGeom(xv, wv, o.norm())
	require.NoError(tb, err)
	yv := &Var{Shape: []int{g.n, g.m, g.ho, g.wo}, needsGrad: true}
	yv.Grad = randn(rng, g.n*g.m*g.ho*g.wo, 1)
	var sess *ort.Session // none for the Go side alone
	if which.DX || which.DW != "" {
		model, err := convBackwardModel(x, w, o, which)
		require.NoError(tb, err)
		sess, err = ort.NewSession(model, "conv_backward", ort.Options{Threads: threads})
		require.NoError(tb, err)
		tb.Cleanup(func() { _ = sess.Close() })
	}
	shape := func(s []int) []int64 {
		d := make([]int64, len(s))
		for i, v := range s {
			d[i] = int64(v)
		}
		return d
	}
	feeds := []*ort.Tensor{
		{Shape: shape(x), Data: xv.Data},
		{Shape: shape(w), Data: wv.Data},
		{Shape: shape(yv.Shape), Data: yv.Grad},
	}
	return &backwardPair{x: xv, w: wv, y: yv, g: g, sess: sess, feeds: feeds, workers: threads}
}

func (p *backwardPair) goBackward() (dx, dw []float32) {
	p.x.Grad, p.w.Grad = nil, nil
	convBackward(p.g, p.x, p.w, nil, p.y, p.workers)
	return p.x.Grad, p.w.Grad
}

func (p *backwardPair) ortBackward(tb testing.TB, out []*ort.Tensor) []*ort.Tensor {
	res, err := p.sess.RunReuse(tb.Context(), out, p.feeds...)
	require.NoError(tb, err)
	return res
}

// maxDiff returns the largest |a − b| and the largest |a|.
func maxDiff(a, b []float32) (diff, scale float64) {
	for i := range a {
		diff = math.Max(diff, math.Abs(float64(a[i])-float64(b[i])))
		scale = math.Max(scale, math.Abs(float64(a[i])))
	}
	return diff, scale
}

// TestConvBackwardMatchesORT: the Go backward pass and the ONNX ones (run
// in ORT, dW both ways) give the same dX and dW, within float32
// summation-order noise.
func TestConvBackwardMatchesORT(t *testing.T) {
	cases := []struct {
		name string
		x, w []int
		o    ConvOpts
	}{
		{"3x3 pad 1", []int{2, 8, 12, 12}, []int{8, 8, 3, 3}, ConvOpts{Pads: [4]int{1, 1, 1, 1}}},
		{"stride 2 pad 1, odd size", []int{2, 4, 11, 11}, []int{6, 4, 3, 3}, ConvOpts{Strides: [2]int{2, 2}, Pads: [4]int{1, 1, 1, 1}}},
		{"stride 2 pad 1, even size (output_padding)", []int{2, 4, 10, 10}, []int{6, 4, 3, 3}, ConvOpts{Strides: [2]int{2, 2}, Pads: [4]int{1, 1, 1, 1}}},
		{"dilation 2 pad 2", []int{1, 3, 10, 9}, []int{5, 3, 3, 3}, ConvOpts{Dilations: [2]int{2, 2}, Pads: [4]int{2, 2, 2, 2}}},
	}
	for _, c := range cases {
		for _, dw := range []string{"conv", "taps"} {
			t.Run(c.name+" dW "+dw, func(t *testing.T) {
				p := newBackwardPair(t, c.x, c.w, c.o, 1, bwdGraph{DX: true, DW: dw})
				dx, dw := p.goBackward()
				res := p.ortBackward(t, nil)
				require.Len(t, res, 2)
				for i, pair := range [][2][]float32{{dx, res[0].Data}, {dw, res[1].Data}} {
					require.Len(t, pair[1], len(pair[0]))
					d, s := maxDiff(pair[0], pair[1])
					require.LessOrEqual(t, d, 1e-5*math.Max(s, 1), "output %d: max |Go − ORT| %g of max %g", i, d, s)
				}
			})
		}
	}
}

// BenchmarkConvBackward is the measurement of doc.go: the backward pass
// (dX and dW) of an EDSR body Conv, 64→64, 3×3, pad 1, on a batch of 16
// patches of 48², in Go and as ONNX graphs in ORT (dW both ways, and each
// gradient alone), all on GOMAXPROCS threads. It logs (-v) the max
// |Go − ORT| of each gradient.
func BenchmarkConvBackward(b *testing.B) {
	threads := NewTape().Workers
	x, w := []int{16, 64, 48, 48}, []int{64, 64, 3, 3}
	o := ConvOpts{Pads: [4]int{1, 1, 1, 1}}
	p := newBackwardPair(b, x, w, o, threads, bwdGraph{})
	dx, dw := p.goBackward()
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			p.goBackward()
		}
	})
	for _, which := range []bwdGraph{{DX: true, DW: "conv"}, {DX: true, DW: "taps"}, {DX: true}, {DW: "conv"}, {DW: "taps"}} {
		q := newBackwardPair(b, x, w, o, threads, which)
		res := q.ortBackward(b, nil)
		name := "ort"
		if which.DX {
			name += "-dX"
			d, s := maxDiff(dx, res[0].Data)
			b.Logf("threads %d, ORT %s: max |Go − ORT| dX %.3g (of max %.3g)", threads, ort.Version(), d, s)
		}
		if which.DW != "" {
			name += "-dW-" + which.DW
			d, s := maxDiff(dw, res[len(res)-1].Data)
			b.Logf("threads %d, ORT %s: max |Go − ORT| dW (%s) %.3g (of max %.3g)", threads, ort.Version(), which.DW, d, s)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				res = q.ortBackward(b, res)
			}
		})
	}
}
