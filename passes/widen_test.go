package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/passes"
)

// TestWidenImageConv: the image Conv padded to 16 output channels and
// sliced back computes exactly the same output; a Conv that is grouped,
// already wide, not the output's producer, or kept float by the policy is
// left alone.
func TestWidenImageConv(t *testing.T) {
	requireORT(t)
	g := newGraph(8)
	weight(g, "w", 0.5, 3, 8, 3, 3)
	weight(g, "b", 1, 3)
	node(g, "image", "Conv", "x,w,b", "y", pad1)
	outputs(g, "y")
	in := randInput(3, 1, 8, 6, 5)
	want := runORT(t, g, in)

	v := passes.WidenImageConv(g, passes.Policy{})
	require.NotEmpty(t, v)
	conv := g.Producer(v)
	require.NotNil(t, conv)
	wt, ok := g.Const(conv.Inputs[1])
	require.True(t, ok)
	assert.Equal(t, []int64{16, 8, 3, 3}, wt.Dims)
	assert.Equal(t, "Slice", g.Producer("y").OpType)
	assert.Zero(t, relDiff(t, want, runORT(t, g, in)))

	for _, tc := range []struct {
		name  string
		dims  []int64 // weight of the Conv
		group int64
		d2s   bool // a DepthToSpace writes the output
		pol   passes.Policy
	}{
		{"grouped", []int64{4, 2, 3, 3}, 4, false, passes.Policy{}},
		{"wide already", []int64{16, 8, 3, 3}, 1, false, passes.Policy{}},
		{"not a Conv", []int64{12, 8, 3, 3}, 1, true, passes.Policy{}},
		{"first/last fp32", []int64{3, 8, 3, 3}, 1, false, passes.Policy{FirstLast: passes.FirstLastFP32}},
		{"skipped", []int64{3, 8, 3, 3}, 1, false, passes.Policy{Skip: []string{"c"}}},
		{"float Convs", []int64{3, 8, 3, 3}, 1, false, passes.Policy{FloatOps: []string{"Conv"}}},
	} {
		g := newGraph(8)
		weight(g, "w", 0.5, tc.dims...)
		if tc.d2s {
			node(g, "c", "Conv", "x,w", "t", pad1, intAttr("group", tc.group))
			node(g, "d2s", "DepthToSpace", "t", "y", intAttr("blocksize", 2))
		} else {
			node(g, "c", "Conv", "x,w", "y", pad1, intAttr("group", tc.group))
		}
		outputs(g, "y")
		assert.Empty(t, passes.WidenImageConv(g, tc.pol), tc.name)
		assert.NotEqual(t, "Slice", g.Producer("y").OpType, tc.name)
	}
}
