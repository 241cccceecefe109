package graph

import (
	"encoding/binary"
	"math"

	"github.com/srquant/srq/onnx"
)

// The New* constructors copy v into a fresh little-endian Data buffer. len(v)
// must equal the product of dims (nil dims: a scalar); Validate, which ToModel
// runs, reports a mismatch.

// NewFloat32 returns a FLOAT tensor holding a copy of v.
func NewFloat32(name string, dims []int64, v []float32) *Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return &Tensor{Name: name, DType: onnx.TensorProto_FLOAT, Dims: cloneDims(dims), Data: b}
}

// NewInt8 returns an INT8 tensor holding a copy of v.
func NewInt8(name string, dims []int64, v []int8) *Tensor {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return &Tensor{Name: name, DType: onnx.TensorProto_INT8, Dims: cloneDims(dims), Data: b}
}

// NewUint8 returns a UINT8 tensor holding a copy of v.
func NewUint8(name string, dims []int64, v []uint8) *Tensor {
	return &Tensor{Name: name, DType: onnx.TensorProto_UINT8, Dims: cloneDims(dims), Data: append([]byte{}, v...)}
}

// NewInt32 returns an INT32 tensor holding a copy of v.
func NewInt32(name string, dims []int64, v []int32) *Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return &Tensor{Name: name, DType: onnx.TensorProto_INT32, Dims: cloneDims(dims), Data: b}
}

// NewInt64 returns an INT64 tensor holding a copy of v.
func NewInt64(name string, dims []int64, v []int64) *Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return &Tensor{Name: name, DType: onnx.TensorProto_INT64, Dims: cloneDims(dims), Data: b}
}

// NewInt4 returns an INT4 tensor of v packed two per byte (see PackInt4;
// values outside -8..7 keep only their low 4 bits).
func NewInt4(name string, dims []int64, v []int8) *Tensor {
	return &Tensor{Name: name, DType: onnx.TensorProto_INT4, Dims: cloneDims(dims), Data: PackInt4(v)}
}

// NewUint4 returns a UINT4 tensor of v packed two per byte (see PackUint4;
// values above 15 keep only their low 4 bits).
func NewUint4(name string, dims []int64, v []uint8) *Tensor {
	return &Tensor{Name: name, DType: onnx.TensorProto_UINT4, Dims: cloneDims(dims), Data: PackUint4(v)}
}

// Float32 returns a copy of the elements of a FLOAT tensor.
func (t *Tensor) Float32() ([]float32, error) {
	if err := t.checkType(onnx.TensorProto_FLOAT); err != nil {
		return nil, err
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// Int8 returns a copy of the elements of an INT8 tensor.
func (t *Tensor) Int8() ([]int8, error) {
	if err := t.checkType(onnx.TensorProto_INT8); err != nil {
		return nil, err
	}
	out := make([]int8, len(t.Data))
	for i, b := range t.Data {
		out[i] = int8(b)
	}
	return out, nil
}

// Uint8 returns a copy of the elements of a UINT8 tensor.
func (t *Tensor) Uint8() ([]uint8, error) {
	if err := t.checkType(onnx.TensorProto_UINT8); err != nil {
		return nil, err
	}
	return append([]uint8{}, t.Data...), nil
}

// Int32 returns a copy of the elements of an INT32 tensor.
func (t *Tensor) Int32() ([]int32, error) {
	if err := t.checkType(onnx.TensorProto_INT32); err != nil {
		return nil, err
	}
	out := make([]int32, len(t.Data)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// Int64 returns a copy of the elements of an INT64 tensor.
func (t *Tensor) Int64() ([]int64, error) {
	if err := t.checkType(onnx.TensorProto_INT64); err != nil {
		return nil, err
	}
	out := make([]int64, len(t.Data)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return out, nil
}

// Int4 returns the elements of an INT4 tensor unpacked to one int8 each.
func (t *Tensor) Int4() ([]int8, error) {
	if err := t.checkType(onnx.TensorProto_INT4); err != nil {
		return nil, err
	}
	return UnpackInt4(t.Data, t.NumElements()), nil
}

// Uint4 returns the elements of a UINT4 tensor unpacked to one uint8 each.
func (t *Tensor) Uint4() ([]uint8, error) {
	if err := t.checkType(onnx.TensorProto_UINT4); err != nil {
		return nil, err
	}
	return UnpackUint4(t.Data, t.NumElements()), nil
}

// PackInt4 packs v two values per byte, the first in the low nibble, as ONNX
// stores INT4. Only the low 4 bits of each value are kept, so callers must
// saturate to -8..7 first. An odd count leaves the last high nibble zero.
func PackInt4(v []int8) []byte {
	b := make([]byte, (len(v)+1)/2)
	for i, x := range v {
		b[i/2] |= (byte(x) & 0x0F) << (4 * uint(i&1))
	}
	return b
}

// UnpackInt4 returns the first n sign-extended 4-bit values of b (low nibble
// first). n is capped at 2*len(b).
func UnpackInt4(b []byte, n int) []int8 {
	n = min(max(n, 0), 2*len(b))
	out := make([]int8, n)
	for i := range out {
		nib := b[i/2] >> (4 * uint(i&1)) & 0x0F
		out[i] = int8(nib<<4) >> 4
	}
	return out
}

// PackUint4 packs v two values per byte, the first in the low nibble, as ONNX
// stores UINT4. Only the low 4 bits of each value are kept.
func PackUint4(v []uint8) []byte {
	b := make([]byte, (len(v)+1)/2)
	for i, x := range v {
		b[i/2] |= (x & 0x0F) << (4 * uint(i&1))
	}
	return b
}

// UnpackUint4 returns the first n 4-bit values of b (low nibble first). n is
// capped at 2*len(b).
func UnpackUint4(b []byte, n int) []uint8 {
	n = min(max(n, 0), 2*len(b))
	out := make([]uint8, n)
	for i := range out {
		out[i] = b[i/2] >> (4 * uint(i&1)) & 0x0F
	}
	return out
}
