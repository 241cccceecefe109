package passes_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

// edsrX2 is the committed EDSR x2 fixture (a real PyTorch export).
const edsrX2 = "../testdata/models/edsr_x2.onnx"

// newGraph returns an empty opset-17 graph with float NCHW inputs of the
// given channel counts, named x, x2, ... (batch, height and width symbolic).
func newGraph(channels ...int64) *graph.Graph {
	g := graph.New("test", map[string]int64{"": 17})
	for i, c := range channels {
		name := "x"
		if i > 0 {
			name = fmt.Sprintf("x%d", i+1)
		}
		g.Inputs = append(g.Inputs, &graph.Value{Name: name, DType: onnx.TensorProto_FLOAT,
			Shape: graph.Shape{{Value: -1, Param: "n"}, {Value: c}, {Value: -1, Param: "h"}, {Value: -1, Param: "w"}}})
	}
	return g
}

// outputs declares float graph outputs (shape unknown).
func outputs(g *graph.Graph, names ...string) {
	for _, n := range names {
		g.Outputs = append(g.Outputs, &graph.Value{Name: n, DType: onnx.TensorProto_FLOAT})
	}
	g.Invalidate()
}

// attr sets one attribute on a node under construction.
type attr func(n *graph.Node)

func ints(name string, v ...int64) attr { return func(n *graph.Node) { n.SetAttrInts(name, v) } }
func intAttr(name string, v int64) attr { return func(n *graph.Node) { n.SetAttrInt(name, v) } }
func strAttr(name, v string) attr       { return func(n *graph.Node) { n.SetAttrString(name, v) } }

// pad1 is the padding of a 3x3 "same" convolution.
var pad1 = ints("pads", 1, 1, 1, 1)

// node adds a node named name; ins and outs are comma-separated value names
// (an empty item is an omitted optional input).
func node(g *graph.Graph, name, op, ins, outs string, attrs ...attr) *graph.Node {
	n := &graph.Node{Name: name, OpType: op, Inputs: split(ins), Outputs: split(outs)}
	for _, a := range attrs {
		a(n)
	}
	g.AddNode(n)
	return n
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// weight adds a float initializer of the given dims with values uniform in
// [-scale, scale), from a generator seeded by the name (stable across runs).
func weight(g *graph.Graph, name string, scale float32, dims ...int64) []float32 {
	var h uint64
	for _, c := range name {
		h = h*131 + uint64(c)
	}
	r := rand.New(rand.NewPCG(h, 7))
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = (2*r.Float32() - 1) * scale
	}
	g.SetInitializer(graph.NewFloat32(name, dims, v))
	return v
}

// dump renders the graph one node per line, `Op(in, in) -> out`, in graph
// order: the form snapshot assertions compare against.
func dump(g *graph.Graph) string {
	var b strings.Builder
	for _, n := range g.Nodes {
		fmt.Fprintf(&b, "%s(%s) -> %s\n", n.OpType, strings.Join(n.Inputs, ", "), strings.Join(n.Outputs, ", "))
	}
	return b.String()
}

// ops counts the nodes of each op type.
func ops(g *graph.Graph) map[string]int {
	m := map[string]int{}
	for _, n := range g.Nodes {
		m[n.OpType]++
	}
	return m
}

// nodeNames lists node names, for compact assertions on sets of nodes.
func nodeNames(ns []*graph.Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return out
}

// requireORT initialises ORT or skips when the library is not installed.
func requireORT(t testing.TB) { orttest.Require(t) }

// serialize writes g as a validated model.
func serialize(t testing.TB, g *graph.Graph) []byte {
	t.Helper()
	m, err := g.ToModel()
	require.NoError(t, err)
	require.NoError(t, onnx.Validate(m))
	b, err := onnx.Marshal(m)
	require.NoError(t, err)
	return b
}

// runORT runs g in ONNX Runtime on one input and returns its first output.
func runORT(t testing.TB, g *graph.Graph, in *ort.Tensor) *ort.Tensor {
	t.Helper()
	return runORTAll(t, g, in)[0]
}

// runORTAll runs g in ONNX Runtime on one input and returns every output.
func runORTAll(t testing.TB, g *graph.Graph, in *ort.Tensor) []*ort.Tensor {
	t.Helper()
	s, err := ort.NewSession(serialize(t, g), "test graph", ort.Options{Threads: 1})
	require.NoError(t, err)
	defer s.Close()
	out, err := s.Run(in)
	require.NoError(t, err)
	return out
}

// randInput is an NCHW tensor with values uniform in [0, 1).
func randInput(seed uint64, dims ...int64) *ort.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = r.Float32()
	}
	return &ort.Tensor{Shape: dims, Data: v}
}

// relDiff is max|a-b| / max|a|: the error relative to the output's scale.
func relDiff(t testing.TB, a, b *ort.Tensor) float64 {
	t.Helper()
	require.Equal(t, a.Shape, b.Shape)
	var d, m float64
	for i := range a.Data {
		d = math.Max(d, math.Abs(float64(a.Data[i]-b.Data[i])))
		m = math.Max(m, math.Abs(float64(a.Data[i])))
	}
	require.Greater(t, m, 0.0, "reference output is all zero")
	return d / m
}

// loadGraph reads a model file into a graph.
func loadGraph(t testing.TB, path string) *graph.Graph {
	t.Helper()
	m, err := onnx.Load(path)
	require.NoError(t, err)
	g, err := graph.FromModel(m)
	require.NoError(t, err)
	return g
}
