package passes

import (
	"fmt"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// SplitConcatConv rewrites a Conv that reads a channel Concat as the sum
// of one Conv per part: Conv(Concat(p₁…pₙ), W) + b = Σᵢ Conv(pᵢ, Wᵢ) + b,
// where Wᵢ are W's input channels of part i (exact: a Conv is linear in
// its input channels). Why: an int8 Conv reads its whole input on one
// grid, so a Concat of parts with different ranges (SPAN's conv_cat reads
// the head's features, ±20, next to attention outputs of ±2) quantizes
// the small parts to a few dozen levels; split, every part is read on its
// own grid and the partial sums meet in an 8-bit Add.
//
// Nodes names the Convs to split (the pipeline picks those whose parts'
// calibrated ranges differ enough to pay for the extra Adds, see quant);
// Split, if set, receives for each split Conv the values its parts' Convs
// write and the running sums, in order.
type SplitConcatConv struct {
	Nodes []string
	Split map[string][]string
}

func (SplitConcatConv) Name() string { return "split-concat-conv" }
func (SplitConcatConv) Doc() string {
	return "read each part of a channel Concat through a Conv of its own and sum"
}

func (p SplitConcatConv) Run(g *graph.Graph) error {
	for _, conv := range slices.Clone(g.Nodes) {
		if !slices.Contains(p.Nodes, conv.Name) {
			continue
		}
		parts, ok := ConcatParts(g, conv)
		if !ok {
			return fmt.Errorf("node %q: not a group-1 Conv with a constant weight reading a channel Concat", conv.Name)
		}
		wt, _ := g.Const(input(conv, 1))
		w, err := wt.Float32()
		if err != nil {
			return fmt.Errorf("node %q: %w", conv.Name, err)
		}
		g.RemoveNode(conv)
		out, cin := wt.Dims[0], wt.Dims[1]
		taps := int64(len(w)) / (out * cin)
		var made []string
		sum := ""
		c0 := int64(0)
		for i, part := range parts {
			n := part.channels
			wi := make([]float32, out*n*taps)
			for o := range out {
				copy(wi[o*n*taps:(o+1)*n*taps], w[(o*cin+c0)*taps:(o*cin+c0+n)*taps])
			}
			c0 += n
			wname := g.UniqueName(fmt.Sprintf("%s_part%d", wt.Name, i))
			g.SetInitializer(graph.NewFloat32(wname, append([]int64{out, n}, wt.Dims[2:]...), wi))
			y := g.UniqueName(fmt.Sprintf("%s_part%d", conv.Outputs[0], i))
			c := &graph.Node{Name: g.UniqueName(fmt.Sprintf("%s_part%d", conv.Name, i)), OpType: "Conv", Domain: conv.Domain,
				Attrs: conv.Attrs, Inputs: []string{part.value, wname}, Outputs: []string{y}}
			if i == 0 && input(conv, 2) != "" {
				c.Inputs = append(c.Inputs, conv.Inputs[2])
			}
			g.AddNode(c)
			made = append(made, y)
			if sum == "" {
				sum = y
				continue
			}
			s := conv.Outputs[0]
			if i < len(parts)-1 {
				s = g.UniqueName(fmt.Sprintf("%s_sum%d", conv.Outputs[0], i))
			}
			g.AddNode(&graph.Node{Name: g.UniqueName(fmt.Sprintf("%s_sum%d", conv.Name, i)), OpType: "Add", Inputs: []string{sum, y}, Outputs: []string{s}})
			made = append(made, s)
			sum = s
		}
		if p.Split != nil {
			p.Split[conv.Name] = made
		}
	}
	g.RemoveDead()
	return nil
}

// ConcatPart is one input of a channel Concat and its channel count.
type ConcatPart struct {
	value    string
	channels int64
}

// Value is the part's tensor.
func (c ConcatPart) Value() string { return c.value }

// ConcatParts returns the parts of the channel Concat a group-1 Conv with
// a constant float weight reads, when the parts' channel counts add up to
// the weight's input channels; ok is false otherwise.
func ConcatParts(g *graph.Graph, conv *graph.Node) ([]ConcatPart, bool) {
	if !isOp(conv, "Conv") || conv.AttrInt("group", 1) != 1 || len(conv.Inputs) < 2 {
		return nil, false
	}
	cat := g.Producer(conv.Inputs[0])
	if cat == nil || !isOp(cat, "Concat") || len(cat.Inputs) < 2 {
		return nil, false
	}
	if ax := cat.AttrInt("axis", 0); ax != 1 && ax != -3 {
		return nil, false
	}
	wt, ok := g.Const(input(conv, 1))
	if !ok || wt.DType != onnx.TensorProto_FLOAT || len(wt.Dims) < 3 {
		return nil, false
	}
	var parts []ConcatPart
	total := int64(0)
	for _, v := range cat.Inputs {
		n := channels(g, v, 0)
		if n <= 0 {
			return nil, false
		}
		parts = append(parts, ConcatPart{value: v, channels: n})
		total += n
	}
	if total != wt.Dims[1] {
		return nil, false
	}
	return parts, true
}

// channels is the channel count of NCHW value v, read from its value info
// or from what made it: a Conv's weight, a channel Concat, or the input of
// a channel-preserving elementwise op. 0 when unknown.
func channels(g *graph.Graph, v string, depth int) int64 {
	if vi := g.ValueInfo(v); vi != nil && len(vi.Shape) == 4 && vi.Shape[1].Known() {
		return vi.Shape[1].Value
	}
	n := g.Producer(v)
	if n == nil || depth > 64 {
		return 0
	}
	switch n.OpType {
	case "Conv", "ConvTranspose":
		if w, ok := g.Const(input(n, 1)); ok && len(w.Dims) >= 3 {
			if n.OpType == "ConvTranspose" {
				return w.Dims[1] * n.AttrInt("group", 1)
			}
			return w.Dims[0]
		}
	case "Concat":
		if ax := n.AttrInt("axis", 0); ax == 1 || ax == -3 {
			total := int64(0)
			for _, in := range n.Inputs {
				c := channels(g, in, depth+1)
				if c <= 0 {
					return 0
				}
				total += c
			}
			return total
		}
	case "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Erf", "Clip", "Identity",
		"Add", "Sub", "Mul", "Div":
		for _, in := range n.Inputs {
			if _, isConst := g.Const(in); in != "" && !isConst {
				if c := channels(g, in, depth+1); c > 0 {
					return c
				}
			}
		}
	}
	return 0
}
