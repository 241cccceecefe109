package graph

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// Dim is one dimension of a shape: a fixed size (Value >= 0), a symbolic one
// (Param, e.g. "batch"), or unknown (Value < 0 and Param == "").
type Dim struct {
	Value int64
	Param string
}

// Known reports whether d has a fixed size.
func (d Dim) Known() bool { return d.Value >= 0 && d.Param == "" }

func (d Dim) String() string {
	switch {
	case d.Param != "":
		return d.Param
	case d.Value >= 0:
		return strconv.FormatInt(d.Value, 10)
	}
	return "?"
}

// Shape is a tensor shape. nil means the rank is unknown; an empty non-nil
// Shape is a scalar.
type Shape []Dim

func (s Shape) String() string {
	if s == nil {
		return "[?rank]"
	}
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// ShapeOf returns the fixed shape with the given dims.
func ShapeOf(dims ...int64) Shape {
	s := make(Shape, len(dims))
	for i, d := range dims {
		s[i] = Dim{Value: d}
	}
	return s
}

// Value is what is known about a named tensor: element type (UNDEFINED when
// unknown or not a tensor) and shape.
type Value struct {
	Name  string
	DType onnx.TensorProto_DataType
	Shape Shape

	// orig is the ValueInfoProto this came from. While Name, DType and Shape
	// still match it, ToModel writes it back unchanged, which keeps doc
	// strings, denotations and non-tensor types.
	orig *onnx.ValueInfoProto
}

// valueFromProto reads a ValueInfoProto. It never fails: types the IR does not
// model (sequences, maps, ...) give DType UNDEFINED and a nil Shape.
func valueFromProto(p *onnx.ValueInfoProto) *Value {
	v := &Value{Name: p.GetName(), orig: p}
	v.DType, v.Shape = typeFacts(p.GetType())
	return v
}

func typeFacts(tp *onnx.TypeProto) (onnx.TensorProto_DataType, Shape) {
	tt := tp.GetTensorType()
	if tt == nil {
		return onnx.TensorProto_UNDEFINED, nil
	}
	dt := onnx.TensorProto_DataType(tt.GetElemType())
	if tt.GetShape() == nil {
		return dt, nil
	}
	s := make(Shape, len(tt.GetShape().GetDim()))
	for i, d := range tt.GetShape().GetDim() {
		switch x := d.GetValue().(type) {
		case *onnx.TensorShapeProto_Dimension_DimValue:
			s[i] = Dim{Value: x.DimValue}
		case *onnx.TensorShapeProto_Dimension_DimParam:
			s[i] = Dim{Value: -1, Param: x.DimParam}
		default:
			s[i] = Dim{Value: -1}
		}
	}
	return dt, s
}

// clone returns a copy of v that shares only the immutable orig proto.
func (v *Value) clone() *Value {
	c := *v
	c.Shape = slices.Clone(v.Shape)
	return &c
}

// sameShape compares shapes, telling nil (unknown rank) from empty (scalar)
// and treating all unknown dims alike.
func sameShape(a, b Shape) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Param != y.Param || (x.Param == "" && x.Value != y.Value && (x.Value >= 0 || y.Value >= 0)) {
			return false
		}
	}
	return true
}

// proto writes v as a ValueInfoProto: the original one if v is unchanged,
// otherwise a tensor type built from DType and Shape that keeps the
// original's doc string and metadata.
func (v *Value) proto() *onnx.ValueInfoProto {
	if o := v.orig; o != nil && o.GetName() == v.Name {
		dt, s := typeFacts(o.GetType())
		if dt == v.DType && sameShape(s, v.Shape) {
			return proto.Clone(o).(*onnx.ValueInfoProto)
		}
	}
	p := &onnx.ValueInfoProto{Name: v.Name}
	if v.orig != nil {
		p.DocString = v.orig.GetDocString()
		p.MetadataProps = v.orig.GetMetadataProps()
	}
	if v.DType == onnx.TensorProto_UNDEFINED && v.Shape == nil {
		return p
	}
	tt := &onnx.TypeProto_Tensor{ElemType: int32(v.DType)}
	if v.Shape != nil {
		tt.Shape = &onnx.TensorShapeProto{Dim: make([]*onnx.TensorShapeProto_Dimension, len(v.Shape))}
		for i, d := range v.Shape {
			dp := &onnx.TensorShapeProto_Dimension{}
			switch {
			case d.Param != "":
				dp.Value = &onnx.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}
			case d.Value >= 0:
				dp.Value = &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d.Value}
			}
			tt.Shape.Dim[i] = dp
		}
	}
	p.Type = &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: tt}}
	return p
}

func (v *Value) String() string {
	return fmt.Sprintf("%s:%s%s", v.Name, dtypeName(v.DType), v.Shape)
}
