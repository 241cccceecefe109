package grad

import (
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// The Conv backward graphs run in ORT, their comparison with the Go kernels
// (TestKernelsMatchGo) and the measurement of doc.go (BenchmarkConvBackward)
// are in package grad/ortconv.

func marshal(gr *graph.Graph) ([]byte, error) {
	m, err := gr.ToModel()
	if err != nil {
		return nil, err
	}
	return onnx.Marshal(m)
}
