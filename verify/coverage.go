package verify

import (
	"fmt"
	"sort"

	"github.com/srquant/srq/onnx"
)

// ConvCoverage says how many convolutions ONNX Runtime really executes in
// int8. It is read from the graph ORT runs after its own rewrites (session
// option optimized_model_filepath), not from the QDQ model srq wrote: a
// DQ→Conv→Q pattern only becomes an int8 kernel if ORT's QDQ transformer
// fuses it, and one wrong zero-point type or a missing Q is enough to leave
// the Conv in float (and slower than the FP32 model).
type ConvCoverage struct {
	Int8  int `json:"int8"`
	Total int `json:"total"`
	// Float names the convolutions that stayed float, in graph order
	// (unnamed nodes are written as op_type#index).
	Float []string `json:"float"`
	// Ops counts the convolution nodes by "domain:op_type" (domain "" is
	// written as "ai.onnx"), e.g. {"com.microsoft:QLinearConv": 37}.
	Ops map[string]int `json:"ops"`
	// MatMuls is the same count for matrix products (a transformer's
	// linear layers, Q·Kᵀ, attention·V); nil when the graph has none, so
	// a CNN's report reads as before.
	MatMuls *MatMulCoverage `json:"matmul,omitempty"`
}

// MatMulCoverage counts the matrix products of ORT's optimized graph that
// run on int8 kernels (QLinearMatMul, com.microsoft MatMulIntegerToFloat,
// QGemm, MatMulInteger, DynamicQuantizeMatMul) and those that stay float
// (MatMul, Gemm, com.microsoft FusedMatMul).
type MatMulCoverage struct {
	Int8  int `json:"int8"`
	Total int `json:"total"`
	// Ops counts them by "domain:op_type", as ConvCoverage.Ops.
	Ops map[string]int `json:"ops"`
}

// convKind classifies a node of ORT's optimized graph: int8 convolutions
// (QLinearConv in any domain — ORT writes com.microsoft:QLinearConv when it
// moves a model to NHWC —, NhwcQLinearConv, ConvInteger) and float ones
// (Conv in any domain, com.microsoft.nchwc:Conv included, FusedConv,
// NhwcFusedConv). Other nodes are not convolutions.
func convKind(opType string) (isConv, int8 bool) {
	switch opType {
	case "QLinearConv", "NhwcQLinearConv", "ConvInteger":
		return true, true
	case "Conv", "FusedConv", "NhwcFusedConv":
		return true, false
	}
	return false, false
}

// matMulKind classifies a node of ORT's optimized graph as convKind does,
// for matrix products.
func matMulKind(opType string) (isMatMul, int8 bool) {
	switch opType {
	case "QLinearMatMul", "MatMulIntegerToFloat", "QGemm", "MatMulInteger", "DynamicQuantizeMatMul":
		return true, true
	case "MatMul", "Gemm", "FusedMatMul", "FusedGemm":
		return true, false
	}
	return false, false
}

// Coverage counts the int8 and float convolutions of m, normally the
// optimized model ORT wrote for a session (see ConvCoverage). Subgraphs of
// control-flow nodes are included. A nil model gives zero coverage.
func Coverage(m *onnx.ModelProto) ConvCoverage {
	c := ConvCoverage{Float: []string{}, Ops: map[string]int{}}
	if m != nil {
		c.addGraph(m.GetGraph(), "", 0)
	}
	return c
}

// maxSubgraphDepth bounds recursion on hostile models; ORT's own graphs
// nest a handful of levels at most.
const maxSubgraphDepth = 64

func (c *ConvCoverage) addGraph(g *onnx.GraphProto, prefix string, depth int) {
	if g == nil || depth > maxSubgraphDepth {
		return
	}
	for i, n := range g.GetNode() {
		name := n.GetName()
		if name == "" {
			name = fmt.Sprintf("%s#%d", n.GetOpType(), i)
		}
		name = prefix + name
		if conv, int8 := convKind(n.GetOpType()); conv {
			c.Ops[opKey(n)]++
			c.Total++
			if int8 {
				c.Int8++
			} else {
				c.Float = append(c.Float, name)
			}
		}
		if mm, int8 := matMulKind(n.GetOpType()); mm {
			if c.MatMuls == nil {
				c.MatMuls = &MatMulCoverage{Ops: map[string]int{}}
			}
			c.MatMuls.Ops[opKey(n)]++
			c.MatMuls.Total++
			if int8 {
				c.MatMuls.Int8++
			}
		}
		for _, a := range n.GetAttribute() {
			c.addGraph(a.GetG(), name+"/"+a.GetName()+"/", depth+1)
			for _, sg := range a.GetGraphs() {
				c.addGraph(sg, name+"/"+a.GetName()+"/", depth+1)
			}
		}
	}
}

// opKey is "domain:op_type", domain "" written as "ai.onnx".
func opKey(n *onnx.NodeProto) string {
	dom := n.GetDomain()
	if dom == "" {
		dom = "ai.onnx"
	}
	return dom + ":" + n.GetOpType()
}

// String is the one-line form the table prints, e.g.
// "37/37 convs in int8 (com.microsoft:QLinearConv 37)", followed by
// "; 144/144 matmuls in int8 (...)" when the graph has matrix products.
func (c ConvCoverage) String() string {
	s := fmt.Sprintf("%d/%d convs in int8", c.Int8, c.Total) + opList(c.Ops)
	if m := c.MatMuls; m != nil {
		s += fmt.Sprintf("; %d/%d matmuls in int8", m.Int8, m.Total) + opList(m.Ops)
	}
	return s
}

// opList is " (op n, op n...)" in op order, or "" for no ops.
func opList(ops map[string]int) string {
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for i, k := range keys {
		if i == 0 {
			s += " ("
		} else {
			s += ", "
		}
		s += fmt.Sprintf("%s %d", k, ops[k])
		if i == len(keys)-1 {
			s += ")"
		}
	}
	return s
}
