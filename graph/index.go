package graph

import (
	"slices"

	"github.com/srquant/srq/onnx"
)

// index links values to the nodes that produce and read them. It is built on
// the first query after Invalidate and then kept current by the editing
// methods, so passes can interleave edits and queries at no rebuild cost.
type index struct {
	// rank orders nodes as in g.Nodes. Ranks only need to be increasing
	// along g.Nodes, so removing a node keeps them valid and AddNode just
	// takes the next one.
	rank     map[*Node]int
	nextRank int
	producer map[string]*Node
	// consumers lists, per value, each node that reads it once, by rank.
	consumers map[string][]*Node
	// names holds every name in use (values, nodes, subgraph contents) and
	// every name UniqueName handed out.
	names map[string]struct{}
}

// Invalidate drops the producer/consumer indexes. Call it after editing
// Node.Inputs, Node.Outputs, Node.Name, Node.Attrs subgraphs, Graph.Nodes,
// Graph.Inputs or Graph.Outputs directly rather than through Graph methods.
func (g *Graph) Invalidate() { g.idx = nil }

func (g *Graph) index() *index {
	if g.idx != nil {
		return g.idx
	}
	ix := &index{
		rank:      make(map[*Node]int, len(g.Nodes)),
		producer:  make(map[string]*Node, len(g.Nodes)),
		consumers: make(map[string][]*Node, len(g.Nodes)+len(g.inits)),
		names:     make(map[string]struct{}, 2*len(g.Nodes)+len(g.inits)+len(g.generated)),
	}
	for _, n := range g.Nodes {
		ix.add(n)
	}
	for _, v := range g.Inputs {
		ix.names[v.Name] = struct{}{}
	}
	for _, v := range g.Outputs {
		ix.names[v.Name] = struct{}{}
	}
	for _, v := range g.valueInfo {
		ix.names[v.Name] = struct{}{}
	}
	for _, t := range g.inits {
		ix.names[t.Name] = struct{}{}
	}
	for _, s := range g.sparse {
		ix.names[s.GetValues().GetName()] = struct{}{}
	}
	for name := range g.generated {
		ix.names[name] = struct{}{}
	}
	g.idx = ix
	return ix
}

// add indexes n as the last node in graph order.
func (ix *index) add(n *Node) {
	ix.rank[n] = ix.nextRank
	ix.nextRank++
	ix.names[n.Name] = struct{}{}
	for _, o := range n.Outputs {
		if o == "" {
			continue
		}
		ix.names[o] = struct{}{}
		if _, dup := ix.producer[o]; !dup {
			ix.producer[o] = n
		}
	}
	for _, in := range nodeUses(n) {
		ix.names[in] = struct{}{}
		if l := ix.consumers[in]; len(l) == 0 || l[len(l)-1] != n {
			ix.consumers[in] = append(l, n)
		}
	}
	if n.hasSubgraphs() {
		n.subgraphs(func(sg *onnx.GraphProto) {
			allNames(sg, func(s string) { ix.names[s] = struct{}{} })
		})
	}
}

// remove drops n from the index.
func (ix *index) remove(n *Node) {
	for _, o := range n.Outputs {
		if o != "" && ix.producer[o] == n {
			delete(ix.producer, o)
		}
	}
	for _, in := range nodeUses(n) {
		ix.dropConsumer(in, n)
	}
	delete(ix.rank, n)
}

func (ix *index) dropConsumer(name string, n *Node) {
	l := ix.consumers[name]
	if i := slices.Index(l, n); i >= 0 {
		l = slices.Delete(l, i, i+1)
		if len(l) == 0 {
			delete(ix.consumers, name)
		} else {
			ix.consumers[name] = l
		}
	}
}

// addConsumer inserts n into name's consumer list at its rank, once.
func (ix *index) addConsumer(name string, n *Node) {
	l := ix.consumers[name]
	r := ix.rank[n]
	i, found := slices.BinarySearchFunc(l, r, func(c *Node, r int) int { return ix.rank[c] - r })
	if found {
		return
	}
	ix.consumers[name] = slices.Insert(l, i, n)
}

// nodeUses lists the values n reads, each once: its non-empty inputs, then
// the outer values its subgraphs read.
func nodeUses(n *Node) []string {
	uses := make([]string, 0, len(n.Inputs))
	for _, in := range n.Inputs {
		if in != "" && !slices.Contains(uses, in) {
			uses = append(uses, in)
		}
	}
	for _, r := range n.outerRefs() {
		if !slices.Contains(uses, r) {
			uses = append(uses, r)
		}
	}
	return uses
}

// usesValue reports whether n reads name through an input or a subgraph.
func usesValue(n *Node, name string) bool {
	return slices.Contains(n.Inputs, name) || slices.Contains(n.outerRefs(), name)
}

// Producer returns the node whose output is name, or nil for graph inputs,
// initializers and unknown names.
func (g *Graph) Producer(name string) *Node {
	return g.index().producer[name]
}

// Consumers returns the nodes that read name, each once, in graph order. A
// node whose subgraph reads name from the outer scope counts as a consumer.
// The slice is a copy, so callers may edit the graph while ranging over it.
func (g *Graph) Consumers(name string) []*Node {
	return slices.Clone(g.index().consumers[name])
}

// IsGraphOutput reports whether name is one of the graph's outputs.
func (g *Graph) IsGraphOutput(name string) bool {
	for _, v := range g.Outputs {
		if v.Name == name {
			return true
		}
	}
	return false
}

// IsGraphInput reports whether name is one of the graph's inputs.
func (g *Graph) IsGraphInput(name string) bool {
	for _, v := range g.Inputs {
		if v.Name == name {
			return true
		}
	}
	return false
}
