package passes

import (
	"fmt"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// SplitConvOutputs writes a Conv as several Convs over runs of its output
// channels and a channel Concat of their outputs: Conv(x, W, b) =
// Concat(Conv(x, W[a₀:a₁], b[a₀:a₁]), Conv(x, W[a₁:a₂], b[a₁:a₂]), …)
// (exact: each output channel is its own filter). Why: an int8 Conv writes
// its whole output on one grid, so a channel that carries a massive
// activation (CRAFT's last residual group writes one channel near 1500
// beside channels within ±50, and a LayerNorm reads the sum) leaves the
// other channels a few levels; split, each run is written on its own grid.
//
// Starts maps a Conv's name to the first channel of each run after the
// first (ascending, inside (0, output channels)).
type SplitConvOutputs struct {
	Starts map[string][]int64
}

func (SplitConvOutputs) Name() string { return "split-conv-outputs" }
func (SplitConvOutputs) Doc() string {
	return "write runs of a Conv's output channels through Convs of their own and concatenate"
}

func (p SplitConvOutputs) Run(g *graph.Graph) error {
	for _, conv := range slices.Clone(g.Nodes) {
		starts, ok := p.Starts[conv.Name]
		if !ok {
			continue
		}
		if !isOp(conv, "Conv") || conv.AttrInt("group", 1) != 1 || len(conv.Inputs) < 2 {
			return fmt.Errorf("node %q: not a group-1 Conv", conv.Name)
		}
		wt, ok := g.Const(input(conv, 1))
		if !ok || wt.DType != onnx.TensorProto_FLOAT || len(wt.Dims) < 3 {
			return fmt.Errorf("node %q: weight is not a constant float tensor", conv.Name)
		}
		w, err := wt.Float32()
		if err != nil {
			return fmt.Errorf("node %q: %w", conv.Name, err)
		}
		out := wt.Dims[0]
		var b []float32
		if bn := input(conv, 2); bn != "" {
			bt, ok := g.Const(bn)
			if !ok {
				return fmt.Errorf("node %q: bias is not a constant", conv.Name)
			}
			if b, err = bt.Float32(); err != nil {
				return fmt.Errorf("node %q: %w", conv.Name, err)
			}
		}
		bounds := append(append([]int64{0}, starts...), out)
		for i := 1; i < len(bounds); i++ {
			if bounds[i] <= bounds[i-1] {
				return fmt.Errorf("node %q: channel runs %v do not split %d outputs", conv.Name, starts, out)
			}
		}
		row := int64(len(w)) / out
		cat := &graph.Node{Name: g.UniqueName(conv.Name + "_outputs"), OpType: "Concat", Outputs: []string{conv.Outputs[0]}}
		cat.SetAttrInt("axis", 1)
		g.RemoveNode(conv)
		for i := 1; i < len(bounds); i++ {
			a, z := bounds[i-1], bounds[i]
			wn := g.UniqueName(fmt.Sprintf("%s_out%d", wt.Name, i-1))
			g.SetInitializer(graph.NewFloat32(wn, append([]int64{z - a}, wt.Dims[1:]...), slices.Clone(w[a*row:z*row])))
			c := &graph.Node{Name: g.UniqueName(fmt.Sprintf("%s_out%d", conv.Name, i-1)), OpType: "Conv", Domain: conv.Domain,
				Attrs: conv.Attrs, Inputs: []string{conv.Inputs[0], wn}, Outputs: []string{g.UniqueName(fmt.Sprintf("%s_out%d", conv.Outputs[0], i-1))}}
			if b != nil {
				bn := g.UniqueName(fmt.Sprintf("%s_out%d", input(conv, 2), i-1))
				g.SetInitializer(graph.NewFloat32(bn, []int64{z - a}, slices.Clone(b[a:z])))
				c.Inputs = append(c.Inputs, bn)
			}
			g.AddNode(c)
			cat.Inputs = append(cat.Inputs, c.Outputs[0])
		}
		g.AddNode(cat)
	}
	g.RemoveDead()
	return nil
}

// ChannelRuns groups channels by range and returns where runs of
// channels of one group start (after channel 0), or nil when all channels
// are in one group. Sorted by range, channels fall into a new group where
// one's range is ratio times the next smaller one's or more; a run is a
// maximal stretch of adjacent channels of one group.
func ChannelRuns(ranges []float32, ratio float64) []int64 {
	order := make([]int, len(ranges))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case ranges[a] < ranges[b]:
			return -1
		case ranges[a] > ranges[b]:
			return 1
		}
		return 0
	})
	group := make([]int, len(ranges))
	k := 0
	for i := 1; i < len(order); i++ {
		lo, hi := float64(ranges[order[i-1]]), float64(ranges[order[i]])
		if lo > 0 && hi >= ratio*lo {
			k++
		}
		group[order[i]] = k
	}
	if k == 0 {
		return nil
	}
	var starts []int64
	for c := 1; c < len(group); c++ {
		if group[c] != group[c-1] {
			starts = append(starts, int64(c))
		}
	}
	return starts
}
