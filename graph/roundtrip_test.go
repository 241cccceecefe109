package graph

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/srquant/srq/onnx"
)

// TestRoundTripSharedModels: an unedited FromModel -> ToModel reproduces each
// real model exactly, without copying weights and without touching the input.
func TestRoundTripSharedModels(t *testing.T) {
	for _, path := range sharedModelPaths(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m := loadModel(t, path)
			orig := proto.Clone(m)

			start := time.Now()
			g, err := FromModel(m)
			require.NoError(t, err)
			loaded := time.Since(start)
			out, err := g.ToModel()
			require.NoError(t, err)
			total := time.Since(start)
			t.Logf("%d nodes, %d initializers: FromModel %v, FromModel+ToModel %v", len(g.Nodes), len(g.Initializers()), loaded, total)

			assert.True(t, proto.Equal(orig, out), "round trip must reproduce the model")
			assert.True(t, proto.Equal(orig, m), "FromModel/ToModel must not modify the input")
			for i, tp := range out.Graph.Initializer {
				if src := m.Graph.Initializer[i].RawData; len(src) > 0 {
					require.Same(t, &src[0], &tp.RawData[0], "weights of %q were copied", tp.Name)
				}
			}
			assert.Zero(t, g.RemoveDead(), "SR models have no dead code")
		})
	}
}

// TestEDSRMeanShiftThroughIdentity: PyTorch exports EDSR's shared mean-shift
// weight once and feeds the second Conv through an Identity.
func TestEDSRMeanShiftThroughIdentity(t *testing.T) {
	m := loadModel(t, filepath.Join(sharedModels, "edsr_x2.onnx"))
	g := mustGraph(t, m)

	var conv *Node
	for _, n := range g.Nodes {
		if n.OpType == "Conv" && len(n.Inputs) > 1 {
			if p := g.Producer(n.Inputs[1]); p != nil && p.OpType == "Identity" {
				require.Nil(t, conv, "expected exactly one Conv fed through an Identity")
				conv = n
			}
		}
	}
	require.NotNil(t, conv, "no Conv weight comes through an Identity")
	id := g.Producer(conv.Inputs[1])
	assert.Nil(t, g.Initializer(conv.Inputs[1]), "the weight itself is not an initializer")

	// Decode the source initializer straight from the proto.
	var src *onnx.TensorProto
	for _, tp := range m.Graph.Initializer {
		if tp.Name == id.Inputs[0] {
			src = tp
		}
	}
	require.NotNil(t, src, "Identity input %q is not an initializer", id.Inputs[0])
	want := make([]float32, len(src.RawData)/4)
	for i := range want {
		want[i] = math.Float32frombits(binary.LittleEndian.Uint32(src.RawData[4*i:]))
	}

	c, ok := g.Const(conv.Inputs[1])
	require.True(t, ok, "Const(%q)", conv.Inputs[1])
	got, err := c.Float32()
	require.NoError(t, err)
	assert.Equal(t, src.Dims, c.Dims)
	assert.Equal(t, []int64{3, 3, 1, 1}, c.Dims, "mean shift is a 1x1 conv")
	assert.Equal(t, want, got)
	t.Logf("Conv %s reads %q = Identity(%q), %v", conv, conv.Inputs[1], id.Inputs[0], c.Dims)
}

// TestPreservesUnmodelledFields fills every ModelProto/GraphProto/NodeProto/
// ValueInfoProto/TensorProto field the IR does not model (found by
// reflection, so a field added to onnx.proto later is covered too) plus
// unknown fields, and requires an exact round trip.
func TestPreservesUnmodelledFields(t *testing.T) {
	m := model("x", "y", []*Tensor{NewFloat32("w", []int64{1}, []float32{2})},
		nd("Add", "x,w", "y"),
	)
	unknown := protoreflect.RawFields{0xF8, 0xFF, 0x07, 0x01} // field 131071, varint 1

	fillExcept(m, 3, "ir_version", "opset_import", "graph")
	m.OpsetImport = []*onnx.OperatorSetIdProto{{Domain: "com.microsoft", Version: 1}, {Version: 17}}
	fillExcept(m.Graph, 3, "node", "initializer", "sparse_initializer", "input", "output", "value_info", "name")
	m.Graph.SparseInitializer = []*onnx.SparseTensorProto{{
		Values:  NewFloat32("sp", []int64{1}, []float32{1}).Proto(),
		Indices: NewInt64("", []int64{1}, []int64{0}).Proto(),
		Dims:    []int64{4},
	}}
	fillExcept(m.Graph.Node[0], 3, "input", "output", "name", "op_type", "domain", "attribute")
	fillExcept(m.Graph.Input[0], 3, "name", "type")
	fillExcept(m.Graph.Output[0].Type, 3, "tensor_type", "sequence_type", "map_type", "optional_type",
		"sparse_tensor_type", "opaque_type")
	fillExcept(m.Graph.Initializer[0], 3, "dims", "data_type", "name", "raw_data", "float_data", "int32_data",
		"string_data", "int64_data", "double_data", "uint64_data", "external_data", "data_location")
	m.Graph.ValueInfo = []*onnx.ValueInfoProto{{Name: "seq", Type: &onnx.TypeProto{Value: &onnx.TypeProto_SequenceType{
		SequenceType: &onnx.TypeProto_Sequence{ElemType: &onnx.TypeProto{}}}}}}
	for _, msg := range []proto.Message{m, m.Graph, m.Graph.Node[0], m.Graph.Input[0], m.Graph.Initializer[0]} {
		msg.ProtoReflect().SetUnknown(unknown)
	}
	m.Graph.Node[0].Attribute = []*onnx.AttributeProto{{Name: "a", Type: onnx.AttributeProto_INT, I: proto.Int64(1), DocString: "d"}}
	orig := proto.Clone(m).(*onnx.ModelProto)

	g := mustGraph(t, m)
	out, err := g.ToModel()
	require.NoError(t, err)
	assert.True(t, proto.Equal(orig, out), "got %v", out)

	c, err := g.Clone().ToModel()
	require.NoError(t, err)
	assert.True(t, proto.Equal(orig, c), "a clone writes the same model")

	// Editing a value keeps what does not depend on the edit.
	g.Inputs[0].Shape = ShapeOf(2)
	out, err = g.ToModel()
	require.NoError(t, err)
	assert.Equal(t, orig.Graph.Input[0].DocString, out.Graph.Input[0].DocString)
	assert.Equal(t, int64(2), out.Graph.Input[0].Type.GetTensorType().Shape.Dim[0].GetDimValue())
}

// fillExcept sets every field of msg not named in skip to a non-default
// value, recursing depth levels into messages.
func fillExcept(msg proto.Message, depth int, skip ...string) {
	fill(msg.ProtoReflect(), depth, skip)
}

func fill(m protoreflect.Message, depth int, skip []string) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if containsName(skip, string(fd.Name())) {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			if fd.Kind() == protoreflect.MessageKind {
				if depth > 0 {
					e := l.NewElement()
					fill(e.Message(), depth-1, nil)
					l.Append(e)
				}
			} else {
				l.Append(scalarValue(fd))
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth > 0 {
				fill(m.Mutable(fd).Message(), depth-1, nil)
			}
		default:
			m.Set(fd, scalarValue(fd))
		}
	}
}

func scalarValue(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(7)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(7)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(7)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(7)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(2.5)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("s_" + string(fd.Name()))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("b_" + string(fd.Name())))
	}
	panic("unhandled kind " + fd.Kind().String())
}

func containsName(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// BenchmarkRoundTripRCAN times FromModel+ToModel on the largest SR model.
func BenchmarkRoundTripRCAN(b *testing.B) {
	m := loadModel(b, filepath.Join(sharedModels, "rcan_x4.onnx"))
	b.ReportAllocs()
	for b.Loop() {
		g, err := FromModel(m)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := g.ToModel(); err != nil {
			b.Fatal(err)
		}
	}
}
