package graph

import (
	"github.com/srquant/srq/onnx"
)

// ElemTypes returns the element type of every value the graph defines or
// reads: graph inputs, initializers, and each node output, inferred forward
// in topological order from the operator's type rule. Value info recorded
// in the model wins where it names a type. Values whose type the rules
// cannot tell (a custom-domain op with no value info) are UNDEFINED.
//
// Why srq needs it: PyTorch exports of modern SR networks carry shape
// arithmetic (Shape → Gather → Mod → Pad, int64 and bool tensors) beside
// the float image path. Only float tensors are captured, quantized or
// compared; an int64 shape value declared as a float output makes ORT
// refuse the whole model.
func (g *Graph) ElemTypes() map[string]onnx.TensorProto_DataType {
	t := map[string]onnx.TensorProto_DataType{}
	for _, v := range g.Inputs {
		t[v.Name] = v.DType
	}
	for _, v := range g.Outputs {
		if v.DType != onnx.TensorProto_UNDEFINED {
			t[v.Name] = v.DType
		}
	}
	for _, v := range g.valueInfo {
		if v.DType != onnx.TensorProto_UNDEFINED {
			t[v.Name] = v.DType
		}
	}
	for _, in := range g.inits {
		t[in.Name] = in.DType
	}
	in := func(n *Node, i int) onnx.TensorProto_DataType {
		if i < len(n.Inputs) && n.Inputs[i] != "" {
			return t[n.Inputs[i]]
		}
		return onnx.TensorProto_UNDEFINED
	}
	order, err := g.topoOrder()
	if err != nil {
		order = g.Nodes
	}
	for _, n := range order {
		for i, out := range n.Outputs {
			if out == "" {
				continue
			}
			if dt, ok := t[out]; ok && dt != onnx.TensorProto_UNDEFINED {
				continue // value info said so
			}
			t[out] = outputType(n, i, in)
		}
	}
	return t
}

// IsFloat reports whether dt is a floating-point tensor type that srq
// quantizes (float32; float16 and bfloat16 models are float too).
func IsFloat(dt onnx.TensorProto_DataType) bool {
	switch dt {
	case onnx.TensorProto_FLOAT, onnx.TensorProto_FLOAT16, onnx.TensorProto_BFLOAT16, onnx.TensorProto_DOUBLE:
		return true
	}
	return false
}

// outputType is the element type of output i of n, given the types of its
// inputs. Operators whose output type is fixed or set by an attribute are
// listed; the rest keep the type of their data input, which is how the
// ONNX type constraints of every shape, elementwise, reduction and
// data-movement operator read (T in, T out).
func outputType(n *Node, i int, in func(*Node, int) onnx.TensorProto_DataType) onnx.TensorProto_DataType {
	if !isDefaultDomain(n.Domain) {
		if n.Domain == "com.microsoft" && n.OpType == "QuantizeLinear" {
			return zeroPointType(n, in)
		}
		if n.Domain == "com.microsoft" && n.OpType == "DequantizeLinear" {
			return onnx.TensorProto_FLOAT
		}
		return in(n, 0)
	}
	switch n.OpType {
	case "Shape", "Size", "NonZero", "ArgMax", "ArgMin":
		return onnx.TensorProto_INT64
	case "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor",
		"IsNaN", "IsInf":
		return onnx.TensorProto_BOOL
	case "Cast":
		return onnx.TensorProto_DataType(n.AttrInt("to", 0))
	case "CastLike":
		return in(n, 1)
	case "QuantizeLinear", "DynamicQuantizeLinear":
		if n.OpType == "DynamicQuantizeLinear" {
			if i == 0 {
				return onnx.TensorProto_UINT8
			}
			if i == 1 {
				return onnx.TensorProto_FLOAT
			}
			return onnx.TensorProto_UINT8
		}
		return zeroPointType(n, in)
	case "DequantizeLinear":
		if s := in(n, 1); s != onnx.TensorProto_UNDEFINED {
			return s
		}
		return onnx.TensorProto_FLOAT
	case "ConvInteger", "MatMulInteger":
		return onnx.TensorProto_INT32
	case "Constant":
		if c, ok := constantValue(n, ""); ok {
			return c.DType
		}
		for _, a := range n.Attrs {
			if a.GetName() == "value_string" || a.GetName() == "value_strings" {
				return onnx.TensorProto_STRING
			}
		}
		return onnx.TensorProto_UNDEFINED
	case "ConstantOfShape":
		if a := n.Attr("value"); a != nil && a.GetT() != nil {
			return onnx.TensorProto_DataType(a.GetT().GetDataType())
		}
		return onnx.TensorProto_FLOAT
	case "EyeLike", "RandomNormalLike", "RandomUniformLike":
		if dt := n.AttrInt("dtype", 0); dt != 0 {
			return onnx.TensorProto_DataType(dt)
		}
		return in(n, 0)
	case "RandomNormal", "RandomUniform":
		if dt := n.AttrInt("dtype", 0); dt != 0 {
			return onnx.TensorProto_DataType(dt)
		}
		return onnx.TensorProto_FLOAT
	case "Where":
		return in(n, 1)
	case "MaxPool":
		if i == 1 {
			return onnx.TensorProto_INT64 // indices
		}
	case "TopK":
		if i == 1 {
			return onnx.TensorProto_INT64
		}
	case "Unique":
		if i > 0 {
			return onnx.TensorProto_INT64
		}
	}
	return in(n, 0)
}

// zeroPointType is the output type of a QuantizeLinear: its zero point's
// type, or its output_dtype attribute, or uint8 as the standard says.
func zeroPointType(n *Node, in func(*Node, int) onnx.TensorProto_DataType) onnx.TensorProto_DataType {
	if zp := in(n, 2); zp != onnx.TensorProto_UNDEFINED {
		return zp
	}
	if dt := n.AttrInt("output_dtype", 0); dt != 0 {
		return onnx.TensorProto_DataType(dt)
	}
	return onnx.TensorProto_UINT8
}
