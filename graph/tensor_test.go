package graph

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// le encodes values little-endian, independently of the code under test.
func le(vals ...any) []byte {
	var b []byte
	for _, v := range vals {
		switch x := v.(type) {
		case float32:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		case float64:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		default:
			var err error
			b, err = binary.Append(b, binary.LittleEndian, v)
			if err != nil {
				panic(err)
			}
		}
	}
	return b
}

// TestTensorFromProtoTypedFields checks every typed-field layout the ONNX
// spec assigns against the raw_data form of the same values.
func TestTensorFromProtoTypedFields(t *testing.T) {
	tests := []struct {
		name  string
		dtype onnx.TensorProto_DataType
		dims  []int64
		set   func(p *onnx.TensorProto)
		raw   []byte
	}{
		{"float", onnx.TensorProto_FLOAT, []int64{2}, func(p *onnx.TensorProto) { p.FloatData = []float32{1.5, -2} }, le(float32(1.5), float32(-2))},
		{"complex64", onnx.TensorProto_COMPLEX64, []int64{2}, func(p *onnx.TensorProto) { p.FloatData = []float32{1, 2, 3, 4} },
			le(float32(1), float32(2), float32(3), float32(4))},
		{"double", onnx.TensorProto_DOUBLE, []int64{2}, func(p *onnx.TensorProto) { p.DoubleData = []float64{0.1, -1e300} }, le(0.1, -1e300)},
		{"complex128", onnx.TensorProto_COMPLEX128, []int64{1}, func(p *onnx.TensorProto) { p.DoubleData = []float64{1, -1} }, le(1.0, -1.0)},
		{"int64", onnx.TensorProto_INT64, []int64{2}, func(p *onnx.TensorProto) { p.Int64Data = []int64{-1, 1 << 40} }, le(int64(-1), int64(1<<40))},
		{"uint64", onnx.TensorProto_UINT64, []int64{2}, func(p *onnx.TensorProto) { p.Uint64Data = []uint64{1 << 63, 2} }, le(uint64(1<<63), uint64(2))},
		{"uint32", onnx.TensorProto_UINT32, []int64{2}, func(p *onnx.TensorProto) { p.Uint64Data = []uint64{4e9, 1} }, le(uint32(4e9), uint32(1))},
		{"int32", onnx.TensorProto_INT32, []int64{2}, func(p *onnx.TensorProto) { p.Int32Data = []int32{-7, 1 << 30} }, le(int32(-7), int32(1<<30))},
		{"int16", onnx.TensorProto_INT16, []int64{2}, func(p *onnx.TensorProto) { p.Int32Data = []int32{-2, 300} }, le(int16(-2), int16(300))},
		{"uint16", onnx.TensorProto_UINT16, []int64{2}, func(p *onnx.TensorProto) { p.Int32Data = []int32{65535, 1} }, le(uint16(65535), uint16(1))},
		{"float16 bits", onnx.TensorProto_FLOAT16, []int64{2}, func(p *onnx.TensorProto) { p.Int32Data = []int32{0x3C00, 0xC000} }, le(uint16(0x3C00), uint16(0xC000))},
		{"bfloat16 bits", onnx.TensorProto_BFLOAT16, []int64{1}, func(p *onnx.TensorProto) { p.Int32Data = []int32{0x3F80} }, le(uint16(0x3F80))},
		{"int8", onnx.TensorProto_INT8, []int64{3}, func(p *onnx.TensorProto) { p.Int32Data = []int32{-128, 127, 0} }, []byte{0x80, 0x7F, 0}},
		{"uint8", onnx.TensorProto_UINT8, []int64{2}, func(p *onnx.TensorProto) { p.Int32Data = []int32{255, 3} }, []byte{255, 3}},
		{"bool", onnx.TensorProto_BOOL, []int64{3}, func(p *onnx.TensorProto) { p.Int32Data = []int32{1, 0, 1} }, []byte{1, 0, 1}},
		{"float8e4m3fn bits", onnx.TensorProto_FLOAT8E4M3FN, []int64{2}, func(p *onnx.TensorProto) { p.Int32Data = []int32{0x38, 0xB8} }, []byte{0x38, 0xB8}},
		{"float8e5m2 bits", onnx.TensorProto_FLOAT8E5M2, []int64{1}, func(p *onnx.TensorProto) { p.Int32Data = []int32{0x3C} }, []byte{0x3C}},
		// 4-bit types: each int32 holds one packed byte (two values, low nibble first).
		{"int4 odd count", onnx.TensorProto_INT4, []int64{3}, func(p *onnx.TensorProto) { p.Int32Data = []int32{0x78, 0x0F} }, []byte{0x78, 0x0F}},
		{"uint4", onnx.TensorProto_UINT4, []int64{2, 2}, func(p *onnx.TensorProto) { p.Int32Data = []int32{0xF0, 0x93} }, []byte{0xF0, 0x93}},
		{"empty", onnx.TensorProto_FLOAT, []int64{0, 3}, func(p *onnx.TensorProto) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typed := &onnx.TensorProto{Name: "t", DataType: int32(tt.dtype), Dims: tt.dims}
			tt.set(typed)
			raw := &onnx.TensorProto{Name: "t", DataType: int32(tt.dtype), Dims: tt.dims, RawData: tt.raw}

			a, err := TensorFromProto(typed)
			require.NoError(t, err)
			b, err := TensorFromProto(raw)
			require.NoError(t, err)
			assert.Equal(t, len(tt.raw), len(a.Data))
			if len(tt.raw) > 0 {
				assert.Equal(t, tt.raw, a.Data)
			}
			assert.Equal(t, a.Data, b.Data)
			assert.Equal(t, tt.dtype, a.DType)
			assert.Equal(t, tt.dims, a.Dims)
			require.NoError(t, a.Validate())

			p := a.Proto()
			assert.Equal(t, a.Data, p.RawData, "Proto always writes raw_data")
			assert.Empty(t, p.FloatData)
			assert.Empty(t, p.Int32Data)
			c, err := TensorFromProto(p)
			require.NoError(t, err)
			assert.Equal(t, a.Data, c.Data)
		})
	}
}

func TestTensorFromProtoString(t *testing.T) {
	p := &onnx.TensorProto{Name: "s", DataType: int32(onnx.TensorProto_STRING), Dims: []int64{2}, StringData: [][]byte{[]byte("a"), []byte("bc")}}
	s, err := TensorFromProto(p)
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte("a"), []byte("bc")}, s.StringData)
	assert.Equal(t, p.StringData, s.Proto().StringData)
	require.NoError(t, s.Validate())
}

func TestTensorFromProtoErrors(t *testing.T) {
	tests := []struct {
		name string
		p    *onnx.TensorProto
		want string
	}{
		{"nil", nil, "nil TensorProto"},
		{"raw size", &onnx.TensorProto{Name: "w", DataType: 1, Dims: []int64{3}, RawData: make([]byte, 8)},
			`tensor "w": FLOAT tensor of shape [3] has 8 bytes of raw_data, want 12`},
		{"no data", &onnx.TensorProto{Name: "w", DataType: 1, Dims: []int64{3}}, "has 0 bytes of raw_data, want 12"},
		{"typed count", &onnx.TensorProto{Name: "w", DataType: 6, Dims: []int64{3}, Int32Data: []int32{1}},
			"INT32 tensor of shape [3] has 1 int32_data elements, want 3"},
		{"int4 count", &onnx.TensorProto{Name: "w", DataType: 22, Dims: []int64{3}, Int32Data: []int32{1, 2, 3}},
			"INT4 tensor of shape [3] has 3 int32_data elements, want 2"},
		{"wrong field", &onnx.TensorProto{Name: "w", DataType: 1, Dims: []int64{1}, Int64Data: []int64{1}},
			"has 0 float_data elements, want 1"},
		{"external", &onnx.TensorProto{Name: "w", DataType: 1, Dims: []int64{1}, DataLocation: onnx.TensorProto_EXTERNAL},
			"stored externally"},
		{"negative dim", &onnx.TensorProto{Name: "w", DataType: 1, Dims: []int64{2, -1}}, "negative dimension -1"},
		{"overflow", &onnx.TensorProto{Name: "w", DataType: 1, Dims: []int64{1 << 31, 1 << 31, 1 << 31}}, "more than"},
		{"undefined type", &onnx.TensorProto{Name: "w", Dims: []int64{1}, RawData: []byte{1}}, "unsupported UNDEFINED"},
		{"unknown type", &onnx.TensorProto{Name: "w", DataType: 99, Dims: []int64{1}}, "unsupported data type 99"},
		{"string count", &onnx.TensorProto{Name: "w", DataType: 8, Dims: []int64{2}}, "has 0 string_data elements, want 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TensorFromProto(tt.p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestTypedConstructorsAndAccessors(t *testing.T) {
	f, err := NewFloat32("f", []int64{2}, []float32{1.25, -3}).Float32()
	require.NoError(t, err)
	assert.Equal(t, []float32{1.25, -3}, f)

	i8, err := NewInt8("i8", []int64{2}, []int8{-128, 5}).Int8()
	require.NoError(t, err)
	assert.Equal(t, []int8{-128, 5}, i8)

	u8, err := NewUint8("u8", []int64{2}, []uint8{255, 0}).Uint8()
	require.NoError(t, err)
	assert.Equal(t, []uint8{255, 0}, u8)

	i32, err := NewInt32("i32", []int64{2}, []int32{-1, 1 << 30}).Int32()
	require.NoError(t, err)
	assert.Equal(t, []int32{-1, 1 << 30}, i32)

	i64, err := NewInt64("i64", nil, []int64{-5}).Int64()
	require.NoError(t, err)
	assert.Equal(t, []int64{-5}, i64)

	i4, err := NewInt4("i4", []int64{5}, []int8{-8, -1, 0, 7, 3}).Int4()
	require.NoError(t, err)
	assert.Equal(t, []int8{-8, -1, 0, 7, 3}, i4)

	u4, err := NewUint4("u4", []int64{3}, []uint8{15, 0, 9}).Uint4()
	require.NoError(t, err)
	assert.Equal(t, []uint8{15, 0, 9}, u4)

	_, err = NewInt8("q", []int64{1}, []int8{1}).Float32()
	assert.EqualError(t, err, `tensor "q" is INT8, not FLOAT`)
	bad := NewFloat32("bad", []int64{3}, []float32{1})
	_, err = bad.Float32()
	assert.EqualError(t, err, `tensor "bad": FLOAT tensor of shape [3] has 4 data bytes, want 12`)

	g := New("g", map[string]int64{"": 17})
	g.SetInitializer(bad)
	_, err = g.ToModel()
	assert.ErrorContains(t, err, `initializer: tensor "bad"`)

	assert.Equal(t, 1, NewFloat32("s", nil, []float32{1}).NumElements())
	assert.Equal(t, 0, NewFloat32("e", []int64{2, 0}, nil).NumElements())
	assert.Equal(t, 24, (&Tensor{Dims: []int64{2, 3, 4}}).NumElements())
}

func TestInt4Packing(t *testing.T) {
	tests := []struct {
		name   string
		vals   []int8
		packed []byte
	}{
		{"empty", []int8{}, []byte{}},
		{"one", []int8{-1}, []byte{0x0F}},
		{"extremes", []int8{-8, 7}, []byte{0x78}},
		{"low nibble first", []int8{1, 2, 3, 4}, []byte{0x21, 0x43}},
		{"odd count", []int8{-8, 7, -1}, []byte{0x78, 0x0F}},
		{"negatives", []int8{-2, -3, -4, -5, -6, -7}, []byte{0xDE, 0xBC, 0x9A}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.packed, PackInt4(tt.vals))
			assert.Equal(t, tt.vals, UnpackInt4(tt.packed, len(tt.vals)))
		})
	}
	// Every value survives, alone and in either nibble.
	for v := int8(-8); v <= 7; v++ {
		assert.Equal(t, []int8{v, -v / 2}, UnpackInt4(PackInt4([]int8{v, -v / 2}), 2))
	}
	assert.Equal(t, []byte{0x08}, PackInt4([]int8{24}), "only the low 4 bits are kept")
	assert.Len(t, UnpackInt4([]byte{0x12}, 5), 2, "n is capped at 2*len(b)")

	utests := []struct {
		vals   []uint8
		packed []byte
	}{
		{[]uint8{0, 15}, []byte{0xF0}},
		{[]uint8{1, 2, 3}, []byte{0x21, 0x03}},
		{[]uint8{15, 15, 15, 15}, []byte{0xFF, 0xFF}},
	}
	for _, tt := range utests {
		assert.Equal(t, tt.packed, PackUint4(tt.vals))
		assert.Equal(t, tt.vals, UnpackUint4(tt.packed, len(tt.vals)))
	}
	assert.Empty(t, UnpackUint4(nil, -1))
}

func TestNodeAttrs(t *testing.T) {
	shared := &onnx.AttributeProto{Name: "group", Type: onnx.AttributeProto_INT, I: proto.Int64(4)}
	n := &Node{OpType: "Conv", Attrs: []*onnx.AttributeProto{shared,
		{Name: "legacy", I: proto.Int64(3)}, // type field unset, as old exporters wrote it
		{Name: "pads", Type: onnx.AttributeProto_INTS, Ints: []int64{1, 1, 1, 1}},
		{Name: "mode", Type: onnx.AttributeProto_STRING, S: []byte("DCR")},
		{Name: "alpha", Type: onnx.AttributeProto_FLOAT, F: proto.Float32(0.1)},
	}}
	assert.Equal(t, int64(4), n.AttrInt("group", 1))
	assert.Equal(t, int64(3), n.AttrInt("legacy", 1))
	assert.Equal(t, int64(1), n.AttrInt("missing", 1))
	assert.Equal(t, int64(1), n.AttrInt("mode", 1), "wrong type gives the default")
	assert.Equal(t, []int64{1, 1, 1, 1}, n.AttrInts("pads"))
	assert.Nil(t, n.AttrInts("strides"))
	assert.Equal(t, "DCR", n.AttrString("mode", "CRD"))
	assert.Equal(t, "x", n.AttrString("auto_pad", "x"))
	assert.Equal(t, float32(0.1), n.AttrFloat("alpha", 0.2))

	n.SetAttrInt("group", 1)
	assert.Equal(t, int64(4), shared.GetI(), "a shared attribute proto is replaced, not edited")
	assert.Equal(t, int64(1), n.AttrInt("group", 0))
	assert.Equal(t, "group", n.Attrs[0].Name, "position kept")
	n.SetAttrInts("strides", []int64{2, 2})
	n.SetAttrFloat("alpha", 0.5)
	n.SetAttrString("mode", "CRD")
	n.SetAttrTensor("value", NewFloat32("", []int64{1}, []float32{3}))
	assert.Equal(t, []int64{2, 2}, n.AttrInts("strides"))
	assert.Equal(t, float32(0.5), n.AttrFloat("alpha", 0))
	assert.Equal(t, "CRD", n.AttrString("mode", ""))
	vt, err := TensorFromProto(n.Attr("value").GetT())
	require.NoError(t, err)
	v, _ := vt.Float32()
	assert.Equal(t, []float32{3}, v)
	n.RemoveAttr("legacy")
	assert.Nil(t, n.Attr("legacy"))
	assert.Len(t, n.Attrs, 6)
}
