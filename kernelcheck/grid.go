package kernelcheck

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
)

// Case is one single-op QDQ model of the grid: an int8 kernel srq's graphs
// rely on, at one shape.
type Case struct {
	Op    string `json:"op"`    // the ORT kernel it exercises, e.g. "QLinearConv"
	Shape string `json:"shape"` // e.g. "Conv 25→27, 3×3, stride 2"
	build func(b *builder) error
}

// CaseResult is a Case compared at levels basic and all.
type CaseResult struct {
	Case
	MaxCodeDiff int     `json:"max_code_diff"`
	WrongShare  float64 `json:"wrong_share"`
}

// OK reports whether the case agrees within Tolerance.
func (r CaseResult) OK() bool { return r.MaxCodeDiff <= Tolerance }

// GridOptions configures Grid.
type GridOptions struct {
	Threads int
	EP      string
	// Size is the spatial side of every case's input (24 by default: the
	// size the AMX defect was measured on).
	Size int
	// Edit, if set, edits the grid model before it runs: tests use it to
	// make fused and unfused forms differ on a machine without a defect.
	Edit func(*graph.Graph)
}

// GridCases is the grid `srq doctor` runs: Conv over output channels 1–40
// for input channels 3, 25, 50 and 64, 1×1 and 3×3, stride 1 and 2 (the
// shapes kernel selection depends on; the known AMX defect lives at 17–31
// outputs), grouped and depthwise Convs, and every other int8 kernel srq's
// graphs rely on: QLinearAdd, QLinearMul, QLinearConcat, the
// QLinearSigmoid and QLinearLeakyRelu tables, QLinearGlobalAveragePool,
// MaxPool, Resize and DepthToSpace on uint8.
func GridCases() []Case {
	var cs []Case
	for _, in := range []int{3, 25, 50, 64} {
		for out := 1; out <= 40; out++ {
			for _, k := range []int{1, 3} {
				for _, s := range []int{1, 2} {
					cs = append(cs, convCase(in, out, k, s, 1))
				}
			}
		}
	}
	for _, c := range [][3]int{{64, 64, 4}, {64, 256, 4}, {48, 48, 2}, {25, 25, 25}, {28, 28, 28}, {48, 48, 48}, {64, 64, 64}} {
		for _, s := range []int{1, 2} {
			cs = append(cs, convCase(c[0], c[1], 3, s, c[2]))
		}
	}
	for _, ch := range []int{16, 28, 64} {
		cs = append(cs,
			binaryCase("QLinearAdd", "Add", ch),
			binaryCase("QLinearMul", "Mul", ch),
			concatCase(ch),
			unaryCase("QLinearSigmoid", "Sigmoid", ch, nil),
			unaryCase("QLinearLeakyRelu", "LeakyRelu", ch, func(n *graph.Node) { n.SetAttrFloat("alpha", 0.1) }),
			unaryCase("QLinearGlobalAveragePool", "GlobalAveragePool", ch, nil),
			maxPoolCase(ch),
			resizeCase(ch, "nearest"),
			resizeCase(ch, "linear"),
			depthToSpaceCase(ch),
		)
	}
	return cs
}

// Grid builds every case as a branch of one model, runs it at levels
// basic and all on random codes, and compares each case's output codes.
func Grid(ctx context.Context, cases []Case, o GridOptions) ([]CaseResult, error) {
	if o.Size <= 0 {
		o.Size = 24
	}
	b := &builder{g: graph.New("srq_kernel_grid", map[string]int64{"": 17}), rng: rand.New(rand.NewPCG(1, 2)), size: o.Size}
	for i, c := range cases {
		b.prefix = fmt.Sprintf("c%d/", i)
		if err := c.build(b); err != nil {
			return nil, fmt.Errorf("kernel grid case %s %s: %w", c.Op, c.Shape, err)
		}
	}
	if o.Edit != nil {
		o.Edit(b.g)
	}
	m, err := b.g.ToModel()
	if err != nil {
		return nil, fmt.Errorf("kernel grid: %w", err)
	}
	data, err := onnx.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("kernel grid: %w", err)
	}
	basic, err := runBytes(ctx, data, "kernel grid", ort.Options{Threads: o.Threads, OptLevel: "basic"}, b.feeds)
	if err != nil {
		return nil, err
	}
	fused, err := runBytes(ctx, data, "kernel grid", ort.Options{Threads: o.Threads, EP: o.EP}, b.feeds)
	if err != nil {
		return nil, err
	}
	res := make([]CaseResult, len(cases))
	for i, c := range cases {
		md, wrong := diff(basic[i].Data, fused[i].Data, isoOutput{codes: true, scale: b.scales[i]})
		res[i] = CaseResult{Case: c, MaxCodeDiff: md, WrongShare: float64(wrong) / float64(len(basic[i].Data))}
	}
	return res, nil
}

// builder adds cases to the grid model: each an input of random uint8
// codes (fed as their dequantized floats, so Q → DQ restores them
// exactly), the op on DequantizeLinear inputs, and Q → DQ on its output.
type builder struct {
	g      *graph.Graph
	rng    *rand.Rand
	size   int
	prefix string
	feeds  []*ort.Tensor
	scales []float32 // per case, its output quantizer's scale
}

func (b *builder) name(s string) string { return b.prefix + s }

// input adds a graph input of shape dims holding random codes on scale
// and zero point zp, quantized and dequantized as srq writes activations,
// and returns the dequantized value.
func (b *builder) input(dims []int64, scale float32, zp uint8) string {
	n := 1
	for _, d := range dims {
		n *= int(d)
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(int(b.rng.IntN(256))-int(zp)) * scale
	}
	in := b.name(fmt.Sprintf("in%d", len(b.g.Inputs)))
	b.g.Inputs = append(b.g.Inputs, &graph.Value{Name: in, DType: onnx.TensorProto_FLOAT, Shape: graph.ShapeOf(dims...)})
	b.feeds = append(b.feeds, &ort.Tensor{Shape: dims, Data: data})
	return b.qdq(in, scale, zp)
}

// qdq quantizes v on (scale, zp) and dequantizes it.
func (b *builder) qdq(v string, scale float32, zp uint8) string {
	s, z := b.name(v+"_scale"), b.name(v+"_zp")
	b.g.SetInitializer(graph.NewFloat32(s, nil, []float32{scale}))
	b.g.SetInitializer(graph.NewUint8(z, nil, []uint8{zp}))
	codes, out := b.name(v+"_q"), b.name(v+"_dq")
	b.g.AddNode(&graph.Node{Name: codes, OpType: "QuantizeLinear", Inputs: []string{v, s, z}, Outputs: []string{codes}})
	b.g.AddNode(&graph.Node{Name: out, OpType: "DequantizeLinear", Inputs: []string{codes, s, z}, Outputs: []string{out}})
	return out
}

// output quantizes the case's result v on (scale, zp) and makes the
// dequantized value a graph output: the case's codes.
func (b *builder) output(v string, scale float32, zp uint8) {
	out := b.qdq(v, scale, zp)
	b.g.Outputs = append(b.g.Outputs, &graph.Value{Name: out, DType: onnx.TensorProto_FLOAT})
	b.scales = append(b.scales, scale)
}

func (b *builder) node(op string, ins []string, edit func(*graph.Node)) string {
	out := b.name(fmt.Sprintf("%s%d", op, len(b.g.Nodes)))
	n := &graph.Node{Name: out, OpType: op, Inputs: ins, Outputs: []string{out}}
	if edit != nil {
		edit(n)
	}
	b.g.AddNode(n)
	return out
}

func (b *builder) floats(name string, v ...float32) string {
	n := b.name(name)
	b.g.SetInitializer(graph.NewFloat32(n, []int64{int64(len(v))}, v))
	return n
}

// convCase is a Conv as srq writes it: U8 input (zero point 0, as after a
// ReLU, the setting the AMX defect was found in), S8 symmetric per-channel
// weights, int32 bias on scale s_in·s_w, U8 output.
func convCase(in, out, k, stride, groups int) Case {
	shape := fmt.Sprintf("Conv %d→%d, %d×%d, stride %d", in, out, k, k, stride)
	if groups > 1 {
		kind := "groups"
		if groups == in && groups == out {
			kind = "depthwise"
		}
		shape += fmt.Sprintf(", %d %s", groups, kind)
	}
	return Case{Op: "QLinearConv", Shape: shape, build: func(b *builder) error {
		const sx = 0.02
		x := b.input([]int64{1, int64(in), int64(b.size), int64(b.size)}, sx, 0)
		y, scale := b.conv(x, sx, in, out, k, stride, groups)
		b.output(y, scale, 128)
		return nil
	}}
}

// conv adds a Conv reading x (dequantized on scale sx) with random S8
// symmetric per-channel weights and an int32 bias on scale s_in·s_w, and
// returns its float output and an output scale that covers three spreads
// of it each way around a zero point of 128.
func (b *builder) conv(x string, sx float32, in, out, k, stride, groups int) (string, float32) {
	cin := in / groups
	w := make([]int8, out*cin*k*k)
	for i := range w {
		w[i] = int8(b.rng.IntN(255) - 127)
	}
	ws := make([]float32, out)
	bias := make([]int32, out)
	bs := make([]float32, out)
	for o := range out {
		ws[o] = 0.001 * float32(1+b.rng.IntN(8))
		bs[o] = sx * ws[o]
		bias[o] = int32(b.rng.IntN(20001) - 10000)
	}
	wn, bn := b.name(fmt.Sprintf("w%d", len(b.g.Nodes))), b.name(fmt.Sprintf("b%d", len(b.g.Nodes)))
	b.g.SetInitializer(graph.NewInt8(wn, []int64{int64(out), int64(cin), int64(k), int64(k)}, w))
	b.g.SetInitializer(graph.NewInt32(bn, []int64{int64(out)}, bias))
	b.g.SetInitializer(graph.NewFloat32(wn+"_scale", []int64{int64(out)}, ws))
	b.g.SetInitializer(graph.NewInt8(wn+"_zp", []int64{int64(out)}, make([]int8, out)))
	b.g.SetInitializer(graph.NewFloat32(bn+"_scale", []int64{int64(out)}, bs))
	b.g.SetInitializer(graph.NewInt32(bn+"_zp", []int64{int64(out)}, make([]int32, out)))
	axis0 := func(n *graph.Node) { n.SetAttrInt("axis", 0) }
	wd := b.node("DequantizeLinear", []string{wn, wn + "_scale", wn + "_zp"}, axis0)
	bd := b.node("DequantizeLinear", []string{bn, bn + "_scale", bn + "_zp"}, axis0)
	y := b.node("Conv", []string{x, wd, bd}, func(n *graph.Node) {
		n.SetAttrInts("kernel_shape", []int64{int64(k), int64(k)})
		p := int64(k / 2)
		n.SetAttrInts("pads", []int64{p, p, p, p})
		n.SetAttrInts("strides", []int64{int64(stride), int64(stride)})
		if groups > 1 {
			n.SetAttrInt("group", int64(groups))
		}
	})
	// The accumulator's spread: sqrt(cin·k²) products of input codes (root
	// mean square 147 for codes spread over 0..255) and weight codes (std
	// 73), scaled by s_in·s_w (0.0045 on average).
	spread := math.Sqrt(float64(cin*k*k)) * 147 * 73 * float64(sx) * 0.0045
	return y, float32(3 * spread / 127)
}

func binaryCase(op, onnxOp string, ch int) Case {
	return Case{Op: op, Shape: fmt.Sprintf("%s %d channels", onnxOp, ch), build: func(b *builder) error {
		dims := []int64{1, int64(ch), int64(b.size), int64(b.size)}
		x, y := b.input(dims, 0.03, 120), b.input(dims, 0.05, 100)
		scale := float32(0.1)
		if onnxOp == "Mul" {
			scale = 0.2
		}
		b.output(b.node(onnxOp, []string{x, y}, nil), scale, 128)
		return nil
	}}
}

func concatCase(ch int) Case {
	return Case{Op: "QLinearConcat", Shape: fmt.Sprintf("Concat 2×%d channels", ch), build: func(b *builder) error {
		dims := []int64{1, int64(ch), int64(b.size), int64(b.size)}
		x, y := b.input(dims, 0.03, 120), b.input(dims, 0.05, 100)
		b.output(b.node("Concat", []string{x, y}, func(n *graph.Node) { n.SetAttrInt("axis", 1) }), 0.05, 110)
		return nil
	}}
}

func unaryCase(op, onnxOp string, ch int, edit func(*graph.Node)) Case {
	return Case{Op: op, Shape: fmt.Sprintf("%s %d channels", onnxOp, ch), build: func(b *builder) error {
		x := b.input([]int64{1, int64(ch), int64(b.size), int64(b.size)}, 0.05, 128)
		scale, zp := float32(0.05), uint8(128)
		if onnxOp == "Sigmoid" {
			scale, zp = 1.0/255, 0
		}
		b.output(b.node(onnxOp, []string{x}, edit), scale, zp)
		return nil
	}}
}

func maxPoolCase(ch int) Case {
	return Case{Op: "MaxPool", Shape: fmt.Sprintf("MaxPool 3×3 stride 2, %d channels (uint8)", ch), build: func(b *builder) error {
		x := b.input([]int64{1, int64(ch), int64(b.size), int64(b.size)}, 0.05, 128)
		b.output(b.node("MaxPool", []string{x}, func(n *graph.Node) {
			n.SetAttrInts("kernel_shape", []int64{3, 3})
			n.SetAttrInts("strides", []int64{2, 2})
		}), 0.05, 128)
		return nil
	}}
}

func resizeCase(ch int, mode string) Case {
	return Case{Op: "Resize", Shape: fmt.Sprintf("Resize ×2 %s, %d channels (uint8)", mode, ch), build: func(b *builder) error {
		x := b.input([]int64{1, int64(ch), int64(b.size), int64(b.size)}, 0.05, 128)
		scales := b.floats("scales", 1, 1, 2, 2)
		b.output(b.node("Resize", []string{x, "", scales}, func(n *graph.Node) { n.SetAttrString("mode", mode) }), 0.05, 128)
		return nil
	}}
}

func depthToSpaceCase(ch int) Case {
	c := ch / 4 * 4
	return Case{Op: "DepthToSpace", Shape: fmt.Sprintf("DepthToSpace 2, %d channels (uint8)", c), build: func(b *builder) error {
		x := b.input([]int64{1, int64(c), int64(b.size), int64(b.size)}, 0.05, 128)
		b.output(b.node("DepthToSpace", []string{x}, func(n *graph.Node) {
			n.SetAttrInt("blocksize", 2)
			n.SetAttrString("mode", "CRD")
		}), 0.05, 128)
		return nil
	}}
}
