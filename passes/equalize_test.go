package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/passes"
)

// TestEqualizePRelu: a Conv → PRelu → Conv chain is one channel space
// (PRelu commutes with a positive per-channel scale, its slopes kept);
// equalizing it evens the channel ranges and leaves the output unchanged.
func TestEqualizePRelu(t *testing.T) {
	requireORT(t)
	g := newGraph(3)
	w1 := weight(g, "w1", 0.5, 4, 3, 3, 3)
	for i := range w1[:27] {
		w1[i] *= 20 // channel 0 twenty times wider
	}
	g.SetInitializer(graph.NewFloat32("w1", []int64{4, 3, 3, 3}, w1))
	g.SetInitializer(graph.NewFloat32("slope", []int64{4, 1, 1}, []float32{0.1, 0.25, 0.5, 0.05}))
	weight(g, "w2", 0.5, 6, 4, 3, 3)
	node(g, "c1", "Conv", "x,w1", "a", pad1)
	node(g, "pr", "PRelu", "a,slope", "p")
	node(g, "c2", "Conv", "p,w2", "y", pad1)
	outputs(g, "y")
	in := randInput(4, 1, 3, 9, 9)
	want := runORT(t, g, in)
	spaces := passes.ChannelSpaces(g)
	require.Len(t, spaces, 1)
	assert.ElementsMatch(t, []string{"a", "p"}, spaces[0].Values)
	ranges := map[string][]float32{"a": {20, 1, 1, 1}, "p": {20, 1, 1, 1}}
	require.NoError(t, passes.Run(g, passes.Equalize{Spaces: spaces, Ranges: ranges, Alpha: 0.5}))
	assert.Less(t, relDiff(t, want, runORT(t, g, in)), 1e-5)
	nw, err := g.Initializer(g.Producer("a").Inputs[1]).Float32()
	require.NoError(t, err)
	assert.Less(t, nw[0]/w1[0], float32(1), "the wide channel shrinks")
	assert.Greater(t, nw[27]/w1[27], float32(1), "the narrow ones grow")
}
