package ort

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

const edsrX2 = "../testdata/models/edsr_x2.onnx"

func readModel(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// constImage returns an n x 3 x h x w tensor filled with v.
func constImage(n, h, w int, v float32) *Tensor {
	d := make([]float32, n*3*h*w)
	for i := range d {
		d[i] = v
	}
	return &Tensor{Shape: []int64{int64(n), 3, int64(h), int64(w)}, Data: d}
}

func TestSessionEDSR(t *testing.T) {
	requireORT(t)
	s, err := NewSession(readModel(t, edsrX2), edsrX2, Options{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, s.Close()) }()

	assert.Equal(t, edsrX2, s.Name())
	assert.Equal(t, []IOInfo{{Name: "input", Type: "float", Dims: []int64{-1, 3, -1, -1}}}, s.Inputs())
	assert.Equal(t, []IOInfo{{Name: "output", Type: "float", Dims: []int64{-1, 3, -1, -1}}}, s.Outputs())

	// EDSR takes 0..255; a flat grey image must come back flat grey at twice
	// the size (the model learned a near-identity on flat regions; zero
	// padding bends the border a little).
	out, err := s.Run(constImage(1, 8, 8, 128))
	require.NoError(t, err)
	require.Len(t, out, 1)
	assert.Equal(t, []int64{1, 3, 16, 16}, out[0].Shape)
	require.Len(t, out[0].Data, 3*16*16)
	sum := 0.0
	for _, v := range out[0].Data {
		require.False(t, math.IsNaN(float64(v)))
		require.InDelta(t, 128, v, 8)
		sum += float64(v)
	}
	assert.InDelta(t, 128, sum/float64(len(out[0].Data)), 1)

	// Batched and non-square inputs work through the symbolic dims.
	out, err = s.Run(constImage(2, 5, 7, 64))
	require.NoError(t, err)
	assert.Equal(t, []int64{2, 3, 10, 14}, out[0].Shape)
}

func TestSessionOptions(t *testing.T) {
	requireORT(t)
	model := readModel(t, edsrX2)
	tests := []struct {
		name string
		o    Options
	}{
		{"defaults", Options{}},
		{"cpu one thread", Options{EP: "cpu", Threads: 1}},
		{"two threads basic", Options{EP: "CPU", Threads: 2, OptLevel: "basic"}},
		{"extended", Options{OptLevel: "extended"}},
		{"disable", Options{OptLevel: "disable"}},
		{"all", Options{OptLevel: "all"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSession(model, edsrX2, tc.o)
			require.NoError(t, err)
			defer s.Close()
			out, err := s.Run(constImage(1, 4, 4, 100))
			require.NoError(t, err)
			assert.Equal(t, []int64{1, 3, 8, 8}, out[0].Shape)
		})
	}
}

func TestOptimizedModelPath(t *testing.T) {
	requireORT(t)
	p := filepath.Join(t.TempDir(), "opt.onnx")
	s, err := NewSession(readModel(t, edsrX2), edsrX2, Options{OptimizedModelPath: p, OptLevel: "basic"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// ORT wrote a model that ORT itself can load again.
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NotEmpty(t, b)
	s2, err := NewSession(b, p, Options{})
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

func TestSessionOptionErrors(t *testing.T) {
	lib := requireORT(t)
	model := readModel(t, edsrX2)
	abs, err := filepath.Abs(lib)
	require.NoError(t, err)
	tests := []struct {
		name string
		o    Options
		want []string
	}{
		{"unknown EP", Options{EP: "npu"}, []string{`unknown execution provider "npu"`, "cpu, cuda or tensorrt"}},
		{"unknown level", Options{OptLevel: "max"}, []string{`optimisation level "max"`}},
		{"negative threads", Options{Threads: -1}, []string{"threads -1"}},
		{"bad optimized path", Options{OptimizedModelPath: filepath.Join(t.TempDir(), "no", "dir", "x.onnx")}, []string{edsrX2}},
	}
	for _, ep := range []string{"cuda", "tensorrt"} {
		tests = append(tests, struct {
			name string
			o    Options
			want []string
		}{ep + " on CPU build", Options{EP: ep}, []string{`execution provider "` + ep + `" is not available in ` + abs}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSession(model, edsrX2, tc.o)
			if err == nil && (tc.o.EP == "cuda" || tc.o.EP == "tensorrt") {
				s.Close()
				t.Skipf("%s has the %s provider; this test covers CPU-only builds", lib, tc.o.EP)
			}
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "\n")
			t.Log(err)
		})
	}
}

// shapeModel builds a model whose only output is Shape(x), an int64 tensor.
func shapeModel(t *testing.T) []byte {
	t.Helper()
	vi := func(name string, et onnx.TensorProto_DataType, dims ...int64) *onnx.ValueInfoProto {
		shape := &onnx.TensorShapeProto{}
		for _, d := range dims {
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: int32(et), Shape: shape},
		}}}
	}
	m := &onnx.ModelProto{
		IrVersion:   int64(onnx.Version_IR_VERSION_2021_7_30),
		OpsetImport: []*onnx.OperatorSetIdProto{{Version: 17}},
		Graph: &onnx.GraphProto{
			Name:   "shape",
			Node:   []*onnx.NodeProto{{OpType: "Shape", Input: []string{"x"}, Output: []string{"s"}}},
			Input:  []*onnx.ValueInfoProto{vi("x", onnx.TensorProto_FLOAT, 1, 3, 4, 4)},
			Output: []*onnx.ValueInfoProto{vi("s", onnx.TensorProto_INT64, 4)},
		},
	}
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestRunErrors(t *testing.T) {
	requireORT(t)
	s, err := NewSession(readModel(t, edsrX2), edsrX2, Options{})
	require.NoError(t, err)
	defer s.Close()
	shapeS, err := NewSession(shapeModel(t), "shape.onnx", Options{})
	require.NoError(t, err)
	defer shapeS.Close()
	assert.Equal(t, []IOInfo{{Name: "s", Type: "int64", Dims: []int64{4}}}, shapeS.Outputs())

	tests := []struct {
		name string
		s    *Session
		in   []*Tensor
		want []string
	}{
		{"no inputs", s, nil, []string{edsrX2, "got 0 inputs, the model takes 1 (input)"}},
		{"two inputs", s, []*Tensor{constImage(1, 4, 4, 0), constImage(1, 4, 4, 0)}, []string{"got 2 inputs"}},
		{"nil tensor", s, []*Tensor{nil}, []string{`input "input": nil tensor`}},
		{"short data", s, []*Tensor{{Shape: []int64{1, 3, 4, 4}, Data: make([]float32, 47)}}, []string{"needs 48 values, got 47"}},
		{"zero dim", s, []*Tensor{{Shape: []int64{1, 3, 0, 4}}}, []string{"non-positive dimension"}},
		{"wrong channels", s, []*Tensor{{Shape: []int64{1, 1, 4, 4}, Data: make([]float32, 16)}}, []string{edsrX2, "run:"}},
		{"non-float output", shapeS, []*Tensor{constImage(1, 4, 4, 0)}, []string{"shape.onnx", `output "s" is int64, not float`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.s.Run(tc.in...)
			require.Error(t, err)
			assert.Nil(t, out)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "\n")
			t.Log(err)
		})
	}
}

func TestClosedSession(t *testing.T) {
	requireORT(t)
	s, err := NewSession(readModel(t, edsrX2), edsrX2, Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = s.Run(constImage(1, 4, 4, 0))
	assert.ErrorContains(t, err, "closed session")
}

func TestNewSessionErrors(t *testing.T) {
	requireORT(t)
	_, err := NewSession(nil, "empty.onnx", Options{})
	assert.ErrorContains(t, err, "empty.onnx: empty model")
	_, err = NewSession([]byte("not a model"), "junk.onnx", Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "junk.onnx")
	assert.NotContains(t, err.Error(), "\n")
}

// TestRunContext: a run abandons promptly when its context ends, and a
// context that has already ended runs nothing; the session stays usable.
func TestRunContext(t *testing.T) {
	requireORT(t)
	s, err := NewSession(readModel(t, edsrX2), edsrX2, Options{Threads: 1})
	require.NoError(t, err)
	defer s.Close()
	big := constImage(1, 96, 96, 100)
	// A whole run, timed under this machine's load, then one cancelled a
	// quarter of the way through: the stop comes after one node (EDSR x2
	// has about 70), not after the rest of the network.
	_, err = s.RunContext(context.Background(), big) // warm-up: the first run at a shape plans its memory
	require.NoError(t, err)
	start := time.Now()
	_, err = s.RunContext(context.Background(), big)
	require.NoError(t, err)
	whole := time.Since(start)
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan time.Time, 1)
	time.AfterFunc(whole/4, func() { cancelled <- time.Now(); cancel() })
	_, err = s.RunContext(ctx, big)
	stop := time.Now()
	require.ErrorIs(t, err, context.Canceled, "a run of %s cancelled after %s", whole, whole/4)
	took := stop.Sub(<-cancelled)
	t.Logf("a whole run takes %s; stopped %s after the cancel", whole.Round(time.Millisecond), took.Round(time.Millisecond))
	assert.Less(t, took, whole/2, "ORT stops between two nodes")

	_, err = s.RunContext(ctx, big)
	require.ErrorIs(t, err, context.Canceled)
	out, err := s.RunContext(context.Background(), constImage(1, 8, 8, 100))
	require.NoError(t, err)
	assert.Equal(t, []int64{1, 3, 16, 16}, out[0].Shape)
}

// TestRunReuse: outputs written into the tensors of an earlier run are the
// outputs Run returns, in the same memory, and a run that reuses them
// allocates no output; wrong tensors to reuse are errors, not crashes.
func TestRunReuse(t *testing.T) {
	requireORT(t)
	s, err := NewSession(readModel(t, edsrX2), edsrX2, Options{Threads: 1})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	a, b := constImage(2, 8, 8, 64), constImage(2, 8, 8, 192)
	first, err := s.RunReuse(ctx, nil, a)
	require.NoError(t, err)
	want, err := s.Run(b)
	require.NoError(t, err)
	got, err := s.RunReuse(ctx, first, b)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Same(t, &first[0].Data[0], &got[0].Data[0], "written in place")
	assert.Equal(t, want[0].Data, got[0].Data)
	assert.Equal(t, []int64{2, 3, 16, 16}, got[0].Shape)
	size := uint64(len(got[0].Data)) * 4
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 5 {
		_, err := s.RunReuse(ctx, got, b)
		require.NoError(t, err)
	}
	runtime.ReadMemStats(&after)
	perRun := (after.TotalAlloc - before.TotalAlloc) / 5
	assert.Less(t, perRun, size/4, "no output-sized allocation (%d bytes per run, the output is %d)", perRun, size)
	_, err = s.Run(b)
	require.NoError(t, err)
	runtime.ReadMemStats(&before)
	assert.GreaterOrEqual(t, before.TotalAlloc-after.TotalAlloc, size, "while Run allocates the output: the check can fail")

	for _, tc := range []struct {
		name  string
		reuse []*Tensor
		want  string
	}{
		{"wrong count", []*Tensor{got[0], got[0]}, "2 output tensors to reuse, the model has 1 outputs"},
		{"nil tensor", []*Tensor{nil}, `output "output" to reuse: nil tensor`},
		{"too small", []*Tensor{{Shape: []int64{1, 3, 16, 16}, Data: make([]float32, 10)}}, `output "output" to reuse: shape [1 3 16 16] needs 768 values, got 10`},
		{"other shape", []*Tensor{{Shape: []int64{1, 3, 16, 16}, Data: make([]float32, 768)}}, "run:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.RunReuse(ctx, tc.reuse, b)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}
