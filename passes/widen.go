package passes

import (
	"github.com/srquant/srq/graph"
)

// WidenBlock is the output-channel count WidenImageConv pads to.
const WidenBlock = 16

// WidenImageConv pads the Conv that writes the model's image output (3
// channels at the output resolution, the largest tensor an SR network
// makes) with zero output channels up to WidenBlock, and Slices the image
// channels back out. Same values. Why: ORT's int8 Conv kernel is blocked
// by 16 output channels and runs a 3-channel Conv on a slow path; measured
// at 256x256 LR, 2 threads, the padded int8 model of EDSR x4 ran in 202 ms
// instead of 249 (3.2x -> 3.9x over FP32), CARN-M's in 307 instead of 357
// (padding to 4 or 8 channels gained nothing, 32 no more than 16).
//
// It returns the padded Conv output, which carries the image on the image
// grid as the model output did, or "" when there is no such Conv (grouped,
// already wide, or the output comes from another op) or pol keeps it float
// (a float Conv would only do more work).
func WidenImageConv(g *graph.Graph, pol Policy) string {
	if len(g.Outputs) != 1 {
		return ""
	}
	out := g.Outputs[0].Name
	conv := g.Producer(out)
	if conv == nil || !isOp(conv, "Conv") || conv.AttrInt("group", 1) != 1 || len(g.Consumers(out)) != 0 || pol.floatReason(conv, true) != "" {
		return ""
	}
	o, ok := padOutputs(g, conv, WidenBlock)
	if !ok {
		return ""
	}
	padded := g.UniqueName(out + "_wide")
	conv.Outputs[0] = padded
	i64 := func(name string, v int64) string {
		n := g.UniqueName(conv.Name + "_" + name)
		g.SetInitializer(graph.NewInt64(n, []int64{1}, []int64{v}))
		return n
	}
	g.AddNode(&graph.Node{Name: g.UniqueName(conv.Name + "_image"), OpType: "Slice",
		Inputs: []string{padded, i64("starts", 0), i64("ends", o), i64("axes", 1)}, Outputs: []string{out}})
	g.Invalidate()
	return padded
}

// padOutputs gives conv zero output channels up to n: its weight and
// bias are replaced by padded copies. It returns the original output
// channel count, or false (nothing changed) when the weight or bias is not
// a float constant or conv already has n or more outputs.
func padOutputs(g *graph.Graph, conv *graph.Node, n int64) (int64, bool) {
	wt, ok := g.Const(input(conv, 1))
	if !ok || len(wt.Dims) < 3 || wt.Dims[0] >= n {
		return 0, false
	}
	w, err := wt.Float32()
	if err != nil {
		return 0, false
	}
	var bt *graph.Tensor
	var b []float32
	if name := input(conv, 2); name != "" {
		if bt, ok = g.Const(name); !ok {
			return 0, false
		}
		if b, err = bt.Float32(); err != nil {
			return 0, false
		}
	}
	conv.Inputs[1] = padRows(g, wt, w, n)
	if bt != nil {
		conv.Inputs[2] = padRows(g, bt, b, n)
	}
	g.Invalidate()
	return wt.Dims[0], true
}

// padRows writes a copy of t (values v) with its first axis padded with
// zeros to n, and returns the copy's name.
func padRows(g *graph.Graph, t *graph.Tensor, v []float32, n int64) string {
	wide := make([]float32, n*(int64(len(v))/t.Dims[0]))
	copy(wide, v)
	name := g.UniqueName(t.Name + "_wide")
	g.SetInitializer(graph.NewFloat32(name, append([]int64{n}, t.Dims[1:]...), wide))
	return name
}
