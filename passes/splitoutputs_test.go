package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/passes"
)

// TestSplitConvOutputs: a 3x3 Conv with a bias written as three Convs over
// runs of its output channels and a Concat computes the same output; a
// run that does not split the channels is refused.
func TestSplitConvOutputs(t *testing.T) {
	requireORT(t)
	g := newGraph(3)
	weight(g, "w", 0.5, 6, 3, 3, 3)
	weight(g, "b", 0.1, 6)
	node(g, "c", "Conv", "x,w,b", "y", pad1)
	node(g, "r", "Relu", "y", "z")
	outputs(g, "z")
	in := randInput(3, 1, 3, 9, 10)
	want := runORT(t, g, in)
	bad := g.Clone()
	require.NoError(t, passes.Run(g, passes.SplitConvOutputs{Starts: map[string][]int64{"c": {2, 3}}}))
	assert.Equal(t, map[string]int{"Conv": 3, "Concat": 1, "Relu": 1}, ops(g), dump(g))
	assert.Less(t, relDiff(t, want, runORT(t, g, in)), 1e-6)
	assert.ErrorContains(t, passes.Run(bad, passes.SplitConvOutputs{Starts: map[string][]int64{"c": {3, 6}}}), "do not split 6 outputs")
}

// TestChannelRuns: channels group by range where one is 4x the next
// smaller or more, and runs are adjacent channels of one group.
func TestChannelRuns(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ranges []float32
		want   []int64
	}{
		{"one group", []float32{1, 3, 2, 3.9, 0}, nil},
		{"a massive channel", []float32{10, 30, 1500, 20, 12}, []int64{2, 3}},
		{"two levels", []float32{10, 1500, 30, 200, 40}, []int64{1, 2, 3, 4}},
		{"adjacent wide channels share a run", []float32{5, 100, 120, 6}, []int64{1, 3}},
		{"a dead channel stays with the small ones", []float32{0, 2, 3}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, passes.ChannelRuns(tc.ranges, 4))
		})
	}
}
