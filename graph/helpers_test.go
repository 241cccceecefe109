package graph

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// sharedModels is ../shared/models seen from the repository root.
const sharedModels = "../../shared/models"

// loadModel reads an ONNX file the way the tests must until onnx.Load lands:
// os.ReadFile + proto.Unmarshal. It skips the test when the file is absent.
func loadModel(t testing.TB, path string) *onnx.ModelProto {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("%s not found (../shared is absent here)", path)
	}
	require.NoError(t, err)
	m := &onnx.ModelProto{}
	require.NoError(t, proto.Unmarshal(b, m), path)
	return m
}

// sharedModelPaths lists ../shared/models/*.onnx, skipping when there are none.
func sharedModelPaths(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(sharedModels, "*.onnx"))
	require.NoError(t, err)
	if len(paths) == 0 {
		t.Skipf("no models in %s (../shared is absent here)", sharedModels)
	}
	return paths
}

// nd builds a NodeProto from comma-separated input and output lists, e.g.
// nd("Add", "a,b", "c"). The node is named after its first output.
func nd(op, ins, outs string, attrs ...*onnx.AttributeProto) *onnx.NodeProto {
	o := split(outs)
	return &onnx.NodeProto{Name: "n_" + o[0], OpType: op, Input: split(ins), Output: o, Attribute: attrs}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func floatVI(name string, dims ...int64) *onnx.ValueInfoProto {
	v := &Value{Name: name, DType: onnx.TensorProto_FLOAT, Shape: ShapeOf(dims...)}
	return v.proto()
}

// model wraps nodes into an opset-17 model with the given float inputs,
// outputs and initializers.
func model(inputs, outputs string, inits []*Tensor, nodes ...*onnx.NodeProto) *onnx.ModelProto {
	gp := &onnx.GraphProto{Name: "test", Node: nodes}
	for _, in := range split(inputs) {
		gp.Input = append(gp.Input, floatVI(in, 1))
	}
	for _, out := range split(outputs) {
		gp.Output = append(gp.Output, floatVI(out, 1))
	}
	for _, t := range inits {
		gp.Initializer = append(gp.Initializer, t.Proto())
	}
	return &onnx.ModelProto{
		IrVersion:   8,
		OpsetImport: []*onnx.OperatorSetIdProto{{Version: 17}},
		Graph:       gp,
	}
}

// mustGraph runs FromModel and fails the test on error.
func mustGraph(t testing.TB, m *onnx.ModelProto) *Graph {
	t.Helper()
	g, err := FromModel(m)
	require.NoError(t, err)
	return g
}

// names lists node names, for compact order assertions.
func names(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

// dump renders the graph as "Op(in,...)->out,...; ..." for snapshot-style
// assertions on rewrites.
func dump(g *Graph) string {
	parts := make([]string, len(g.Nodes))
	for i, n := range g.Nodes {
		parts[i] = n.OpType + "(" + strings.Join(n.Inputs, ",") + ")->" + strings.Join(n.Outputs, ",")
	}
	return strings.Join(parts, "; ")
}

func scalar(name string, v float32) *Tensor { return NewFloat32(name, nil, []float32{v}) }
