package graph

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// diamond: x -> Relu a; b = a*a; c = a+w; d = b+c (output d).
func diamond() *onnx.ModelProto {
	return model("x", "d", []*Tensor{NewFloat32("w", []int64{1}, []float32{2})},
		nd("Relu", "x", "a"),
		nd("Mul", "a,a", "b"),
		nd("Add", "a,w", "c"),
		nd("Add", "b,c", "d"),
	)
}

// ifNode builds an If whose branches read the outer values thenRead and
// elseRead through an Identity.
func ifNode(cond, out, thenRead, elseRead string) *onnx.NodeProto {
	branch := func(name, read string) *onnx.AttributeProto {
		return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_GRAPH, G: &onnx.GraphProto{
			Name:   name,
			Node:   []*onnx.NodeProto{nd("Identity", read, name+"_inner")},
			Output: []*onnx.ValueInfoProto{floatVI(name+"_inner", 1)},
		}}
	}
	return nd("If", cond, out, branch("then_branch", thenRead), branch("else_branch", elseRead))
}

func TestProducerConsumers(t *testing.T) {
	m := diamond()
	m.Graph.Input = append(m.Graph.Input, (&Value{Name: "cond", DType: onnx.TensorProto_BOOL, Shape: Shape{}}).proto())
	m.Graph.Node = append(m.Graph.Node, ifNode("cond", "e", "c", "w"))
	m.Graph.Output = append(m.Graph.Output, floatVI("e", 1))
	g := mustGraph(t, m)

	tests := []struct {
		value     string
		producer  string // "" for none
		consumers []string
	}{
		{"x", "", []string{"n_a"}},
		{"a", "n_a", []string{"n_b", "n_c"}}, // n_b reads a twice, listed once
		{"w", "", []string{"n_c", "n_e"}},    // n_e reads w inside else_branch
		{"c", "n_c", []string{"n_d", "n_e"}}, // n_e reads c inside then_branch
		{"d", "n_d", []string{}},
		{"cond", "", []string{"n_e"}},
		{"nope", "", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			p := g.Producer(tt.value)
			if tt.producer == "" {
				assert.Nil(t, p)
			} else {
				require.NotNil(t, p)
				assert.Equal(t, tt.producer, p.Name)
			}
			assert.Equal(t, tt.consumers, names(g.Consumers(tt.value)))
		})
	}
	assert.True(t, g.IsGraphOutput("d"))
	assert.True(t, g.IsGraphOutput("e"))
	assert.False(t, g.IsGraphOutput("c"))
}

func TestIndexFollowsEdits(t *testing.T) {
	g := mustGraph(t, diamond())
	require.Equal(t, []string{"n_b", "n_c"}, names(g.Consumers("a"))) // builds the index

	// Insert a node reading "a" and make n_b read it for one of its inputs.
	sq := &Node{Name: "sq", OpType: "Sqrt", Inputs: []string{"a"}, Outputs: []string{g.UniqueName("a_sqrt")}}
	g.AddNode(sq)
	assert.Equal(t, []string{"n_b", "n_c", "sq"}, names(g.Consumers("a")))
	assert.Same(t, sq, g.Producer("a_sqrt"))

	nb := g.Producer("b")
	g.ReplaceInput(nb, 1, "a_sqrt")
	assert.Equal(t, []string{"n_b", "n_c", "sq"}, names(g.Consumers("a")), "n_b still reads a as input 0")
	assert.Equal(t, []string{"n_b"}, names(g.Consumers("a_sqrt")))
	g.ReplaceInput(nb, 0, "x")
	assert.Equal(t, []string{"n_c", "sq"}, names(g.Consumers("a")))
	assert.Equal(t, []string{"n_a", "n_b"}, names(g.Consumers("x")), "consumers stay in graph order")

	// The index must equal a fresh rebuild after every edit.
	fresh := g.Clone()
	for _, v := range []string{"x", "a", "a_sqrt", "b", "c"} {
		assert.Equal(t, names(fresh.Consumers(v)), names(g.Consumers(v)), v)
	}

	g.RemoveNode(sq)
	assert.Nil(t, g.Producer("a_sqrt"))
	assert.Equal(t, []string{"n_c"}, names(g.Consumers("a")))
	_, err := g.ToModel()
	require.ErrorContains(t, err, `input 1 "a_sqrt"`)

	// ReplaceInput past the end adds an optional input.
	nc := g.Producer("c")
	g.ReplaceInput(nc, 3, "w")
	assert.Equal(t, []string{"a", "w", "", "w"}, nc.Inputs)
}

func TestDirectEditsNeedInvalidate(t *testing.T) {
	g := mustGraph(t, diamond())
	require.Equal(t, []string{"n_b", "n_c"}, names(g.Consumers("a")))
	g.Producer("c").Inputs[0] = "x" // direct edit: index is stale until Invalidate
	g.Invalidate()
	assert.Equal(t, []string{"n_b"}, names(g.Consumers("a")))
	assert.Equal(t, []string{"n_a", "n_c"}, names(g.Consumers("x")))
}

func TestTopoSort(t *testing.T) {
	tests := []struct {
		name  string
		nodes []*onnx.NodeProto
		want  []string
	}{
		{"sorted stays", diamond().Graph.Node, []string{"n_a", "n_b", "n_c", "n_d"}},
		{"reversed", []*onnx.NodeProto{
			nd("Add", "b,c", "d"), nd("Add", "a,w", "c"), nd("Mul", "a,a", "b"), nd("Relu", "x", "a"),
		}, []string{"n_a", "n_c", "n_b", "n_d"}}, // earliest ready node first: c (index 1) before b (2)
		{"late producer moves up only as far as needed", []*onnx.NodeProto{
			nd("Relu", "x", "a"), nd("Mul", "a,a", "b"), nd("Add", "a,w", "c"), nd("Add", "b,c", "d"),
			nd("Identity", "x", "unused"), nd("Relu", "x", "late"),
		}, []string{"n_a", "n_b", "n_c", "n_d", "n_unused", "n_late"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := diamond()
			m.Graph.Node = tt.nodes
			g := mustGraph(t, m) // FromModel sorts
			assert.Equal(t, tt.want, names(g.Nodes))
		})
	}

	t.Run("appended node placed before its consumer", func(t *testing.T) {
		g := mustGraph(t, diamond())
		dq := &Node{Name: "dq", OpType: "Identity", Inputs: []string{"a"}, Outputs: []string{"a_dq"}}
		g.AddNode(dq)
		g.ReplaceUses("a", "a_dq", dq)
		require.NoError(t, g.TopoSort())
		assert.Equal(t, []string{"n_a", "dq", "n_b", "n_c", "n_d"}, names(g.Nodes))
		assert.Equal(t, []string{"n_b", "n_c"}, names(g.Consumers("a_dq")), "index valid after reorder")
	})
}

func TestCycleErrors(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []*onnx.NodeProto
		mention []string
	}{
		{"three-node cycle", []*onnx.NodeProto{
			nd("Add", "x,c", "a"), nd("Relu", "a", "b"), nd("Relu", "b", "c"), nd("Relu", "c", "d"),
		}, []string{`"n_a" (Add) -> "n_b" (Relu) -> "n_c" (Relu) -> "n_a" (Add)`}},
		{"self loop", []*onnx.NodeProto{nd("Add", "x,d", "d")}, []string{`"n_d" (Add) -> "n_d"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromModel(model("x", "d", nil, tt.nodes...))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "cycle")
			for _, s := range tt.mention {
				assert.Contains(t, err.Error(), s)
			}
			assert.NotContains(t, err.Error(), `"n_d" (Relu)`, "nodes downstream of a cycle are not on it")
		})
	}

	t.Run("edit creates a cycle", func(t *testing.T) {
		g := mustGraph(t, diamond())
		g.ReplaceInput(g.Producer("a"), 0, "d")
		assert.ErrorContains(t, g.TopoSort(), "cycle")
		_, err := g.ToModel()
		assert.ErrorContains(t, err, "cycle")
	})
}

func TestFromModelErrors(t *testing.T) {
	ext := NewFloat32("w", []int64{1}, []float32{1}).Proto()
	ext.RawData = nil
	ext.DataLocation = onnx.TensorProto_EXTERNAL
	ext.ExternalData = []*onnx.StringStringEntryProto{{Key: "location", Value: "w.bin"}}
	w := NewFloat32("w", []int64{1}, []float32{1})

	tests := []struct {
		name string
		m    *onnx.ModelProto
		want string
	}{
		{"nil model", nil, "model is nil"},
		{"no graph", &onnx.ModelProto{IrVersion: 8}, "model has no graph"},
		{"missing initializer", model("x", "y", nil, nd("Conv", "x,w", "y")),
			`node "n_y" (Conv): input 1 "w" is not a graph input, initializer or node output`},
		{"duplicate outputs", model("x", "y", nil, nd("Relu", "x", "y"), &onnx.NodeProto{Name: "other", OpType: "Abs", Input: []string{"x"}, Output: []string{"y"}}),
			`value "y" is produced by both node "n_y" (Relu) and node "other" (Abs)`},
		{"output redefines input", model("x", "x", nil, nd("Relu", "x", "x")), `node "n_x" (Relu): output "x" redefines a graph input`},
		{"undefined graph output", model("x", "z", nil, nd("Relu", "x", "y")), `graph output "z" is not`},
		{"duplicate initializer", model("x", "y", []*Tensor{w, w}, nd("Add", "x,w", "y")), `initializer "w" is defined twice`},
		{"external data", func() *onnx.ModelProto {
			m := model("x", "y", nil, nd("Add", "x,w", "y"))
			m.Graph.Initializer = []*onnx.TensorProto{ext}
			return m
		}(), `tensor "w": data is stored externally`},
		{"bad raw size", func() *onnx.ModelProto {
			m := model("x", "y", []*Tensor{w}, nd("Add", "x,w", "y"))
			m.Graph.Initializer[0].Dims = []int64{2}
			return m
		}(), `tensor "w": FLOAT tensor of shape [2] has 4 bytes of raw_data, want 8`},
		{"subgraph reads undefined value", model("x", "e", nil, ifNode("x", "e", "x", "ghost")),
			`node "n_e" (If): a subgraph reads "ghost"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromModel(tt.m)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n", "errors are one line")
		})
	}
}

func TestRemoveDead(t *testing.T) {
	m := model("x,cond", "out,e", []*Tensor{
		scalar("w2", 2), scalar("w3", 3), scalar("wsub", 4), scalar("x", 5), scalar("cond_unused", 1),
	},
		nd("Relu", "x", "out"),
		nd("Mul", "out,w2", "dead1"),
		nd("Relu", "dead1", "dead2"),
		ifNode("cond", "e", "out", "wsub"), // wsub is read only inside a subgraph
	)
	m.Graph.ValueInfo = []*onnx.ValueInfoProto{floatVI("dead1", 1), floatVI("out", 1)}
	g := mustGraph(t, m)

	assert.Equal(t, 5, g.RemoveDead(), "2 nodes + w2, w3, cond_unused; x is a graph input")
	assert.Equal(t, "Relu(x)->out; If(cond)->e", dump(g))
	var inits []string
	for _, t := range g.Initializers() {
		inits = append(inits, t.Name)
	}
	assert.Equal(t, []string{"wsub", "x"}, inits)
	assert.Nil(t, g.ValueInfo("dead1"), "value_info of removed values goes too")
	assert.NotNil(t, g.ValueInfo("out"))
	assert.Equal(t, []string{"n_e"}, names(g.Consumers("out")), "index updated")
	assert.Equal(t, 0, g.RemoveDead(), "idempotent")
	_, err := g.ToModel()
	require.NoError(t, err)
}

func TestUniqueName(t *testing.T) {
	m := diamond()
	m.Graph.Input = append(m.Graph.Input, (&Value{Name: "cond", DType: onnx.TensorProto_BOOL, Shape: Shape{}}).proto())
	m.Graph.Node = append(m.Graph.Node, ifNode("cond", "e", "c", "w"), nd("Relu", "x", "a_1"))
	m.Graph.Output = append(m.Graph.Output, floatVI("e", 1))
	g := mustGraph(t, m)

	tests := []struct{ base, want string }{
		{"fresh", "fresh"},
		{"fresh", "fresh_1"}, // generated earlier
		{"a", "a_2"},         // a and a_1 are values
		{"a", "a_3"},
		{"n_b", "n_b_1"}, // node name
		{"w", "w_1"},     // initializer
		{"then_branch_inner", "then_branch_inner_1"}, // inside a subgraph
		{"", "v"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, g.UniqueName(tt.base), "UniqueName(%q)", tt.base)
	}

	g.AddNode(&Node{Name: "added", OpType: "Relu", Inputs: []string{"x"}, Outputs: []string{"added_out"}})
	g.SetInitializer(scalar("new_init", 1))
	assert.Equal(t, "added_1", g.UniqueName("added"))
	assert.Equal(t, "added_out_1", g.UniqueName("added_out"))
	assert.Equal(t, "new_init_1", g.UniqueName("new_init"))

	g.Invalidate()
	assert.Equal(t, "fresh_2", g.UniqueName("fresh"), "reservations survive a rebuild")
	c := g.Clone()
	assert.Equal(t, "fresh_3", c.UniqueName("fresh"), "and a clone")
}

func TestReplaceUses(t *testing.T) {
	t.Run("except and index", func(t *testing.T) {
		g := mustGraph(t, diamond())
		g.ReplaceUses("a", "x", g.Producer("c"))
		assert.Equal(t, "Relu(x)->a; Mul(x,x)->b; Add(a,w)->c; Add(b,c)->d", dump(g))
		assert.Equal(t, []string{"n_c"}, names(g.Consumers("a")))
		assert.Equal(t, []string{"n_a", "n_b"}, names(g.Consumers("x")))
	})
	t.Run("graph output renamed", func(t *testing.T) {
		g := mustGraph(t, diamond())
		g.ReplaceUses("d", "c")
		assert.True(t, g.IsGraphOutput("c"))
		assert.False(t, g.IsGraphOutput("d"))
		assert.Equal(t, 2, g.RemoveDead(), "the old output's producer and n_b are dead now")
		assert.Equal(t, "Relu(x)->a; Add(a,w)->c", dump(g))
		out, err := g.ToModel()
		require.NoError(t, err)
		assert.Equal(t, "c", out.Graph.Output[0].Name)
		assert.Equal(t, int32(onnx.TensorProto_FLOAT), out.Graph.Output[0].GetType().GetTensorType().GetElemType())
	})
	t.Run("subgraph outer reads", func(t *testing.T) {
		m := diamond()
		m.Graph.Input = append(m.Graph.Input, (&Value{Name: "cond", DType: onnx.TensorProto_BOOL, Shape: Shape{}}).proto())
		m.Graph.Node = append(m.Graph.Node, ifNode("cond", "e", "c", "w"))
		m.Graph.Output = append(m.Graph.Output, floatVI("e", 1))
		orig := proto.Clone(m)
		g := mustGraph(t, m)
		g.ReplaceUses("c", "b")
		ifn := g.Producer("e")
		assert.Equal(t, []string{"b"}, ifn.Attr("then_branch").GetG().GetNode()[0].GetInput())
		assert.Equal(t, []string{"n_d", "n_e"}, names(g.Consumers("b")))
		assert.Empty(t, g.Consumers("c"))
		assert.True(t, proto.Equal(orig, m), "the source model is not modified")
	})
}

func TestConst(t *testing.T) {
	vt := NewInt8("", []int64{3}, []int8{-1, 0, 5}).Proto()
	m := model("x", "r", []*Tensor{NewFloat32("w", []int64{2}, []float32{1, 2}), scalar("x", 0)},
		nd("Constant", "", "k1", &onnx.AttributeProto{Name: "value", Type: onnx.AttributeProto_TENSOR, T: vt}),
		nd("Identity", "k1", "k2"),
		nd("Identity", "k2", "k3"),
		nd("Identity", "w", "w_id"),
		nd("Constant", "", "cf", &onnx.AttributeProto{Name: "value_float", Type: onnx.AttributeProto_FLOAT, F: proto.Float32(2.5)}),
		nd("Constant", "", "cfs", &onnx.AttributeProto{Name: "value_floats", Type: onnx.AttributeProto_FLOATS, Floats: []float32{1, 2}}),
		nd("Constant", "", "ci", &onnx.AttributeProto{Name: "value_int", Type: onnx.AttributeProto_INT, I: proto.Int64(7)}),
		nd("Constant", "", "cis", &onnx.AttributeProto{Name: "value_ints", Type: onnx.AttributeProto_INTS, Ints: []int64{1, 2, 3}}),
		nd("Constant", "", "cs", &onnx.AttributeProto{Name: "value_string", Type: onnx.AttributeProto_STRING, S: []byte("s")}),
		nd("Relu", "x", "r"),
		nd("Identity", "r", "r_id"),
	)
	g := mustGraph(t, m)

	tests := []struct {
		name  string
		ok    bool
		dtype onnx.TensorProto_DataType
		dims  []int64
		data  []byte
	}{
		{"w", true, onnx.TensorProto_FLOAT, []int64{2}, NewFloat32("", nil, []float32{1, 2}).Data},
		{"w_id", true, onnx.TensorProto_FLOAT, []int64{2}, NewFloat32("", nil, []float32{1, 2}).Data},
		{"k1", true, onnx.TensorProto_INT8, []int64{3}, []byte{0xFF, 0, 5}},
		{"k3", true, onnx.TensorProto_INT8, []int64{3}, []byte{0xFF, 0, 5}},
		{"cf", true, onnx.TensorProto_FLOAT, []int64{}, NewFloat32("", nil, []float32{2.5}).Data},
		{"cfs", true, onnx.TensorProto_FLOAT, []int64{2}, NewFloat32("", nil, []float32{1, 2}).Data},
		{"ci", true, onnx.TensorProto_INT64, []int64{}, NewInt64("", nil, []int64{7}).Data},
		{"cis", true, onnx.TensorProto_INT64, []int64{3}, NewInt64("", nil, []int64{1, 2, 3}).Data},
		{"cs", false, 0, nil, nil},
		{"r", false, 0, nil, nil},
		{"r_id", false, 0, nil, nil},
		{"x", false, 0, nil, nil}, // initializer that is also a graph input: overridable
		{"missing", false, 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := g.Const(tt.name)
			require.Equal(t, tt.ok, ok)
			if !ok {
				assert.Nil(t, c)
				return
			}
			assert.Equal(t, tt.dtype, c.DType)
			assert.Equal(t, tt.dims, c.Dims)
			assert.Equal(t, tt.data, c.Data)
		})
	}
	w, _ := g.Const("w_id")
	assert.Same(t, g.Initializer("w"), w, "an initializer is returned itself")
}

func TestCloneIsIndependent(t *testing.T) {
	g := mustGraph(t, diamond())
	c := g.Clone()
	c.Producer("a").SetAttrFloat("alpha", 1)
	c.Producer("c").Inputs[1] = "x"
	c.Invalidate()
	c.Initializer("w").Data[0] = 0xAA
	c.Outputs[0].Shape[0].Value = 9
	c.Opsets["com.x"] = 1
	c.RemoveNode(c.Producer("b"))

	assert.Equal(t, "Relu(x)->a; Mul(a,a)->b; Add(a,w)->c; Add(b,c)->d", dump(g))
	assert.Nil(t, g.Producer("a").Attr("alpha"))
	assert.NotEqual(t, byte(0xAA), g.Initializer("w").Data[0])
	assert.Equal(t, int64(1), g.Outputs[0].Shape[0].Value)
	assert.NotContains(t, g.Opsets, "com.x")
	out, err := g.ToModel()
	require.NoError(t, err)
	assert.True(t, proto.Equal(diamond(), out))
}

func TestValueInfo(t *testing.T) {
	m := diamond()
	m.Graph.ValueInfo = []*onnx.ValueInfoProto{
		(&Value{Name: "a", DType: onnx.TensorProto_FLOAT, Shape: Shape{{Value: -1, Param: "n"}, {Value: 4}, {Value: -1}}}).proto(),
	}
	g := mustGraph(t, m)
	tests := []struct {
		name string
		want string // Value.String(), "" for nil
	}{
		{"x", "x:FLOAT[1]"},
		{"d", "d:FLOAT[1]"},
		{"a", "a:FLOAT[n,4,?]"},
		{"w", "w:FLOAT[1]"},
		{"b", ""},
	}
	for _, tt := range tests {
		v := g.ValueInfo(tt.name)
		if tt.want == "" {
			assert.Nil(t, v, tt.name)
			continue
		}
		require.NotNil(t, v, tt.name)
		assert.Equal(t, tt.want, v.String())
	}

	g.SetValueInfo(&Value{Name: "b", DType: onnx.TensorProto_FLOAT, Shape: ShapeOf(1)})
	g.ValueInfo("a").Shape[1].Value = 99 // a copy: no effect
	out, err := g.ToModel()
	require.NoError(t, err)
	require.Len(t, out.Graph.ValueInfo, 2)
	assert.True(t, proto.Equal(m.Graph.ValueInfo[0], out.Graph.ValueInfo[0]))
	assert.Equal(t, "b", out.Graph.ValueInfo[1].Name)
}

func TestToModelChecksDomains(t *testing.T) {
	g := mustGraph(t, diamond())
	g.AddNode(&Node{Name: "custom", OpType: "Foo", Domain: "com.example", Inputs: []string{"x"}, Outputs: []string{"foo"}})
	_, err := g.ToModel()
	require.ErrorContains(t, err, `node "custom" (Foo): domain "com.example" has no opset import`)
	g.Opsets["com.example"] = 1
	out, err := g.ToModel()
	require.NoError(t, err)
	assert.Equal(t, "com.example", out.OpsetImport[1].Domain, "new domains follow the model's own")
}

func TestNewGraphToModel(t *testing.T) {
	g := New("tiny", map[string]int64{"": 21})
	g.Inputs = []*Value{{Name: "x", DType: onnx.TensorProto_FLOAT, Shape: Shape{{Value: -1, Param: "n"}, {Value: 8}}}}
	g.Outputs = []*Value{{Name: "y", DType: onnx.TensorProto_FLOAT, Shape: nil}}
	g.SetInitializer(NewInt4("q", []int64{3}, []int8{-8, 7, 1}))
	g.SetInitializer(scalar("s", 0.5))
	g.AddNode(&Node{Name: "dq", OpType: "DequantizeLinear", Inputs: []string{"q", "s"}, Outputs: []string{"y"}})
	m, err := g.ToModel()
	require.NoError(t, err)
	assert.Equal(t, int64(onnx.Version_IR_VERSION), m.IrVersion)
	assert.Nil(t, m.Graph.Output[0].GetType().GetTensorType().GetShape(), "nil Shape is unknown rank")
	assert.Equal(t, []byte{0x78, 0x01}, m.Graph.Initializer[0].RawData)

	g2 := mustGraph(t, m)
	q, err := g2.Initializer("q").Int4()
	require.NoError(t, err)
	assert.Equal(t, []int8{-8, 7, 1}, q)
	assert.Equal(t, "x:FLOAT[n,8]", g2.ValueInfo("x").String())
}

func TestZeroGraphUsable(t *testing.T) {
	var g Graph
	assert.Nil(t, g.Producer("x"))
	assert.Empty(t, g.Consumers("x"))
	assert.Equal(t, "x", g.UniqueName("x"))
	g.SetInitializer(scalar("w", 1))
	g.SetValueInfo(&Value{Name: "v"})
	assert.Equal(t, 1, g.RemoveDead())
	_, err := g.ToModel()
	require.NoError(t, err)
}

func TestRemoveInitializer(t *testing.T) {
	m := diamond()
	m.Graph.Initializer = append(m.Graph.Initializer, scalar("k", 1).Proto(), scalar("z", 2).Proto())
	g := mustGraph(t, m)
	g.RemoveInitializer("k")
	g.RemoveInitializer("missing") // no-op
	require.Nil(t, g.Initializer("k"))
	require.NotNil(t, g.Initializer("z"))
	var order []string
	for _, t := range g.Initializers() {
		order = append(order, t.Name)
	}
	assert.Equal(t, []string{"w", "z"}, order)

	g.RemoveInitializer("w")
	_, err := g.ToModel()
	assert.ErrorContains(t, err, `node "n_c" (Add): input 1 "w" is not a graph input, initializer or node output`)
}

func TestSubgraphLocalNamesAreNotOuterReads(t *testing.T) {
	m := diamond()
	m.Graph.Input = append(m.Graph.Input, (&Value{Name: "cond", DType: onnx.TensorProto_BOOL, Shape: Shape{}}).proto())
	ifn := ifNode("cond", "e", "c", "w")
	// The else branch declares its own input "c": a different value.
	els := ifn.Attribute[1].G
	els.Input = []*onnx.ValueInfoProto{floatVI("c", 1)}
	els.Node = append(els.Node, nd("Relu", "c", "local"))
	m.Graph.Node = append(m.Graph.Node, ifn)
	m.Graph.Output = append(m.Graph.Output, floatVI("e", 1))
	g := mustGraph(t, m)

	assert.Equal(t, []string{"cond", "c", "w"}, nodeUses(g.Producer("e")), "else_branch reads only its own c")
	g.ReplaceUses("c", "b")
	e := g.Producer("e")
	assert.Equal(t, []string{"b"}, e.Attr("then_branch").GetG().GetNode()[0].GetInput())
	assert.Equal(t, []string{"c"}, e.Attr("else_branch").GetG().GetNode()[1].GetInput(), "local c untouched")

	assert.True(t, Dim{Value: 3}.Known())
	assert.False(t, Dim{Value: -1, Param: "n"}.Known())
}
