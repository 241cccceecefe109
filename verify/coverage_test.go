package verify

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

func TestCoverageCounts(t *testing.T) {
	n := func(op, dom, name string) *onnx.NodeProto {
		return &onnx.NodeProto{OpType: op, Domain: dom, Name: name}
	}
	tests := []struct {
		name  string
		nodes []*onnx.NodeProto
		want  ConvCoverage
	}{
		{"empty", nil, ConvCoverage{Float: []string{}, Ops: map[string]int{}}},
		{"ORT NHWC int8 graph", []*onnx.NodeProto{
			n("QuantizeLinear", "", "q"), n("Transpose", "", "t"),
			n("QLinearConv", "com.microsoft", "head"), n("QLinearConv", "com.microsoft", "body"),
			n("DequantizeLinear", "", "dq"),
		}, ConvCoverage{Int8: 2, Total: 2, Float: []string{}, Ops: map[string]int{"com.microsoft:QLinearConv": 2}}},
		{"every int8 and float kind", []*onnx.NodeProto{
			n("QLinearConv", "", "a"), n("NhwcQLinearConv", "com.microsoft", "b"), n("ConvInteger", "", "c"),
			n("Conv", "", "d"), n("Conv", "com.microsoft.nchwc", "e"), n("FusedConv", "com.microsoft", "f"),
			n("NhwcFusedConv", "com.microsoft", "g"), n("ConvTranspose", "", "not a conv we count"),
		}, ConvCoverage{Int8: 3, Total: 7, Float: []string{"d", "e", "f", "g"}, Ops: map[string]int{
			"ai.onnx:QLinearConv": 1, "com.microsoft:NhwcQLinearConv": 1, "ai.onnx:ConvInteger": 1,
			"ai.onnx:Conv": 1, "com.microsoft.nchwc:Conv": 1, "com.microsoft:FusedConv": 1, "com.microsoft:NhwcFusedConv": 1,
		}}},
		{"matrix products, int8 and float", []*onnx.NodeProto{
			n("QLinearConv", "com.microsoft", "conv"),
			n("QLinearMatMul", "", "av"), n("MatMulIntegerToFloat", "com.microsoft", "qk"), n("QGemm", "com.microsoft", "fc"),
			n("MatMul", "", "proj"), n("FusedMatMul", "com.microsoft", "fm"),
		}, ConvCoverage{Int8: 1, Total: 1, Float: []string{}, Ops: map[string]int{"com.microsoft:QLinearConv": 1},
			MatMuls: &MatMulCoverage{Int8: 3, Total: 5, Ops: map[string]int{"ai.onnx:QLinearMatMul": 1, "com.microsoft:MatMulIntegerToFloat": 1,
				"com.microsoft:QGemm": 1, "ai.onnx:MatMul": 1, "com.microsoft:FusedMatMul": 1}}}},
		{"unnamed nodes get op#index", []*onnx.NodeProto{n("Relu", "", ""), n("Conv", "", "")},
			ConvCoverage{Total: 1, Float: []string{"Conv#1"}, Ops: map[string]int{"ai.onnx:Conv": 1}}},
		{"subgraphs are counted", []*onnx.NodeProto{{
			OpType: "If", Name: "if",
			Attribute: []*onnx.AttributeProto{
				{Name: "then_branch", Type: onnx.AttributeProto_GRAPH, G: &onnx.GraphProto{Node: []*onnx.NodeProto{n("Conv", "", "c1")}}},
				{Name: "else_branch", Type: onnx.AttributeProto_GRAPH, G: &onnx.GraphProto{Node: []*onnx.NodeProto{n("QLinearConv", "", "c2")}}},
			},
		}}, ConvCoverage{Int8: 1, Total: 2, Float: []string{"if/then_branch/c1"}, Ops: map[string]int{"ai.onnx:Conv": 1, "ai.onnx:QLinearConv": 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Coverage(&onnx.ModelProto{Graph: &onnx.GraphProto{Node: tc.nodes}})
			assert.Equal(t, tc.want, got)
		})
	}
	assert.Equal(t, ConvCoverage{Float: []string{}, Ops: map[string]int{}}, Coverage(nil))
}

func TestCoverageString(t *testing.T) {
	c := ConvCoverage{Int8: 36, Total: 37, Ops: map[string]int{"com.microsoft:QLinearConv": 36, "ai.onnx:Conv": 1}}
	assert.Equal(t, "36/37 convs in int8 (ai.onnx:Conv 1, com.microsoft:QLinearConv 36)", c.String())
	assert.Equal(t, "0/0 convs in int8", ConvCoverage{}.String())
	c.MatMuls = &MatMulCoverage{Int8: 144, Total: 144, Ops: map[string]int{"ai.onnx:QLinearMatMul": 40, "com.microsoft:MatMulIntegerToFloat": 104}}
	assert.Equal(t, "36/37 convs in int8 (ai.onnx:Conv 1, com.microsoft:QLinearConv 36); 144/144 matmuls in int8 (ai.onnx:QLinearMatMul 40, com.microsoft:MatMulIntegerToFloat 104)", c.String())
}

// optimizedCoverage opens model on the CPU EP with ORT writing its
// optimized graph, and counts that graph's convs.
func optimizedCoverage(t *testing.T, model []byte) ConvCoverage {
	t.Helper()
	return Coverage(orttest.Optimized(t, model))
}

// TestCoverageFromORT: the QDQ form of a conv becomes an int8 conv in the
// graph ORT runs, the float form stays float. This pins the op names ORT
// 1.24 actually writes.
func TestCoverageFromORT(t *testing.T) {
	requireORT(t)
	q := optimizedCoverage(t, tinyQDQModel())
	f := optimizedCoverage(t, tinyFloatModel())
	t.Logf("ORT %s runs the QDQ conv as %v, the float conv as %v", ort.Version(), q.Ops, f.Ops)
	assert.Equal(t, 1, q.Int8, "ops: %v", q.Ops)
	assert.Equal(t, 1, q.Total)
	assert.Empty(t, q.Float)

	assert.Equal(t, 0, f.Int8)
	assert.Equal(t, 1, f.Total, "ops: %v", f.Ops)
	assert.Len(t, f.Float, 1)
}
