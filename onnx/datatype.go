package onnx

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// DataTypeSize returns the storage size of one element of dt in bits: 4 for
// the packed INT4/UINT4 types, 8 for the FLOAT8 variants, 16 for
// FLOAT16/BFLOAT16, 64 for COMPLEX64 (two float32) and so on. STRING has no
// fixed size and UNDEFINED or unknown values have none, so they report
// (0, false); callers must not guess a size for them.
func DataTypeSize(dt TensorProto_DataType) (bits int, ok bool) {
	switch dt {
	case TensorProto_INT4, TensorProto_UINT4:
		return 4, true
	case TensorProto_BOOL, TensorProto_INT8, TensorProto_UINT8,
		TensorProto_FLOAT8E4M3FN, TensorProto_FLOAT8E4M3FNUZ,
		TensorProto_FLOAT8E5M2, TensorProto_FLOAT8E5M2FNUZ:
		return 8, true
	case TensorProto_INT16, TensorProto_UINT16, TensorProto_FLOAT16, TensorProto_BFLOAT16:
		return 16, true
	case TensorProto_INT32, TensorProto_UINT32, TensorProto_FLOAT:
		return 32, true
	case TensorProto_INT64, TensorProto_UINT64, TensorProto_DOUBLE, TensorProto_COMPLEX64:
		return 64, true
	case TensorProto_COMPLEX128:
		return 128, true
	}
	return 0, false
}

// knownDataType reports whether v is a data type value srq's schema (IR v10)
// defines, UNDEFINED excluded.
func knownDataType(v int32) bool {
	_, named := TensorProto_DataType_name[v]
	return named && v != int32(TensorProto_UNDEFINED)
}

// dataTypeName is the lower-case name used in messages ("float", "int4"), or
// "data type N" for values the schema does not define.
func dataTypeName(v int32) string {
	if name, ok := TensorProto_DataType_name[v]; ok {
		return strings.ToLower(name)
	}
	return fmt.Sprintf("data type %d", v)
}

// elementCount multiplies dims with overflow and sign checks, so that no
// caller ever allocates from a product that wrapped around. The limit is
// math.MaxInt64; byte sizes are checked separately by byteSize.
func elementCount(dims []int64) (int64, error) {
	n := int64(1)
	for i, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("dimension %d is negative (%d)", i, d)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("dims %v overflow int64 elements", dims)
		}
		n = int64(lo)
	}
	return n, nil
}

// byteSize is the number of bytes n elements of elemBits bits occupy in
// raw_data: sub-byte types are packed, the last byte padded.
func byteSize(n int64, elemBits int) (int64, error) {
	if n > (math.MaxInt64-7)/int64(elemBits) {
		return 0, fmt.Errorf("declares %d elements of %d bits, over 2^63 bytes", n, elemBits)
	}
	return (n*int64(elemBits) + 7) / 8, nil
}
