package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/passes"
)

func TestFoldIdentity(t *testing.T) {
	tests := []struct {
		name  string
		build func(g *graph.Graph)
		want  string
		check func(t *testing.T, g *graph.Graph)
	}{
		{
			name: "over initializer",
			build: func(g *graph.Graph) {
				weight(g, "w", 1, 4, 3, 3, 3)
				node(g, "id", "Identity", "w", "w_id")
				node(g, "conv", "Conv", "x,w_id", "y", pad1)
			},
			want: "Conv(x, w) -> y\n",
		},
		{
			name: "chain over initializer",
			build: func(g *graph.Graph) {
				weight(g, "w", 1, 4, 3, 3, 3)
				node(g, "id1", "Identity", "w", "a")
				node(g, "id2", "Identity", "a", "b")
				node(g, "conv", "Conv", "x,b", "y", pad1)
			},
			want: "Conv(x, w) -> y\n",
		},
		{
			name: "over Constant",
			build: func(g *graph.Graph) {
				n := node(g, "c", "Constant", "", "c")
				n.SetAttrTensor("value", graph.NewFloat32("c", nil, []float32{2}))
				node(g, "id", "Identity", "c", "c_id")
				node(g, "add", "Add", "x,c_id", "y")
			},
			// The constant becomes an initializer under the Identity's
			// output name, so the Add needs no edit.
			want: "Add(x, c_id) -> y\n",
			check: func(t *testing.T, g *graph.Graph) {
				c := g.Initializer("c_id")
				require.NotNil(t, c)
				v, err := c.Float32()
				require.NoError(t, err)
				assert.Equal(t, []float32{2}, v)
			},
		},
		{
			name: "graph output kept",
			build: func(g *graph.Graph) {
				weight(g, "w", 1, 4, 3, 3, 3)
				node(g, "id", "Identity", "w", "w_out")
				node(g, "conv", "Conv", "x,w", "y", pad1)
				outputs(g, "w_out")
			},
			want: "Identity(w) -> w_out\nConv(x, w) -> y\n",
		},
		{
			name: "over activation kept",
			build: func(g *graph.Graph) {
				node(g, "id", "Identity", "x", "x_id")
				node(g, "relu", "Relu", "x_id", "y")
			},
			want: "Identity(x) -> x_id\nRelu(x_id) -> y\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph(3)
			tc.build(g)
			outputs(g, "y")
			require.NoError(t, passes.Run(g, passes.FoldIdentity{}))
			assert.Equal(t, tc.want, dump(g))
			if tc.check != nil {
				tc.check(t, g)
			}
			serialize(t, g) // still a valid model
		})
	}
}

// The real export reuses the mean-shift weight through an Identity.
func TestFoldIdentityEDSR(t *testing.T) {
	g := loadGraph(t, edsrX2)
	require.Equal(t, 1, ops(g)["Identity"])
	require.NoError(t, passes.Run(g, passes.FoldIdentity{}))
	assert.Zero(t, ops(g)["Identity"])
	for _, n := range g.Nodes {
		if n.OpType == "Conv" {
			assert.NotNil(t, g.Initializer(n.Inputs[1]), "conv %s weight %s is not an initializer", n.Name, n.Inputs[1])
		}
	}
}
