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
