// Package passes holds srq's graph rewrites. Each pass is a small value with a
// name, a one-line doc and a Run method; whatever a pass needs beyond the
// graph (calibrated ranges, layer policy) is a field of the pass, declared
// up front rather than fetched from globals. Every pass leaves a graph that
// converts back to a valid model.
package passes

import (
	"fmt"

	"github.com/srquant/srq/graph"
)

// Pass is one graph rewrite.
type Pass interface {
	// Name is a short kebab-case identifier used in logs and errors.
	Name() string
	// Doc is a one-line description.
	Doc() string
	// Run rewrites g in place.
	Run(g *graph.Graph) error
}

// Run applies the passes in order and leaves g topologically sorted.
func Run(g *graph.Graph, ps ...Pass) error {
	for _, p := range ps {
		if err := p.Run(g); err != nil {
			return fmt.Errorf("pass %s: %w", p.Name(), err)
		}
		if err := g.TopoSort(); err != nil {
			return fmt.Errorf("pass %s: %w", p.Name(), err)
		}
	}
	return nil
}

// isOp reports whether n is the standard (ai.onnx) operator op.
func isOp(n *graph.Node, op string) bool {
	return n.OpType == op && (n.Domain == "" || n.Domain == "ai.onnx")
}

// input returns n's i-th input name, or "" when absent.
func input(n *graph.Node, i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}
