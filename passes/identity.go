package passes

import "github.com/srquant/srq/graph"

// FoldIdentity bypasses Identity nodes whose input is a constant, so every
// weight is a plain initializer the quantizer can rewrite. PyTorch exports
// reuse a shared weight through an Identity (the EDSR/RCAN mean-shift convs).
// An Identity that produces a graph output is kept, so output names stay.
type FoldIdentity struct{}

func (FoldIdentity) Name() string { return "fold-identity" }
func (FoldIdentity) Doc() string {
	return "bypass Identity nodes over constants so weights are plain initializers"
}

func (FoldIdentity) Run(g *graph.Graph) error {
	for _, n := range append([]*graph.Node(nil), g.Nodes...) {
		if !isOp(n, "Identity") || len(n.Inputs) != 1 || len(n.Outputs) != 1 || g.IsGraphOutput(n.Outputs[0]) {
			continue
		}
		t, ok := g.Const(n.Inputs[0])
		if !ok {
			continue
		}
		out := n.Outputs[0]
		g.RemoveNode(n)
		if g.Initializer(t.Name) == t {
			g.ReplaceUses(out, t.Name)
			continue
		}
		// A Constant node's value: keep it as an initializer under the
		// Identity's output name, so consumers need no edit.
		c := t.Clone()
		c.Name = out
		g.SetInitializer(c)
	}
	g.RemoveDead()
	return nil
}
