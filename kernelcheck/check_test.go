package kernelcheck

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

// chain builds a small QDQ network as srq writes them: image → Conv 3→25
// (a shape ORT 1.24 computes wrong on AMX CPUs) → Relu → Conv 25→28 →
// Add with a 1×1 Conv of the first feature map → Sigmoid gate (Mul) →
// output, every activation on a Q → DQ pair. It returns the model and
// one input.
func chain(t *testing.T) (*onnx.ModelProto, *ort.Tensor) {
	t.Helper()
	const size = 20
	b := &builder{g: graph.New("chain", map[string]int64{"": 17}), rng: rand.New(rand.NewPCG(3, 4)), size: size}
	x := b.input([]int64{1, 3, size, size}, 1.0/255, 0)
	b.g.Inputs[0].Shape = graph.ShapeOf(1, 3, -1, -1)
	y1, s1 := b.conv(x, 1.0/255, 3, 25, 3, 1, 1)
	r1 := b.qdq(b.node("Relu", []string{y1}, nil), s1, 0)
	y2, s2 := b.conv(r1, s1, 25, 28, 3, 1, 1)
	a := b.qdq(y2, s2, 128)
	y3, s3 := b.conv(r1, s1, 25, 28, 1, 1, 1)
	c := b.qdq(y3, s3, 128)
	sum := b.qdq(b.node("Add", []string{a, c}, nil), s2+s3, 128)
	gate := b.qdq(b.node("Sigmoid", []string{sum}, nil), 1.0/255, 0)
	prod := b.node("Mul", []string{sum, gate}, nil)
	b.output(prod, s2+s3, 128)
	m, err := b.g.ToModel()
	require.NoError(t, err)
	return m, b.feeds[0]
}

// TestCheckAgrees: on a machine whose kernels compute these shapes right,
// every group of the chain agrees within one code; the reference at level
// basic fuses nothing; the groups are the six ops srq's QDQ form fuses.
func TestCheckAgrees(t *testing.T) {
	orttest.Require(t)
	m, in := chain(t)
	r, err := Check(context.Background(), m, in, Options{Threads: 1})
	require.NoError(t, err)
	assert.Empty(t, r.ReferenceFused, "level basic must run the QDQ graph unfused")
	assert.Equal(t, 6, r.Groups, "Conv+Relu, Conv, Conv, Add, Sigmoid, Mul")
	assert.True(t, r.OK(), r.Summary())
	assert.LessOrEqual(t, r.MaxCodeDiff, Tolerance)
	assert.Equal(t, len(in.Data)/3, r.Output.Values/28, "the whole-model comparison covers the output")
}

// TestCheckNamesTheWrongKernel: a graph whose fused and unfused forms
// differ — a bias DequantizeLinear whose scale is not s_in·s_w, which the
// graph means literally and ORT's QLinearConv reads as if it were — is
// found, and the Conv named with its shape.
func TestCheckNamesTheWrongKernel(t *testing.T) {
	orttest.Require(t)
	m, in := chain(t)
	g, err := graph.FromModel(m)
	require.NoError(t, err)
	g = g.Clone()
	var conv *graph.Node
	for _, n := range g.Nodes {
		if n.OpType == "Conv" {
			conv = n // the last: the 1×1 Conv 25→28
		}
	}
	breakBias(t, g, conv, 40)
	m, err = g.ToModel()
	require.NoError(t, err)
	r, err := Check(context.Background(), m, in, Options{Threads: 1})
	require.NoError(t, err)
	require.False(t, r.OK())
	require.Len(t, r.Disagree, 1, "only the edited group; the ones after it read the reference's codes")
	d := r.Disagree[0]
	assert.Equal(t, conv.Name, d.Node)
	assert.Equal(t, "Conv 25→28, 1×1", d.Shape)
	assert.Greater(t, d.MaxCodeDiff, Tolerance)
	assert.Equal(t, []string{conv.Name}, r.Convs())
	assert.Contains(t, r.Summary(), conv.Name)
	e := &Error{Model: "q.onnx", Report: r, CPU: "test CPU (amx_int8)"}
	assert.NotContains(t, e.Error(), "\n")
	for _, want := range []string{"q.onnx not written", r.ORTVersion, "test CPU (amx_int8)", conv.Name, "--skip"} {
		assert.Contains(t, e.Error(), want)
	}
}

// breakBias multiplies the scale of conv's bias DequantizeLinear by k.
func breakBias(t *testing.T, g *graph.Graph, conv *graph.Node, k float32) {
	t.Helper()
	dq := g.Producer(conv.Inputs[2])
	require.NotNil(t, dq)
	s := g.Initializer(dq.Inputs[1])
	require.NotNil(t, s)
	f, err := s.Float32()
	require.NoError(t, err)
	wide := make([]float32, len(f))
	for i, v := range f {
		wide[i] = v * k
	}
	g.SetInitializer(graph.NewFloat32(s.Name, s.Dims, wide))
}

// TestGrid runs the whole `srq doctor` grid: it must agree on the machine
// the tests run on — on an AMX CPU with ORT 1.24.x this test fails on the
// Conv shapes of passes.DefectiveConvShape, which is the point — and it
// must report a case whose fused form was made to differ.
func TestGrid(t *testing.T) {
	orttest.Require(t)
	cases := GridCases()
	var convs int
	for _, c := range cases {
		if c.Op == "QLinearConv" {
			convs++
		}
	}
	assert.Equal(t, 4*40*2*2+7*2, convs, "out 1–40 × in 3, 25, 50, 64 × 1×1, 3×3 × stride 1, 2, and the grouped ones")
	res, err := Grid(context.Background(), cases, GridOptions{Threads: 2})
	require.NoError(t, err)
	for _, r := range res {
		assert.True(t, r.OK(), "%s %s: %d codes off on %.2f%% of the outputs (ORT %s)", r.Op, r.Shape, r.MaxCodeDiff, 100*r.WrongShare, ort.Version())
	}

	// The injected disagreement, on two cases only.
	two := []Case{convCase(25, 27, 3, 1, 1), convCase(64, 32, 1, 2, 1)}
	res, err = Grid(context.Background(), two, GridOptions{Threads: 1, Edit: func(g *graph.Graph) {
		for _, n := range g.Nodes {
			if n.OpType == "Conv" && strings.HasPrefix(n.Name, "c0/") {
				breakBias(t, g, n, 40)
			}
		}
	}})
	require.NoError(t, err)
	assert.False(t, res[0].OK(), "the edited case")
	assert.Greater(t, res[0].WrongShare, 0.0)
	assert.True(t, res[1].OK(), "the untouched case")
}

// TestCheckShapeOfMember: shape arithmetic on a group's own output (a
// Reshape to the Shape of the Conv it follows, as PyTorch exports write a
// window partition) is computed from the reference's value in isolation.
func TestCheckShapeOfMember(t *testing.T) {
	orttest.Require(t)
	const size = 12
	b := &builder{g: graph.New("shape", map[string]int64{"": 17}), rng: rand.New(rand.NewPCG(5, 6)), size: size}
	x := b.input([]int64{1, 3, size, size}, 1.0/255, 0)
	y, s := b.conv(x, 1.0/255, 3, 8, 3, 1, 1)
	shape := b.node("Shape", []string{y}, nil)
	r := b.node("Reshape", []string{y, shape}, nil)
	b.output(b.node("Relu", []string{r}, nil), s, 128)
	m, err := b.g.ToModel()
	require.NoError(t, err)
	rep, err := Check(context.Background(), m, b.feeds[0], Options{Threads: 1})
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Groups)
	assert.True(t, rep.OK(), rep.Summary())
}
