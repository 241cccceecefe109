package onnx

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// countTensorMessages counts every TensorProto reachable from m by
// reflection, independently of visitModelTensors.
func countTensorMessages(m protoreflect.Message) int {
	n := 0
	if _, ok := m.Interface().(*TensorProto); ok {
		n++
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				n += countTensorMessages(v.List().Get(i).Message())
			}
		default:
			n += countTensorMessages(v.Message())
		}
		return true
	})
	return n
}

func countVisited(t *testing.T, m *ModelProto) int {
	n := 0
	require.NoError(t, visitModelTensors(m, func(string, *TensorProto) error { n++; return nil }))
	return n
}

// TestVisitModelTensorsComplete puts a tensor in every place ONNX allows
// one and checks that the walker Load and Validate rely on finds them all.
func TestVisitModelTensorsComplete(t *testing.T) {
	tensor := func(name string) *TensorProto {
		return &TensorProto{Name: name, DataType: int32(TensorProto_FLOAT), Dims: []int64{1}, RawData: make([]byte, 4)}
	}
	sparse := func(name string) *SparseTensorProto {
		return &SparseTensorProto{Values: tensor(name + ".values"), Indices: &TensorProto{Name: name + ".indices",
			DataType: int32(TensorProto_INT64), Dims: []int64{1}, Int64Data: []int64{0}}, Dims: []int64{4}}
	}
	attrs := func(prefix string, sub *GraphProto) []*AttributeProto {
		return []*AttributeProto{
			{Name: "t", Type: AttributeProto_TENSOR, T: tensor(prefix + "t")},
			{Name: "ts", Type: AttributeProto_TENSORS, Tensors: []*TensorProto{tensor(prefix + "ts0"), tensor(prefix + "ts1")}},
			{Name: "s", Type: AttributeProto_SPARSE_TENSOR, SparseTensor: sparse(prefix + "s")},
			{Name: "ss", Type: AttributeProto_SPARSE_TENSORS, SparseTensors: []*SparseTensorProto{sparse(prefix + "ss0")}},
			{Name: "g", Type: AttributeProto_GRAPH, G: sub},
			{Name: "gs", Type: AttributeProto_GRAPHS, Graphs: []*GraphProto{sub, sub}},
		}
	}
	leaf := &GraphProto{Initializer: []*TensorProto{tensor("leaf")}, SparseInitializer: []*SparseTensorProto{sparse("leafsparse")}}
	mid := &GraphProto{Initializer: []*TensorProto{tensor("mid")}, Node: []*NodeProto{{OpType: "X", Attribute: attrs("mid.", leaf)}}}
	m := tinyModel()
	m.Graph.SparseInitializer = []*SparseTensorProto{sparse("top")}
	m.Graph.Node[0].Attribute = append(m.Graph.Node[0].Attribute, attrs("top.", mid)...)
	m.TrainingInfo = []*TrainingInfoProto{{Initialization: &GraphProto{Initializer: []*TensorProto{tensor("ti")}}, Algorithm: mid}}
	m.Functions = []*FunctionProto{{Name: "f", Node: []*NodeProto{{OpType: "Y", Attribute: attrs("f.", leaf)}},
		AttributeProto: []*AttributeProto{{Name: "default", Type: AttributeProto_TENSOR, T: tensor("fdefault")}}}}

	want := countTensorMessages(m.ProtoReflect())
	assert.Greater(t, want, 50)
	assert.Equal(t, want, countVisited(t, m))
}

// TestUnknownFieldPaths makes sure the unknown-field check of the
// libonnx-testdata test can fail: unknown fields at depth, in a repeated
// field and inside a oneof member are all reported.
func TestUnknownFieldPaths(t *testing.T) {
	m := tinyModel()
	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7)
	m.Graph.Node[1].ProtoReflect().SetUnknown(unknown)
	m.Graph.Input[0].Type.GetTensorType().Shape.Dim[2].ProtoReflect().SetUnknown(unknown)
	b, err := Marshal(m)
	require.NoError(t, err)
	got, err := LoadBytes(b, "unknown.onnx", "")
	require.NoError(t, err, "unknown fields are legal protobuf; Load keeps them")
	assert.ElementsMatch(t, []string{
		`"graph.node[1]" (3 bytes)`,
		`"graph.input[0].type.tensor_type.shape.dim[2]" (3 bytes)`,
	}, unknownFieldPaths(got.ProtoReflect(), ""))
	assert.Empty(t, unknownFieldPaths(tinyModel().ProtoReflect(), ""))
}

// TestDeepNesting feeds models nested far deeper than real ones: subgraphs
// (bounded by maxGraphDepth) and plain messages (bounded by protobuf's
// recursion limit). Both must fail fast with a clear message.
func TestDeepNesting(t *testing.T) {
	m := tinyModel()
	g := m.Graph
	for range maxGraphDepth + 5 {
		sub := &GraphProto{}
		g.Node = append(g.Node, &NodeProto{OpType: "If", Attribute: []*AttributeProto{{Name: "g", Type: AttributeProto_GRAPH, G: sub}}})
		g = sub
	}
	b, err := Marshal(m)
	require.NoError(t, err)
	_, err = LoadBytes(b, "deep.onnx", "")
	requireOneLine(t, err, "deep.onnx")
	assert.ErrorContains(t, err, "subgraphs nest more than 100 levels deep")
	assert.ErrorContains(t, Validate(m), "subgraphs nest more than 100 levels deep")

	// A TypeProto nested 20000 sequences deep. Each level is a tag and the
	// length of what it encloses; sizes are computed from the inside out
	// so that building the input stays linear.
	type level struct {
		tag  protowire.Number
		size int // of the enclosed bytes
	}
	var levels []level
	size := 0
	for range 20000 {
		for _, tag := range []protowire.Number{1, 4} { // Sequence.elem_type, TypeProto.sequence_type
			levels = append(levels, level{tag, size})
			size = protowire.SizeTag(tag) + protowire.SizeBytes(size)
		}
	}
	var tp []byte
	for i := len(levels) - 1; i >= 0; i-- {
		tp = protowire.AppendVarint(protowire.AppendTag(tp, levels[i].tag, protowire.BytesType), uint64(levels[i].size))
	}
	vi := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), tp)     // ValueInfoProto.type
	graph := protowire.AppendBytes(protowire.AppendTag(nil, 11, protowire.BytesType), vi) // GraphProto.input
	model := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 8)
	model = protowire.AppendBytes(protowire.AppendTag(model, 7, protowire.BytesType), graph)
	require.Len(t, tp, size)
	_, err = LoadBytes(model, "deep2.onnx", "")
	requireOneLine(t, err, "deep2.onnx")
	assert.ErrorContains(t, err, "nest more than 10000 levels deep")
	assert.Less(t, len(err.Error()), 300, "the message must not spell out 10000 levels")
}

func TestPrintableLabels(t *testing.T) {
	n := &NodeProto{Name: "a\nb", OpType: "Conv\n"}
	assert.Equal(t, `node "a\nb" ("Conv\n")`, nodeLabel(n, 0))
	assert.False(t, strings.Contains(nodeLabel(n, 0), "\n"))
	assert.Equal(t, `node #3 (Relu)`, nodeLabel(&NodeProto{OpType: "Relu"}, 3))
}
