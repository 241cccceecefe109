package verify

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort/orttest"
)

const (
	edsrX2    = "../testdata/models/edsr_x2.onnx"
	testImage = "../testdata/images"
)

// requireORT initialises ORT or skips when the library is not installed.
func requireORT(t testing.TB) { orttest.Require(t) }

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

// smallImages writes w×h crops of the committed test images (real content,
// small enough that EDSR runs in milliseconds) into a new folder.
func smallImages(t *testing.T, w, h int) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"chelsea.png", "rocket.jpg", "brick.png"} {
		im, err := img.Read(filepath.Join(testImage, name))
		require.NoError(t, err)
		crop := img.Crop(im, im.W/3, im.H/3, w, h)
		require.NoError(t, img.WritePNG(filepath.Join(dir, name+".png"), crop))
	}
	return dir
}

// Builders for tiny hand-made models (opset 17): a per-channel 1×1 Conv on
// 3 channels ("SR" at scale 1), in float or in the QDQ form ORT fuses into
// QLinearConv (u8 activations with zero point, s8 weights, int32 bias).

func floatTensor(name string, dims []int64, v []float32) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), FloatData: v}
}

func rawTensor(name string, dt onnx.TensorProto_DataType, dims []int64, raw []byte) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(dt), RawData: raw}
}

func node(op, name string, in, out []string) *onnx.NodeProto {
	return &onnx.NodeProto{OpType: op, Name: name, Input: in, Output: out}
}

func imageIO(name string) *onnx.ValueInfoProto {
	dim := func(p string) *onnx.TensorShapeProto_Dimension {
		return &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: p}}
	}
	three := &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 3}}
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
		ElemType: int32(onnx.TensorProto_FLOAT),
		Shape:    &onnx.TensorShapeProto{Dim: []*onnx.TensorShapeProto_Dimension{dim("N"), three, dim("H"), dim("W")}},
	}}}}
}

// gain is the per-channel weight of the tiny conv: close to identity so the
// model behaves like a (scale 1) image model on 0..255 inputs.
var gain = []float32{0.9, 1.0, 0.95}

func tinyModel(g *onnx.GraphProto) []byte {
	g.Name = "tiny"
	g.Input = []*onnx.ValueInfoProto{imageIO("input")}
	g.Output = []*onnx.ValueInfoProto{imageIO("output")}
	m := &onnx.ModelProto{IrVersion: 8, OpsetImport: []*onnx.OperatorSetIdProto{{Version: 17}}, Graph: g}
	b, err := onnx.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// tinyFloatModel is output = Conv(input, diag(gain)) + 0.
func tinyFloatModel() []byte {
	w := make([]float32, 9)
	for i, v := range gain {
		w[i*3+i] = v
	}
	return tinyModel(&onnx.GraphProto{
		Initializer: []*onnx.TensorProto{floatTensor("w", []int64{3, 3, 1, 1}, w)},
		Node:        []*onnx.NodeProto{node("Conv", "conv", []string{"input", "w"}, []string{"output"})},
	})
}

// tinyQDQModel is the QDQ form of tinyFloatModel: Q→DQ on the input
// (u8, scale 1, zero point 0: exact on 0..255 integers), s8 per-channel
// weights, an int32 bias through DequantizeLinear, and Q→DQ on the output.
func tinyQDQModel() []byte {
	wq := make([]byte, 9)
	wScale := make([]float32, 3)
	for i, v := range gain {
		wScale[i] = v / 127
		wq[i*3+i] = 127
	}
	u8 := func(name string, v uint8) *onnx.TensorProto {
		return rawTensor(name, onnx.TensorProto_UINT8, nil, []byte{v})
	}
	f32 := func(name string, v float32) *onnx.TensorProto { return floatTensor(name, nil, []float32{v}) }
	bias := make([]byte, 12) // zeros
	bScale := make([]float32, 3)
	for i := range bScale {
		bScale[i] = 1 * wScale[i] // input scale × weight scale
	}
	dq := node("DequantizeLinear", "w_dq", []string{"wq", "w_scale", "w_zp"}, []string{"w"})
	dq.Attribute = []*onnx.AttributeProto{{Name: "axis", Type: onnx.AttributeProto_INT, I: new(int64)}}
	bdq := node("DequantizeLinear", "b_dq", []string{"bq", "b_scale", "b_zp"}, []string{"b"})
	bdq.Attribute = []*onnx.AttributeProto{{Name: "axis", Type: onnx.AttributeProto_INT, I: new(int64)}}
	return tinyModel(&onnx.GraphProto{
		Initializer: []*onnx.TensorProto{
			f32("x_scale", 1), u8("x_zp", 0), f32("y_scale", 1), u8("y_zp", 0),
			rawTensor("wq", onnx.TensorProto_INT8, []int64{3, 3, 1, 1}, wq),
			floatTensor("w_scale", []int64{3}, wScale),
			rawTensor("w_zp", onnx.TensorProto_INT8, []int64{3}, make([]byte, 3)),
			rawTensor("bq", onnx.TensorProto_INT32, []int64{3}, bias),
			floatTensor("b_scale", []int64{3}, bScale),
			rawTensor("b_zp", onnx.TensorProto_INT32, []int64{3}, make([]byte, 12)),
		},
		Node: []*onnx.NodeProto{
			node("QuantizeLinear", "in_q", []string{"input", "x_scale", "x_zp"}, []string{"xq"}),
			node("DequantizeLinear", "in_dq", []string{"xq", "x_scale", "x_zp"}, []string{"x"}),
			dq, bdq,
			node("Conv", "conv", []string{"x", "w", "b"}, []string{"y"}),
			node("QuantizeLinear", "out_q", []string{"y", "y_scale", "y_zp"}, []string{"yq"}),
			node("DequantizeLinear", "out_dq", []string{"yq", "y_scale", "y_zp"}, []string{"output"}),
		},
	})
}
