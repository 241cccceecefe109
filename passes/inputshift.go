package passes

import (
	"fmt"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// InputFold is what FoldInputShift did: the padded image value the head
// reads, the head, and the value per input channel the image is padded
// with (the dataset mean the network subtracts).
type InputFold struct {
	Padded string
	Head   string
	Center []float32
}

// FoldInputShift folds the input mean shift of an SR network (a 1x1 Conv
// with a diagonal weight, y = d·x + b, that reads the graph input and feeds
// the zero-padded head conv; EDSR, RCAN) into the head conv, so that the
// head's int8 input is the image itself, on the 8-bit grid it came on.
//
// Quantizing y instead costs a rounding step of range·(266/255)/255 on
// every pixel (y spans the image range plus the mean); on EDSR x2 that was
// 0.008–0.018 dB on Set5. The fold must keep the head's zero padding of y,
// which is the value p = −b/d in x's terms, so the rewrite pads x with p
// explicitly, P = Pad(x − p, 0) + p (three float ops on a 3-channel image),
// and the head becomes a conv without padding on P with weights W·d and
// bias b_head + Σ W·b. Inside the image P = x exactly; only the one-pixel
// ring of padding is rounded to the grid (|p − round(p)| ≤ half a step).
//
// It returns P, whose quantizer must be the image grid [0, rng], the head
// and p, or a zero InputFold when the pattern is not there (or p falls
// outside [0, rng]).
//
// The head's weights now act on x rather than on the centred y, so their
// rounding error δW·x carries a DC part δW·p that y's did not: on SPAN the
// weights-only PSNR against FP32 fell from 41.4 to 40.7 dB. P is p around
// the image, and x's mean, so InsertQDQ takes δW·p out of the bias again
// (InsertQDQ.Centers).
func FoldInputShift(g *graph.Graph, rng float32) (InputFold, error) {
	first, _ := firstLast(g)
	if len(first) != 2 || !isPointwiseConv(first[0]) || isPointwiseConv(first[1]) || g.Opsets[""] < 11 {
		return InputFold{}, nil
	}
	shift, head := first[0], first[1]
	x, y := shift.Inputs[0], shift.Outputs[0]
	if !g.IsGraphInput(x) || head.Inputs[0] != y || g.IsGraphOutput(y) || len(g.Consumers(y)) != 1 ||
		head.AttrInt("group", 1) != 1 || head.AttrString("auto_pad", "NOTSET") != "NOTSET" {
		return InputFold{}, nil
	}
	d, ok := diagonalWeight(g, shift)
	if !ok {
		return InputFold{}, nil
	}
	c := len(d)
	b, err := optionalBias(g, shift, c)
	if err != nil {
		return InputFold{}, fmt.Errorf("node %q: %w", shift.Name, err)
	}
	pad := make([]float32, c)
	for i := range c {
		if d[i] == 0 {
			return InputFold{}, nil
		}
		pad[i] = -b[i] / d[i]
		if pad[i] < 0 || pad[i] > rng {
			return InputFold{}, nil
		}
	}
	wt, ok := g.Const(input(head, 1))
	if !ok || wt.DType != onnx.TensorProto_FLOAT || len(wt.Dims) != 4 || int(wt.Dims[1]) != c {
		return InputFold{}, nil
	}
	w, err := wt.Float32()
	if err != nil {
		return InputFold{}, fmt.Errorf("weight %q: %w", wt.Name, err)
	}
	o := int(wt.Dims[0])
	hb, err := optionalBias(g, head, o)
	if err != nil {
		return InputFold{}, fmt.Errorf("node %q: %w", head.Name, err)
	}
	taps := int(wt.Dims[2] * wt.Dims[3])
	nw := make([]float32, len(w))
	nb := make([]float32, o)
	for oc := range o {
		acc := float64(hb[oc])
		for ic := range c {
			for t := range taps {
				i := (oc*c+ic)*taps + t
				nw[i] = w[i] * d[ic]
				acc += float64(w[i]) * float64(b[ic])
			}
		}
		nb[oc] = float32(acc)
	}
	pads := head.AttrInts("pads")
	if len(pads) == 0 {
		pads = []int64{0, 0, 0, 0}
	}
	if len(pads) != 4 {
		return InputFold{}, nil
	}

	chw := []int64{1, int64(c), 1, 1}
	pv := g.UniqueName(shift.Name + "_pad_value")
	pp := g.UniqueName(shift.Name + "_pads")
	g.SetInitializer(graph.NewFloat32(pv, chw, pad))
	g.SetInitializer(graph.NewInt64(pp, []int64{8}, []int64{0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]}))
	centred, padded := g.UniqueName(x+"_centred"), g.UniqueName(x+"_centred_padded")
	p := g.UniqueName(x + "_padded")
	g.RemoveNode(shift)
	g.AddNode(&graph.Node{Name: g.UniqueName(shift.Name + "_Sub"), OpType: "Sub", Inputs: []string{x, pv}, Outputs: []string{centred}})
	g.AddNode(&graph.Node{Name: g.UniqueName(shift.Name + "_Pad"), OpType: "Pad", Inputs: []string{centred, pp}, Outputs: []string{padded}})
	g.AddNode(&graph.Node{Name: g.UniqueName(shift.Name + "_Add"), OpType: "Add", Inputs: []string{padded, pv}, Outputs: []string{p}})
	wName, bName := g.UniqueName(head.Name+".folded_weight"), g.UniqueName(head.Name+".folded_bias")
	g.SetInitializer(graph.NewFloat32(wName, slices.Clone(wt.Dims), nw))
	g.SetInitializer(graph.NewFloat32(bName, []int64{int64(o)}, nb))
	head.Inputs = []string{p, wName, bName}
	head.RemoveAttr("pads")
	g.Invalidate()
	if err := g.TopoSort(); err != nil {
		return InputFold{}, err
	}
	g.RemoveDead()
	return InputFold{Padded: p, Head: head.Name, Center: pad}, nil
}

// diagonalWeight returns the diagonal of a square 1x1 Conv's constant float
// weight, or false if the weight is not a diagonal matrix.
func diagonalWeight(g *graph.Graph, n *graph.Node) ([]float32, bool) {
	wt, ok := g.Const(input(n, 1))
	if !ok || wt.DType != onnx.TensorProto_FLOAT || len(wt.Dims) != 4 || wt.Dims[0] != wt.Dims[1] || wt.Dims[2] != 1 || wt.Dims[3] != 1 {
		return nil, false
	}
	w, err := wt.Float32()
	if err != nil {
		return nil, false
	}
	c := int(wt.Dims[0])
	d := make([]float32, c)
	for i := range c {
		for j := range c {
			if v := w[i*c+j]; i == j {
				d[i] = v
			} else if v != 0 {
				return nil, false
			}
		}
	}
	return d, true
}

// AffineInput rewrites a per-channel affine map of the graph input written
// as elementwise ops — Sub, Add, Mul or Div by constants of one value or one
// per channel, as `(x − mean) · 255` in SPAN and other exports that do the
// mean shift and the 0..255 scaling inside a 0..1 model — as the diagonal
// 1x1 Conv that EDSR and RCAN use for it, so that FoldInputShift folds it
// into the head and the head reads the image itself on its 8-bit grid
// (quantizing (x − mean)·255 on its own grid rounds every input pixel
// again). Exact: y = d·x + b with d and b composed from the constants.
type AffineInput struct{}

func (AffineInput) Name() string { return "affine-input" }
func (AffineInput) Doc() string {
	return "write a per-channel affine map of the image input (Sub/Add/Mul/Div by constants) as a diagonal 1x1 Conv"
}

func (AffineInput) Run(g *graph.Graph) error {
	if len(g.Inputs) != 1 || g.Opsets[""] < 11 {
		return nil
	}
	x := g.Inputs[0].Name
	const c = 3
	d, b := []float64{1, 1, 1}, []float64{0, 0, 0}
	var chain []*graph.Node
	v := x
	for {
		cs := g.Consumers(v)
		if len(cs) != 1 || g.IsGraphOutput(v) {
			break
		}
		n := cs[0]
		k, ok := channelConst(g, n, v, c)
		if !ok {
			break
		}
		for i := range c {
			switch n.OpType {
			case "Sub":
				if n.Inputs[0] == v {
					b[i] -= k[i]
				} else { // k − y
					d[i], b[i] = -d[i], k[i]-b[i]
				}
			case "Add":
				b[i] += k[i]
			case "Mul":
				d[i], b[i] = d[i]*k[i], b[i]*k[i]
			case "Div":
				d[i], b[i] = d[i]/k[i], b[i]/k[i]
			}
		}
		chain = append(chain, n)
		v = n.Outputs[0]
	}
	if len(chain) == 0 {
		return nil
	}
	cs := g.Consumers(v)
	if len(cs) != 1 || !isOp(cs[0], "Conv") || cs[0].Inputs[0] != v {
		return nil
	}
	w := make([]float32, c*c)
	bias := make([]float32, c)
	for i := range c {
		if d[i] == 0 {
			return nil
		}
		w[i*c+i], bias[i] = float32(d[i]), float32(b[i])
	}
	last := chain[len(chain)-1]
	wn, bn := g.UniqueName(last.Name+"_affine_weight"), g.UniqueName(last.Name+"_affine_bias")
	g.SetInitializer(graph.NewFloat32(wn, []int64{c, c, 1, 1}, w))
	g.SetInitializer(graph.NewFloat32(bn, []int64{c}, bias))
	for _, n := range chain {
		g.RemoveNode(n)
	}
	conv := &graph.Node{Name: g.UniqueName(last.Name + "_affine"), OpType: "Conv", Inputs: []string{x, wn, bn}, Outputs: []string{v}}
	conv.SetAttrInts("kernel_shape", []int64{1, 1})
	g.AddNode(conv)
	g.RemoveDead()
	return nil
}

// channelConst returns, for an elementwise Sub/Add/Mul/Div node n reading
// v and a constant, the constant's value per channel (a scalar, or a
// tensor of c values broadcast along the channel axis of NCHW); Div and
// the other ops need v as their first input, Sub either.
func channelConst(g *graph.Graph, n *graph.Node, v string, c int) ([]float64, bool) {
	if !slices.Contains([]string{"Sub", "Add", "Mul", "Div"}, n.OpType) || (n.Domain != "" && n.Domain != "ai.onnx") || len(n.Inputs) != 2 {
		return nil, false
	}
	other := n.Inputs[1]
	if n.Inputs[0] != v {
		if n.Inputs[1] != v || n.OpType == "Div" {
			return nil, false
		}
		other = n.Inputs[0]
	}
	t, ok := g.Const(other)
	if !ok || t.DType != onnx.TensorProto_FLOAT {
		return nil, false
	}
	f, err := t.Float32()
	if err != nil {
		return nil, false
	}
	k := make([]float64, c)
	switch {
	case len(f) == 1:
		for i := range k {
			k[i] = float64(f[0])
		}
	case len(f) == c && channelShaped(t.Dims, c):
		for i := range k {
			k[i] = float64(f[i])
		}
	default:
		return nil, false
	}
	if n.OpType == "Div" {
		for _, x := range k {
			if x == 0 {
				return nil, false
			}
		}
	}
	return k, true
}

// channelShaped reports whether dims broadcast c values along axis 1 of
// an NCHW tensor: [c,1,1], [1,c,1,1].
func channelShaped(dims []int64, c int) bool {
	switch len(dims) {
	case 3:
		return dims[0] == int64(c) && dims[1] == 1 && dims[2] == 1
	case 4:
		return dims[0] == 1 && dims[1] == int64(c) && dims[2] == 1 && dims[3] == 1
	}
	return false
}
