package graph

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// Node is one operator application. An empty string in Inputs or Outputs is
// an omitted optional argument, as in ONNX.
//
// Attrs may alias the source model's protos: the SetAttr* methods replace an
// attribute with a new proto rather than editing it, and so should other code.
type Node struct {
	Name    string
	OpType  string
	Domain  string
	Inputs  []string
	Outputs []string
	Attrs   []*onnx.AttributeProto

	// src is the NodeProto this came from, kept for the fields the IR does not
	// model (doc string, overload, metadata, unknown fields). Never edited.
	src *onnx.NodeProto
}

func nodeFromProto(p *onnx.NodeProto) *Node {
	return &Node{
		Name:    p.GetName(),
		OpType:  p.GetOpType(),
		Domain:  p.GetDomain(),
		Inputs:  slices.Clone(p.GetInput()),
		Outputs: slices.Clone(p.GetOutput()),
		Attrs:   slices.Clone(p.GetAttribute()),
		src:     p,
	}
}

func (n *Node) proto() *onnx.NodeProto {
	p := &onnx.NodeProto{
		Name:      n.Name,
		OpType:    n.OpType,
		Domain:    n.Domain,
		Input:     slices.Clone(n.Inputs),
		Output:    slices.Clone(n.Outputs),
		Attribute: slices.Clone(n.Attrs),
	}
	if s := n.src; s != nil {
		p.DocString = s.GetDocString()
		p.Overload = s.GetOverload()
		p.MetadataProps = s.GetMetadataProps()
		p.ProtoReflect().SetUnknown(s.ProtoReflect().GetUnknown())
	}
	return p
}

// clone deep-copies n, attributes included, so the copy can be edited freely.
func (n *Node) clone() *Node {
	c := &Node{
		Name:    n.Name,
		OpType:  n.OpType,
		Domain:  n.Domain,
		Inputs:  slices.Clone(n.Inputs),
		Outputs: slices.Clone(n.Outputs),
		Attrs:   make([]*onnx.AttributeProto, len(n.Attrs)),
		src:     n.src,
	}
	for i, a := range n.Attrs {
		c.Attrs[i] = proto.Clone(a).(*onnx.AttributeProto)
	}
	return c
}

// String names the node for error messages: its name if it has one, else its
// op type and first output, which ONNX requires to be unique.
func (n *Node) String() string {
	if n == nil {
		return "<nil node>"
	}
	if n.Name != "" {
		return fmt.Sprintf("%q (%s)", n.Name, n.OpType)
	}
	return fmt.Sprintf("%s node with outputs [%s]", n.OpType, strings.Join(n.Outputs, ", "))
}

// Attr returns the attribute called name, or nil.
func (n *Node) Attr(name string) *onnx.AttributeProto {
	for _, a := range n.Attrs {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// isType accepts attributes whose type field is unset, as very old exporters
// wrote them, so long as the value field itself is present.
func isType(a *onnx.AttributeProto, want onnx.AttributeProto_AttributeType) bool {
	return a != nil && (a.GetType() == want || a.GetType() == onnx.AttributeProto_UNDEFINED)
}

// AttrInt returns the INT attribute name, or def when absent or of another type.
func (n *Node) AttrInt(name string, def int64) int64 {
	if a := n.Attr(name); isType(a, onnx.AttributeProto_INT) {
		return a.GetI()
	}
	return def
}

// AttrInts returns a copy of the INTS attribute name, or nil.
func (n *Node) AttrInts(name string) []int64 {
	if a := n.Attr(name); isType(a, onnx.AttributeProto_INTS) {
		return slices.Clone(a.GetInts())
	}
	return nil
}

// AttrFloat returns the FLOAT attribute name, or def when absent or of another type.
func (n *Node) AttrFloat(name string, def float32) float32 {
	if a := n.Attr(name); isType(a, onnx.AttributeProto_FLOAT) {
		return a.GetF()
	}
	return def
}

// AttrString returns the STRING attribute name, or def when absent or of another type.
func (n *Node) AttrString(name, def string) string {
	if a := n.Attr(name); isType(a, onnx.AttributeProto_STRING) {
		return string(a.GetS())
	}
	return def
}

// setAttr replaces the attribute of a's name (keeping its position) or
// appends a. The old proto is dropped, not modified, since it may be shared.
func (n *Node) setAttr(a *onnx.AttributeProto) {
	for i, old := range n.Attrs {
		if old.GetName() == a.GetName() {
			n.Attrs[i] = a
			return
		}
	}
	n.Attrs = append(n.Attrs, a)
}

// SetAttrInt sets the INT attribute name to v.
func (n *Node) SetAttrInt(name string, v int64) {
	n.setAttr(&onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: &v})
}

// SetAttrInts sets the INTS attribute name to a copy of v.
func (n *Node) SetAttrInts(name string, v []int64) {
	n.setAttr(&onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INTS, Ints: slices.Clone(v)})
}

// SetAttrFloat sets the FLOAT attribute name to v.
func (n *Node) SetAttrFloat(name string, v float32) {
	n.setAttr(&onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_FLOAT, F: &v})
}

// SetAttrString sets the STRING attribute name to v.
func (n *Node) SetAttrString(name, v string) {
	n.setAttr(&onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_STRING, S: []byte(v)})
}

// SetAttrTensor sets the TENSOR attribute name to t (its bytes are shared).
func (n *Node) SetAttrTensor(name string, t *Tensor) {
	n.setAttr(&onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_TENSOR, T: t.Proto()})
}

// RemoveAttr deletes the attribute name if present.
func (n *Node) RemoveAttr(name string) {
	n.Attrs = slices.DeleteFunc(n.Attrs, func(a *onnx.AttributeProto) bool { return a.GetName() == name })
}
