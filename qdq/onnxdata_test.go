package qdq

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// onnxNodeTests is where Debian's libonnx-testdata keeps ONNX's operator
// conformance cases: model.onnx plus test_data_set_0/{input,output}_N.pb.
const onnxNodeTests = "/usr/share/libonnx-testdata/data/node"

// onnxCase is one decoded conformance case.
type onnxCase struct {
	node    *onnx.NodeProto
	inputs  []*onnx.TensorProto
	outputs []*onnx.TensorProto
}

// loadONNXCase reads a conformance case, skipping the test when Debian's
// package is not installed.
func loadONNXCase(t *testing.T, name string) onnxCase {
	t.Helper()
	dir := filepath.Join(onnxNodeTests, name)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("ONNX conformance data not installed (%s missing; apt-get install libonnx-testdata)", dir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	require.NoError(t, err)
	var m onnx.ModelProto
	require.NoError(t, proto.Unmarshal(raw, &m), "%s/model.onnx", name)
	nodes := m.GetGraph().GetNode()
	require.NotEmpty(t, nodes, "%s: model has no nodes", name)
	c := onnxCase{node: nodes[len(nodes)-1]}
	read := func(kind string) []*onnx.TensorProto {
		var ts []*onnx.TensorProto
		for i := 0; ; i++ {
			raw, err := os.ReadFile(filepath.Join(dir, "test_data_set_0", fmt.Sprintf("%s_%d.pb", kind, i)))
			if os.IsNotExist(err) {
				return ts
			}
			require.NoError(t, err)
			var tp onnx.TensorProto
			require.NoError(t, proto.Unmarshal(raw, &tp), "%s %s_%d.pb", name, kind, i)
			ts = append(ts, &tp)
		}
	}
	c.inputs, c.outputs = read("input"), read("output")
	require.NotEmpty(t, c.inputs, name)
	require.NotEmpty(t, c.outputs, name)
	return c
}

// Tensor element types used by the quantization cases (onnx.proto DataType).
const (
	dtFloat = 1
	dtUint8 = 2
	dtInt8  = 3
	dtInt32 = 6
)

// tensorFloats decodes a FLOAT tensor from raw_data or float_data.
func tensorFloats(t *testing.T, tp *onnx.TensorProto) []float32 {
	t.Helper()
	require.Equal(t, int32(dtFloat), tp.GetDataType(), "tensor %q is not FLOAT", tp.GetName())
	if raw := tp.GetRawData(); len(raw) > 0 {
		require.Zero(t, len(raw)%4, "tensor %q: raw_data length %d", tp.GetName(), len(raw))
		v := make([]float32, len(raw)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return v
	}
	return tp.GetFloatData()
}

// tensorInts decodes an INT8/UINT8/INT32 tensor from raw_data or int32_data.
func tensorInts(t *testing.T, tp *onnx.TensorProto) []int32 {
	t.Helper()
	raw := tp.GetRawData()
	if len(raw) == 0 {
		return tp.GetInt32Data()
	}
	var v []int32
	switch tp.GetDataType() {
	case dtUint8:
		for _, b := range raw {
			v = append(v, int32(b))
		}
	case dtInt8:
		for _, b := range raw {
			v = append(v, int32(int8(b)))
		}
	case dtInt32:
		for i := 0; i+4 <= len(raw); i += 4 {
			v = append(v, int32(binary.LittleEndian.Uint32(raw[i:])))
		}
	default:
		t.Fatalf("tensor %q: unsupported data type %d", tp.GetName(), tp.GetDataType())
	}
	return v
}

// gridOf returns the integer grid of an ONNX quantized element type.
func gridOf(t *testing.T, dataType int32) (qmin, qmax int32) {
	t.Helper()
	switch dataType {
	case dtUint8:
		return 0, 255
	case dtInt8:
		return -128, 127
	}
	t.Fatalf("unsupported quantized type %d", dataType)
	return 0, 0
}

// caseParams builds the per-tensor or per-axis Params of a QuantizeLinear or
// DequantizeLinear case (inputs x, scale, optional zero point; attribute
// axis, default 1) and returns, for each element of x, its Params.
func caseParams(t *testing.T, c onnxCase, quantType int32) []Params {
	t.Helper()
	scales := tensorFloats(t, c.inputs[1])
	zps := make([]int32, len(scales))
	if len(c.inputs) > 2 {
		zps = tensorInts(t, c.inputs[2])
		quantType = c.inputs[2].GetDataType()
	}
	require.Len(t, zps, len(scales))
	qmin, qmax := gridOf(t, quantType)
	axis := int64(1)
	for _, a := range c.node.GetAttribute() {
		if a.GetName() == "axis" {
			axis = a.GetI()
		}
	}
	dims := c.inputs[0].GetDims()
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	per := make([]Params, n)
	inner := int64(1)
	if len(scales) > 1 { // per axis: channel of element i is (i / inner) % C
		if axis < 0 {
			axis += int64(len(dims))
		}
		require.Equal(t, int64(len(scales)), dims[axis])
		for _, d := range dims[axis+1:] {
			inner *= d
		}
	}
	for i := range per {
		ch := (int64(i) / inner) % int64(len(scales))
		per[i] = Params{Scale: scales[ch], ZeroPoint: zps[ch], QMin: qmin, QMax: qmax}
	}
	return per
}

func TestONNXQuantizeLinear(t *testing.T) {
	for _, name := range []string{"test_quantizelinear", "test_quantizelinear_axis"} {
		t.Run(name, func(t *testing.T) {
			c := loadONNXCase(t, name)
			require.Equal(t, "QuantizeLinear", c.node.GetOpType())
			x := tensorFloats(t, c.inputs[0])
			want := tensorInts(t, c.outputs[0])
			per := caseParams(t, c, dtUint8)
			require.Len(t, want, len(x))
			for i, v := range x {
				require.Equal(t, want[i], per[i].Quantize(v), "%s element %d (x=%g, %+v)", name, i, v, per[i])
			}
		})
	}
}

func TestONNXDequantizeLinear(t *testing.T) {
	for _, name := range []string{"test_dequantizelinear", "test_dequantizelinear_axis"} {
		t.Run(name, func(t *testing.T) {
			c := loadONNXCase(t, name)
			require.Equal(t, "DequantizeLinear", c.node.GetOpType())
			q := tensorInts(t, c.inputs[0])
			want := tensorFloats(t, c.outputs[0])
			per := caseParams(t, c, c.inputs[0].GetDataType())
			require.Len(t, want, len(q))
			for i, v := range q {
				require.Equal(t, want[i], per[i].Dequantize(v), "%s element %d (q=%d, %+v)", name, i, v, per[i])
			}
		})
	}
}

// TestONNXDynamicQuantizeLinear checks Asymmetric against ONNX's reference
// for DynamicQuantizeLinear, which chooses (scale, zero point) from the
// tensor's own min and max exactly as Asymmetric(min, max, 8) does, then
// quantizes with them.
func TestONNXDynamicQuantizeLinear(t *testing.T) {
	for _, name := range []string{
		"test_dynamicquantizelinear",
		"test_dynamicquantizelinear_max_adjusted",
		"test_dynamicquantizelinear_min_adjusted",
	} {
		t.Run(name, func(t *testing.T) {
			c := loadONNXCase(t, name)
			require.Equal(t, "DynamicQuantizeLinear", c.node.GetOpType())
			require.Len(t, c.outputs, 3)
			x := tensorFloats(t, c.inputs[0])
			lo, hi := x[0], x[0]
			for _, v := range x {
				lo, hi = min(lo, v), max(hi, v)
			}
			p := Asymmetric(lo, hi, 8)
			require.Equal(t, tensorFloats(t, c.outputs[1])[0], p.Scale, "scale")
			require.Equal(t, tensorInts(t, c.outputs[2])[0], p.ZeroPoint, "zero point")
			want := tensorInts(t, c.outputs[0])
			got := make([]uint8, len(x))
			require.NoError(t, QuantizeUint8(got, x, p))
			for i := range x {
				require.Equal(t, want[i], int32(got[i]), "element %d (x=%g)", i, x[i])
			}
		})
	}
}

// TestONNXRound checks the rounding rule alone against ONNX's Round cases
// (half to even), through a unit-scale quantizer on a wide grid.
func TestONNXRound(t *testing.T) {
	c := loadONNXCase(t, "test_round")
	x := tensorFloats(t, c.inputs[0])
	want := tensorFloats(t, c.outputs[0])
	p := Params{Scale: 1, ZeroPoint: 0, QMin: -1 << 20, QMax: 1 << 20}
	for i, v := range x {
		require.Equal(t, want[i], float32(p.Quantize(v)), "Round(%g)", v)
	}
}
