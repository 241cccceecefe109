package passes

import (
	"fmt"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// FuseConv1x1 folds a 1x1 Conv (stride 1, no padding, group 1) into the Conv
// that feeds it when that Conv has no other consumer. A 1x1 conv is a
// per-pixel matrix, so the composition is one conv with W = B·A and
// b = B·b_A + b_B: exact up to float rounding, including at image borders.
// This removes the EDSR/RCAN output mean-shift conv, whose output would
// otherwise need its own 8-bit quantization step.
type FuseConv1x1 struct{}

func (FuseConv1x1) Name() string { return "fuse-conv1x1" }
func (FuseConv1x1) Doc() string  { return "fold 1x1 convs into the conv that feeds them" }

func (FuseConv1x1) Run(g *graph.Graph) error {
	for _, b := range append([]*graph.Node(nil), g.Nodes...) {
		if !isPointwiseConv(b) {
			continue
		}
		a := g.Producer(b.Inputs[0])
		if a == nil || !isOp(a, "Conv") || a.AttrInt("group", 1) != 1 || len(a.Outputs) != 1 ||
			g.IsGraphOutput(a.Outputs[0]) || len(g.Consumers(a.Outputs[0])) != 1 {
			continue
		}
		wa, ok1 := g.Const(input(a, 1))
		wb, ok2 := g.Const(input(b, 1))
		if !ok1 || !ok2 || wa.DType != onnx.TensorProto_FLOAT || wb.DType != onnx.TensorProto_FLOAT {
			continue
		}
		if err := fuse(g, a, b, wa, wb); err != nil {
			return fmt.Errorf("node %q into %q: %w", b.Name, a.Name, err)
		}
	}
	g.RemoveDead()
	return nil
}

// isPointwiseConv reports a Conv that is a per-pixel linear map.
func isPointwiseConv(n *graph.Node) bool {
	if !isOp(n, "Conv") || n.AttrInt("group", 1) != 1 || len(n.Outputs) != 1 {
		return false
	}
	for _, k := range n.AttrInts("kernel_shape") {
		if k != 1 {
			return false
		}
	}
	for _, s := range n.AttrInts("strides") {
		if s != 1 {
			return false
		}
	}
	for _, p := range n.AttrInts("pads") {
		if p != 0 {
			return false
		}
	}
	ap := n.AttrString("auto_pad", "NOTSET")
	return ap == "NOTSET" || ap == "VALID"
}

func fuse(g *graph.Graph, a, b *graph.Node, wa, wb *graph.Tensor) error {
	A, err := wa.Float32()
	if err != nil {
		return err
	}
	B, err := wb.Float32()
	if err != nil {
		return err
	}
	if len(wa.Dims) < 3 || len(wb.Dims) != len(wa.Dims) {
		return fmt.Errorf("weights of rank %d and %d", len(wa.Dims), len(wb.Dims))
	}
	m, o := int(wa.Dims[0]), int(wb.Dims[0])
	if int(wb.Dims[1]) != m {
		return fmt.Errorf("1x1 conv takes %d channels but the conv before it gives %d", wb.Dims[1], m)
	}
	inner := len(A) / m // C * kh * kw
	biasA, err := optionalBias(g, a, m)
	if err != nil {
		return err
	}
	biasB, err := optionalBias(g, b, o)
	if err != nil {
		return err
	}
	w := make([]float32, o*inner)
	bias := make([]float32, o)
	acc := make([]float64, inner)
	for oc := 0; oc < o; oc++ {
		clear(acc)
		bsum := float64(biasB[oc])
		for mc := 0; mc < m; mc++ {
			f := float64(B[oc*m+mc])
			if f == 0 {
				continue
			}
			row := A[mc*inner : (mc+1)*inner]
			for i, v := range row {
				acc[i] += f * float64(v)
			}
			bsum += f * float64(biasA[mc])
		}
		for i, v := range acc {
			w[oc*inner+i] = float32(v)
		}
		bias[oc] = float32(bsum)
	}
	dims := append([]int64{int64(o)}, wa.Dims[1:]...)
	wName := g.UniqueName(a.Name + ".fused_weight")
	bName := g.UniqueName(a.Name + ".fused_bias")
	g.SetInitializer(graph.NewFloat32(wName, dims, w))
	g.SetInitializer(graph.NewFloat32(bName, []int64{int64(o)}, bias))
	out := b.Outputs[0]
	g.RemoveNode(b)
	a.Inputs = []string{a.Inputs[0], wName, bName}
	a.Outputs = []string{out}
	g.Invalidate()
	return nil
}

// optionalBias returns a conv's bias, or zeros when it has none.
func optionalBias(g *graph.Graph, n *graph.Node, ch int) ([]float32, error) {
	name := input(n, 2)
	if name == "" {
		return make([]float32, ch), nil
	}
	t, ok := g.Const(name)
	if !ok {
		return nil, fmt.Errorf("bias %q of %q is not a constant", name, n.Name)
	}
	v, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("bias %q: %w", name, err)
	}
	if len(v) != ch {
		return nil, fmt.Errorf("bias %q has %d values for %d channels", name, len(v), ch)
	}
	return v, nil
}
