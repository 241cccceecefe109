package graph

import (
	"fmt"
	"math/bits"

	"github.com/srquant/srq/onnx"
)

// elemBits returns the storage size of one element of dt in bits (4 for the
// packed 4-bit types), or 0 for STRING, UNDEFINED and unknown types, which have
// no fixed-size raw layout.
func elemBits(dt onnx.TensorProto_DataType) int {
	switch dt {
	case onnx.TensorProto_UINT4, onnx.TensorProto_INT4:
		return 4
	case onnx.TensorProto_UINT8, onnx.TensorProto_INT8, onnx.TensorProto_BOOL,
		onnx.TensorProto_FLOAT8E4M3FN, onnx.TensorProto_FLOAT8E4M3FNUZ,
		onnx.TensorProto_FLOAT8E5M2, onnx.TensorProto_FLOAT8E5M2FNUZ:
		return 8
	case onnx.TensorProto_UINT16, onnx.TensorProto_INT16, onnx.TensorProto_FLOAT16,
		onnx.TensorProto_BFLOAT16:
		return 16
	case onnx.TensorProto_FLOAT, onnx.TensorProto_INT32, onnx.TensorProto_UINT32:
		return 32
	case onnx.TensorProto_INT64, onnx.TensorProto_UINT64, onnx.TensorProto_DOUBLE,
		onnx.TensorProto_COMPLEX64:
		return 64
	case onnx.TensorProto_COMPLEX128:
		return 128
	}
	return 0
}

// dataLen is the raw byte length of n elements of dt: 4-bit types are packed
// two per byte, with an odd count rounded up to a whole byte.
func dataLen(dt onnx.TensorProto_DataType, n int) int {
	b := elemBits(dt)
	if b == 4 {
		return (n + 1) / 2
	}
	return n * (b / 8)
}

// maxElements bounds the element count a tensor header may declare, so that a
// hostile dims list cannot overflow int arithmetic or request absurd memory.
const maxElements = 1 << 40

// numElements multiplies dims, rejecting negative dims and counts that exceed
// maxElements. A scalar (no dims) has one element.
func numElements(dims []int64) (int, error) {
	n := uint64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in %v", d, dims)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > maxElements {
			return 0, fmt.Errorf("dimensions %v have more than %d elements", dims, int64(maxElements))
		}
		n = lo
	}
	return int(n), nil
}

// dtypeName is the ONNX spelling of dt, for error messages.
func dtypeName(dt onnx.TensorProto_DataType) string {
	if s, ok := onnx.TensorProto_DataType_name[int32(dt)]; ok {
		return s
	}
	return fmt.Sprintf("data type %d", int32(dt))
}
