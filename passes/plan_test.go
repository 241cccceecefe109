package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/passes"
)

// chain3 builds x -> Conv c1 -> Relu -> Conv c2 -> Add(c1's relu) -> Conv c3 -> y,
// a residual block between a head and a tail conv.
func chain3(g *graph.Graph) {
	weight(g, "w1", 0.5, 8, 3, 3, 3)
	weight(g, "w2", 0.1, 8, 8, 3, 3)
	weight(g, "w3", 0.1, 3, 8, 3, 3)
	node(g, "c1", "Conv", "x,w1", "a", pad1)
	node(g, "relu", "Relu", "a", "r")
	node(g, "c2", "Conv", "r,w2", "b", pad1)
	node(g, "add", "Add", "r,b", "s")
	node(g, "c3", "Conv", "s,w3", "y", pad1)
	outputs(g, "y")
}

func TestPlanQDQ(t *testing.T) {
	tests := []struct {
		name  string
		build func(g *graph.Graph)
		pol   passes.Policy
		// want: quantized nodes, calibrated values, shared values, absorbed
		// Relus (conv -> relu), skipped nodes (name -> reason).
		nodes, values []string
		shared        map[string]string
		relus         map[string]string
		skipped       map[string]string
	}{
		{
			name: "conv+relu absorbed",
			build: func(g *graph.Graph) {
				weight(g, "w1", 0.5, 8, 3, 3, 3)
				weight(g, "w2", 0.5, 3, 8, 3, 3)
				node(g, "c1", "Conv", "x,w1", "a", pad1)
				node(g, "relu", "Relu", "a", "r")
				node(g, "c2", "Conv", "r,w2", "y", pad1)
				outputs(g, "y")
			},
			nodes:  []string{"c1", "c2"},
			values: []string{"x", "r", "y"},
			relus:  map[string]string{"c1": "relu"},
		},
		{
			name: "relu not absorbed when the conv output is read twice",
			build: func(g *graph.Graph) {
				weight(g, "w1", 0.5, 3, 3, 3, 3)
				node(g, "c1", "Conv", "x,w1", "a", pad1)
				node(g, "relu", "Relu", "a", "r")
				node(g, "add", "Add", "a,r", "y")
				outputs(g, "y")
			},
			nodes:  []string{"c1", "relu", "add"},
			values: []string{"x", "a", "r", "y"},
		},
		{
			name: "depth-to-space shares its input's parameters",
			build: func(g *graph.Graph) {
				weight(g, "w1", 0.5, 12, 3, 3, 3)
				node(g, "c1", "Conv", "x,w1", "a", pad1)
				node(g, "d2s", "DepthToSpace", "a", "y", intAttr("blocksize", 2), strAttr("mode", "CRD"))
				outputs(g, "y")
			},
			nodes:  []string{"c1", "d2s"},
			values: []string{"x", "a"},
			shared: map[string]string{"y": "a"},
		},
		{
			name:   "residual chain",
			build:  chain3,
			nodes:  []string{"c1", "c2", "add", "c3"},
			values: []string{"x", "r", "b", "s", "y"},
			relus:  map[string]string{"c1": "relu"},
		},
		{
			name:    "skip a node",
			build:   chain3,
			pol:     passes.Policy{Skip: []string{"c2"}},
			nodes:   []string{"c1", "add", "c3"},
			values:  []string{"x", "r", "b", "s", "y"},
			relus:   map[string]string{"c1": "relu"},
			skipped: map[string]string{"c2": "--skip"},
		},
		{
			name:    "first and last kept float",
			build:   chain3,
			pol:     passes.Policy{FirstLast: passes.FirstLastFP32},
			nodes:   []string{"relu", "c2", "add"},
			values:  []string{"a", "r", "b", "s"},
			skipped: map[string]string{"c1": "first/last conv kept float", "c3": "first/last conv kept float"},
		},
		{
			name:   "float op types",
			build:  chain3,
			pol:    passes.Policy{FloatOps: []string{"Add"}},
			nodes:  []string{"c1", "c2", "c3"},
			values: []string{"x", "r", "b", "s", "y"},
			relus:  map[string]string{"c1": "relu"},
		},
		{
			name: "weight from a graph input",
			build: func(g *graph.Graph) {
				g.Inputs = append(g.Inputs, &graph.Value{Name: "w", DType: g.Inputs[0].DType, Shape: graph.ShapeOf(3, 3, 3, 3)})
				node(g, "c1", "Conv", "x,w", "y", pad1)
				outputs(g, "y")
			},
			skipped: map[string]string{"c1": "weight is not a constant"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph(3)
			tc.build(g)
			require.NoError(t, g.TopoSort())
			before := dump(g)
			p, err := passes.PlanQDQ(g, tc.pol)
			require.NoError(t, err)
			assert.Equal(t, before, dump(g), "planning must not edit the graph")
			assert.Equal(t, tc.nodes, nilIfEmpty(nodeNames(p.Nodes)), "nodes")
			assert.Equal(t, tc.values, nilIfEmpty(p.Values), "values")
			assert.Equal(t, tc.shared, nilIfEmptyMap(p.Shared), "shared")
			relus := map[string]string{}
			for c, r := range p.ReluOf {
				relus[c.Name] = r.Name
			}
			assert.Equal(t, tc.relus, nilIfEmptyMap(relus), "absorbed relus")
			skipped := map[string]string{}
			for n, why := range p.Skipped {
				skipped[n.Name] = why
			}
			assert.Equal(t, tc.skipped, nilIfEmptyMap(skipped), "skipped")
		})
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilIfEmptyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func TestPlanQDQSkipUnknown(t *testing.T) {
	g := newGraph(3)
	chain3(g)
	_, err := passes.PlanQDQ(g, passes.Policy{Skip: []string{"c2", "nope", "w1"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nope")
	assert.Contains(t, err.Error(), "w1")
	assert.NotContains(t, err.Error(), "c2")
}

func TestParseFirstLast(t *testing.T) {
	for _, s := range []string{"8", "fp32", "same"} {
		f, err := passes.ParseFirstLast(s)
		require.NoError(t, err)
		assert.Equal(t, s, string(f))
	}
	for _, s := range []string{"", "FP32", "4", "float"} {
		_, err := passes.ParseFirstLast(s)
		assert.Error(t, err, s)
	}
}

// EDSR's first stage is the input mean-shift (1x1) and the head conv; its
// last is the tail conv, followed by the output mean-shift until
// FuseConv1x1 folds it in.
func TestPlanQDQFirstLastEDSR(t *testing.T) {
	g := loadGraph(t, edsrX2)
	p, err := passes.PlanQDQ(g, passes.Policy{})
	require.NoError(t, err)
	assert.Equal(t, []string{"/sub_mean/Conv", "/head/Conv"}, nodeNames(p.First))
	assert.Equal(t, []string{"/tail/tail.1/Conv", "/add_mean/Conv"}, nodeNames(p.Last))

	require.NoError(t, passes.Run(g, passes.FoldIdentity{}, passes.FuseConv1x1{}))
	p, err = passes.PlanQDQ(g, passes.Policy{})
	require.NoError(t, err)
	assert.Equal(t, []string{"/sub_mean/Conv", "/head/Conv"}, nodeNames(p.First))
	assert.Equal(t, []string{"/tail/tail.1/Conv"}, nodeNames(p.Last))
	q, total := p.Convs(g)
	assert.Equal(t, [2]int{37, 37}, [2]int{q, total})
	assert.Len(t, p.ReluOf, 16, "every residual block's conv+relu")
	assert.Equal(t, map[string]string{
		"/tail/tail.0/tail.0.1/DepthToSpace_output_0": "/tail/tail.0/tail.0.0/Conv_output_0",
	}, p.Shared)

	p, err = passes.PlanQDQ(g, passes.Policy{FirstLast: passes.FirstLastFP32})
	require.NoError(t, err)
	q, _ = p.Convs(g)
	assert.Equal(t, 34, q)
	assert.Len(t, p.Skipped, 3)
}

func TestParseLongSkip(t *testing.T) {
	for _, s := range []string{"precise", "int8"} {
		l, err := passes.ParseLongSkip(s)
		require.NoError(t, err)
		assert.Equal(t, s, string(l))
	}
	for _, s := range []string{"", "Precise", "fp32", "float"} {
		_, err := passes.ParseLongSkip(s)
		assert.ErrorContains(t, err, "want precise or int8", s)
	}
}

// TestPlanQDQSplit: the parts of a Split keep its input's grid (IMDN's
// channel distillation), so ORT splits the uint8 codes.
func TestPlanQDQSplit(t *testing.T) {
	g := newGraph(3)
	weight(g, "w1", 0.5, 8, 3, 3, 3)
	weight(g, "w2", 0.5, 8, 4, 3, 3)
	g.SetInitializer(graph.NewInt64("sizes", []int64{2}, []int64{4, 4}))
	node(g, "c1", "Conv", "x,w1", "a", pad1)
	node(g, "lrelu", "LeakyRelu", "a", "l")
	node(g, "split", "Split", "l,sizes", "d,r", intAttr("axis", 1))
	node(g, "c2", "Conv", "r,w2", "b", pad1)
	node(g, "cat", "Concat", "d,b", "y", intAttr("axis", 1))
	weight(g, "w3", 0.5, 3, 12, 3, 3)
	node(g, "c3", "Conv", "y,w3", "o", pad1)
	outputs(g, "o")
	p, err := passes.PlanQDQ(g, passes.Policy{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"d": "l", "r": "l"}, p.Shared)
	assert.Equal(t, []string{"x", "a", "l", "b", "y", "o"}, p.Values)

	// A Concat that no quantized node reads stays float: each part keeps
	// its own grid.
	g.RemoveNode(g.Producer("o"))
	g.Outputs[0].Name = "y"
	p, err = passes.PlanQDQ(g, passes.Policy{})
	require.NoError(t, err)
	assert.Equal(t, []string{"x", "a", "l", "b"}, p.Values)
	assert.NotContains(t, p.Nodes, g.Producer("y"))
}
