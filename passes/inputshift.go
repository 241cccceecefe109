package passes

import (
	"fmt"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

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
// It returns P, whose quantizer must be the image grid [0, rng], or "" when
// the pattern is not there (or p falls outside [0, rng]).
func FoldInputShift(g *graph.Graph, rng float32) (string, error) {
	first, _ := firstLast(g)
	if len(first) != 2 || !isPointwiseConv(first[0]) || isPointwiseConv(first[1]) || g.Opsets[""] < 11 {
		return "", nil
	}
	shift, head := first[0], first[1]
	x, y := shift.Inputs[0], shift.Outputs[0]
	if !g.IsGraphInput(x) || head.Inputs[0] != y || g.IsGraphOutput(y) || len(g.Consumers(y)) != 1 ||
		head.AttrInt("group", 1) != 1 || head.AttrString("auto_pad", "NOTSET") != "NOTSET" {
		return "", nil
	}
	d, ok := diagonalWeight(g, shift)
	if !ok {
		return "", nil
	}
	c := len(d)
	b, err := optionalBias(g, shift, c)
	if err != nil {
		return "", fmt.Errorf("node %q: %w", shift.Name, err)
	}
	pad := make([]float32, c)
	for i := range c {
		if d[i] == 0 {
			return "", nil
		}
		pad[i] = -b[i] / d[i]
		if pad[i] < 0 || pad[i] > rng {
			return "", nil
		}
	}
	wt, ok := g.Const(input(head, 1))
	if !ok || wt.DType != onnx.TensorProto_FLOAT || len(wt.Dims) != 4 || int(wt.Dims[1]) != c {
		return "", nil
	}
	w, err := wt.Float32()
	if err != nil {
		return "", fmt.Errorf("weight %q: %w", wt.Name, err)
	}
	o := int(wt.Dims[0])
	hb, err := optionalBias(g, head, o)
	if err != nil {
		return "", fmt.Errorf("node %q: %w", head.Name, err)
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
		return "", nil
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
		return "", err
	}
	g.RemoveDead()
	return p, nil
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
