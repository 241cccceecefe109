package grad

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

// TestNetWindowPad: the shape arithmetic a window-attention network writes
// to pad its input to a multiple of the window, (ws − W mod ws) mod ws,
// and the way PyTorch's F.pad exports its pad list (ConstantOfShape for
// the other axes, reshaped to pairs, reversed by a Slice of step −1,
// transposed and flattened), runs in a Net to ORT's output, for widths
// that need padding and one that does not.
func TestNetWindowPad(t *testing.T) {
	orttest.Require(t)
	g := graph.New("window_pad", map[string]int64{"": 17})
	g.Inputs = []*graph.Value{{Name: "x", DType: onnx.TensorProto_FLOAT, Shape: graph.ShapeOf(1, 2, 3, -1)}}
	g.Outputs = []*graph.Value{{Name: "y", DType: onnx.TensorProto_FLOAT}}
	g.SetInitializer(graph.NewInt64("three", []int64{1}, []int64{3}))
	g.SetInitializer(graph.NewInt64("ws", []int64{1}, []int64{4}))
	g.SetInitializer(graph.NewInt64("six", []int64{1}, []int64{6}))
	g.SetInitializer(graph.NewInt64("zero", []int64{1}, []int64{0}))
	g.SetInitializer(graph.NewInt64("pairs", []int64{2}, []int64{-1, 2}))
	g.SetInitializer(graph.NewInt64("flat", []int64{1}, []int64{-1}))
	g.SetInitializer(graph.NewInt64("last", []int64{1}, []int64{-1}))
	g.SetInitializer(graph.NewInt64("before", []int64{1}, []int64{math.MinInt64 + 1}))
	add := func(op string, ins []string, out string) *graph.Node {
		n := &graph.Node{Name: out, OpType: op, Inputs: ins, Outputs: []string{out}}
		g.AddNode(n)
		return n
	}
	add("Shape", []string{"x"}, "shape")
	add("Gather", []string{"shape", "three"}, "w")
	add("Mod", []string{"w", "ws"}, "rem")
	add("Sub", []string{"ws", "rem"}, "short")
	add("Mod", []string{"short", "ws"}, "pad")
	// F.pad(x, (0, pad)): [W before, W after] then zeros for H, C, N.
	add("Concat", []string{"zero", "pad"}, "wpads").SetAttrInt("axis", 0)
	add("ConstantOfShape", []string{"six"}, "zeros").SetAttrTensor("value", graph.NewInt64("", []int64{1}, []int64{0}))
	add("Concat", []string{"wpads", "zeros"}, "torch").SetAttrInt("axis", 0)
	add("Reshape", []string{"torch", "pairs"}, "pairs2")
	add("Slice", []string{"pairs2", "last", "before", "zero", "last"}, "reversed")
	add("Transpose", []string{"reversed"}, "cols").SetAttrInts("perm", []int64{1, 0})
	add("Reshape", []string{"cols", "flat"}, "pads")
	add("Pad", []string{"x", "pads"}, "y").SetAttrString("mode", "reflect")
	model, err := marshal(g)
	require.NoError(t, err)
	s, err := ort.NewSession(model, "window_pad", ort.Options{Threads: 1})
	require.NoError(t, err)
	defer s.Close()
	nt, err := NewNet(g)
	require.NoError(t, err)
	for _, w := range []int{5, 8, 10} {
		rng := rand.New(rand.NewPCG(7, uint64(w)))
		x := randn(rng, 2*3*w, 1)
		want, err := s.Run(&ort.Tensor{Shape: []int64{1, 2, 3, int64(w)}, Data: x})
		require.NoError(t, err)
		tp := NewTape()
		xv, err := tp.Const([]int{1, 2, 3, w}, x)
		require.NoError(t, err)
		env, err := nt.Forward(tp, map[string]*Var{"x": xv}, nil)
		require.NoError(t, err)
		y := env["y"]
		require.NotNil(t, y)
		require.Equal(t, []int{1, 2, 3, (w + 3) / 4 * 4}, y.Shape, "width %d padded to the window", w)
		require.Equal(t, want[0].Data, y.Data)
	}
}

// TestIntMod: ONNX Mod on integers takes the divisor's sign (fmod 0, as
// Python's %) or the dividend's (fmod 1, as C's).
func TestIntMod(t *testing.T) {
	for _, c := range []struct {
		op   string
		a, b int64
		want int64
	}{
		{"Mod", 7, 4, 3}, {"Mod", -7, 4, 1}, {"Mod", 7, -4, -1}, {"Mod", -8, 4, 0},
		{"Fmod", -7, 4, -3}, {"Fmod", 7, -4, 3},
	} {
		got, err := intArith(c.op, []int64{c.a}, []int64{c.b})
		require.NoError(t, err)
		require.Equal(t, []int64{c.want}, got, "%s(%d, %d)", c.op, c.a, c.b)
	}
	_, err := intArith("Mod", []int64{1}, []int64{0})
	require.EqualError(t, err, "integer division by zero")
}
