package graph

// Const returns the constant value of name: an initializer, or the value of a
// Constant node (value, value_float(s), value_int(s) attributes), looking
// through any chain of Identity nodes in between, as PyTorch exports reuse a
// shared weight through an Identity. An initializer that is also a graph
// input is not constant (callers may override it at run time).
//
// For an initializer the Graph's own tensor is returned (do not modify it);
// for a Constant node a new tensor named after its output, aliasing the
// attribute's bytes.
func (g *Graph) Const(name string) (*Tensor, bool) {
	for range len(g.Nodes) + 1 { // a longer chain would be a cycle
		if t := g.Initializer(name); t != nil {
			if g.IsGraphInput(name) {
				return nil, false
			}
			return t, true
		}
		n := g.Producer(name)
		if n == nil || !isDefaultDomain(n.Domain) {
			return nil, false
		}
		switch n.OpType {
		case "Identity":
			if len(n.Inputs) != 1 || n.Inputs[0] == "" {
				return nil, false
			}
			name = n.Inputs[0]
		case "Constant":
			return constantValue(n, name)
		default:
			return nil, false
		}
	}
	return nil, false
}

// constantValue decodes the tensor a Constant node outputs, for the attribute
// forms that define a numeric tensor.
func constantValue(n *Node, out string) (*Tensor, bool) {
	for _, a := range n.Attrs {
		switch a.GetName() {
		case "value":
			t, err := TensorFromProto(a.GetT())
			if err != nil {
				return nil, false
			}
			t.Name = out
			return t, true
		case "value_float":
			return NewFloat32(out, nil, []float32{a.GetF()}), true
		case "value_floats":
			return NewFloat32(out, []int64{int64(len(a.GetFloats()))}, a.GetFloats()), true
		case "value_int":
			return NewInt64(out, nil, []int64{a.GetI()}), true
		case "value_ints":
			return NewInt64(out, []int64{int64(len(a.GetInts()))}, a.GetInts()), true
		}
	}
	return nil, false
}

// isDefaultDomain reports whether d names the standard ai.onnx operator set.
func isDefaultDomain(d string) bool { return d == "" || d == "ai.onnx" }
