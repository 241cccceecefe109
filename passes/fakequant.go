package passes

import (
	"fmt"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/qdq"
)

// FakeQuantConv quantizes one Conv and nothing else, in float: the Conv
// reads its input through Input (written with float ops, FormFloat) and
// uses its weights rounded to a Weights grid, stored back as float. The
// rest of the graph stays float. This is what "quantize only this layer"
// means for layer sensitivity and for ablations, and it runs on any ORT
// build. A nil Input or zero Weights.Bits leaves that side float, to tell
// the weights' share of the error from the inputs'.
type FakeQuantConv struct {
	Conv    string
	Input   qdq.Quantizer
	Weights WeightConfig
}

func (FakeQuantConv) Name() string { return "fake-quant-conv" }
func (FakeQuantConv) Doc() string {
	return "quantize one Conv's input and weights with float ops, the rest of the graph float"
}

func (p FakeQuantConv) Run(g *graph.Graph) error {
	var n *graph.Node
	for _, c := range g.Nodes {
		if c.Name == p.Conv && isOp(c, "Conv") {
			n = c
		}
	}
	if n == nil {
		return fmt.Errorf("no Conv named %q", p.Conv)
	}
	if p.Weights.Bits > 0 {
		if err := p.fakeQuantWeights(g, n); err != nil {
			return err
		}
	}
	if p.Input != nil {
		return insertConvInput(g, n, p.Input, FormFloat, [2]qdq.Params{})
	}
	return nil
}

// fakeQuantWeights replaces n's weights by their rounding to the grid.
func (p FakeQuantConv) fakeQuantWeights(g *graph.Graph, n *graph.Node) error {
	wt, ok := g.Const(input(n, 1))
	if !ok || wt.DType != onnx.TensorProto_FLOAT || len(wt.Dims) < 1 {
		return fmt.Errorf("node %q: weight is not a constant float tensor", n.Name)
	}
	w, err := wt.Float32()
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	ps, err := qdq.WeightParams(w, int(wt.Dims[0]), p.Weights.Bits, p.Weights.PerChannel, p.Weights.Method)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	fq := make([]float32, len(w))
	if err := qdq.FakeQuantPerChannel(fq, w, expand(ps, int(wt.Dims[0]))); err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	name := g.UniqueName(n.Name + ".fake_quant_weight")
	g.SetInitializer(graph.NewFloat32(name, wt.Dims, fq))
	g.ReplaceInput(n, 1, name)
	return nil
}

// expand repeats a per-tensor quantizer once per channel.
func expand(ps []qdq.Params, channels int) []qdq.Params {
	if len(ps) != 1 {
		return ps
	}
	out := make([]qdq.Params, channels)
	for i := range out {
		out[i] = ps[0]
	}
	return out
}
