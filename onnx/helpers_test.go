package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Paths to data outside the repository; tests that need them skip when
// they are absent.
const (
	libonnxTestdata = "/usr/share/libonnx-testdata/data"
	sharedModels    = "../../shared/models" // relative to the package dir
	repoEDSR        = "../testdata/models/edsr_x2.onnx"
)

// unknownFieldPaths lists every message under m (recursively, through
// singular, repeated and oneof message fields) that carries unknown fields.
// proto.Equal round trips pass even with a wrong field number in
// onnx.proto, because protobuf keeps the bytes as unknown fields; this is
// what catches such a mistake.
func unknownFieldPaths(m protoreflect.Message, path string) []string {
	var out []string
	if len(m.GetUnknown()) > 0 {
		out = append(out, fmt.Sprintf("%q (%d bytes)", path, len(m.GetUnknown())))
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		name := string(fd.Name())
		if path != "" {
			name = path + "." + name
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				out = append(out, unknownFieldPaths(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i))...)
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Message() != nil {
					out = append(out, unknownFieldPaths(mv.Message(), name+"[]")...)
				}
				return true
			})
		default:
			out = append(out, unknownFieldPaths(v.Message(), name)...)
		}
		return true
	})
	return out
}

// dataProtoTypes builds, from onnx-data.proto's field list (ONNX 1.12+;
// confirmed against python3-onnx), the SequenceProto, MapProto and
// OptionalProto messages the ONNX backend tests use for non-tensor inputs.
// srq does not need them, so they live in the tests, as dynamic messages on
// top of our onnx.proto.
func dataProtoTypes(t testing.TB) map[string]protoreflect.MessageDescriptor {
	t.Helper()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	i32 := descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum()
	i64 := descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum()
	byt := descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum()
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	field := func(name string, num int32, label *descriptorpb.FieldDescriptorProto_Label, typ *descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Label: label, Type: typ}
		if typeName != "" {
			f.TypeName = proto.String(".onnx." + typeName)
		}
		return f
	}
	values := func(label *descriptorpb.FieldDescriptorProto_Label, suffix string) []*descriptorpb.FieldDescriptorProto {
		return []*descriptorpb.FieldDescriptorProto{
			field("name", 1, opt, str, ""),
			field("elem_type", 2, opt, i32, ""),
			field("tensor_value"+suffix, 3, label, msg, "TensorProto"),
			field("sparse_tensor_value"+suffix, 4, label, msg, "SparseTensorProto"),
			field("sequence_value"+suffix, 5, label, msg, "SequenceProto"),
			field("map_value"+suffix, 6, label, msg, "MapProto"),
			field("optional_value"+suffix, 7, label, msg, "OptionalProto"),
		}
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("srq_test_onnx_data.proto"),
		Package:    proto.String("onnx"),
		Dependency: []string{File_onnx_proto.Path()},
		Syntax:     proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("SequenceProto"), Field: values(rep, "s")},
			{Name: proto.String("OptionalProto"), Field: values(opt, "")},
			{Name: proto.String("MapProto"), Field: []*descriptorpb.FieldDescriptorProto{
				field("name", 1, opt, str, ""),
				field("key_type", 2, opt, i32, ""),
				field("keys", 3, rep, i64, ""),
				field("string_keys", 4, rep, byt, ""),
				field("values", 5, opt, msg, "SequenceProto"),
			}},
		},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	require.NoError(t, err)
	out := map[string]protoreflect.MessageDescriptor{}
	for i := 0; i < fd.Messages().Len(); i++ {
		out[string(fd.Messages().Get(i).Name())] = fd.Messages().Get(i)
	}
	return out
}

// testdataModels lists libonnx-testdata's model.onnx files, sorted, or
// skips the test when the package is not installed.
func testdataModels(t testing.TB) []string {
	t.Helper()
	if _, err := os.Stat(libonnxTestdata); err != nil {
		t.Skipf("%s absent (Debian package libonnx-testdata not installed): %v", libonnxTestdata, err)
	}
	var paths []string
	err := filepath.WalkDir(libonnxTestdata, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "model.onnx" {
			paths = append(paths, p)
		}
		return nil
	})
	require.NoError(t, err)
	return paths // WalkDir visits in lexical order
}

// sharedModelPaths lists ../shared/models/*.onnx or skips.
func sharedModelPaths(t testing.TB) []string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(sharedModels, "*.onnx"))
	if len(paths) == 0 {
		t.Skipf("no models in %s (the shared folder beside the checkout is absent)", sharedModels)
	}
	return paths
}

// floatRaw encodes vals as little-endian float32 raw_data.
func floatRaw(vals ...float32) []byte {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// rampRaw is n float32 values 0, 1, 2, ... as raw_data.
func rampRaw(n int) []byte {
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i)
	}
	return floatRaw(vals...)
}

// tinyModel is a valid two-node model, y = Relu(Conv(x, w, b)), with a
// 4x3x3x3 weight (432 bytes of raw_data) and a 4-element bias.
func tinyModel() *ModelProto {
	f := int32(TensorProto_FLOAT)
	dims := func(d ...int64) *TensorShapeProto {
		s := &TensorShapeProto{}
		for _, v := range d {
			s.Dim = append(s.Dim, &TensorShapeProto_Dimension{Value: &TensorShapeProto_Dimension_DimValue{DimValue: v}})
		}
		return s
	}
	value := func(name string, d ...int64) *ValueInfoProto {
		return &ValueInfoProto{Name: name, Type: &TypeProto{Value: &TypeProto_TensorType{TensorType: &TypeProto_Tensor{ElemType: f, Shape: dims(d...)}}}}
	}
	return &ModelProto{
		IrVersion:    8,
		ProducerName: "srq-test",
		OpsetImport:  []*OperatorSetIdProto{{Domain: "", Version: 17}},
		Graph: &GraphProto{
			Name:   "tiny",
			Input:  []*ValueInfoProto{value("x", 1, 3, 8, 8)},
			Output: []*ValueInfoProto{value("y", 1, 4, 8, 8)},
			Initializer: []*TensorProto{
				{Name: "w", DataType: f, Dims: []int64{4, 3, 3, 3}, RawData: rampRaw(108)},
				{Name: "b", DataType: f, Dims: []int64{4}, FloatData: []float32{0.5, -1, 2, 0}},
			},
			Node: []*NodeProto{
				{Name: "conv", OpType: "Conv", Input: []string{"x", "w", "b"}, Output: []string{"c"},
					Attribute: []*AttributeProto{{Name: "pads", Type: AttributeProto_INTS, Ints: []int64{1, 1, 1, 1}}}},
				{Name: "relu", OpType: "Relu", Input: []string{"c"}, Output: []string{"y"}},
			},
		},
	}
}
