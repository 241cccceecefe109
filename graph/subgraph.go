package graph

import (
	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// Control-flow nodes (If, Loop, Scan) carry subgraphs as GRAPH/GRAPHS
// attributes, kept as protos. A subgraph may read values of enclosing graphs
// by name; for liveness, consumer lists and renaming those reads count as
// uses by the node that owns the subgraph.

// hasSubgraphs reports whether any attribute of n holds a graph.
func (n *Node) hasSubgraphs() bool {
	for _, a := range n.Attrs {
		if a.GetG() != nil || len(a.GetGraphs()) > 0 {
			return true
		}
	}
	return false
}

// subgraphs calls f for every graph held directly by n's attributes.
func (n *Node) subgraphs(f func(g *onnx.GraphProto)) {
	for _, a := range n.Attrs {
		if a.GetG() != nil {
			f(a.GetG())
		}
		for _, g := range a.GetGraphs() {
			f(g)
		}
	}
}

// outerRefs returns the names n's subgraphs read from enclosing scopes, each
// once, in first-use order. Nil for ordinary nodes.
func (n *Node) outerRefs() []string {
	if !n.hasSubgraphs() {
		return nil
	}
	var refs []string
	seen := map[string]bool{}
	n.subgraphs(func(g *onnx.GraphProto) {
		freeNames(g, func(name string) {
			if !seen[name] {
				seen[name] = true
				refs = append(refs, name)
			}
		})
	})
	return refs
}

// freeNames calls f for each name g (or a graph nested in it) reads without
// defining it in that scope or a scope between it and g.
func freeNames(g *onnx.GraphProto, f func(string)) {
	local := localNames(g)
	use := func(name string) {
		if name != "" && !local[name] {
			f(name)
		}
	}
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			use(in)
		}
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil {
				freeNames(a.GetG(), use)
			}
			for _, sg := range a.GetGraphs() {
				freeNames(sg, use)
			}
		}
	}
	for _, out := range g.GetOutput() {
		use(out.GetName())
	}
}

// localNames is the set of values g defines itself.
func localNames(g *onnx.GraphProto) map[string]bool {
	local := map[string]bool{}
	for _, v := range g.GetInput() {
		local[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		local[t.GetName()] = true
	}
	for _, t := range g.GetSparseInitializer() {
		local[t.GetValues().GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			local[o] = true
		}
	}
	return local
}

// allNames calls f for every value and node name inside g, recursively, so
// that UniqueName never hands out a name that a subgraph would shadow.
func allNames(g *onnx.GraphProto, f func(string)) {
	for _, v := range g.GetInput() {
		f(v.GetName())
	}
	for _, v := range g.GetOutput() {
		f(v.GetName())
	}
	for _, v := range g.GetValueInfo() {
		f(v.GetName())
	}
	for _, t := range g.GetInitializer() {
		f(t.GetName())
	}
	for _, t := range g.GetSparseInitializer() {
		f(t.GetValues().GetName())
	}
	for _, n := range g.GetNode() {
		f(n.GetName())
		for _, s := range n.GetInput() {
			f(s)
		}
		for _, s := range n.GetOutput() {
			f(s)
		}
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil {
				allNames(a.GetG(), f)
			}
			for _, sg := range a.GetGraphs() {
				allNames(sg, f)
			}
		}
	}
}

// renameOuterRef makes n's subgraphs read new instead of the outer value old.
// Attributes are copied before editing because they may be shared with the
// source model or other graphs.
func (n *Node) renameOuterRef(old, new string) {
	for i, a := range n.Attrs {
		if a.GetG() == nil && len(a.GetGraphs()) == 0 {
			continue
		}
		uses := false
		check := func(name string) {
			if name == old {
				uses = true
			}
		}
		if a.GetG() != nil {
			freeNames(a.GetG(), check)
		}
		for _, g := range a.GetGraphs() {
			freeNames(g, check)
		}
		if !uses {
			continue
		}
		c := proto.Clone(a).(*onnx.AttributeProto)
		if c.G != nil {
			renameFree(c.G, old, new)
		}
		for _, g := range c.Graphs {
			renameFree(g, old, new)
		}
		n.Attrs[i] = c
	}
}

// renameFree rewrites reads of the free name old in g (and nested graphs
// that do not define old themselves) to new. g must be a private copy.
func renameFree(g *onnx.GraphProto, old, new string) {
	if localNames(g)[old] {
		return // shadowed: this scope's old is a different value
	}
	for _, n := range g.Node {
		for i, in := range n.Input {
			if in == old {
				n.Input[i] = new
			}
		}
		for _, a := range n.Attribute {
			if a.G != nil {
				renameFree(a.G, old, new)
			}
			for _, sg := range a.Graphs {
				renameFree(sg, old, new)
			}
		}
	}
	for _, out := range g.Output {
		if out.Name == old {
			out.Name = new
		}
	}
}
