package graph

import (
	"fmt"
)

// check verifies that every value is defined exactly once and every read
// value is defined: the structural rules ORT enforces at load time, reported
// here with the node and input at fault. Cycles are found by topoOrder.
func (g *Graph) check() error {
	defined := make(map[string]string, len(g.Inputs)+len(g.inits)+len(g.sparse))
	for _, v := range g.Inputs {
		if _, dup := defined[v.Name]; dup {
			return fmt.Errorf("graph input %q is declared twice", v.Name)
		}
		defined[v.Name] = "graph input"
	}
	for _, t := range g.inits {
		if _, isInput := defined[t.Name]; !isInput {
			defined[t.Name] = "initializer" // an initializer may double as an input's default
		}
	}
	for _, name := range g.sparseNames() {
		if what, dup := defined[name]; dup {
			return fmt.Errorf("sparse initializer %q redefines a %s", name, what)
		}
		defined[name] = "sparse initializer"
	}
	producer := make(map[string]*Node, len(g.Nodes))
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o == "" {
				continue
			}
			if p, dup := producer[o]; dup {
				return fmt.Errorf("value %q is produced by both node %s and node %s", o, p, n)
			}
			if what, dup := defined[o]; dup {
				return fmt.Errorf("node %s: output %q redefines a %s", n, o, what)
			}
			producer[o] = n
		}
	}
	isDefined := func(name string) bool {
		_, a := defined[name]
		_, b := producer[name]
		return a || b
	}
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			if in != "" && !isDefined(in) {
				return fmt.Errorf("node %s: input %d %q is not a graph input, initializer or node output", n, i, in)
			}
		}
		for _, r := range n.outerRefs() {
			if !isDefined(r) {
				return fmt.Errorf("node %s: a subgraph reads %q, which the enclosing graph does not define", n, r)
			}
		}
	}
	for _, v := range g.Outputs {
		if !isDefined(v.Name) {
			return fmt.Errorf("graph output %q is not a graph input, initializer or node output", v.Name)
		}
	}
	return nil
}
