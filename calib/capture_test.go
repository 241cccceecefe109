package calib

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort/orttest"
)

// TestCaptureMaxBytes: a batch whose captured tensors would pass MaxBytes
// runs fewer patches at a time (measured on one patch), and the
// statistics see every value either way.
func TestCaptureMaxBytes(t *testing.T) {
	orttest.Require(t)
	g := graph.New("two", map[string]int64{"": 17})
	g.Inputs = []*graph.Value{{Name: "x", DType: onnx.TensorProto_FLOAT, Shape: graph.ShapeOf(-1, 3, -1, -1)}}
	w := make([]float32, 8*3*3*3)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range w {
		w[i] = r.Float32() - 0.5
	}
	g.SetInitializer(graph.NewFloat32("w", []int64{8, 3, 3, 3}, w))
	conv := &graph.Node{Name: "c", OpType: "Conv", Inputs: []string{"x", "w"}, Outputs: []string{"y"}}
	conv.SetAttrInts("pads", []int64{1, 1, 1, 1})
	g.AddNode(conv)
	g.AddNode(&graph.Node{Name: "r", OpType: "Relu", Inputs: []string{"y"}, Outputs: []string{"z"}})
	g.Outputs = []*graph.Value{{Name: "z", DType: onnx.TensorProto_FLOAT}}
	shape := [3]int{3, 16, 16}
	var patches [][]float32
	for range 5 {
		p := make([]float32, 3*16*16)
		for i := range p {
			p[i] = r.Float32()
		}
		patches = append(patches, p)
	}
	run := func(maxBytes int64) (map[string]*Stats, []int) {
		var steps []int
		s, err := Capture(context.Background(), g, []string{"y", "z"}, patches, shape, CaptureOptions{Batch: 4, MaxBytes: maxBytes,
			Progress: func(done, _ int) { steps = append(steps, done) }})
		require.NoError(t, err)
		return s, steps
	}
	all, steps := run(0)
	assert.Equal(t, []int{4, 5}, steps)
	// Two tensors of 8×16×16 floats per patch: 16 KiB; 40 KiB fits two.
	bounded, steps := run(40 << 10)
	assert.Equal(t, []int{2, 4, 5}, steps)
	for _, v := range []string{"y", "z"} {
		assert.Equal(t, all[v].Count, bounded[v].Count, v)
		assert.Equal(t, all[v].Min, bounded[v].Min, v)
		assert.Equal(t, all[v].Max, bounded[v].Max, v)
	}
}
