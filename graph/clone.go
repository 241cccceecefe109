package graph

import (
	"maps"
	"slices"
)

// Clone returns a deep copy of g: nodes, attributes, values and tensor data
// are copied, so a pass can try a rewrite on the copy and throw it away. The
// preserved parts of the model that the IR never edits (functions, metadata,
// sparse initializers) are shared. Names reserved by UniqueName stay
// reserved in the copy.
func (g *Graph) Clone() *Graph {
	c := &Graph{
		Name:       g.Name,
		Opsets:     maps.Clone(g.Opsets),
		IRVersion:  g.IRVersion,
		Inputs:     cloneValues(g.Inputs),
		Outputs:    cloneValues(g.Outputs),
		Nodes:      make([]*Node, len(g.Nodes)),
		inits:      make([]*Tensor, len(g.inits)),
		initPos:    maps.Clone(g.initPos),
		valueInfo:  cloneValues(g.valueInfo),
		viPos:      maps.Clone(g.viPos),
		sparse:     slices.Clone(g.sparse),
		model:      g.model,
		graph:      g.graph,
		opsetOrder: slices.Clone(g.opsetOrder),
		generated:  maps.Clone(g.generated),
		genNext:    maps.Clone(g.genNext),
	}
	for i, n := range g.Nodes {
		c.Nodes[i] = n.clone()
	}
	for i, t := range g.inits {
		c.inits[i] = t.Clone()
	}
	return c
}

func cloneValues(vs []*Value) []*Value {
	if vs == nil {
		return nil
	}
	out := make([]*Value, len(vs))
	for i, v := range vs {
		out[i] = v.clone()
	}
	return out
}
