package onnx

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDataTypeSize(t *testing.T) {
	tests := []struct {
		dt   TensorProto_DataType
		bits int
		ok   bool
	}{
		{TensorProto_UNDEFINED, 0, false},
		{TensorProto_STRING, 0, false},
		{TensorProto_DataType(99), 0, false},
		{TensorProto_INT4, 4, true},
		{TensorProto_UINT4, 4, true},
		{TensorProto_BOOL, 8, true},
		{TensorProto_INT8, 8, true},
		{TensorProto_UINT8, 8, true},
		{TensorProto_FLOAT8E4M3FN, 8, true},
		{TensorProto_FLOAT8E4M3FNUZ, 8, true},
		{TensorProto_FLOAT8E5M2, 8, true},
		{TensorProto_FLOAT8E5M2FNUZ, 8, true},
		{TensorProto_FLOAT16, 16, true},
		{TensorProto_BFLOAT16, 16, true},
		{TensorProto_INT16, 16, true},
		{TensorProto_UINT16, 16, true},
		{TensorProto_FLOAT, 32, true},
		{TensorProto_INT32, 32, true},
		{TensorProto_UINT32, 32, true},
		{TensorProto_DOUBLE, 64, true},
		{TensorProto_INT64, 64, true},
		{TensorProto_UINT64, 64, true},
		{TensorProto_COMPLEX64, 64, true},
		{TensorProto_COMPLEX128, 128, true},
	}
	for _, tc := range tests {
		bits, ok := DataTypeSize(tc.dt)
		assert.Equal(t, tc.bits, bits, tc.dt.String())
		assert.Equal(t, tc.ok, ok, tc.dt.String())
	}
	// Every named type except STRING and UNDEFINED has a size.
	for v, name := range TensorProto_DataType_name {
		_, ok := DataTypeSize(TensorProto_DataType(v))
		assert.Equal(t, name != "STRING" && name != "UNDEFINED", ok, name)
	}
}

func TestElementCount(t *testing.T) {
	n, err := elementCount(nil)
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "a scalar has one element")
	n, err = elementCount([]int64{2, 0, 5})
	require.NoError(t, err)
	assert.EqualValues(t, 0, n)
	_, err = elementCount([]int64{3, -1})
	assert.ErrorContains(t, err, "dimension 1 is negative (-1)")
	_, err = elementCount([]int64{1 << 32, 1 << 32})
	assert.ErrorContains(t, err, "overflow")
	_, err = elementCount([]int64{math.MaxInt64, 2})
	assert.ErrorContains(t, err, "overflow")
	n, err = elementCount([]int64{math.MaxInt64})
	require.NoError(t, err)
	assert.EqualValues(t, int64(math.MaxInt64), n)
	_, err = byteSize(math.MaxInt64, 32)
	assert.ErrorContains(t, err, "over 2^63 bytes")
}

func TestCheckTensor(t *testing.T) {
	f := int32(TensorProto_FLOAT)
	ext := func(kv ...string) []*StringStringEntryProto {
		var out []*StringStringEntryProto
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &StringStringEntryProto{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	tests := []struct {
		name   string
		tensor *TensorProto
		bytes  int64 // when valid
		err    string
	}{
		{"float raw", &TensorProto{DataType: f, Dims: []int64{2, 3}, RawData: make([]byte, 24)}, 24, ""},
		{"scalar raw", &TensorProto{DataType: f, RawData: make([]byte, 4)}, 4, ""},
		{"empty tensor without data", &TensorProto{DataType: f, Dims: []int64{0, 3}}, 0, ""},
		{"float raw short", &TensorProto{DataType: f, Dims: []int64{64, 3, 3, 3}, RawData: make([]byte, 100)}, 0,
			"declares 1728 float values (6912 bytes) but raw_data has 100 bytes"},
		{"float typed", &TensorProto{DataType: f, Dims: []int64{2}, FloatData: []float32{1, 2}}, 8, ""},
		{"float typed short", &TensorProto{DataType: f, Dims: []int64{3}, FloatData: []float32{1, 2}}, 0,
			"declares 3 float values but float_data has 2 entries (want 3)"},
		{"wrong typed field", &TensorProto{DataType: f, Dims: []int64{1}, Int64Data: []int64{1}}, 0,
			"holds float values in int64_data; ONNX stores them in float_data or raw_data"},
		{"two data fields", &TensorProto{DataType: f, Dims: []int64{1}, RawData: make([]byte, 4), FloatData: []float32{1}}, 0,
			"has both raw_data and float_data"},
		{"no data", &TensorProto{DataType: f, Dims: []int64{2}}, 0, "declares 2 float values (8 bytes) but has no data"},
		{"negative dim", &TensorProto{DataType: f, Dims: []int64{2, -3}}, 0, "dimension 1 is negative (-3)"},
		{"overflowing dims", &TensorProto{DataType: f, Dims: []int64{1 << 31, 1 << 31, 1 << 31}, RawData: []byte{1}}, 0, "overflow"},
		{"bytes overflow", &TensorProto{DataType: f, Dims: []int64{1 << 62}, RawData: []byte{1}}, 0, "over 2^63 bytes"},
		{"undefined type", &TensorProto{Dims: []int64{1}}, 0, "has no data type (UNDEFINED)"},
		{"unknown type", &TensorProto{DataType: 99, Dims: []int64{1}}, 0, "unknown data type 99"},
		{"int4 raw odd", &TensorProto{DataType: int32(TensorProto_INT4), Dims: []int64{5}, RawData: make([]byte, 3)}, 3, ""},
		{"int4 raw long", &TensorProto{DataType: int32(TensorProto_INT4), Dims: []int64{4}, RawData: make([]byte, 3)}, 0,
			"declares 4 int4 values (2 bytes) but raw_data has 3 bytes"},
		{"uint4 int32_data packed", &TensorProto{DataType: int32(TensorProto_UINT4), Dims: []int64{5}, Int32Data: []int32{1, 2, 3}}, 3, ""},
		{"uint4 int32_data unpacked", &TensorProto{DataType: int32(TensorProto_UINT4), Dims: []int64{4}, Int32Data: []int32{1, 2, 3, 4}}, 0,
			"declares 4 uint4 values but int32_data has 4 entries (want 2)"},
		{"float8 raw", &TensorProto{DataType: int32(TensorProto_FLOAT8E4M3FN), Dims: []int64{3}, RawData: make([]byte, 3)}, 3, ""},
		{"bfloat16 raw", &TensorProto{DataType: int32(TensorProto_BFLOAT16), Dims: []int64{3}, RawData: make([]byte, 6)}, 6, ""},
		{"float16 int32_data", &TensorProto{DataType: int32(TensorProto_FLOAT16), Dims: []int64{2}, Int32Data: []int32{1, 2}}, 4, ""},
		{"complex64 raw", &TensorProto{DataType: int32(TensorProto_COMPLEX64), Dims: []int64{2}, RawData: make([]byte, 16)}, 16, ""},
		{"complex64 float_data", &TensorProto{DataType: int32(TensorProto_COMPLEX64), Dims: []int64{2}, FloatData: []float32{1, 2, 3, 4}}, 16, ""},
		{"complex128 double_data short", &TensorProto{DataType: int32(TensorProto_COMPLEX128), Dims: []int64{2}, DoubleData: []float64{1, 2}}, 0,
			"declares 2 complex128 values but double_data has 2 entries (want 4)"},
		{"uint32 in uint64_data", &TensorProto{DataType: int32(TensorProto_UINT32), Dims: []int64{1}, Uint64Data: []uint64{7}}, 4, ""},
		{"string", &TensorProto{DataType: int32(TensorProto_STRING), Dims: []int64{2}, StringData: [][]byte{[]byte("a"), []byte("b")}}, 0, ""},
		{"string raw", &TensorProto{DataType: int32(TensorProto_STRING), Dims: []int64{1}, RawData: []byte("a")}, 0,
			"is a string tensor with raw_data"},
		{"segment", &TensorProto{DataType: f, Segment: &TensorProto_Segment{Begin: 0, End: 1}}, 0, "segment"},
		{"external ok", &TensorProto{DataType: f, Dims: []int64{4}, DataLocation: TensorProto_EXTERNAL,
			ExternalData: ext("location", "w.bin", "offset", "4096", "length", "16", "checksum", "x")}, 16, ""},
		{"external length mismatch", &TensorProto{DataType: f, Dims: []int64{4}, DataLocation: TensorProto_EXTERNAL,
			ExternalData: ext("location", "w.bin", "length", "15")}, 0,
			"declares 4 float values (16 bytes) but external data length is 15 bytes"},
		{"external no location", &TensorProto{DataType: f, Dims: []int64{4}, DataLocation: TensorProto_EXTERNAL,
			ExternalData: ext("offset", "0")}, 0, "external_data has no location"},
		{"external bad offset", &TensorProto{DataType: f, Dims: []int64{4}, DataLocation: TensorProto_EXTERNAL,
			ExternalData: ext("location", "w.bin", "offset", "-4")}, 0, `external_data offset "-4", not a non-negative integer`},
		{"external unknown key", &TensorProto{DataType: f, Dims: []int64{4}, DataLocation: TensorProto_EXTERNAL,
			ExternalData: ext("location", "w.bin", "basepath", "/")}, 0, `unknown external_data key "basepath"`},
		{"external repeated key", &TensorProto{DataType: f, Dims: []int64{4}, DataLocation: TensorProto_EXTERNAL,
			ExternalData: ext("location", "w.bin", "location", "v.bin")}, 0, `repeats external_data key "location"`},
		{"external absolute", &TensorProto{DataType: f, Dims: []int64{4}, DataLocation: TensorProto_EXTERNAL,
			ExternalData: ext("location", "/etc/passwd")}, 0, "an absolute path"},
		{"external dotdot", &TensorProto{DataType: f, Dims: []int64{4}, DataLocation: TensorProto_EXTERNAL,
			ExternalData: ext("location", "sub/../../w.bin")}, 0, "leaves the model's folder"},
		{"external with inline data", &TensorProto{DataType: f, Dims: []int64{1}, DataLocation: TensorProto_EXTERNAL,
			RawData: make([]byte, 4), ExternalData: ext("location", "w.bin")}, 0, "is marked EXTERNAL but also has inline raw_data"},
		{"external string", &TensorProto{DataType: int32(TensorProto_STRING), Dims: []int64{1}, DataLocation: TensorProto_EXTERNAL,
			ExternalData: ext("location", "w.bin")}, 0, "string tensor stored as external data"},
		{"bad data_location", &TensorProto{DataType: f, DataLocation: 7, RawData: make([]byte, 4)}, 0, "unknown data_location 7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lay, err := checkTensor(tc.tensor)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.bytes, lay.bytes)
		})
	}
}
