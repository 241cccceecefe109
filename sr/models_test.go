package sr

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// Tiny ONNX models built in the tests, for behaviour no real SR model shows
// (classifiers, downsamplers, odd shapes) and for exact tiling checks.

// sym marks a symbolic dimension in vi.
const sym = -1

// vi declares a float tensor value; sym dims become named parameters.
func vi(name string, dims ...int64) *onnx.ValueInfoProto {
	shape := &onnx.TensorShapeProto{}
	for i, d := range dims {
		dim := &onnx.TensorShapeProto_Dimension{}
		if d == sym {
			dim.Value = &onnx.TensorShapeProto_Dimension_DimParam{DimParam: name + "_d" + string(rune('0'+i))}
		} else {
			dim.Value = &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
		TensorType: &onnx.TypeProto_Tensor{ElemType: int32(onnx.TensorProto_FLOAT), Shape: shape},
	}}}
}

// floats is a float initializer.
func floats(name string, dims []int64, v []float32) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), FloatData: v}
}

func intAttr(name string, v int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: &v}
}

func intsAttr(name string, v ...int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INTS, Ints: v}
}

// build serialises a one-input, one-output opset-17 model.
func build(t *testing.T, in, out *onnx.ValueInfoProto, inits []*onnx.TensorProto, nodes ...*onnx.NodeProto) []byte {
	t.Helper()
	m := &onnx.ModelProto{
		IrVersion:   int64(onnx.Version_IR_VERSION_2021_7_30),
		OpsetImport: []*onnx.OperatorSetIdProto{{Version: 17}},
		Graph: &onnx.GraphProto{
			Name: "test", Node: nodes, Initializer: inits,
			Input: []*onnx.ValueInfoProto{in}, Output: []*onnx.ValueInfoProto{out},
		},
	}
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

// convWeights returns deterministic weights for a cout×cin×k×k conv that
// mix neighbours (so tiles need context) and sum to about 1 per output.
func convWeights(cout, cin, k int) []float32 {
	w := make([]float32, cout*cin*k*k)
	for i := range w {
		w[i] = float32(1+math.Sin(float64(i)*1.7)) / float32(cin*k*k)
	}
	return w
}

// conv3 is a 3×3, pad-1 conv node with its weight initializer.
func conv3(name, in, out string, cin, cout int) (*onnx.NodeProto, *onnx.TensorProto) {
	wname := name + ".weight"
	return &onnx.NodeProto{
			Name: name, OpType: "Conv", Input: []string{in, wname}, Output: []string{out},
			Attribute: []*onnx.AttributeProto{intsAttr("kernel_shape", 3, 3), intsAttr("pads", 1, 1, 1, 1)},
		},
		floats(wname, []int64{int64(cout), int64(cin), 3, 3}, convWeights(cout, cin, 3))
}

// convSRModel is a toy x2 SR network: convs 3×3 (each widens the receptive
// field by one LR pixel), then a conv to 12 channels and DepthToSpace(2).
// Its receptive-field radius is convs+1 LR pixels.
func convSRModel(t *testing.T, convs int) []byte {
	var nodes []*onnx.NodeProto
	var inits []*onnx.TensorProto
	prev := "x"
	for i := range convs {
		out := "h" + string(rune('a'+i))
		n, w := conv3(out, prev, out, 3, 3)
		nodes, inits = append(nodes, n), append(inits, w)
		prev = out
	}
	n, w := conv3("up", prev, "up", 3, 12)
	nodes, inits = append(nodes, n), append(inits, w)
	nodes = append(nodes, &onnx.NodeProto{OpType: "DepthToSpace", Input: []string{"up"}, Output: []string{"y"},
		Attribute: []*onnx.AttributeProto{intAttr("blocksize", 2), {Name: "mode", Type: onnx.AttributeProto_STRING, S: []byte("CRD")}}})
	return build(t, vi("x", sym, 3, sym, sym), vi("y", sym, 3, sym, sym), inits, nodes...)
}

// classifierModel pools the image to one value per channel: output [N, 3].
func classifierModel(t *testing.T) []byte {
	return build(t, vi("x", sym, 3, sym, sym), vi("y", sym, 3), nil,
		&onnx.NodeProto{OpType: "GlobalAveragePool", Input: []string{"x"}, Output: []string{"p"}},
		&onnx.NodeProto{OpType: "Flatten", Input: []string{"p"}, Output: []string{"y"}})
}

// downsampleModel is a stride-2 conv: output half the input size.
func downsampleModel(t *testing.T) []byte {
	n, w := conv3("down", "x", "y", 3, 3)
	n.Attribute = append(n.Attribute, intsAttr("strides", 2, 2))
	return build(t, vi("x", sym, 3, sym, sym), vi("y", sym, 3, sym, sym), []*onnx.TensorProto{w}, n)
}

// resizeModel resizes by the given per-axis scales (NCHW).
func resizeModel(t *testing.T, sh, sw float32) []byte {
	return build(t, vi("x", sym, 3, sym, sym), vi("y", sym, 3, sym, sym),
		[]*onnx.TensorProto{floats("scales", []int64{4}, []float32{1, 1, sh, sw})},
		&onnx.NodeProto{OpType: "Resize", Input: []string{"x", "", "scales"}, Output: []string{"y"}})
}

// grayOutModel upscales x2 but returns one channel.
func grayOutModel(t *testing.T) []byte {
	n, w := conv3("up", "x", "up", 3, 4)
	return build(t, vi("x", sym, 3, sym, sym), vi("y", sym, 1, sym, sym), []*onnx.TensorProto{w}, n,
		&onnx.NodeProto{OpType: "DepthToSpace", Input: []string{"up"}, Output: []string{"y"}, Attribute: []*onnx.AttributeProto{intAttr("blocksize", 2)}})
}

// vectorModel takes a [1, 1000] vector.
func vectorModel(t *testing.T) []byte {
	return build(t, vi("x", 1, 1000), vi("y", 1, 1000), nil,
		&onnx.NodeProto{OpType: "Relu", Input: []string{"x"}, Output: []string{"y"}})
}

// grayInModel takes one-channel images.
func grayInModel(t *testing.T) []byte {
	return build(t, vi("x", sym, 1, sym, sym), vi("y", sym, 1, sym, sym), nil,
		&onnx.NodeProto{OpType: "Relu", Input: []string{"x"}, Output: []string{"y"}})
}
