package graph

import (
	"fmt"
	"slices"
	"strings"
)

// TopoSort orders Nodes so that every node comes after the producers of the
// values it reads (subgraph reads included). Among the orders that do, it
// picks the one closest to the current order: a node is placed as soon as it
// is ready, earlier nodes first, so an already sorted graph is unchanged and
// appended nodes move up only as far as their inputs allow. A cycle is an
// error that lists the nodes on it.
func (g *Graph) TopoSort() error {
	order, err := g.topoOrder()
	if err != nil {
		return err
	}
	if !slices.Equal(order, g.Nodes) {
		g.Nodes = order
		g.Invalidate() // consumer lists are ordered by the old ranks
	}
	return nil
}

// topoOrder computes TopoSort's order without changing g.
func (g *Graph) topoOrder() ([]*Node, error) {
	nodes := g.Nodes
	prod := make(map[string]int, len(nodes))
	for i, n := range nodes {
		for _, o := range n.Outputs {
			if _, dup := prod[o]; o != "" && !dup {
				prod[o] = i
			}
		}
	}
	// preds[i] lists the distinct nodes node i reads from.
	preds := make([][]int, len(nodes))
	sorted := true
	for i, n := range nodes {
		for _, in := range nodeUses(n) {
			p, ok := prod[in]
			if !ok || slices.Contains(preds[i], p) {
				continue
			}
			preds[i] = append(preds[i], p)
			if p >= i {
				sorted = false
			}
		}
	}
	if sorted {
		return slices.Clone(nodes), nil
	}

	indeg := make([]int, len(nodes))
	succ := make([][]int, len(nodes))
	for i, ps := range preds {
		indeg[i] = len(ps)
		for _, p := range ps {
			succ[p] = append(succ[p], i)
		}
	}
	var ready minHeap
	for i, d := range indeg {
		if d == 0 {
			ready.push(i)
		}
	}
	order := make([]*Node, 0, len(nodes))
	for len(ready) > 0 {
		i := ready.pop()
		order = append(order, nodes[i])
		for _, s := range succ[i] {
			if indeg[s]--; indeg[s] == 0 {
				ready.push(s)
			}
		}
	}
	if len(order) < len(nodes) {
		return nil, g.cycleError(preds, indeg)
	}
	return order, nil
}

// cycleError finds a cycle among the nodes Kahn's algorithm could not place
// (those with indeg > 0). Each of them has an unplaced predecessor, so walking
// predecessors from any of them must revisit a node.
func (g *Graph) cycleError(preds [][]int, indeg []int) error {
	start := slices.IndexFunc(indeg, func(d int) bool { return d > 0 })
	seen := map[int]int{} // node -> position in path
	var path []int
	for cur := start; ; {
		if at, ok := seen[cur]; ok {
			path = path[at:]
			break
		}
		seen[cur] = len(path)
		path = append(path, cur)
		next := -1
		for _, p := range preds[cur] {
			if indeg[p] > 0 {
				next = p
				break
			}
		}
		if next < 0 { // cannot happen; keep the message useful anyway
			break
		}
		cur = next
	}
	// path runs against the data flow; print it along the data flow, from
	// the node that comes first in the graph.
	slices.Reverse(path)
	first := slices.Index(path, slices.Min(path))
	path = append(path[first:], path[:first]...)
	names := make([]string, 0, len(path)+1)
	for _, i := range path {
		names = append(names, g.Nodes[i].String())
	}
	names = append(names, g.Nodes[path[0]].String())
	return fmt.Errorf("graph %q has a cycle: %s", g.Name, strings.Join(names, " -> "))
}

// minHeap is a binary min-heap of node positions, so that among ready nodes
// the earliest in the original order is placed first.
type minHeap []int

func (h *minHeap) push(x int) {
	*h = append(*h, x)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if a[p] <= a[i] {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

func (h *minHeap) pop() int {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(a) && a[l] < a[m] {
			m = l
		}
		if r < len(a) && a[r] < a[m] {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}
