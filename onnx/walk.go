package onnx

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// maxGraphDepth bounds how deeply subgraphs (If/Loop/Scan bodies) may nest.
// Real models nest a few levels; the bound keeps hostile files, which
// protobuf lets nest thousands of levels deep, from costing quadratic time
// and memory in the messages built per level.
const maxGraphDepth = 100

// tensorVisitor is called once for every TensorProto that carries data in a
// model. where says where the tensor lives in words fit for an error message,
// e.g. `tensor "conv.weight"` or
// `node "If_0" (If) attribute "then_branch": tensor "w"`.
type tensorVisitor func(where string, t *TensorProto) error

// visitModelTensors calls fn for the tensors of the main graph, of every
// subgraph (If/Loop/Scan bodies in attributes, at any depth), of the
// training-info graphs and of the model-local functions. It stops at the
// first error fn returns and returns it unchanged.
func visitModelTensors(m *ModelProto, fn tensorVisitor) error {
	if g := m.GetGraph(); g != nil {
		if err := visitGraphTensors(g, "", 0, fn); err != nil {
			return err
		}
	}
	for i, ti := range m.GetTrainingInfo() {
		if g := ti.GetInitialization(); g != nil {
			if err := visitGraphTensors(g, fmt.Sprintf("training_info[%d] initialization: ", i), 0, fn); err != nil {
				return err
			}
		}
		if g := ti.GetAlgorithm(); g != nil {
			if err := visitGraphTensors(g, fmt.Sprintf("training_info[%d] algorithm: ", i), 0, fn); err != nil {
				return err
			}
		}
	}
	for _, f := range m.GetFunctions() {
		prefix := fmt.Sprintf("function %q: ", f.GetName())
		for i, n := range f.GetNode() {
			if err := visitNodeTensors(n, i, prefix, 0, fn); err != nil {
				return err
			}
		}
		for _, a := range f.GetAttributeProto() {
			if err := visitAttrTensors(a, fmt.Sprintf("%sattribute %q", prefix, a.GetName()), 0, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// visitGraphTensors visits g's initializers, sparse initializers and the
// tensors in its nodes' attributes; prefix is prepended to every where.
// depth is the number of graphs enclosing g.
func visitGraphTensors(g *GraphProto, prefix string, depth int, fn tensorVisitor) error {
	if depth > maxGraphDepth {
		return fmt.Errorf("subgraphs nest more than %d levels deep", maxGraphDepth)
	}
	for _, t := range g.GetInitializer() {
		if err := fn(prefix+tensorLabel(t), t); err != nil {
			return err
		}
	}
	for i, s := range g.GetSparseInitializer() {
		if err := visitSparse(s, fmt.Sprintf("%ssparse_initializer[%d]", prefix, i), fn); err != nil {
			return err
		}
	}
	for i, n := range g.GetNode() {
		if err := visitNodeTensors(n, i, prefix, depth, fn); err != nil {
			return err
		}
	}
	return nil
}

func visitNodeTensors(n *NodeProto, index int, prefix string, depth int, fn tensorVisitor) error {
	for _, a := range n.GetAttribute() {
		if !attrHasTensors(a) {
			continue
		}
		where := fmt.Sprintf("%s%s attribute %q", prefix, nodeLabel(n, index), a.GetName())
		if err := visitAttrTensors(a, where, depth, fn); err != nil {
			return err
		}
	}
	return nil
}

func attrHasTensors(a *AttributeProto) bool {
	return a.GetT() != nil || a.GetG() != nil || a.GetSparseTensor() != nil ||
		len(a.GetTensors()) > 0 || len(a.GetGraphs()) > 0 || len(a.GetSparseTensors()) > 0
}

func visitAttrTensors(a *AttributeProto, where string, depth int, fn tensorVisitor) error {
	if t := a.GetT(); t != nil {
		if err := fn(where+": "+tensorLabel(t), t); err != nil {
			return err
		}
	}
	for i, t := range a.GetTensors() {
		if err := fn(fmt.Sprintf("%s[%d]: %s", where, i, tensorLabel(t)), t); err != nil {
			return err
		}
	}
	if s := a.GetSparseTensor(); s != nil {
		if err := visitSparse(s, where, fn); err != nil {
			return err
		}
	}
	for i, s := range a.GetSparseTensors() {
		if err := visitSparse(s, fmt.Sprintf("%s[%d]", where, i), fn); err != nil {
			return err
		}
	}
	if g := a.GetG(); g != nil {
		if err := visitGraphTensors(g, where+": ", depth+1, fn); err != nil {
			return err
		}
	}
	for i, g := range a.GetGraphs() {
		if err := visitGraphTensors(g, fmt.Sprintf("%s[%d]: ", where, i), depth+1, fn); err != nil {
			return err
		}
	}
	return nil
}

func visitSparse(s *SparseTensorProto, where string, fn tensorVisitor) error {
	if t := s.GetValues(); t != nil {
		if err := fn(where+" values: "+tensorLabel(t), t); err != nil {
			return err
		}
	}
	if t := s.GetIndices(); t != nil {
		if err := fn(where+" indices: "+tensorLabel(t), t); err != nil {
			return err
		}
	}
	return nil
}

// tensorLabel is `tensor "name"`, or `unnamed tensor` for the (legal)
// tensors without a name, e.g. in Constant attributes.
func tensorLabel(t *TensorProto) string {
	if t.GetName() == "" {
		return "unnamed tensor"
	}
	return fmt.Sprintf("tensor %q", t.GetName())
}

// nodeLabel is `node "conv1" (Conv)`, or `node #3 (Conv)` when the node has
// no name (names are optional in ONNX).
func nodeLabel(n *NodeProto, index int) string {
	if n.GetName() == "" {
		return fmt.Sprintf("node #%d (%s)", index, printable(n.GetOpType()))
	}
	return fmt.Sprintf("node %q (%s)", n.GetName(), printable(n.GetOpType()))
}

// printable returns s, quoted if it holds characters that could break a
// one-line message (newlines, control characters).
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
