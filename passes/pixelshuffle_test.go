package passes_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/passes"
)

// TestPixelShuffleNHWCExact: the channels-last spelling (with the Conv's
// output channels reordered for CRD, or CRD gathered by the shuffle after a
// grouped Conv) is exactly DepthToSpace, for both modes, block sizes 2 and
// 3, and odd image sizes.
func TestPixelShuffleNHWCExact(t *testing.T) {
	requireORT(t)
	for _, tc := range []struct {
		mode  string
		block int64
		h, w  int64
		act   string // a channel-wise activation between Conv and DepthToSpace
		group int64
	}{{"CRD", 2, 5, 7, "", 1}, {"DCR", 2, 6, 4, "", 1}, {"CRD", 3, 4, 3, "", 1}, {"CRD", 2, 5, 6, "Relu", 1}, {"DCR", 2, 4, 4, "LeakyRelu", 1},
		{"DCR", 2, 5, 6, "Relu", 3}, {"CRD", 2, 5, 6, "Relu", 3}, {"CRD", 3, 4, 5, "", 3}} {
		t.Run(fmt.Sprintf("%s%s/group%d", tc.mode, tc.act, tc.group), func(t *testing.T) {
			g := newGraph(3)
			c := int64(3)
			weight(g, "w", 0.5, c*tc.block*tc.block, 3/tc.group, 3, 3)
			weight(g, "b", 1, c*tc.block*tc.block)
			node(g, "conv", "Conv", "x,w,b", "t", pad1, intAttr("group", tc.group))
			if tc.act != "" {
				node(g, "act", tc.act, "t", "ta")
				node(g, "d2s", "DepthToSpace", "ta", "u", intAttr("blocksize", tc.block), strAttr("mode", tc.mode))
			} else {
				node(g, "d2s", "DepthToSpace", "t", "u", intAttr("blocksize", tc.block), strAttr("mode", tc.mode))
			}
			weight(g, "w2", 0.5, 2, c, 3, 3)
			node(g, "conv2", "Conv", "u,w2", "y", pad1)
			outputs(g, "y")
			in := randInput(7, 2, 3, tc.h, tc.w)
			want := runORT(t, g, in)

			require.NoError(t, passes.Run(g, passes.PixelShuffleNHWC{}))
			got := ops(g)
			assert.Zero(t, got["DepthToSpace"], dump(g))
			assert.Equal(t, 3, got["Transpose"], dump(g))
			assert.Equal(t, 2, got["Reshape"], dump(g))
			assert.Less(t, relDiff(t, want, runORT(t, g, in)), 1e-6)
		})
	}
}

// TestPixelShuffleNHWCLeavesOthers: a DepthToSpace whose input is not a
// Conv with constant weights, or whose Conv output has another reader, stays.
func TestPixelShuffleNHWCLeavesOthers(t *testing.T) {
	g := newGraph(16)
	node(g, "d2s", "DepthToSpace", "x", "u", intAttr("blocksize", 2), strAttr("mode", "CRD"))
	weight(g, "w", 0.5, 16, 16, 1, 1)
	node(g, "conv", "Conv", "u,w", "t")
	node(g, "d2s2", "DepthToSpace", "t", "v", intAttr("blocksize", 2))
	node(g, "add", "Add", "t,t", "s")
	weight(g, "w3", 0.5, 16, 16, 1, 1)
	weight(g, "slope", 0.1, 1, 16, 1, 1)
	node(g, "conv3", "Conv", "u,w3", "t3")
	node(g, "prelu", "PRelu", "t3,slope", "p3") // per-channel: does not commute with the shuffle's reordering
	node(g, "d2s3", "DepthToSpace", "p3", "v3", intAttr("blocksize", 2))
	outputs(g, "v", "s", "v3")
	require.NoError(t, passes.Run(g, passes.PixelShuffleNHWC{}))
	assert.Equal(t, 3, ops(g)["DepthToSpace"], dump(g))
}
