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

// The backward pass of a Conv (group 1) written in ONNX, as DESIGN.md
// proposes running it in ORT:
//
//	dX = ConvTranspose(dY, W; same strides, pads, dilations; output_padding
//	     for the rows the forward's stride dropped)
//	dW = Transpose(Conv(Transpose(X), Transpose(dY); dilations = forward
//	     strides, strides = forward dilations, the forward's pads less the
//	     rows no window reached)), every Transpose swapping axes 0 and 1.
//
// Inputs X, W, dY; outputs dX, dW.
func convBackwardModel(x, w []int, o ConvOpts) ([]byte, error) {
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
	dims := func(s []int) []int64 {
		d := make([]int64, len(s))
		for i, v := range s {
			d[i] = int64(v)
		}
		return d
	}
	gr := graph.New("conv_backward", map[string]int64{"": 17})
	in := func(name string, s []int) {
		gr.Inputs = append(gr.Inputs, &graph.Value{Name: name, DType: onnx.TensorProto_FLOAT, Shape: graph.ShapeOf(dims(s)...)})
	}
	in("X", x)
	in("W", w)
	in("dY", []int{g.n, g.m, g.ho, g.wo})
	node := func(op string, ins []string, outName string, edit func(*graph.Node)) {
		n := &graph.Node{Name: outName, OpType: op, Inputs: ins, Outputs: []string{outName}}
		if edit != nil {
			edit(n)
		}
		gr.AddNode(n)
	}
	swap01 := func(n *graph.Node) { n.SetAttrInts("perm", []int64{1, 0, 2, 3}) }
	// Rows (columns) past the last window the forward read.
	ey, ex := g.dy*(g.kh-1)+1, g.dx*(g.kw-1)+1
	remY := (g.h + o.Pads[0] + o.Pads[2] - ey) % g.sy
	remX := (g.w + o.Pads[1] + o.Pads[3] - ex) % g.sx
	if remY > o.Pads[2] || remX > o.Pads[3] {
		return nil, fmt.Errorf("convBackwardModel: the stride drops input rows, not only padding (would need a Slice)")
	}
	node("ConvTranspose", []string{"dY", "W"}, "dX", func(n *graph.Node) {
		n.SetAttrInts("strides", []int64{int64(g.sy), int64(g.sx)})
		n.SetAttrInts("dilations", []int64{int64(g.dy), int64(g.dx)})
		n.SetAttrInts("pads", dims(o.Pads[:]))
		n.SetAttrInts("output_padding", []int64{int64(remY), int64(remX)})
	})
	node("Transpose", []string{"X"}, "Xt", swap01)
	node("Transpose", []string{"dY"}, "dYt", swap01)
	node("Conv", []string{"Xt", "dYt"}, "dWt", func(n *graph.Node) {
		n.SetAttrInts("strides", []int64{int64(g.dy), int64(g.dx)})
		n.SetAttrInts("dilations", []int64{int64(g.sy), int64(g.sx)})
		n.SetAttrInts("pads", []int64{int64(o.Pads[0]), int64(o.Pads[1]), int64(o.Pads[2] - remY), int64(o.Pads[3] - remX)})
	})
	node("Transpose", []string{"dWt"}, "dW", swap01)
	for _, name := range []string{"dX", "dW"} {
		gr.Outputs = append(gr.Outputs, &graph.Value{Name: name, DType: onnx.TensorProto_FLOAT})
	}
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

func newBackwardPair(tb testing.TB, x, w []int, o ConvOpts, threads int) *backwardPair {
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
	model, err := convBackwardModel(x, w, o)
	require.NoError(tb, err)
	sess, err := ort.NewSession(model, "conv_backward", ort.Options{Threads: threads})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = sess.Close() })
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

// TestConvBackwardMatchesORT: the Go backward pass and the ONNX one (run in
// ORT) give the same dX and dW, within float32 summation-order noise.
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
		t.Run(c.name, func(t *testing.T) {
			p := newBackwardPair(t, c.x, c.w, c.o, 1)
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

// BenchmarkConvBackward is the measurement of doc.go: the backward pass
// (dX and dW) of an EDSR body Conv, 64→64, 3×3, pad 1, on a batch of 16
// patches of 48², in Go and as ONNX graphs in ORT, both on GOMAXPROCS
// threads. It reports the max |Go − ORT| of each gradient.
func BenchmarkConvBackward(b *testing.B) {
	threads := NewTape().Workers
	x, w := []int{16, 64, 48, 48}, []int{64, 64, 3, 3}
	p := newBackwardPair(b, x, w, ConvOpts{Pads: [4]int{1, 1, 1, 1}}, threads)
	dx, dw := p.goBackward()
	res := p.ortBackward(b, nil)
	ddx, sx := maxDiff(dx, res[0].Data)
	ddw, sw := maxDiff(dw, res[1].Data)
	b.Logf("threads %d, ORT %s: max |Go − ORT| dX %.3g (of max %.3g), dW %.3g (of max %.3g)", threads, ort.Version(), ddx, sx, ddw, sw)
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			p.goBackward()
		}
		b.ReportMetric(ddx, "maxdiff-dX")
		b.ReportMetric(ddw, "maxdiff-dW")
	})
	b.Run("ort", func(b *testing.B) {
		for b.Loop() {
			res = p.ortBackward(b, res)
		}
	})
}
