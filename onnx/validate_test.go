package onnx

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ifNode returns an If node whose branches output outer (a name of the
// enclosing graph) through an Identity, and, when inner is not "", also
// read inner.
func ifNode(outer, inner string) *NodeProto {
	branch := func() *GraphProto {
		in := []string{outer}
		if inner != "" {
			in = append(in, inner)
		}
		op := "Identity"
		if inner != "" {
			op = "Add"
		}
		return &GraphProto{
			Node:   []*NodeProto{{OpType: op, Input: in, Output: []string{"branch_out"}}},
			Output: []*ValueInfoProto{{Name: "branch_out"}},
		}
	}
	return &NodeProto{Name: "if", OpType: "If", Input: []string{"cond"}, Output: []string{"z"},
		Attribute: []*AttributeProto{
			{Name: "then_branch", Type: AttributeProto_GRAPH, G: branch()},
			{Name: "else_branch", Type: AttributeProto_GRAPH, G: branch()},
		}}
}

func TestValidate(t *testing.T) {
	withCond := func(m *ModelProto) { m.Graph.Input = append(m.Graph.Input, &ValueInfoProto{Name: "cond"}) }
	tests := []struct {
		name   string
		mutate func(m *ModelProto)
		want   string // "" means valid
	}{
		{"tiny model", func(m *ModelProto) {}, ""},
		{"nodes in reverse order", func(m *ModelProto) {
			n := m.Graph.Node
			n[0], n[1] = n[1], n[0]
		}, ""},
		{"optional inputs and outputs", func(m *ModelProto) {
			m.Graph.Node[0].Input = []string{"x", "w", ""}
			m.Graph.Node[1].Output = append(m.Graph.Node[1].Output, "")
		}, ""},
		{"initializer without graph input", func(m *ModelProto) {}, ""},
		{"initializer also a graph input (default value)", func(m *ModelProto) {
			m.Graph.Input = append(m.Graph.Input, &ValueInfoProto{Name: "w"})
		}, ""},
		{"If body reads outer scope", func(m *ModelProto) {
			withCond(m)
			m.Graph.Node = append(m.Graph.Node, ifNode("c", ""))
		}, ""},
		{"If body reads value defined later in the outer graph", func(m *ModelProto) {
			withCond(m)
			m.Graph.Node = append([]*NodeProto{ifNode("y", "")}, m.Graph.Node...)
		}, ""},
		{"If body reads an undefined name", func(m *ModelProto) {
			withCond(m)
			m.Graph.Node = append(m.Graph.Node, ifNode("c", "nowhere"))
		}, `node "if" (If) attribute "then_branch": node #0 (Add): input "nowhere" is not a graph input, initializer or node output`},
		{"domain imported", func(m *ModelProto) {
			m.OpsetImport = append(m.OpsetImport, &OperatorSetIdProto{Domain: "com.microsoft", Version: 1})
			m.Graph.Node[1].Domain = "com.microsoft"
		}, ""},

		{"no graph", func(m *ModelProto) { m.Graph = nil }, "model has no graph"},
		{"ir_version 0", func(m *ModelProto) { m.IrVersion = 0 }, "ir_version is 0; a model needs ir_version 1 or later (current is 10)"},
		{"no opset_import", func(m *ModelProto) { m.OpsetImport = nil }, "model has no opset_import, so its operators have no version"},
		{"duplicate opset", func(m *ModelProto) {
			m.OpsetImport = append(m.OpsetImport, &OperatorSetIdProto{Domain: "ai.onnx", Version: 13})
		}, `model imports domain "ai.onnx" twice in opset_import`},
		{"opset version 0", func(m *ModelProto) { m.OpsetImport[0].Version = 0 }, `model imports domain "" at version 0; versions start at 1`},
		{"domain not imported", func(m *ModelProto) { m.Graph.Node[1].Domain = "com.microsoft" },
			`node "relu" (Relu): domain "com.microsoft" is not in the model's opset_import`},
		{"undefined input", func(m *ModelProto) { m.Graph.Node[1].Input[0] = "missing" },
			`node "relu" (Relu): input "missing" is not a graph input, initializer or node output`},
		{"duplicate output", func(m *ModelProto) { m.Graph.Node[1].Output[0] = "c" },
			`node "relu" (Relu): output "c" is also produced by node "conv" (Conv) (duplicate output name)`},
		{"output redefines input", func(m *ModelProto) { m.Graph.Node[1].Output[0] = "x" },
			`node "relu" (Relu): output "x" redefines a graph input or initializer`},
		{"cycle", func(m *ModelProto) {
			m.Graph.Node[0].Input[0] = "y" // conv reads relu's output
		}, `is on a cycle: its inputs depend on its own outputs`},
		{"self loop", func(m *ModelProto) { m.Graph.Node[1].Input[0] = "y" },
			`node "relu" (Relu) is on a cycle: its inputs depend on its own outputs`},
		{"cycle through a subgraph", func(m *ModelProto) {
			withCond(m)
			// conv reads z, which If produces while its body reads y, from conv.
			m.Graph.Node = append(m.Graph.Node, ifNode("y", ""))
			m.Graph.Node[0].Input[2] = "z"
		}, "is on a cycle"},
		{"graph output not produced", func(m *ModelProto) { m.Graph.Output[0].Name = "nothing" },
			`graph output "nothing" is not produced by any node, graph input or initializer`},
		{"graph output listed twice", func(m *ModelProto) { m.Graph.Output = append(m.Graph.Output, m.Graph.Output[0]) },
			`graph output "y" is listed twice`},
		{"graph input listed twice", func(m *ModelProto) { m.Graph.Input = append(m.Graph.Input, m.Graph.Input[0]) },
			`graph input "x" is listed twice`},
		{"unnamed graph input", func(m *ModelProto) { m.Graph.Input[0].Name = "" }, "graph input #0 has no name"},
		{"unnamed initializer", func(m *ModelProto) { m.Graph.Initializer[1].Name = "" }, "initializer #1 has no name"},
		{"duplicate initializer", func(m *ModelProto) { m.Graph.Initializer[1].Name = "w" }, `initializer "w" is defined twice`},
		{"no op_type", func(m *ModelProto) { m.Graph.Node[1].OpType = "" }, `node "relu" () has no op_type`},
		{"unknown tensor data type", func(m *ModelProto) { m.Graph.Initializer[1].DataType = 42 },
			`tensor "b": has unknown data type 42 (srq reads ONNX IR v10 types 1..22)`},
		{"tensor size", func(m *ModelProto) { m.Graph.Initializer[0].Dims = []int64{64, 3, 3, 3} },
			`tensor "w": declares 1728 float values (6912 bytes) but raw_data has 432 bytes`},
		{"unknown elem type", func(m *ModelProto) { m.Graph.Input[0].Type.GetTensorType().ElemType = 77 },
			`graph input "x": unknown element type 77`},
		{"unknown elem type in sequence", func(m *ModelProto) {
			m.Graph.ValueInfo = append(m.Graph.ValueInfo, &ValueInfoProto{Name: "c", Type: &TypeProto{Value: &TypeProto_SequenceType{
				SequenceType: &TypeProto_Sequence{ElemType: &TypeProto{Value: &TypeProto_TensorType{TensorType: &TypeProto_Tensor{ElemType: 30}}}}}}})
		}, `value_info "c": unknown element type 30`},
		{"duplicate attribute", func(m *ModelProto) {
			m.Graph.Node[0].Attribute = append(m.Graph.Node[0].Attribute, m.Graph.Node[0].Attribute[0])
		}, `node "conv" (Conv) attribute "pads": attribute is given twice`},
		{"graph attribute without graph", func(m *ModelProto) {
			m.Graph.Node[1].Attribute = []*AttributeProto{{Name: "body", Type: AttributeProto_GRAPH}}
		}, `node "relu" (Relu) attribute "body": has type GRAPH but no graph`},
		{"unknown attribute type", func(m *ModelProto) { m.Graph.Node[0].Attribute[0].Type = 99 },
			`node "conv" (Conv) attribute "pads": unknown attribute type 99`},
		{"external tensor with bad location", func(m *ModelProto) {
			w := m.Graph.Initializer[0]
			w.RawData, w.DataLocation = nil, TensorProto_EXTERNAL
			w.ExternalData = []*StringStringEntryProto{{Key: "location", Value: "../w.bin"}}
		}, `tensor "w": has external data location "../w.bin", which leaves the model's folder`},
		{"function body input undefined", func(m *ModelProto) {
			m.Functions = []*FunctionProto{{Name: "f", Domain: "local", Input: []string{"a"}, Output: []string{"b"},
				OpsetImport: []*OperatorSetIdProto{{Version: 17}},
				Node:        []*NodeProto{{OpType: "Relu", Input: []string{"q"}, Output: []string{"b"}}}}}
		}, `function "f": node #0 (Relu): input "q" is not a graph input, initializer or node output`},
		{"function call", func(m *ModelProto) {
			m.Functions = []*FunctionProto{{Name: "f", Domain: "local", Input: []string{"a"}, Output: []string{"b"},
				OpsetImport: []*OperatorSetIdProto{{Version: 17}},
				Node:        []*NodeProto{{OpType: "Relu", Input: []string{"a"}, Output: []string{"b"}}}}}
			m.Graph.Node[1].OpType, m.Graph.Node[1].Domain = "f", "local"
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyModel()
			tc.mutate(m)
			err := Validate(m)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "\n")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	assert.EqualError(t, Validate(nil), "model is nil")
}

func TestFindCycle(t *testing.T) {
	assert.Equal(t, -1, findCycle(nil))
	assert.Equal(t, -1, findCycle([][]int{{}, {0}, {0, 1}}))
	// 0 → 1 → 2 → 1, and 3 hangs off the cycle: the answer must be on it.
	c := findCycle([][]int{{}, {0, 2}, {1}, {2}})
	assert.Contains(t, []int{1, 2}, c)
	assert.Equal(t, 0, findCycle([][]int{{0}}))
}
