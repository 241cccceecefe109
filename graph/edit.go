package graph

import (
	"slices"
	"strconv"
)

// AddNode appends n to the graph. Nodes added after their consumers are put
// in place by TopoSort (ToModel orders its output regardless).
func (g *Graph) AddNode(n *Node) {
	g.Nodes = append(g.Nodes, n)
	if g.idx != nil {
		g.idx.add(n)
	}
}

// RemoveNode deletes n from the graph. Values it produced become undefined;
// rewire their consumers first (ReplaceUses) or ToModel fails.
func (g *Graph) RemoveNode(n *Node) {
	i := slices.Index(g.Nodes, n)
	if i < 0 {
		return
	}
	g.Nodes = slices.Delete(g.Nodes, i, i+1)
	if g.idx != nil {
		g.idx.remove(n)
	}
}

// ReplaceInput sets input i of n to name and updates the indexes. An index
// past the end extends Inputs with empty (omitted optional) inputs, which is
// how an optional input such as a Conv bias is added; a negative one is
// ignored.
func (g *Graph) ReplaceInput(n *Node, i int, name string) {
	if i < 0 {
		return
	}
	for len(n.Inputs) <= i {
		n.Inputs = append(n.Inputs, "")
	}
	old := n.Inputs[i]
	n.Inputs[i] = name
	ix := g.idx
	if ix == nil {
		return
	}
	if name != "" {
		ix.names[name] = struct{}{}
	}
	if _, inGraph := ix.rank[n]; !inGraph || old == name {
		return
	}
	if old != "" && !usesValue(n, old) {
		ix.dropConsumer(old, n)
	}
	if name != "" {
		ix.addConsumer(name, n)
	}
}

// ReplaceUses makes every reader of old, except the nodes listed, read new
// instead; subgraphs that read old from the outer scope are rewritten too. A
// graph output called old is renamed to new, which changes the model's
// interface: to keep an output's name, rename the value at its producer
// instead and rewire the other way round.
func (g *Graph) ReplaceUses(old, new string, except ...*Node) {
	if old == new {
		return
	}
	ix := g.index()
	for _, c := range slices.Clone(ix.consumers[old]) {
		if slices.Contains(except, c) {
			continue
		}
		for i, in := range c.Inputs {
			if in == old {
				c.Inputs[i] = new
			}
		}
		if c.hasSubgraphs() {
			c.renameOuterRef(old, new)
		}
		ix.dropConsumer(old, c)
		if new != "" {
			ix.addConsumer(new, c)
		}
	}
	for _, v := range g.Outputs {
		if v.Name == old {
			v.Name = new
		}
	}
	ix.names[new] = struct{}{}
}

// UniqueName returns base if no value, node or initializer of the graph (or
// of its subgraphs) is called base and UniqueName never returned it, else
// base_1, base_2, ... whichever is first free. The name is reserved: later
// calls, on g or on its clones, never return it again.
func (g *Graph) UniqueName(base string) string {
	if base == "" {
		base = "v"
	}
	ix := g.index()
	name := base
	if _, used := ix.names[name]; used {
		if g.genNext == nil {
			g.genNext = map[string]int{}
		}
		k := max(g.genNext[base], 1)
		for {
			name = base + "_" + strconv.Itoa(k)
			k++
			if _, used := ix.names[name]; !used {
				break
			}
		}
		g.genNext[base] = k
	}
	if g.generated == nil {
		g.generated = map[string]struct{}{}
	}
	g.generated[name] = struct{}{}
	ix.names[name] = struct{}{}
	return name
}

// RemoveDead deletes the nodes none of whose outputs reach a graph output,
// then the initializers no remaining node reads (initializers that are also
// graph inputs or outputs stay), and value_info entries for values that no
// longer exist. It returns the number of nodes and initializers removed.
func (g *Graph) RemoveDead() int {
	ix := g.index()
	live := make(map[*Node]bool, len(g.Nodes))
	var stack []*Node
	for _, v := range g.Outputs {
		if p := ix.producer[v.Name]; p != nil {
			stack = append(stack, p)
		}
	}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if live[n] {
			continue
		}
		live[n] = true
		for _, in := range nodeUses(n) {
			if p := ix.producer[in]; p != nil && !live[p] {
				stack = append(stack, p)
			}
		}
	}
	removed := 0
	kept := g.Nodes[:0]
	for _, n := range g.Nodes {
		if live[n] {
			kept = append(kept, n)
			continue
		}
		ix.remove(n)
		removed++
	}
	clear(g.Nodes[len(kept):])
	g.Nodes = kept

	dead := map[string]bool{}
	for _, t := range g.inits {
		if len(ix.consumers[t.Name]) == 0 && !g.IsGraphInput(t.Name) && !g.IsGraphOutput(t.Name) {
			dead[t.Name] = true
		}
	}
	if len(dead) > 0 {
		g.removeInitializers(dead)
		removed += len(dead)
	}

	var gone []string
	sparse := g.sparseNames()
	for _, v := range g.valueInfo {
		if ix.producer[v.Name] == nil && g.Initializer(v.Name) == nil && !g.IsGraphInput(v.Name) &&
			!slices.Contains(sparse, v.Name) {
			gone = append(gone, v.Name)
		}
	}
	g.RemoveValueInfo(gone...)
	return removed
}
