package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

func TestDefectiveConvShape(t *testing.T) {
	for _, tc := range []struct {
		in, out, groups int64
		want            bool
	}{
		{50, 25, 1, true}, {64, 27, 1, true}, {25, 18, 1, true}, {50, 17, 1, true}, {8, 25, 1, true}, {3, 28, 1, true},
		{64, 20, 1, false}, {64, 24, 1, false}, {64, 28, 1, false}, // both multiples of 4
		{3, 16, 1, false}, {50, 32, 1, false}, {64, 64, 1, false}, {3, 3, 1, false}, // at most 16 or at least 32
		{50, 25, 25, false}, // grouped: another kernel
	} {
		assert.Equal(t, tc.want, passes.DefectiveConvShape(tc.in, tc.out, tc.groups), "%d→%d groups %d", tc.in, tc.out, tc.groups)
	}
}

// defectChain is x(3) → Conv 3→25 → Relu → Conv 25→16 → Conv 16→27 → y
// in deploy QDQ form: the first and last Conv have shapes ORT 1.24
// computes wrong on AMX CPUs, the middle one (16 outputs) not.
func defectChain(t *testing.T) *graph.Graph {
	g := newGraph(3)
	weight(g, "w1", 0.5, 25, 3, 3, 3)
	weight(g, "b1", 0.1, 25)
	weight(g, "w2", 0.1, 16, 25, 3, 3)
	weight(g, "w3", 0.1, 27, 16, 1, 1)
	weight(g, "b3", 0.1, 27)
	node(g, "c1", "Conv", "x,w1,b1", "c", pad1)
	node(g, "relu", "Relu", "c", "r")
	node(g, "c2", "Conv", "r,w2", "m", pad1)
	node(g, "c3", "Conv", "m,w3,b3", "y")
	outputs(g, "y")
	p, err := passes.PlanQDQ(g, passes.Policy{})
	require.NoError(t, err)
	act := map[string]qdq.Params{}
	for _, v := range p.Values {
		act[v] = qdq.Asymmetric(-4, 4, 8)
	}
	act["x"], act["r"] = qdq.Asymmetric(0, 1, 8), qdq.Asymmetric(0, 4, 8)
	require.NoError(t, passes.Run(g, passes.InsertQDQ{Plan: p, Act: act, Weights: passes.WeightConfig{Bits: 8, PerChannel: true, Method: qdq.MinMax}}))
	return g
}

// TestAvoidKernelDefects: the Convs of a defective shape get zero filters
// up to 32 outputs and a Split on their output codes; the others are left
// alone; ORT computes the same output (the padding is exact); a Conv named
// by a kernel check is padded whatever its shape.
func TestAvoidKernelDefects(t *testing.T) {
	requireORT(t)
	g := defectChain(t)
	in := randInput(7, 1, 3, 12, 12)
	want := runORT(t, g, in)

	var padded []string
	require.NoError(t, passes.Run(g, passes.AvoidKernelDefects{Padded: &padded}))
	assert.Equal(t, []string{"c1", "c3"}, padded)
	assert.Equal(t, 2, ops(g)["Split"])
	for _, n := range g.Nodes {
		if n.OpType == "Conv" && n.Name == "c1" {
			w := g.Initializer(g.Producer(n.Inputs[1]).Inputs[0])
			assert.Equal(t, []int64{32, 3, 3, 3}, w.Dims)
			b := g.Initializer(g.Producer(n.Inputs[2]).Inputs[0])
			assert.Equal(t, []int64{32}, b.Dims)
		}
	}
	got := runORT(t, g, in)
	assert.Equal(t, want.Data, got.Data, "same codes")
	serialize(t, g)

	g = defectChain(t)
	padded = nil
	require.NoError(t, passes.Run(g, passes.AvoidKernelDefects{Nodes: []string{"c2"}, Padded: &padded}))
	assert.Equal(t, []string{"c1", "c2", "c3"}, padded)
	assert.Equal(t, want.Data, runORT(t, g, in).Data)
}
