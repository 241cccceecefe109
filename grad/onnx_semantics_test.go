package grad

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

// The gradient tests check each op's backward against its own forward;
// these check the forwards against ONNX itself: each op as a one-node
// ONNX graph (opset 17) run in ORT, compared with the Go op on the same
// random inputs.

// onnxCase is one node: its Go forward on the inputs, and the node's
// attributes and constant inputs (int64 initializers, "" for an omitted
// optional input) that follow the float inputs.
type onnxCase struct {
	name   string
	op     string
	shapes [][]int
	consts []any // []int64 initializer, float32 scalar initializer, or "" (omitted)
	attrs  func(*graph.Node)
	outs   int // 0: 1
	goOp   func(tp *Tape, in []*Var) ([]*Var, error)
}

func one(v *Var, err error) ([]*Var, error) { return []*Var{v}, err }

// linearResizeCase is a bilinear Resize of an NCHW input of shape in to
// h×w (given as sizes) in coordinate transformation mode.
func linearResizeCase(name string, in []int, h, w int, mode string) onnxCase {
	return onnxCase{name: name, op: "Resize", shapes: [][]int{in}, consts: []any{"", "", []int64{int64(in[0]), int64(in[1]), int64(h), int64(w)}},
		attrs: func(n *graph.Node) {
			n.SetAttrString("mode", "linear")
			n.SetAttrString("coordinate_transformation_mode", mode)
		},
		goOp: func(tp *Tape, in []*Var) ([]*Var, error) {
			return one(tp.Resize(in[0], ResizeOpts{Height: h, Width: w, Mode: "linear", CoordMode: mode}))
		}}
}

func TestForwardMatchesORT(t *testing.T) {
	orttest.Require(t)
	ints := func(name string, v ...int64) func(*graph.Node) {
		return func(n *graph.Node) { n.SetAttrInts(name, v) }
	}
	cases := []onnxCase{
		{name: "Add broadcast", op: "Add", shapes: [][]int{{2, 3, 4, 5}, {3, 1, 1}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.Add(in[0], in[1])) }},
		{name: "Sub broadcast", op: "Sub", shapes: [][]int{{2, 1, 4}, {3, 1}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.Sub(in[0], in[1])) }},
		{name: "Mul broadcast", op: "Mul", shapes: [][]int{{1, 3, 1, 5}, {2, 3, 4, 1}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.Mul(in[0], in[1])) }},
		{name: "Div", op: "Div", shapes: [][]int{{2, 3, 4}, {2, 1, 4}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.Div(in[0], in[1])) }},
		{name: "Erf", op: "Erf", shapes: [][]int{{2, 3, 4}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return []*Var{tp.Erf(in[0])}, nil }},
		{name: "Pow", op: "Pow", shapes: [][]int{{2, 3, 4}}, consts: []any{float32(2)}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return []*Var{tp.Pow(in[0], 2)}, nil }},
		{name: "ReduceSum", op: "ReduceSum", shapes: [][]int{{2, 3, 4, 5}}, consts: []any{[]int64{1, -1}},
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.ReduceSum(in[0], []int{1, -1}, true)) }},
		{name: "Relu", op: "Relu", shapes: [][]int{{2, 3, 4}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return []*Var{tp.Relu(in[0])}, nil }},
		{name: "LeakyRelu", op: "LeakyRelu", shapes: [][]int{{2, 3, 4}}, attrs: func(n *graph.Node) { n.SetAttrFloat("alpha", 0.2) },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return []*Var{tp.LeakyRelu(in[0], 0.2)}, nil }},
		{name: "PRelu", op: "PRelu", shapes: [][]int{{2, 3, 4, 4}, {3, 1, 1}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.PRelu(in[0], in[1])) }},
		{name: "Sigmoid", op: "Sigmoid", shapes: [][]int{{2, 3, 4}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return []*Var{tp.Sigmoid(in[0])}, nil }},
		{name: "Concat", op: "Concat", shapes: [][]int{{2, 3, 2, 2}, {2, 1, 2, 2}}, attrs: func(n *graph.Node) { n.SetAttrInt("axis", 1) },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.Concat(1, in...)) }},
		{name: "Split", op: "Split", shapes: [][]int{{2, 6, 3}}, consts: []any{[]int64{1, 3, 2}}, outs: 3, attrs: func(n *graph.Node) { n.SetAttrInt("axis", 1) },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return tp.Split(in[0], 1, 1, 3, 2) }},
		{name: "DepthToSpace DCR", op: "DepthToSpace", shapes: [][]int{{2, 8, 3, 3}}, attrs: func(n *graph.Node) { n.SetAttrInt("blocksize", 2) },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.DepthToSpace(in[0], 2, "")) }},
		{name: "DepthToSpace CRD", op: "DepthToSpace", shapes: [][]int{{1, 18, 2, 3}}, attrs: func(n *graph.Node) { n.SetAttrInt("blocksize", 3); n.SetAttrString("mode", "CRD") },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.DepthToSpace(in[0], 3, "CRD")) }},
		{name: "Pad constant", op: "Pad", shapes: [][]int{{1, 2, 3, 4}}, consts: []any{[]int64{0, 0, 1, 2, 0, 0, 2, 1}, float32(0.5)},
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) {
				return one(tp.Pad(in[0], PadOpts{Pads: []int{0, 0, 1, 2, 0, 0, 2, 1}, Value: 0.5}))
			}},
		{name: "Pad reflect", op: "Pad", shapes: [][]int{{1, 2, 4, 4}}, consts: []any{[]int64{0, 0, 2, 1, 0, 0, 1, 3}}, attrs: func(n *graph.Node) { n.SetAttrString("mode", "reflect") },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) {
				return one(tp.Pad(in[0], PadOpts{Pads: []int{0, 0, 2, 1, 0, 0, 1, 3}, Mode: "reflect"}))
			}},
		{name: "Pad edge", op: "Pad", shapes: [][]int{{1, 2, 4, 4}}, consts: []any{[]int64{0, 0, 2, 0, 0, 0, 0, 3}}, attrs: func(n *graph.Node) { n.SetAttrString("mode", "edge") },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) {
				return one(tp.Pad(in[0], PadOpts{Pads: []int{0, 0, 2, 0, 0, 0, 0, 3}, Mode: "edge"}))
			}},
		{name: "Resize nearest x2 asymmetric floor", op: "Resize", shapes: [][]int{{1, 2, 3, 3}}, consts: []any{"", "", []int64{1, 2, 6, 6}},
			attrs: func(n *graph.Node) {
				n.SetAttrString("mode", "nearest")
				n.SetAttrString("coordinate_transformation_mode", "asymmetric")
				n.SetAttrString("nearest_mode", "floor")
			},
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) {
				return one(tp.Resize(in[0], ResizeOpts{Height: 6, Width: 6, CoordMode: "asymmetric", NearestMode: "floor"}))
			}},
		{name: "Resize nearest 5x4 to 7x9 half pixel", op: "Resize", shapes: [][]int{{2, 1, 5, 4}}, consts: []any{"", "", []int64{2, 1, 7, 9}},
			attrs: func(n *graph.Node) { n.SetAttrString("mode", "nearest") },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) {
				return one(tp.Resize(in[0], ResizeOpts{Height: 7, Width: 9}))
			}},
		linearResizeCase("Resize linear x2 half pixel", []int{1, 2, 3, 4}, 6, 8, "half_pixel"),
		linearResizeCase("Resize linear 5x4 to 7x9 pytorch half pixel", []int{2, 1, 5, 4}, 7, 9, "pytorch_half_pixel"),
		linearResizeCase("Resize linear 3x3 to 7x5 align corners", []int{1, 2, 3, 3}, 7, 5, "align_corners"),
		linearResizeCase("Resize linear x4 asymmetric", []int{1, 1, 2, 3}, 8, 12, "asymmetric"),
		{name: "GlobalAveragePool", op: "GlobalAveragePool", shapes: [][]int{{2, 3, 4, 5}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.GlobalAveragePool(in[0])) }},
		{name: "ReduceMean", op: "ReduceMean", shapes: [][]int{{2, 3, 4, 5}}, attrs: func(n *graph.Node) { n.SetAttrInts("axes", []int64{1, -1}); n.SetAttrInt("keepdims", 0) },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.ReduceMean(in[0], []int{1, -1}, false)) }},
		{name: "MaxPool", op: "MaxPool", shapes: [][]int{{2, 2, 7, 7}},
			attrs: func(n *graph.Node) {
				ints("kernel_shape", 3, 3)(n)
				ints("strides", 2, 2)(n)
				ints("pads", 1, 1, 1, 1)(n)
			},
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) {
				return one(tp.MaxPool(in[0], PoolOpts{Kernel: [2]int{3, 3}, Strides: [2]int{2, 2}, Pads: [4]int{1, 1, 1, 1}}))
			}},
		{name: "MatMul broadcast", op: "MatMul", shapes: [][]int{{2, 1, 4, 6}, {3, 6, 5}}, goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.MatMul(in[0], in[1])) }},
		{name: "Softmax", op: "Softmax", shapes: [][]int{{2, 4, 3}}, attrs: func(n *graph.Node) { n.SetAttrInt("axis", 1) },
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.Softmax(in[0], 1)) }},
		{name: "LayerNormalization", op: "LayerNormalization", shapes: [][]int{{3, 2, 4}, {2, 4}, {2, 4}},
			attrs: func(n *graph.Node) { n.SetAttrInt("axis", 1); n.SetAttrFloat("epsilon", 1e-5) },
			goOp:  func(tp *Tape, in []*Var) ([]*Var, error) { return one(tp.LayerNorm(in[0], in[1], in[2], 1, 1e-5)) }},
		{name: "Conv groups stride dilation", op: "Conv", shapes: [][]int{{2, 4, 9, 9}, {4, 2, 3, 3}, {4}},
			attrs: func(n *graph.Node) {
				n.SetAttrInt("group", 2)
				ints("strides", 2, 2)(n)
				ints("dilations", 2, 2)(n)
				ints("pads", 2, 1, 2, 2)(n)
			},
			goOp: func(tp *Tape, in []*Var) ([]*Var, error) {
				return one(tp.Conv(in[0], in[1], in[2], ConvOpts{Group: 2, Strides: [2]int{2, 2}, Dilations: [2]int{2, 2}, Pads: [4]int{2, 1, 2, 2}}))
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(31, uint64(len(c.name))))
			tp := NewTape()
			var ins []*Var
			for _, s := range c.shapes {
				v, err := tp.Const(s, randn(rng, size(s), 1))
				require.NoError(t, err)
				ins = append(ins, v)
			}
			want, err := c.goOp(tp, ins)
			require.NoError(t, err)
			got := runONNX(t, c, ins)
			require.Len(t, got, len(want))
			for k := range want {
				require.Equal(t, len(want[k].Data), len(got[k].Data), "output %d", k)
				wantShape := make([]int64, len(want[k].Shape))
				for i, d := range want[k].Shape {
					wantShape[i] = int64(d)
				}
				require.Equal(t, wantShape, got[k].Shape, "output %d shape", k)
				for i := range want[k].Data {
					require.InDelta(t, got[k].Data[i], want[k].Data[i], 2e-5, "output %d element %d", k, i)
				}
			}
		})
	}
}

func runONNX(t *testing.T, c onnxCase, ins []*Var) []*ort.Tensor {
	t.Helper()
	g := graph.New(c.name, map[string]int64{"": 17})
	n := &graph.Node{Name: "n", OpType: c.op}
	var feeds []*ort.Tensor
	for i, v := range ins {
		name := fmt.Sprintf("in%d", i)
		dims := make([]int64, len(v.Shape))
		for j, d := range v.Shape {
			dims[j] = int64(d)
		}
		g.Inputs = append(g.Inputs, &graph.Value{Name: name, DType: onnx.TensorProto_FLOAT, Shape: graph.ShapeOf(dims...)})
		feeds = append(feeds, &ort.Tensor{Shape: dims, Data: v.Data})
		n.Inputs = append(n.Inputs, name)
	}
	for i, k := range c.consts {
		name := fmt.Sprintf("const%d", i)
		switch v := k.(type) {
		case string:
			name = ""
		case []int64:
			g.SetInitializer(graph.NewInt64(name, []int64{int64(len(v))}, v))
		case float32:
			g.SetInitializer(graph.NewFloat32(name, nil, []float32{v}))
		}
		n.Inputs = append(n.Inputs, name)
	}
	outs := max(c.outs, 1)
	for i := range outs {
		name := fmt.Sprintf("out%d", i)
		n.Outputs = append(n.Outputs, name)
		g.Outputs = append(g.Outputs, &graph.Value{Name: name, DType: onnx.TensorProto_FLOAT})
	}
	if c.attrs != nil {
		c.attrs(n)
	}
	g.AddNode(n)
	model, err := marshal(g)
	require.NoError(t, err)
	s, err := ort.NewSession(model, c.name, ort.Options{Threads: 1})
	require.NoError(t, err)
	defer s.Close()
	res, err := s.Run(feeds...)
	require.NoError(t, err)
	return res
}
