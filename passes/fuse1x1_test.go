package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
)

// twoConvs builds x -> Conv a (3->8) -> c -> Conv b (8->4) -> y with the
// given attributes and optional biases.
func twoConvs(g *graph.Graph, aKernel int64, aBias, bBias bool, aAttrs, bAttrs []attr) {
	weight(g, "wa", 0.5, 8, 3, aKernel, aKernel)
	weight(g, "wb", 0.5, 4, 8/max(groupOf(bAttrs), 1), 1, 1)
	ia, ib := "x,wa", "c,wb"
	if aBias {
		weight(g, "ba", 1, 8)
		ia += ",ba"
	}
	if bBias {
		weight(g, "bb", 1, 4)
		ib += ",bb"
	}
	node(g, "a", "Conv", ia, "c", aAttrs...)
	node(g, "b", "Conv", ib, "y", bAttrs...)
}

// groupOf reads a group attribute out of a list of attrs (1 when absent).
func groupOf(attrs []attr) int64 {
	n := &graph.Node{}
	for _, a := range attrs {
		a(n)
	}
	return n.AttrInt("group", 1)
}

func TestFuseConv1x1Exact(t *testing.T) {
	requireORT(t)
	tests := []struct {
		name         string
		aKernel      int64
		aBias, bBias bool
		aAttrs       []attr
	}{
		{"3x3 then 1x1, both biases", 3, true, true, []attr{pad1}},
		{"no biases", 3, false, false, []attr{pad1}},
		{"only the 1x1 has a bias", 3, false, true, []attr{pad1}},
		{"strided 3x3 then 1x1", 3, true, true, []attr{pad1, ints("strides", 2, 2)}},
		{"unpadded 3x3 then 1x1", 3, true, true, nil},
		{"1x1 then 1x1", 1, true, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph(3)
			twoConvs(g, tc.aKernel, tc.aBias, tc.bBias, tc.aAttrs, []attr{ints("kernel_shape", 1, 1)})
			outputs(g, "y")
			in := randInput(3, 2, 3, 9, 7)
			want := runORT(t, g, in)

			require.NoError(t, passes.Run(g, passes.FuseConv1x1{}))
			require.Equal(t, map[string]int{"Conv": 1}, ops(g), dump(g))
			assert.Equal(t, "Conv(x, a.fused_weight, a.fused_bias) -> y\n", dump(g))
			got := runORT(t, g, in)
			assert.Less(t, relDiff(t, want, got), 1e-4)
		})
	}
}

func TestFuseConv1x1Refuses(t *testing.T) {
	tests := []struct {
		name   string
		aAttrs []attr
		bAttrs []attr
		extra  func(g *graph.Graph)
		build  func(g *graph.Graph) // replaces twoConvs
	}{
		{name: "1x1 with padding", aAttrs: []attr{pad1}, bAttrs: []attr{ints("pads", 1, 1, 1, 1)}},
		{name: "1x1 with stride", aAttrs: []attr{pad1}, bAttrs: []attr{ints("strides", 2, 2)}},
		{name: "1x1 with groups", aAttrs: []attr{pad1}, bAttrs: []attr{intAttr("group", 2)}},
		{name: "first conv grouped", build: func(g *graph.Graph) {
			weight(g, "wa", 0.5, 6, 1, 3, 3)
			weight(g, "wb", 0.5, 4, 6, 1, 1)
			node(g, "a", "Conv", "x,wa", "c", pad1, intAttr("group", 3))
			node(g, "b", "Conv", "c,wb", "y")
		}},
		{name: "first conv output read twice", aAttrs: []attr{pad1}, extra: func(g *graph.Graph) {
			node(g, "relu", "Relu", "c", "y2")
			outputs(g, "y2")
		}},
		{name: "first conv output is a graph output", aAttrs: []attr{pad1}, extra: func(g *graph.Graph) {
			outputs(g, "c")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph(3)
			if tc.build != nil {
				tc.build(g)
			} else {
				twoConvs(g, 3, true, true, tc.aAttrs, tc.bAttrs)
			}
			outputs(g, "y")
			if tc.extra != nil {
				tc.extra(g)
			}
			before := dump(g)
			require.NoError(t, passes.Run(g, passes.FuseConv1x1{}))
			assert.Equal(t, before, dump(g))
			assert.Equal(t, 2, ops(g)["Conv"])
		})
	}
}

// On EDSR x2 the output mean-shift (add_mean, a 1x1 after the tail conv)
// folds into the tail conv; the input mean-shift has no conv before it.
func TestFuseConv1x1EDSR(t *testing.T) {
	requireORT(t)
	g := loadGraph(t, edsrX2)
	in := randInput(5, 1, 3, 12, 10)
	for i := range in.Data {
		in.Data[i] *= 255
	}
	want := runORT(t, g, in)
	require.Equal(t, 38, ops(g)["Conv"])
	require.NoError(t, passes.Run(g, passes.FoldIdentity{}, passes.FuseConv1x1{}))
	assert.Equal(t, 37, ops(g)["Conv"])
	got := runORT(t, g, &ort.Tensor{Shape: in.Shape, Data: in.Data})
	assert.Less(t, relDiff(t, want, got), 1e-4)
}
