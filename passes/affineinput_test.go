package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/passes"
)

// TestAffineInput: (x − mean) · 255 before the head becomes a diagonal
// 1x1 Conv, which FoldInputShift then folds into the head; the output is
// the same.
func TestAffineInput(t *testing.T) {
	requireORT(t)
	g := newGraph(3)
	g.SetInitializer(graph.NewFloat32("mean", []int64{1, 3, 1, 1}, []float32{0.45, 0.44, 0.40}))
	g.SetInitializer(graph.NewFloat32("k", nil, []float32{255}))
	weight(g, "wh", 0.02, 8, 3, 3, 3)
	weight(g, "bh", 0.1, 8)
	node(g, "sub", "Sub", "x,mean", "c")
	node(g, "mul", "Mul", "c,k", "y")
	node(g, "head", "Conv", "y,wh,bh", "h", pad1)
	outputs(g, "h")
	in := randInput(9, 1, 3, 8, 11)
	want := runORT(t, g, in)
	require.NoError(t, passes.Run(g, passes.AffineInput{}))
	assert.Equal(t, map[string]int{"Conv": 2}, ops(g), dump(g))
	assert.Less(t, relDiff(t, want, runORT(t, g, in)), 1e-5)
	fold, err := passes.FoldInputShift(g, 1)
	require.NoError(t, err)
	require.Equal(t, "head", fold.Head)
	assert.InDeltaSlice(t, []float32{0.45, 0.44, 0.40}, fold.Center, 1e-6, "padded with the mean")
	assert.Less(t, relDiff(t, want, runORT(t, g, in)), 1e-5, "exact at the borders too")

	// Not an affine map of the input per channel: left alone.
	g = newGraph(3)
	g.SetInitializer(graph.NewFloat32("k", []int64{1, 1, 1, 2}, []float32{2, 3}))
	weight(g, "wh", 0.02, 8, 3, 3, 3)
	node(g, "mul", "Mul", "x,k", "y")
	node(g, "head", "Conv", "y,wh", "h", pad1)
	outputs(g, "h")
	before := dump(g)
	require.NoError(t, passes.Run(g, passes.AffineInput{}))
	assert.Equal(t, before, dump(g))
}
