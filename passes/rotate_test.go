package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/passes"
)

// TestRotateExact: turning EDSR's residual stream by a Hadamard matrix,
// folded into the Convs that write and read it, leaves the network's
// function unchanged.
func TestRotateExact(t *testing.T) {
	requireORT(t)
	g := loadGraph(t, edsrX2)
	require.NoError(t, passes.Run(g, passes.FoldIdentity{}, passes.FuseConv1x1{}))
	in := randInput(11, 1, 3, 24, 20)
	for i := range in.Data {
		in.Data[i] *= 255
	}
	want := runORT(t, g, in)
	spaces := passes.LinearSpaces(g)
	require.NotEmpty(t, spaces)
	var stream passes.ChannelSpace
	for _, s := range spaces {
		if len(s.Values) > len(stream.Values) {
			stream = s
		}
	}
	assert.Equal(t, 64, stream.Channels)
	assert.Greater(t, len(stream.Values), 16, "the head output and every block's sum")
	n := 0
	require.NoError(t, passes.Run(g, passes.Rotate{Spaces: spaces, Rotated: &n}))
	assert.Positive(t, n)
	assert.Less(t, relDiff(t, want, runORT(t, g, in)), 1e-5)
}

// TestLinearSpacesStopAtActivations: a ReLU does not commute with a change
// of basis, so a value it reads cannot be rotated; values read only by
// Convs and Adds can.
func TestLinearSpacesStopAtActivations(t *testing.T) {
	build := func(act bool) []passes.ChannelSpace {
		g := newGraph(3)
		weight(g, "w1", 0.5, 4, 3, 3, 3)
		weight(g, "w2", 0.5, 4, 4, 3, 3)
		weight(g, "w3", 0.5, 4, 4, 3, 3)
		node(g, "c1", "Conv", "x,w1", "a", pad1)
		if act {
			node(g, "relu", "Relu", "a", "r")
			node(g, "c2", "Conv", "r,w2", "b", pad1)
		} else {
			node(g, "c2", "Conv", "a,w2", "b", pad1)
		}
		node(g, "add", "Add", "a,b", "s")
		node(g, "c3", "Conv", "s,w3", "y", pad1)
		outputs(g, "y")
		return passes.LinearSpaces(g)
	}
	assert.Empty(t, build(true), "a is read by a ReLU")
	spaces := build(false)
	require.Len(t, spaces, 1)
	assert.ElementsMatch(t, []string{"a", "b", "s"}, spaces[0].Values)
	assert.Equal(t, 4, spaces[0].Channels)
}
