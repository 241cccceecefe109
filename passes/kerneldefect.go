package passes

import (
	"fmt"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// DefectBlock is the output-channel count AvoidKernelDefects pads to.
const DefectBlock = 32

// DefectiveConvShape reports whether ORT 1.24.x's fused int8 Conv is known
// to compute a Conv of this shape wrong on CPUs with AMX: one group,
// 17–31 output channels, and input and output channels not both multiples
// of 4 (the shapes its symmetric VNNI kernel does not take). Measured with
// single QDQ Convs at graph optimisation levels basic and all on an Intel
// Xeon with amx_int8 (ORT 1.24.1 and 1.24.3; 1.31.1 is right, and so is
// every AMD CPU tried): 50→25, 64→27, 25→18, 50→17, 8→25 wrong on about
// (out−16)·18 of every 576 outputs by up to 160 codes; 64→20, 64→24,
// 64→28 and every Conv with at most 16 or at least 32 outputs exact. It
// matches ORT issue #26324.
func DefectiveConvShape(in, out, groups int64) bool {
	return groups == 1 && out >= 17 && out < DefectBlock && !(in%4 == 0 && out%4 == 0)
}

// AvoidKernelDefects rewrites a QDQ graph so that ORT's int8 Conv never
// runs a shape it computes wrong: every quantized Conv of a
// DefectiveConvShape, and every one named in Nodes, gets zero filters up to
// DefectBlock output channels (or the next multiple of 16 above its
// count), and a Split on the uint8 codes after its QuantizeLinear keeps
// the real channels. Same codes: a zero filter with a zero bias writes the
// zero point, and Split is data movement, so ORT splits uint8 codes and
// the int8 chain is not broken. Nodes holds Convs a kernel check on the
// machine at hand found wrong whatever their shape (package kernelcheck).
//
// It works on the written QDQ graph, so the fix costs no recalibration
// and applies to any QDQ model.
type AvoidKernelDefects struct {
	Nodes []string
	// Padded, if set, receives the names of the Convs padded.
	Padded *[]string
}

func (AvoidKernelDefects) Name() string { return "avoid-kernel-defects" }
func (AvoidKernelDefects) Doc() string {
	return "pad int8 Convs whose shape ORT's kernel computes wrong with zero filters and split the codes"
}

func (p AvoidKernelDefects) Run(g *graph.Graph) error {
	for _, conv := range slices.Clone(g.Nodes) {
		if !isOp(conv, "Conv") {
			continue
		}
		qc, ok := quantizedConv(g, conv)
		if !ok {
			continue
		}
		groups := conv.AttrInt("group", 1)
		out, in := qc.w.Dims[0], qc.w.Dims[1]*groups
		named := slices.Contains(p.Nodes, conv.Name)
		if groups != 1 || (!named && !DefectiveConvShape(in, out, groups)) {
			continue // padded filters would change a grouped Conv's grouping
		}
		to := max(DefectBlock, roundUp(out+1, 16))
		if err := qc.pad(g, to); err != nil {
			return fmt.Errorf("node %q: %w", conv.Name, err)
		}
		codes := qc.q.Outputs[0]
		padded := g.UniqueName(codes + "_padded")
		qc.q.Outputs[0] = padded
		split := &graph.Node{Name: g.UniqueName(conv.Name + "_split"), OpType: "Split",
			Inputs: []string{padded}, Outputs: []string{codes, g.UniqueName(codes + "_zeros")}}
		split.SetAttrInt("axis", 1)
		sizes := []int64{out, to - out}
		if g.Opsets[""] >= 13 {
			name := g.UniqueName(conv.Name + "_split_sizes")
			g.SetInitializer(graph.NewInt64(name, []int64{2}, sizes))
			split.Inputs = append(split.Inputs, name)
		} else {
			split.SetAttrInts("split", sizes)
		}
		g.AddNode(split)
		g.Invalidate()
		if p.Padded != nil {
			*p.Padded = append(*p.Padded, conv.Name)
		}
	}
	return nil
}

func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

// qconv is a Conv in deploy form: int8 weight and int32 bias behind
// DequantizeLinear, its output (after an optional Relu) read by one
// QuantizeLinear only.
type qconv struct {
	conv, wdq, bdq, q *graph.Node
	w                 *graph.Tensor
}

func quantizedConv(g *graph.Graph, conv *graph.Node) (qconv, bool) {
	qc := qconv{conv: conv}
	qc.wdq = g.Producer(input(conv, 1))
	if qc.wdq == nil || !isOp(qc.wdq, "DequantizeLinear") {
		return qc, false
	}
	var ok bool
	if qc.w, ok = g.Const(input(qc.wdq, 0)); !ok || qc.w.DType != onnx.TensorProto_INT8 || len(qc.w.Dims) < 3 {
		return qc, false
	}
	if b := input(conv, 2); b != "" {
		qc.bdq = g.Producer(b)
		if qc.bdq == nil || !isOp(qc.bdq, "DequantizeLinear") {
			return qc, false
		}
		if t, ok := g.Const(input(qc.bdq, 0)); !ok || t.DType != onnx.TensorProto_INT32 {
			return qc, false
		}
	}
	out := conv.Outputs[0]
	cs := g.Consumers(out)
	if len(cs) == 1 && isOp(cs[0], "Relu") && !g.IsGraphOutput(out) {
		out = cs[0].Outputs[0]
		cs = g.Consumers(out)
	}
	if len(cs) != 1 || !isOp(cs[0], "QuantizeLinear") || g.IsGraphOutput(out) || g.IsGraphOutput(cs[0].Outputs[0]) {
		return qc, false
	}
	qc.q = cs[0]
	return qc, true
}

// pad gives the Conv zero filters up to n output channels: its int8
// weight, its int32 bias and their per-channel scales and zero points.
func (qc qconv) pad(g *graph.Graph, n int64) error {
	for _, dq := range []*graph.Node{qc.wdq, qc.bdq} {
		if dq == nil {
			continue
		}
		perChannel := false
		for i := 0; i < 3; i++ {
			name := input(dq, i)
			if name == "" {
				continue
			}
			t, ok := g.Const(name)
			if !ok {
				return fmt.Errorf("input %q of %s is not a constant", name, dq.Name)
			}
			if i > 0 && t.NumElements() == 1 {
				continue // per tensor: shared by the new channels
			}
			if i > 0 {
				perChannel = true
			}
			wide, err := padFirst(g, t, n, i == 1)
			if err != nil {
				return err
			}
			g.ReplaceInput(dq, i, wide)
		}
		if perChannel && dq.AttrInt("axis", 1) != 0 {
			return fmt.Errorf("%s quantizes along axis %d, not the output channels", dq.Name, dq.AttrInt("axis", 1))
		}
	}
	return nil
}

// padFirst writes a copy of t padded along its first axis to n rows: zeros,
// or for scales (which must be positive) the first row's value.
func padFirst(g *graph.Graph, t *graph.Tensor, n int64, scale bool) (string, error) {
	if len(t.Dims) == 0 || t.Dims[0] >= n {
		return "", fmt.Errorf("tensor %q of shape %v cannot be padded to %d rows", t.Name, t.Dims, n)
	}
	row := len(t.Data) / int(t.Dims[0])
	data := make([]byte, int(n)*row)
	copy(data, t.Data)
	if scale {
		for r := int(t.Dims[0]); r < int(n); r++ {
			copy(data[r*row:(r+1)*row], t.Data[:row])
		}
	}
	name := g.UniqueName(t.Name + "_padded")
	g.SetInitializer(&graph.Tensor{Name: name, DType: t.DType, Dims: append([]int64{n}, t.Dims[1:]...), Data: data})
	return name, nil
}
