package passes

import (
	"fmt"

	"github.com/srquant/srq/graph"
)

// PixelShuffleNHWC rewrites each DepthToSpace that follows a Conv (directly
// or through channel-wise activations such as ReLU) into the same pixel
// shuffle spelled for a channels-last int8 pipeline:
//
//	Conv (output channels reordered to DCR order)
//	→ Transpose to NHWC → Reshape [N,H,W,b,b,C] → Transpose (0,1,3,2,4,5)
//	→ Reshape [N,H·b,W·b,C] → Transpose to NCHW
//
// The result is exactly DepthToSpace (a permutation of the same values).
// In CRD order the Conv's output channels are reordered to DCR, except in
// a grouped Conv, where the shuffle reads CRD order itself.
// Why: ORT runs int8 Convs channels-last, so a DepthToSpace between two of
// them costs a layout Transpose on each side plus ORT's element-by-element
// uint8 DepthToSpace (about a third of EDSR x4's int8 time at 256x256). In
// this spelling ORT cancels the layout Transposes against its own, and the
// shuffle is one Transpose that moves runs of b·C contiguous bytes.
//
// The Reshape target of the second Reshape is computed from the Conv
// output's shape (Shape, Slice, Mul, Concat), so dynamic sizes keep working;
// PlanQDQ never quantizes such shape arithmetic.
type PixelShuffleNHWC struct{}

func (PixelShuffleNHWC) Name() string { return "pixel-shuffle-nhwc" }
func (PixelShuffleNHWC) Doc() string {
	return "spell DepthToSpace after a Conv as channels-last Reshape/Transpose for ORT's int8 path"
}

func (PixelShuffleNHWC) Run(g *graph.Graph) error {
	for _, d := range append([]*graph.Node(nil), g.Nodes...) {
		if !isOp(d, "DepthToSpace") || len(d.Inputs) != 1 || len(d.Outputs) != 1 {
			continue
		}
		conv := convBefore(g, d.Inputs[0])
		if conv == nil {
			continue
		}
		wt, ok := g.Const(input(conv, 1))
		if !ok || len(wt.Dims) < 3 {
			continue
		}
		b := d.AttrInt("blocksize", 0)
		o := wt.Dims[0]
		if b < 1 || o%(b*b) != 0 {
			continue
		}
		c := o / (b * b)
		crd := d.AttrString("mode", "DCR") == "CRD"
		if crd && conv.AttrInt("group", 1) == 1 {
			if err := toDCR(g, conv, int(c), int(b)); err != nil {
				return fmt.Errorf("node %q: %w", conv.Name, err)
			}
			crd = false
		}
		// A grouped Conv's output channels cannot be reordered (they would
		// move to other groups' inputs: CARN-M's upsampler), so CRD order
		// stays and the shuffle gathers it.
		shuffle(g, d, b, c, crd)
	}
	return nil
}

// channelwiseUnary are elementwise ops with no per-channel parameter: they
// commute with any permutation of the channels, so a pixel shuffle may look
// through them to the Conv that makes its channels (CARN: Conv → ReLU →
// DepthToSpace).
var channelwiseUnary = map[string]bool{"Relu": true, "LeakyRelu": true, "Sigmoid": true, "Tanh": true, "Identity": true}

// convBefore returns the Conv whose output reaches v through zero or more
// channelwiseUnary ops, each value on the way read only by the next node
// and not a graph output; nil when there is none.
func convBefore(g *graph.Graph, v string) *graph.Node {
	for {
		if len(g.Consumers(v)) != 1 || g.IsGraphOutput(v) {
			return nil
		}
		n := g.Producer(v)
		switch {
		case n == nil:
			return nil
		case isOp(n, "Conv"):
			return n
		case n.Domain == "" && channelwiseUnary[n.OpType] && len(n.Inputs) == 1 && len(n.Outputs) == 1:
			v = n.Inputs[0]
		default:
			return nil
		}
	}
}

// toDCR reorders a Conv's output channels from CRD order (c·b² + i·b + j) to
// DCR order ((i·b + j)·C + c), writing new weight and bias initializers.
func toDCR(g *graph.Graph, conv *graph.Node, c, b int) error {
	perm := make([]int, c*b*b) // perm[new] = old
	for ch := 0; ch < c; ch++ {
		for k := 0; k < b*b; k++ {
			perm[k*c+ch] = ch*b*b + k
		}
	}
	for i := 1; i <= 2; i++ {
		name := input(conv, i)
		if name == "" {
			continue
		}
		t, ok := g.Const(name)
		if !ok {
			return fmt.Errorf("input %q is not a constant", name)
		}
		p := t.Clone()
		row := len(p.Data) / len(perm)
		for n, old := range perm {
			copy(p.Data[n*row:(n+1)*row], t.Data[old*row:(old+1)*row])
		}
		p.Name = g.UniqueName(name + "_dcr")
		g.SetInitializer(p)
		conv.Inputs[i] = p.Name
	}
	g.Invalidate()
	return nil
}

// shuffle replaces DepthToSpace d (block b, C output channels) with the
// channels-last chain. In DCR order the NHWC input splits as [b, b, C] and
// the shuffle moves runs of b·C bytes; in CRD order it splits as [C, b, b]
// and the shuffle gathers single bytes, slower but still channels-last.
func shuffle(g *graph.Graph, d *graph.Node, b, c int64, crd bool) {
	x, y := d.Inputs[0], d.Outputs[0]
	base := d.Name
	if base == "" {
		base = y
	}
	g.RemoveNode(d)
	i64 := func(name string, v ...int64) string {
		n := g.UniqueName(base + "_" + name)
		g.SetInitializer(graph.NewInt64(n, []int64{int64(len(v))}, v))
		return n
	}
	node := func(op string, in []string, out string) *graph.Node {
		n := &graph.Node{Name: g.UniqueName(base + "_" + op), OpType: op, Inputs: in, Outputs: []string{out}}
		g.AddNode(n)
		return n
	}
	val := func(s string) string { return g.UniqueName(base + "_" + s) }

	// Target shape of the second Reshape: [0 (copy N), H·b, W·b, C].
	shape, hw, hwb, target := val("shape"), val("hw"), val("hw_b"), val("nhwc_shape")
	node("Shape", []string{x}, shape)
	node("Slice", []string{shape, i64("starts", 2), i64("ends", 4)}, hw)
	node("Mul", []string{hw, i64("block", b, b)}, hwb)
	node("Concat", []string{i64("batch", 0), hwb, i64("channels", c)}, target).SetAttrInt("axis", 0)

	t1, r1, t2, r2 := val("nhwc"), val("split"), val("shuffled"), val("merged")
	node("Transpose", []string{x}, t1).SetAttrInts("perm", []int64{0, 2, 3, 1})
	split, perm := []int64{0, 0, 0, b, b, c}, []int64{0, 1, 3, 2, 4, 5} // [N,H,W,i,j,C] → [N,H,i,W,j,C]
	if crd {
		split, perm = []int64{0, 0, 0, c, b, b}, []int64{0, 1, 4, 2, 5, 3} // [N,H,W,C,i,j] → [N,H,i,W,j,C]
	}
	node("Reshape", []string{t1, i64("split_shape", split...)}, r1)
	node("Transpose", []string{r1}, t2).SetAttrInts("perm", perm)
	node("Reshape", []string{t2, target}, r2)
	node("Transpose", []string{r2}, y).SetAttrInts("perm", []int64{0, 3, 1, 2})
}
