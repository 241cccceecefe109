package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/passes"
)

// TestSpatialMean: a ReduceMean over H and W with kept dims becomes a
// GlobalAveragePool with the same output; other reductions stay.
func TestSpatialMean(t *testing.T) {
	requireORT(t)
	g := newGraph(4)
	node(g, "mean", "ReduceMean", "x", "m", ints("axes", 2, 3), intAttr("keepdims", 1))
	node(g, "sub", "Sub", "x,m", "d")
	node(g, "chan", "ReduceMean", "d", "c", ints("axes", 1), intAttr("keepdims", 1))
	node(g, "sq", "Mul", "d,d", "q")
	node(g, "flat", "ReduceMean", "q", "f", ints("axes", 2, 3), intAttr("keepdims", 0))
	outputs(g, "c", "f")
	in := randInput(5, 2, 4, 6, 7)
	want := runORTAll(t, g, in)
	require.NoError(t, passes.Run(g, passes.SpatialMean{}))
	got := ops(g)
	assert.Equal(t, 1, got["GlobalAveragePool"], dump(g))
	assert.Equal(t, 2, got["ReduceMean"], "a channel mean and a mean without kept dims stay")
	out := runORTAll(t, g, in)
	for i := range want {
		assert.Less(t, relDiff(t, want[i], out[i]), 1e-6, "output %d: %v vs %v", i, want[i].Data[:4], out[i].Data[:4])
	}
}
