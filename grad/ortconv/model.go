// Package ortconv runs the Conv products of a grad.Tape in ONNX Runtime:
// Kernels implements grad.ConvKernels with one small ORT session per Conv
// shape and product, built on first use and cached. Set a Tape's Kernels to
// it and Tape.Conv computes its forward pass, and dX and dW in the backward
// pass, in ORT (7–13× faster than grad's Go kernels, grad's doc.go).
//
// The ONNX graphs (ForwardModel, BackwardModel):
//
//	Y  = Conv(X, W; strides, pads, dilations, group)
//	dX = ConvTranspose(dY, W; the same attributes, output_padding for the
//	     input rows and columns the forward's stride left unread)
//
// and dW either as one GEMM per kernel tap over the batch and the pixels
// (DWTaps, what Kernels runs),
//
//	Xp = Pad(Transpose(X)) [C, N, Hp, Wp]; for each tap (ky, kx)
//	dW[:, :, ky, kx] = Gemm(dYᵀ as [M, N·P], Slice(Xp at the tap, forward
//	strides) as [C, N·P], transB)
//
// (with groups, a MatMul batched over the groups, or for a depthwise Conv a
// Mul and ReduceSum), or as DESIGN.md first proposed (DWSwappedConv,
// group 1 only),
//
//	dW = Transpose(Conv(Transpose(X), Transpose(dY); dilations = forward
//	     strides, strides = forward dilations, the forward's pads less the
//	     rows no window reached)), every Transpose swapping axes 0 and 1,
//
// which ORT runs 2–3.5× slower: an im2col whose GEMM has only kh·kw
// columns (grad's doc.go has the measurement, BenchmarkConvBackward here
// repeats it).
package ortconv

import (
	"fmt"

	"github.com/srquant/srq/grad"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// DW is how a backward graph computes the weight gradient.
type DW int

const (
	// DWNone: no weight gradient.
	DWNone DW = iota
	// DWTaps: one GEMM per kernel tap.
	DWTaps
	// DWSwappedConv: a Conv of the N↔C-swapped input by the swapped output
	// gradient; group 1, and a stride that drops only padding.
	DWSwappedConv
)

// geom is what the graphs need of a Conv's shapes.
type geom struct {
	n, c, h, w     int
	m, cg, kh, kw  int
	ho, wo         int
	o              grad.ConvOpts
	remY, remX     int // input rows (columns) past the last window
	mg, sy, sx, dy int
	dx             int
}

func newGeom(x, w []int, o grad.ConvOpts) (geom, error) {
	o = o.WithDefaults()
	y, err := grad.ConvOutputShape(x, w, o)
	if err != nil {
		return geom{}, err
	}
	g := geom{n: x[0], c: x[1], h: x[2], w: x[3], m: w[0], cg: w[1], kh: w[2], kw: w[3], ho: y[2], wo: y[3], o: o}
	g.mg = g.m / o.Group
	g.sy, g.sx, g.dy, g.dx = o.Strides[0], o.Strides[1], o.Dilations[0], o.Dilations[1]
	g.remY = (g.h + o.Pads[0] + o.Pads[2] - (g.dy*(g.kh-1) + 1)) % g.sy
	g.remX = (g.w + o.Pads[1] + o.Pads[3] - (g.dx*(g.kw-1) + 1)) % g.sx
	return g, nil
}

func dims(s ...int) []int64 {
	d := make([]int64, len(s))
	for i, v := range s {
		d[i] = int64(v)
	}
	return d
}

// builder is a graph under construction.
type builder struct{ gr *graph.Graph }

func newBuilder(name string) *builder {
	return &builder{gr: graph.New(name, map[string]int64{"": 17})}
}

func (b *builder) input(name string, s ...int) {
	b.gr.Inputs = append(b.gr.Inputs, &graph.Value{Name: name, DType: onnx.TensorProto_FLOAT, Shape: graph.ShapeOf(dims(s...)...)})
}

func (b *builder) output(name string) {
	b.gr.Outputs = append(b.gr.Outputs, &graph.Value{Name: name, DType: onnx.TensorProto_FLOAT})
}

func (b *builder) node(op string, ins []string, out string, edit func(*graph.Node)) string {
	n := &graph.Node{Name: out, OpType: op, Inputs: ins, Outputs: []string{out}}
	if edit != nil {
		edit(n)
	}
	b.gr.AddNode(n)
	return out
}

// ints adds an int64 initializer.
func (b *builder) ints(name string, v ...int) string {
	b.gr.SetInitializer(graph.NewInt64(name, []int64{int64(len(v))}, dims(v...)))
	return name
}

func (b *builder) marshal() ([]byte, error) {
	m, err := b.gr.ToModel()
	if err != nil {
		return nil, err
	}
	return onnx.Marshal(m)
}

// convAttrs sets the attributes Conv and ConvTranspose share.
func (g geom) convAttrs(n *graph.Node) {
	n.SetAttrInts("strides", dims(g.sy, g.sx))
	n.SetAttrInts("dilations", dims(g.dy, g.dx))
	n.SetAttrInts("pads", dims(g.o.Pads[:]...))
	n.SetAttrInt("group", int64(g.o.Group))
}

// ForwardModel is a Conv without bias of an input of shape x by a weight of
// shape w, as an ONNX model: inputs X and W, output Y.
func ForwardModel(x, w []int, o grad.ConvOpts) ([]byte, error) {
	g, err := newGeom(x, w, o)
	if err != nil {
		return nil, err
	}
	b := newBuilder("conv_forward")
	b.input("X", x...)
	b.input("W", w...)
	b.node("Conv", []string{"X", "W"}, "Y", g.convAttrs)
	b.output("Y")
	return b.marshal()
}

// BackwardModel is the backward pass of a Conv of an input of shape x by a
// weight of shape w (the package comment has the graphs), as an ONNX
// model. Its inputs are those the outputs need, in the order X (for dW), W
// (for dX), dY; its outputs dX when dx is set, then dW unless dw is DWNone.
func BackwardModel(x, w []int, o grad.ConvOpts, dx bool, dw DW) ([]byte, error) {
	g, err := newGeom(x, w, o)
	if err != nil {
		return nil, err
	}
	if !dx && dw == DWNone {
		return nil, fmt.Errorf("ortconv: a backward model with no output")
	}
	b := newBuilder("conv_backward")
	if dw != DWNone {
		b.input("X", x...)
	}
	if dx {
		b.input("W", w...)
	}
	b.input("dY", g.n, g.m, g.ho, g.wo)
	if dx {
		b.node("ConvTranspose", []string{"dY", "W"}, "dX", func(n *graph.Node) {
			g.convAttrs(n)
			n.SetAttrInts("output_padding", dims(g.remY, g.remX))
		})
		b.output("dX")
	}
	swap01 := func(n *graph.Node) { n.SetAttrInts("perm", []int64{1, 0, 2, 3}) }
	switch dw {
	case DWNone:
		return b.marshal()
	case DWSwappedConv:
		if g.o.Group != 1 {
			return nil, fmt.Errorf("ortconv: dW as a swapped Conv of group %d (one Conv per group would be needed)", g.o.Group)
		}
		if g.remY > g.o.Pads[2] || g.remX > g.o.Pads[3] {
			return nil, fmt.Errorf("ortconv: dW as a swapped Conv: the stride drops input rows, not only padding (would need a Slice)")
		}
		b.node("Transpose", []string{"X"}, "Xt", swap01)
		b.node("Transpose", []string{"dY"}, "dYt", swap01)
		b.node("Conv", []string{"Xt", "dYt"}, "dWt", func(n *graph.Node) {
			n.SetAttrInts("strides", dims(g.dy, g.dx))
			n.SetAttrInts("dilations", dims(g.sy, g.sx))
			n.SetAttrInts("pads", dims(g.o.Pads[0], g.o.Pads[1], g.o.Pads[2]-g.remY, g.o.Pads[3]-g.remX))
		})
		b.node("Transpose", []string{"dWt"}, "dW", swap01)
	case DWTaps:
		g.taps(b)
	default:
		return nil, fmt.Errorf("ortconv: dW method %d", dw)
	}
	b.output("dW")
	return b.marshal()
}

// taps adds dW as one product per kernel tap: a Gemm for group 1, a MatMul
// batched over the groups otherwise, and a Mul and ReduceSum when every
// group has one input and one output channel (depthwise).
func (g geom) taps(b *builder) {
	groups := g.o.Group
	p := g.o.Pads
	b.node("Transpose", []string{"X"}, "Xt", func(n *graph.Node) { n.SetAttrInts("perm", []int64{1, 0, 2, 3}) })
	b.node("Pad", []string{"Xt", b.ints("pads", 0, 0, p[0], p[1], 0, 0, p[2], p[3])}, "Xp", nil)
	b.node("Transpose", []string{"dY"}, "dYt", func(n *graph.Node) { n.SetAttrInts("perm", []int64{1, 0, 2, 3}) })
	depthwise := groups > 1 && g.cg == 1 && g.mg == 1
	if groups == 1 {
		b.node("Reshape", []string{"dYt", b.ints("mshape", g.m, -1)}, "dY2", nil)
		b.ints("cshape", g.c, -1)
	} else {
		b.node("Reshape", []string{"dYt", b.ints("mshape", groups, g.mg, -1)}, "dY2", nil)
		b.ints("cshape", groups, g.cg, -1)
		b.ints("sumaxes", 2)
	}
	b.ints("axes", 2, 3)
	b.ints("steps", g.sy, g.sx)
	b.ints("tapshape", g.m, g.cg, 1)
	var taps []string
	for ky := range g.kh {
		for kx := range g.kw {
			t := fmt.Sprintf("t%d_%d", ky, kx)
			starts := b.ints(t+"_starts", ky*g.dy, kx*g.dx)
			ends := b.ints(t+"_ends", ky*g.dy+(g.ho-1)*g.sy+1, kx*g.dx+(g.wo-1)*g.sx+1)
			sl := b.node("Slice", []string{"Xp", starts, ends, "axes", "steps"}, t+"_x", nil)
			x2 := b.node("Reshape", []string{sl, "cshape"}, t+"_x2", nil)
			var dw string
			switch {
			case groups == 1:
				dw = b.node("Gemm", []string{"dY2", x2}, t+"_dw", func(n *graph.Node) { n.SetAttrInt("transB", 1) })
			case depthwise:
				prod := b.node("Mul", []string{"dY2", x2}, t+"_prod", nil)
				dw = b.node("ReduceSum", []string{prod, "sumaxes"}, t+"_dw", nil)
			default:
				xt := b.node("Transpose", []string{x2}, t+"_xt", func(n *graph.Node) { n.SetAttrInts("perm", []int64{0, 2, 1}) })
				dw = b.node("MatMul", []string{"dY2", xt}, t+"_dw", nil)
			}
			taps = append(taps, b.node("Reshape", []string{dw, "tapshape"}, t+"_dw3", nil))
		}
	}
	cat := b.node("Concat", taps, "dWcat", func(n *graph.Node) { n.SetAttrInt("axis", 2) })
	b.node("Reshape", []string{cat, b.ints("wshape", g.m, g.cg, g.kh, g.kw)}, "dW", nil)
}
