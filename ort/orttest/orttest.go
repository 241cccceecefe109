// Package orttest is the one test helper every package that runs ONNX
// Runtime in its tests shares.
package orttest

import (
	"testing"

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
