package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

// meanShiftHead builds x -> mean shift (diagonal 1x1, y = d·x + b) -> head
// 3x3 (3->8, pad 1) -> h, the first stage of EDSR and RCAN.
func meanShiftHead(g *graph.Graph, d, b []float32) {
	w := make([]float32, 9)
	for i := range 3 {
		w[i*3+i] = d[i]
	}
	g.SetInitializer(graph.NewFloat32("ws", []int64{3, 3, 1, 1}, w))
	g.SetInitializer(graph.NewFloat32("bs", []int64{3}, b))
	weight(g, "wh", 0.5, 8, 3, 3, 3)
	weight(g, "bh", 1, 8)
	node(g, "shift", "Conv", "x,ws,bs", "y", ints("kernel_shape", 1, 1))
	node(g, "head", "Conv", "y,wh,bh", "h", pad1)
}

func TestFoldInputShiftExact(t *testing.T) {
	requireORT(t)
	tests := []struct {
		name string
		d, b []float32
	}{
		{"EDSR mean shift, 0..255", []float32{1, 1, 1}, []float32{-114.444, -111.4605, -103.02}},
		{"scaled shift", []float32{0.5, 2, 1}, []float32{-50, -200, -10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph(3)
			meanShiftHead(g, tc.d, tc.b)
			outputs(g, "h")
			in := randInput(5, 1, 3, 9, 7)
			for i := range in.Data {
				in.Data[i] *= 255
			}
			want := runORT(t, g, in)
			fold, err := passes.FoldInputShift(g, 255)
			require.NoError(t, err)
			p := fold.Padded
			require.Equal(t, "x_padded", p)
			assert.Equal(t, map[string]int{"Sub": 1, "Pad": 1, "Add": 1, "Conv": 1}, ops(g), dump(g))
			assert.Equal(t, p, g.Nodes[len(g.Nodes)-1].Inputs[0], "the head reads the padded image")
			got := runORT(t, g, in)
			assert.Less(t, relDiff(t, want, got), 1e-5, "exact at the borders too")
		})
	}
}

func TestFoldInputShiftDeclines(t *testing.T) {
	tests := []struct {
		name  string
		build func(g *graph.Graph)
		rng   float32
	}{
		{"pad value outside the input range", func(g *graph.Graph) {
			meanShiftHead(g, []float32{1, 1, 1}, []float32{-114, -111, -103})
		}, 1},
		{"not diagonal", func(g *graph.Graph) {
			meanShiftHead(g, []float32{1, 1, 1}, []float32{-1, -1, -1})
			w := g.Initializer("ws").Clone()
			v, _ := w.Float32()
			v[1] = 0.5
			g.SetInitializer(graph.NewFloat32("ws", w.Dims, v))
		}, 255},
		{"no mean shift", func(g *graph.Graph) {
			weight(g, "wh", 0.5, 8, 3, 3, 3)
			node(g, "head", "Conv", "x,wh", "h", pad1)
		}, 255},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph(3)
			tc.build(g)
			outputs(g, "h")
			before := dump(g)
			fold, err := passes.FoldInputShift(g, tc.rng)
			require.NoError(t, err)
			assert.Empty(t, fold.Padded)
			assert.Equal(t, before, dump(g))
		})
	}
}

// longSkipNet builds x -> head -> h -> blocks residual blocks (conv, relu,
// conv, add) -> tail conv -> t; s = h + t -> upsampler conv -> y.
func longSkipNet(g *graph.Graph, blocks int) {
	weight(g, "wh", 0.5, 8, 3, 3, 3)
	node(g, "head", "Conv", "x,wh", "h", pad1)
	cur := resBlocks(g, "h", blocks)
	weight(g, "wt", 0.2, 8, 8, 3, 3)
	weight(g, "wu", 0.2, 12, 8, 3, 3)
	node(g, "tail", "Conv", cur+",wt", "t", pad1)
	node(g, "skip", "Add", "h,t", "s")
	node(g, "up", "Conv", "s,wu", "y", pad1)
	outputs(g, "y")
}

// resBlocks adds n residual blocks (conv, relu, conv, add) of 8 channels
// named a, b, ... after value from and returns the last block's output.
func resBlocks(g *graph.Graph, from string, n int) string {
	cur := from
	for i := range n {
		p := string(rune('a' + i))
		weight(g, p+"w1", 0.2, 8, 8, 3, 3)
		weight(g, p+"w2", 0.2, 8, 8, 3, 3)
		node(g, p+"c1", "Conv", cur+","+p+"w1", p+"c1", pad1)
		node(g, p+"r", "Relu", p+"c1", p+"r")
		node(g, p+"c2", "Conv", p+"r,"+p+"w2", p+"c2", pad1)
		node(g, p+"add", "Add", cur+","+p+"c2", p+"s")
		cur = p + "s"
	}
	return cur
}

func TestPreciseLongSkip(t *testing.T) {
	requireORT(t)
	g := newGraph(3)
	longSkipNet(g, 2)
	in := randInput(9, 1, 3, 8, 8)
	want := runORT(t, g, in)
	path, err := passes.PreciseLongSkip(g)
	require.NoError(t, err)
	require.NotNil(t, path)
	assert.Equal(t, []string{"head_skip", "skip"}, path.Float)
	assert.Equal(t, "s", path.Sum)
	assert.Equal(t, []string{"h_skip", "t"}, nodeNamed(g, "skip").Inputs, "the skip reads the float copy")
	assert.Contains(t, nodeNamed(g, "ac1").Inputs, "h", "the body still reads the original head")
	assert.Less(t, relDiff(t, want, runORT(t, g, in)), 1e-6)

	plan, err := passes.PlanQDQ(g, passes.Policy{LongSkip: path})
	require.NoError(t, err)
	assert.Equal(t, []string{"s"}, plan.Split)
	assert.Equal(t, "long skip kept precise", plan.Skipped[nodeNamed(g, "head_skip")])
	assert.Equal(t, "long skip kept precise", plan.Skipped[nodeNamed(g, "skip")])

	// A group skip (RCAN): an Add that reads h across many blocks is a long
	// skip too; the first block's own Add is not.
	gr := newGraph(3)
	weight(gr, "wh", 0.5, 8, 3, 3, 3)
	node(gr, "head", "Conv", "x,wh", "h", pad1)
	cur := resBlocks(gr, "h", 3)
	weight(gr, "wg", 0.2, 8, 8, 3, 3)
	weight(gr, "wt", 0.2, 8, 8, 3, 3)
	node(gr, "gconv", "Conv", cur+",wg", "gc", pad1)
	node(gr, "group", "Add", "h,gc", "g")
	node(gr, "tail", "Conv", "g,wt", "t", pad1)
	node(gr, "skip", "Add", "h,t", "s")
	outputs(gr, "s")
	path, err = passes.PreciseLongSkip(gr)
	require.NoError(t, err)
	require.NotNil(t, path)
	assert.Equal(t, []string{"head_skip", "group", "skip"}, path.Float)
	assert.Equal(t, []string{"h", "ac2"}, nodeNamed(gr, "aadd").Inputs, "the first block's Add stays on the int8 head")

	// One residual block is not a long skip: the Add closes after 3 convs.
	short := newGraph(3)
	longSkipNet(short, 1)
	path, err = passes.PreciseLongSkip(short)
	require.NoError(t, err)
	assert.Nil(t, path)
}

// TestSplitEncoding checks the two-part encoding on the long-skip net: the
// upsampler reads Concat(s, k·r) quantized on s's grid with weights
// [W, W/k], which must bring its output much closer to the float one than
// the plain 8-bit pair on s does, and ORT must run it as one int8 conv.
func TestSplitEncoding(t *testing.T) {
	requireORT(t)
	build := func() (*graph.Graph, *passes.Plan) {
		g := newGraph(3)
		longSkipNet(g, 2)
		path, err := passes.PreciseLongSkip(g)
		require.NoError(t, err)
		plan, err := passes.PlanQDQ(g, passes.Policy{LongSkip: path})
		require.NoError(t, err)
		return g, plan
	}
	in := randInput(4, 1, 3, 16, 16)
	ref, _ := build()
	want := runORT(t, ref, in)

	errOf := func(split bool) float64 {
		g, plan := build()
		if !split {
			plan.Split = nil
		}
		act := map[string]qdq.Params{}
		for _, v := range plan.Values {
			act[v] = qdq.Asymmetric(-6, 6, 8) // generous: no clipping
		}
		for _, r := range plan.ReluOf {
			act[r.Outputs[0]] = qdq.Asymmetric(0, 6, 8)
		}
		// A wide range on s, as outliers give the long-skip sum: its
		// rounding dominates the error of the plain pair.
		act["s"] = qdq.Asymmetric(-100, 100, 8)
		require.NoError(t, passes.Run(g, passes.InsertQDQ{Plan: plan, Act: act, Weights: passes.WeightConfig{Bits: 8, PerChannel: true, Method: qdq.MinMax}}))
		if split {
			up := nodeNamed(g, "up")
			w, ok := g.Const(g.Producer(up.Inputs[1]).Inputs[0])
			require.True(t, ok)
			assert.Equal(t, []int64{12, 16, 3, 3}, w.Dims, "the upsampler reads twice the channels")
			assert.Equal(t, 1, ops(g)["Concat"])
		}
		return relDiff(t, want, runORT(t, g, in))
	}
	plain, split := errOf(false), errOf(true)
	t.Logf("relative error of the upsampler output: plain pair %.3g, two-part %.3g", plain, split)
	assert.Less(t, split, plain/2)
	assert.Equal(t, 16, passes.SplitGain(128, 0, 255))
	assert.Equal(t, 4, passes.SplitGain(2, 0, 255))
	assert.Equal(t, 1, passes.SplitGain(0, 0, 255))
}

func nodeNamed(g *graph.Graph, name string) *graph.Node {
	for _, n := range g.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}
