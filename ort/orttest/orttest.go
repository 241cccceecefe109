// Package orttest is the one test helper every package that runs ONNX
// Runtime in its tests shares.
package orttest

import (
	"path/filepath"
	"testing"

	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
)

// Require initialises ONNX Runtime (ort.FindLibrary, ort.Init) and returns
// the library path, or skips the test with the reason when the library is
// not installed. An installed library that fails to initialise fails the test.
func Require(t testing.TB) string {
	t.Helper()
	lib, err := ort.FindLibrary("")
	if err != nil {
		t.Skipf("ONNX Runtime library not installed (run `make setup`): %v", err)
	}
	if err := ort.Init(lib); err != nil {
		t.Fatalf("initialise ONNX Runtime %s: %v", lib, err)
	}
	return lib
}

// Optimized opens model on the CPU provider (one thread) with ORT writing
// the graph it optimised it into, and returns that graph: what ORT really
// runs, the only reliable place to see which convs became int8.
func Optimized(t testing.TB, model []byte) *onnx.ModelProto {
	t.Helper()
	path := filepath.Join(t.TempDir(), "optimized.onnx")
	s, err := ort.NewSession(model, "model", ort.Options{Threads: 1, OptimizedModelPath: path})
	if err != nil {
		t.Fatalf("open the model in ORT: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close the ORT session: %v", err)
	}
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatalf("read ORT's optimized graph: %v", err)
	}
	return m
}

// Graph summarises a graph ORT optimised (see Optimized) by what tests of
// srq's rewrites check: which kernels run, and where the int8 chain breaks.
type Graph struct {
	// Ops counts the nodes by op type, domain dropped (QLinearConv is
	// com.microsoft:QLinearConv once ORT runs it channels-last, a float
	// Conv com.microsoft.nchwc:Conv where ORT blocks it for the CPU's
	// vector width). ORT's NCHWc layout nodes (ReorderInput,
	// ReorderOutput) are left out: whether they appear depends on the CPU.
	Ops map[string]int
	// Float counts, by op type, the nodes that read the output of a
	// DequantizeLinear: the float islands between int8 kernels, each of
	// which costs a conversion on both sides.
	Float map[string]int
	// ImageConvOut is the output-channel count of the int8 Conv that
	// writes the model's image, found from the graph output back through
	// DequantizeLinear, Slice and Transpose nodes only; 0 when the image
	// comes from another op (a residual Add, a pixel shuffle).
	ImageConvOut int
}

// Summarize reads m, a graph ORT optimised, into a Graph.
func Summarize(m *onnx.ModelProto) Graph {
	g := Graph{Ops: map[string]int{}, Float: map[string]int{}}
	producer := map[string]*onnx.NodeProto{}
	for _, n := range m.GetGraph().GetNode() {
		for _, o := range n.GetOutput() {
			producer[o] = n
		}
	}
	for _, n := range m.GetGraph().GetNode() {
		op := n.GetOpType()
		if n.GetDomain() == "com.microsoft.nchwc" && (op == "ReorderInput" || op == "ReorderOutput") {
			continue
		}
		g.Ops[op]++
		for _, in := range n.GetInput() {
			if p := producer[in]; p != nil && p.GetOpType() == "DequantizeLinear" {
				g.Float[op]++
				break
			}
		}
	}
	dims := map[string][]int64{}
	for _, t := range m.GetGraph().GetInitializer() {
		dims[t.GetName()] = t.GetDims()
	}
	if outs := m.GetGraph().GetOutput(); len(outs) == 1 {
		for n := producer[outs[0].GetName()]; n != nil && len(n.GetInput()) > 0; n = producer[n.GetInput()[0]] {
			switch n.GetOpType() {
			case "DequantizeLinear", "Slice", "Transpose":
				continue
			case "QLinearConv":
				if w := n.GetInput(); len(w) > 3 && len(dims[w[3]]) > 0 {
					g.ImageConvOut = int(dims[w[3]][0])
				}
			}
			break
		}
	}
	return g
}
