package graph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// Tensor is a typed constant (an initializer or a Constant node's value).
//
// Data holds the elements in ONNX raw_data layout: little-endian, row-major,
// 4-bit types packed two per byte with the first element in the low nibble.
// Tensors read from a model alias the model's bytes, so treat Data as
// read-only unless the Tensor came from Clone or a New* constructor.
// STRING tensors keep their elements in StringData instead of Data.
type Tensor struct {
	Name  string
	DType onnx.TensorProto_DataType
	Dims  []int64
	Data  []byte

	// StringData holds the elements of a STRING tensor (nil otherwise).
	StringData [][]byte

	// extra carries the TensorProto fields the IR does not model (doc string,
	// metadata, segment, unknown fields) so Proto writes them back.
	extra *onnx.TensorProto
}

// TensorFromProto converts p to a Tensor, decoding whichever typed field
// (float_data, int32_data, int64_data, double_data, uint64_data, string_data)
// or raw_data holds the elements. raw_data is aliased, not copied. Tensors
// with external data are rejected: onnx.Load inlines them before this is
// called. Errors name the tensor and say what is wrong with it.
func TensorFromProto(p *onnx.TensorProto) (*Tensor, error) {
	if p == nil {
		return nil, errors.New("tensor: nil TensorProto")
	}
	t, err := tensorFromProto(p)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", p.GetName(), err)
	}
	return t, nil
}

func tensorFromProto(p *onnx.TensorProto) (*Tensor, error) {
	if p.GetDataLocation() == onnx.TensorProto_EXTERNAL || len(p.GetExternalData()) > 0 {
		return nil, errors.New("data is stored externally and was not loaded (load the model with onnx.Load)")
	}
	dt := onnx.TensorProto_DataType(p.GetDataType())
	n, err := numElements(p.GetDims())
	if err != nil {
		return nil, err
	}
	t := &Tensor{Name: p.GetName(), DType: dt, Dims: slices.Clone(p.GetDims()), extra: tensorExtra(p)}
	if dt == onnx.TensorProto_STRING {
		if len(p.GetStringData()) != n {
			return nil, fmt.Errorf("STRING tensor of shape %v has %d string_data elements, want %d", p.GetDims(), len(p.GetStringData()), n)
		}
		t.StringData = p.GetStringData()
		return t, nil
	}
	if elemBits(dt) == 0 {
		return nil, fmt.Errorf("unsupported %s", dtypeName(dt))
	}
	want := dataLen(dt, n)
	if len(p.GetRawData()) > 0 || !hasTypedData(p) {
		if len(p.GetRawData()) != want {
			return nil, fmt.Errorf("%s tensor of shape %v has %d bytes of raw_data, want %d", dtypeName(dt), p.GetDims(), len(p.GetRawData()), want)
		}
		t.Data = p.GetRawData()
		return t, nil
	}
	t.Data, err = typedToRaw(p, dt, n, want)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func hasTypedData(p *onnx.TensorProto) bool {
	return len(p.GetFloatData()) > 0 || len(p.GetInt32Data()) > 0 || len(p.GetInt64Data()) > 0 ||
		len(p.GetDoubleData()) > 0 || len(p.GetUint64Data()) > 0
}

// typedToRaw encodes the typed field that the ONNX spec assigns to dt into
// raw_data layout. n is the element count, want the raw byte length.
func typedToRaw(p *onnx.TensorProto, dt onnx.TensorProto_DataType, n, want int) ([]byte, error) {
	out := make([]byte, want)
	count := func(field string, got, expect int) error {
		if got != expect {
			return fmt.Errorf("%s tensor of shape %v has %d %s elements, want %d", dtypeName(dt), p.GetDims(), got, field, expect)
		}
		return nil
	}
	le := binary.LittleEndian
	switch dt {
	case onnx.TensorProto_FLOAT, onnx.TensorProto_COMPLEX64:
		v := p.GetFloatData()
		if err := count("float_data", len(v), want/4); err != nil {
			return nil, err
		}
		for i, x := range v {
			le.PutUint32(out[4*i:], math.Float32bits(x))
		}
	case onnx.TensorProto_DOUBLE, onnx.TensorProto_COMPLEX128:
		v := p.GetDoubleData()
		if err := count("double_data", len(v), want/8); err != nil {
			return nil, err
		}
		for i, x := range v {
			le.PutUint64(out[8*i:], math.Float64bits(x))
		}
	case onnx.TensorProto_INT64:
		v := p.GetInt64Data()
		if err := count("int64_data", len(v), n); err != nil {
			return nil, err
		}
		for i, x := range v {
			le.PutUint64(out[8*i:], uint64(x))
		}
	case onnx.TensorProto_UINT64:
		v := p.GetUint64Data()
		if err := count("uint64_data", len(v), n); err != nil {
			return nil, err
		}
		for i, x := range v {
			le.PutUint64(out[8*i:], x)
		}
	case onnx.TensorProto_UINT32:
		v := p.GetUint64Data()
		if err := count("uint64_data", len(v), n); err != nil {
			return nil, err
		}
		for i, x := range v {
			le.PutUint32(out[4*i:], uint32(x))
		}
	case onnx.TensorProto_INT32:
		v := p.GetInt32Data()
		if err := count("int32_data", len(v), n); err != nil {
			return nil, err
		}
		for i, x := range v {
			le.PutUint32(out[4*i:], uint32(x))
		}
	default:
		// Every remaining type lives in int32_data, one element per int32
		// (16-bit floats as their bit pattern), except the 4-bit types whose
		// int32s each hold one packed byte.
		v := p.GetInt32Data()
		switch elemBits(dt) {
		case 16:
			if err := count("int32_data", len(v), n); err != nil {
				return nil, err
			}
			for i, x := range v {
				le.PutUint16(out[2*i:], uint16(x))
			}
		case 8, 4:
			if err := count("int32_data", len(v), want); err != nil {
				return nil, err
			}
			for i, x := range v {
				out[i] = byte(x)
			}
		default:
			return nil, fmt.Errorf("unsupported %s", dtypeName(dt))
		}
	}
	return out, nil
}

// tensorExtra keeps the TensorProto fields the IR does not model, or nil when
// there are none (the common case: no allocation per weight).
func tensorExtra(p *onnx.TensorProto) *onnx.TensorProto {
	unknown := p.ProtoReflect().GetUnknown()
	if p.GetDocString() == "" && len(p.GetMetadataProps()) == 0 && p.GetSegment() == nil && len(unknown) == 0 {
		return nil
	}
	e := &onnx.TensorProto{DocString: p.GetDocString(), MetadataProps: p.GetMetadataProps(), Segment: p.GetSegment()}
	e.ProtoReflect().SetUnknown(unknown)
	return e
}

// Proto returns t as a TensorProto with the elements in raw_data (string_data
// for STRING). The bytes are shared with t, not copied.
func (t *Tensor) Proto() *onnx.TensorProto {
	p := &onnx.TensorProto{
		Name:     t.Name,
		DataType: int32(t.DType),
		Dims:     slices.Clone(t.Dims),
	}
	if t.DType == onnx.TensorProto_STRING {
		p.StringData = t.StringData
	} else {
		p.RawData = t.Data
	}
	if e := t.extra; e != nil {
		p.DocString = e.GetDocString()
		p.MetadataProps = e.GetMetadataProps()
		p.Segment = e.GetSegment()
		p.ProtoReflect().SetUnknown(e.ProtoReflect().GetUnknown())
	}
	return p
}

// NumElements is the product of Dims (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Dims {
		n *= int(d)
	}
	return n
}

// Validate checks that Dims are sane and Data (or StringData) holds exactly
// the number of elements Dims declares. ToModel calls it for every
// initializer, because constructors and in-place edits cannot report errors.
func (t *Tensor) Validate() error {
	n, err := numElements(t.Dims)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if t.DType == onnx.TensorProto_STRING {
		if len(t.StringData) != n {
			return fmt.Errorf("tensor %q: STRING tensor of shape %v has %d strings, want %d", t.Name, t.Dims, len(t.StringData), n)
		}
		return nil
	}
	if elemBits(t.DType) == 0 {
		return fmt.Errorf("tensor %q: unsupported %s", t.Name, dtypeName(t.DType))
	}
	if want := dataLen(t.DType, n); len(t.Data) != want {
		return fmt.Errorf("tensor %q: %s tensor of shape %v has %d data bytes, want %d", t.Name, dtypeName(t.DType), t.Dims, len(t.Data), want)
	}
	return nil
}

// Clone returns a deep copy of t whose Data may be edited freely.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{Name: t.Name, DType: t.DType, Dims: slices.Clone(t.Dims), Data: slices.Clone(t.Data)}
	if t.StringData != nil {
		c.StringData = make([][]byte, len(t.StringData))
		for i, s := range t.StringData {
			c.StringData[i] = slices.Clone(s)
		}
	}
	if t.extra != nil {
		c.extra = proto.Clone(t.extra).(*onnx.TensorProto)
	}
	return c
}

func (t *Tensor) checkType(want onnx.TensorProto_DataType) error {
	if t.DType != want {
		return fmt.Errorf("tensor %q is %s, not %s", t.Name, dtypeName(t.DType), dtypeName(want))
	}
	if err := t.Validate(); err != nil {
		return err
	}
	return nil
}

func cloneDims(dims []int64) []int64 {
	if dims == nil {
		return []int64{}
	}
	return slices.Clone(dims)
}
