package passes

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/qdq"
)

// WeightConfig says how Conv weights are quantized: symmetric, narrow range
// (ZeroPoint 0, [-(2^(b-1)-1), 2^(b-1)-1]), per output channel or per tensor.
type WeightConfig struct {
	Bits       int
	PerChannel bool
	Method     qdq.WeightMethod
}

// InsertQDQ writes the deploy form of a Plan: a QuantizeLinear →
// DequantizeLinear pair on every planned activation value (consumers read the
// dequantized value), int8 weights and int32 biases behind
// DequantizeLinear, and absorbed Relus removed. This is the pattern ONNX
// Runtime's CPU provider fuses into int8 kernels end to end: U8 activations
// with zero point, S8 per-channel weights, int32 bias with scale
// s_input·s_weight.
type InsertQDQ struct {
	Plan *Plan
	// Act holds the quantizer of every value in Plan.Values.
	Act     map[string]qdq.Params
	Weights WeightConfig
	// WeightParams, if set, overrides the weight quantizers of a Conv (keyed
	// by node name); used by tuning. Each entry has one Params per output
	// channel or one for the tensor.
	WeightParams map[string][]qdq.Params
	// ConvIn holds, per Conv (by node name), the quantizer of its input when
	// it is not the input's 8-bit carrier in Act: the Convs of a low-bit
	// setting and dual-region quantizers. A value whose every reader is
	// such a Conv with one quantizer carries that quantizer's fine grid
	// instead (see elideCarriers). Weights of Plan.Wide Convs stay at 8
	// bits; the others get Weights.Bits.
	ConvIn map[string]qdq.Quantizer
	// Forms says how each ConvIn quantizer is written (ChooseForm under
	// EncodingInt8 when absent).
	Forms map[string]Form
	// WeightBits overrides Weights.Bits per Conv (by name): mixed
	// precision.
	WeightBits map[string]int
	// Partials holds, per Conv in FormTwoBranch, the 8-bit quantizers of
	// its dense and tail partial outputs (see CalibrationSplit).
	Partials map[string][2]qdq.Params
	// Centers holds, per Conv (by name), the value per input channel its
	// input is centred on. The weights' rounding error δW adds δW·x to the
	// output; its part δW·center is the same at every pixel, and is taken
	// out of the bias. FoldInputShift's head reads the image padded with
	// the dataset mean that its weights used to see subtracted.
	Centers map[string][]float32
}

func (InsertQDQ) Name() string { return "insert-qdq" }
func (InsertQDQ) Doc() string {
	return "insert Q/DQ pairs, int8 weights and int32 biases for ORT's int8 kernels"
}

func (p InsertQDQ) Run(g *graph.Graph) error {
	if v := g.Opsets[""]; v < 13 {
		return fmt.Errorf("model imports ai.onnx opset %d; per-channel QuantizeLinear needs 13 or newer", v)
	}
	pl := p.Plan
	// Parameters of every quantized value, shared ones resolved.
	params := map[string]qdq.Params{}
	for _, v := range pl.Values {
		q, ok := p.Act[v]
		if !ok {
			return fmt.Errorf("no quantization range for value %q", v)
		}
		if err := q.Validate(); err != nil {
			return fmt.Errorf("value %q: %w", v, err)
		}
		params[v] = q
	}
	quantized := map[*graph.Node]bool{}
	for _, n := range pl.Nodes {
		quantized[n] = true
	}
	// An absorbed bias Add writes the value the linear layer's output
	// quantizer sits on: every reader of it gets the dequantized value, as
	// from any quantized node, so that ORT sees MatMul → Add → Q alone.
	for _, add := range pl.BiasOf {
		quantized[add] = true
	}
	done := p.elideCarriers(g, params, quantized)
	for v, src := range pl.Shared {
		params[v] = params[src]
	}
	for conv, relu := range pl.ReluOf {
		if q := params[relu.Outputs[0]]; q.Dequantize(q.QMin) < 0 {
			return fmt.Errorf("node %q: the Relu it absorbs needs a range starting at 0, got %g", relu.Name, q.Dequantize(q.QMin))
		}
		g.RemoveValueInfo(conv.Outputs[0])
		conv.Outputs[0] = relu.Outputs[0]
		g.RemoveNode(relu)
	}
	g.Invalidate()
	splits := map[string]split{}
	for _, v := range pl.Split {
		if p.readByConvIn(g, v) {
			continue // its Convs read it through their own quantizer
		}
		if s, ok := widenForSplit(g, v, params[v], quantized); ok {
			splits[v] = s
		}
	}
	// The form of every Conv input quantizer that is not its carrier, and
	// the value it reads.
	forms := map[*graph.Node]Form{}
	reads := map[*graph.Node]string{}
	for _, n := range pl.Nodes {
		q, ok := p.ConvIn[n.Name]
		if !ok || done[n.Inputs[0]] == q {
			continue
		}
		f, has := p.Forms[n.Name]
		if !has {
			var err error
			if f, _, err = ChooseForm(q, EncodingInt8); err != nil {
				return fmt.Errorf("node %q: %w", n.Name, err)
			}
		}
		forms[n], reads[n] = f, n.Inputs[0]
	}
	for _, n := range pl.Nodes {
		if !isOp(n, "Conv") {
			continue
		}
		in, ok := params[n.Inputs[0]]
		if !ok {
			return fmt.Errorf("node %q: input %q has no quantization range", n.Name, n.Inputs[0])
		}
		if f, ok := forms[n]; ok {
			in = inputGrid(p.ConvIn[n.Name], f, in)
		}
		if err := p.quantizeConvParams(g, n, in); err != nil {
			return fmt.Errorf("node %q: %w", n.Name, err)
		}
	}
	for _, n := range pl.Nodes {
		if !isOp(n, "MatMul") {
			continue
		}
		if err := p.quantizeMatMulWeight(g, n); err != nil {
			return fmt.Errorf("node %q: %w", n.Name, err)
		}
	}
	// Values in a fixed order: Plan.Values then shared ones in graph order.
	order := append([]string(nil), pl.Values...)
	for _, n := range pl.Nodes {
		for _, out := range pl.OutputsOf(n) {
			if _, ok := pl.Shared[out]; ok {
				order = append(order, out)
			}
		}
	}
	for _, v := range order {
		var err error
		if s, ok := splits[v]; ok {
			err = insertSplit(g, v, params[v], s, quantized)
		} else {
			err = insertPair(g, v, params[v], quantized)
		}
		if err != nil {
			return err
		}
	}
	for _, n := range pl.Nodes {
		f, ok := forms[n]
		if !ok {
			continue
		}
		if err := insertConvInput(g, n, p.ConvIn[n.Name], f, p.Partials[n.Name]); err != nil {
			return fmt.Errorf("node %q: %w", n.Name, err)
		}
	}
	if err := keepFloatConvsFloat(g, quantized); err != nil {
		return err
	}
	shapeOfQuantized(g)
	g.RemoveDead()
	return nil
}

// keepFloatConvsFloat makes every Conv srq leaves float (--skip, a float
// first/last Conv, accuracy control's float rung) that reads a dequantized
// value read it through a DequantizeLinear of its own with one scale per
// channel (all equal: the same values). ORT (1.24) runs its
// WeightBiasQuantization at every optimisation level, basic included: a
// Conv whose input comes from a DequantizeLinear with a per-tensor scale
// and whose weight is a float initializer gets its weight quantized to
// per-tensor symmetric int8 and its bias to int32, and then runs on the
// int8 kernels, so the Conv the user kept float was quantized coarser than
// srq's own per-channel weights (EDSR x2 with one Conv skipped still ran
// 36/37 Convs int8). A per-channel input scale is outside that rewrite and
// outside the int8 Conv fusion, so the Conv stays float.
func keepFloatConvsFloat(g *graph.Graph, quantized map[*graph.Node]bool) error {
	for _, n := range slices.Clone(g.Nodes) {
		if !isOp(n, "Conv") || quantized[n] || len(n.Inputs) < 2 {
			continue
		}
		dq := g.Producer(n.Inputs[0])
		if dq == nil || !isOp(dq, "DequantizeLinear") || len(dq.Inputs) < 3 {
			continue
		}
		scale, ok1 := g.Const(dq.Inputs[1])
		zp, ok2 := g.Const(dq.Inputs[2])
		w, ok3 := g.Const(n.Inputs[1])
		if !ok1 || !ok2 || !ok3 || scale.NumElements() != 1 || zp.NumElements() != 1 || len(w.Dims) < 2 {
			continue
		}
		if zp.DType != onnx.TensorProto_UINT8 && zp.DType != onnx.TensorProto_INT8 {
			continue
		}
		c := int(w.Dims[1] * n.AttrInt("group", 1))
		sv, err := scale.Float32()
		if err != nil {
			return fmt.Errorf("node %q: input scale: %w", n.Name, err)
		}
		base := n.Name + "_float_input"
		s := g.UniqueName(base + "_scale")
		g.SetInitializer(graph.NewFloat32(s, []int64{int64(c)}, slices.Repeat(sv[:1], c)))
		// An 8-bit zero point is one byte, whichever its sign.
		z := g.UniqueName(base + "_zero_point")
		g.SetInitializer(&graph.Tensor{Name: z, DType: zp.DType, Dims: []int64{int64(c)}, Data: bytes.Repeat(zp.Data[:1], c)})
		out := g.UniqueName(base)
		own := &graph.Node{Name: g.UniqueName(base + "_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{dq.Inputs[0], s, z}, Outputs: []string{out}}
		own.SetAttrInt("axis", 1)
		g.AddNode(own)
		g.ReplaceInput(n, 0, out)
	}
	return nil
}

// readByConvIn reports whether a quantized Conv with its own input
// quantizer reads v.
func (p InsertQDQ) readByConvIn(g *graph.Graph, v string) bool {
	for _, c := range g.Consumers(v) {
		if _, ok := p.ConvIn[c.Name]; ok && isOp(c, "Conv") {
			return true
		}
	}
	return false
}

// insertPair puts Q→DQ on value v. A graph output keeps its name (the
// producer writes a renamed value first). Quantized consumers read the
// dequantized value; so do float consumers when v comes from a quantized
// node, since ORT's fused int8 kernel will not produce the float value. A
// value from a float producer (or a graph input) stays float for float
// consumers, which keeps e.g. a float residual stream free of rounding.
func insertPair(g *graph.Graph, v string, q qdq.Params, quantized map[*graph.Node]bool) error {
	scale, zp := quantInits(g, v, q)
	dq := g.UniqueName(v + "_dq")
	src := v
	if g.IsGraphOutput(v) {
		prod := g.Producer(v)
		if prod == nil {
			return fmt.Errorf("graph output %q has no producer", v)
		}
		src = g.UniqueName(v + "_float")
		for i, o := range prod.Outputs {
			if o == v {
				prod.Outputs[i] = src
			}
		}
		g.Invalidate()
		dq = v
	}
	qv := g.UniqueName(v + "_q")
	qn := &graph.Node{Name: g.UniqueName(v + "_QuantizeLinear"), OpType: "QuantizeLinear", Inputs: []string{src, scale, zp}, Outputs: []string{qv}}
	if dq != v {
		if prod := g.Producer(v); prod != nil && quantized[prod] {
			g.ReplaceUses(v, dq)
		} else {
			for _, c := range g.Consumers(v) {
				if !quantized[c] {
					continue
				}
				for i, in := range c.Inputs {
					if in == v {
						g.ReplaceInput(c, i, dq)
					}
				}
			}
		}
	}
	g.AddNode(qn)
	qv = clipCodes(g, qv, q, v) // a grid narrower than 8 bits
	g.AddNode(&graph.Node{Name: g.UniqueName(v + "_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{qv, scale, zp}, Outputs: []string{dq}})
	return nil
}

// split is the two-part encoding of one value (see Plan.Split): its gain
// and the Convs that read it, whose weights are already widened.
type split struct {
	k     int
	convs []*graph.Node
}

// widenForSplit prepares the two-part encoding of v: every quantized Conv
// reading v gets the weight [W, W/k] along its input channels. It declines
// (false, graph untouched) when the zero point leaves no room for a gain of
// 2 or more, or when a Conv reading v is grouped or has no constant float
// weight.
func widenForSplit(g *graph.Graph, v string, q qdq.Params, quantized map[*graph.Node]bool) (split, bool) {
	convs, k, ok := SplitReaders(g, v, q, func(n *graph.Node) bool { return quantized[n] })
	s := split{k: k, convs: convs}
	if !ok {
		return s, false
	}
	inv := 1 / float32(s.k)
	for _, c := range s.convs {
		wt, _ := g.Const(input(c, 1))
		w, err := wt.Float32()
		if err != nil {
			return s, false
		}
		dims := slices.Clone(wt.Dims)
		o := int(dims[0])
		row := len(w) / o
		wide := make([]float32, 0, 2*len(w))
		for oc := range o {
			src := w[oc*row : (oc+1)*row]
			wide = append(wide, src...)
			for _, x := range src {
				wide = append(wide, x*inv)
			}
		}
		dims[1] *= 2
		name := g.UniqueName(c.Name + ".split_weight")
		g.SetInitializer(graph.NewFloat32(name, dims, wide))
		g.ReplaceInput(c, 1, name)
	}
	return s, true
}

// SplitReaders returns the quantized Convs (quantized says which nodes
// are) that read v, and the gain k, when v on grid q can be written in the
// two-part encoding (Plan.Split): the zero point leaves room for a gain of
// 2 or more, v is not a graph output, and every quantized Conv reading it
// reads it as its data input only, ungrouped, with a constant float
// weight. Accuracy control asks it before offering the encoding.
func SplitReaders(g *graph.Graph, v string, q qdq.Params, quantized func(*graph.Node) bool) ([]*graph.Node, int, bool) {
	k := SplitGain(q.ZeroPoint, q.QMin, q.QMax)
	if k < 2 || g.IsGraphOutput(v) {
		return nil, k, false
	}
	var convs []*graph.Node
	for _, c := range g.Consumers(v) {
		if !quantized(c) || !isOp(c, "Conv") {
			continue
		}
		wt, ok := g.Const(input(c, 1))
		if c.Inputs[0] != v || slices.Contains(c.Inputs[1:], v) || c.AttrInt("group", 1) != 1 || !ok || wt.DType != onnx.TensorProto_FLOAT || len(wt.Dims) < 3 {
			return nil, k, false
		}
		convs = append(convs, c)
	}
	return convs, k, len(convs) > 0
}

// insertSplit writes the two-part encoding of v for the Convs in s:
// v̂ = DQ(Q(v)), r = v − v̂, and the Convs read DQ(Q(Concat(v, k·r))) on
// v's grid, so ORT still fuses each into one int8 conv over twice the input
// channels. Other quantized consumers read v̂, as from a plain pair.
func insertSplit(g *graph.Graph, v string, q qdq.Params, s split, quantized map[*graph.Node]bool) error {
	scale, zp := quantInits(g, v, q)
	vq, hi := g.UniqueName(v+"_q"), g.UniqueName(v+"_dq")
	r, rk := g.UniqueName(v+"_residual"), g.UniqueName(v+"_residual_scaled")
	kc := g.UniqueName(v + "_split_gain")
	cat, catq, catdq := g.UniqueName(v+"_split"), g.UniqueName(v+"_split_q"), g.UniqueName(v+"_split_dq")
	g.SetInitializer(graph.NewFloat32(kc, nil, []float32{float32(s.k)}))
	fromQuantized := false
	if prod := g.Producer(v); prod != nil && quantized[prod] {
		fromQuantized = true
	}
	for _, c := range g.Consumers(v) {
		if slices.Contains(s.convs, c) || (!fromQuantized && !quantized[c]) {
			continue
		}
		for i, in := range c.Inputs {
			if in == v {
				g.ReplaceInput(c, i, hi)
			}
		}
	}
	for _, c := range s.convs {
		g.ReplaceInput(c, 0, catdq)
	}
	concat := &graph.Node{Name: g.UniqueName(v + "_split_Concat"), OpType: "Concat", Inputs: []string{v, rk}, Outputs: []string{cat}}
	concat.SetAttrInt("axis", 1)
	for _, n := range []*graph.Node{
		{Name: g.UniqueName(v + "_QuantizeLinear"), OpType: "QuantizeLinear", Inputs: []string{v, scale, zp}, Outputs: []string{vq}},
		{Name: g.UniqueName(v + "_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{vq, scale, zp}, Outputs: []string{hi}},
		{Name: g.UniqueName(v + "_residual_Sub"), OpType: "Sub", Inputs: []string{v, hi}, Outputs: []string{r}},
		{Name: g.UniqueName(v + "_residual_Mul"), OpType: "Mul", Inputs: []string{r, kc}, Outputs: []string{rk}},
		concat,
		{Name: g.UniqueName(v + "_split_QuantizeLinear"), OpType: "QuantizeLinear", Inputs: []string{cat, scale, zp}, Outputs: []string{catq}},
		{Name: g.UniqueName(v + "_split_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{catq, scale, zp}, Outputs: []string{catdq}},
	} {
		g.AddNode(n)
	}
	return nil
}

// quantInits adds the scale and zero-point initializers of a per-tensor
// quantizer; the zero point's type (uint8 or int8) selects the grid.
func quantInits(g *graph.Graph, v string, q qdq.Params) (scale, zp string) {
	scale = g.UniqueName(v + "_scale")
	zp = g.UniqueName(v + "_zero_point")
	g.SetInitializer(graph.NewFloat32(scale, nil, []float32{q.Scale}))
	if q.QMin >= 0 {
		g.SetInitializer(graph.NewUint8(zp, nil, []uint8{uint8(q.ZeroPoint)}))
	} else {
		g.SetInitializer(graph.NewInt8(zp, nil, []int8{int8(q.ZeroPoint)}))
	}
	return scale, zp
}

// quantizeConvParams replaces a Conv's float weight and bias inputs with
// int8/int32 initializers behind DequantizeLinear. inQ is the grid of the
// tensor the Conv reads: ORT's fused int8 Conv takes the int32 bias to be
// on scale inQ.Scale × weight scale, whatever the bias's DequantizeLinear
// says.
func (p InsertQDQ) quantizeConvParams(g *graph.Graph, n *graph.Node, inQ qdq.Params) error {
	wt, ok := g.Const(input(n, 1))
	if !ok {
		return fmt.Errorf("weight %q is not a constant", input(n, 1))
	}
	w, err := wt.Float32()
	if err != nil {
		return fmt.Errorf("weight %q: %w", wt.Name, err)
	}
	outCh := int(wt.Dims[0])
	ps := p.WeightParams[n.Name]
	if ps == nil {
		bits := p.Weights.Bits
		if b, ok := p.WeightBits[n.Name]; ok {
			bits = b
		}
		if p.Plan.Wide[n] {
			bits = 8
		}
		ps, err = qdq.WeightParams(w, outCh, bits, p.Weights.PerChannel, p.Weights.Method)
		if err != nil {
			return fmt.Errorf("weight %q: %w", wt.Name, err)
		}
	}
	var bias []float32
	if name := input(n, 2); name != "" {
		bt, ok := g.Const(name)
		if !ok {
			return fmt.Errorf("bias %q is not a constant", name)
		}
		if bias, err = bt.Float32(); err != nil {
			return fmt.Errorf("bias %q: %w", name, err)
		}
		if _, err := qdq.AdjustWeightScalesForBias(bias, inQ.Scale, ps); err != nil {
			return fmt.Errorf("bias %q: %w", name, err)
		}
	}
	qw := make([]int8, len(w))
	if err := quantizeWeight(qw, w, ps); err != nil {
		return fmt.Errorf("weight %q: %w", wt.Name, err)
	}
	if c, ok := p.Centers[n.Name]; ok {
		if bias, err = centreBias(bias, w, qw, ps, c); err != nil {
			return fmt.Errorf("node %q: %w", n.Name, err)
		}
		if input(n, 2) == "" {
			n.Inputs = append(n.Inputs[:2], "")
		}
	}
	scales, base := setQuantizedWeight(g, n, wt, qw, ps, 0)
	if bias != nil {
		qb, bscales, err := qdq.QuantizeBias(bias, inQ.Scale, scales)
		if err != nil {
			return fmt.Errorf("bias %q: %w", input(n, 2), err)
		}
		bName := g.UniqueName(base + "_bias_quantized")
		g.SetInitializer(graph.NewInt32(bName, []int64{int64(len(qb))}, qb))
		n.Inputs[2] = dequantizeConst(g, bName, base+"_bias", bscales, nil, make([]int32, len(bscales)))
	}
	g.Invalidate()
	return nil
}

// quantizeMatMulWeight replaces a linear layer's constant float B [K, M]
// with int8 codes behind DequantizeLinear, per output column (axis 1) under
// WeightConfig.PerChannel: ORT 1.24's QLinearMatMul, MatMulIntegerToFloat
// and QGemm all fuse a per-column B scale (measured: the fused output
// equals the QDQ graph's at level basic), and a column is what one output
// feature sums over.
// The width is always 8 bits: srq's low-bit settings are defined on Convs.
// A MatMul of two activations has no constant and is left as it is.
func (p InsertQDQ) quantizeMatMulWeight(g *graph.Graph, n *graph.Node) error {
	wt, ok := g.Const(input(n, 1))
	if !ok {
		return nil
	}
	if len(wt.Dims) != 2 {
		return fmt.Errorf("weight %q has %d dimensions, want a matrix [K, M]", wt.Name, len(wt.Dims))
	}
	w, err := wt.Float32()
	if err != nil {
		return fmt.Errorf("weight %q: %w", wt.Name, err)
	}
	k, m := int(wt.Dims[0]), int(wt.Dims[1])
	// Columns as rows, the layout qdq.WeightParams reads channels in.
	wT := make([]float32, len(w))
	for i := range k {
		for j := range m {
			wT[j*k+i] = w[i*m+j]
		}
	}
	ps, err := qdq.WeightParams(wT, m, 8, p.Weights.PerChannel, p.Weights.Method)
	if err != nil {
		return fmt.Errorf("weight %q: %w", wt.Name, err)
	}
	qT := make([]int8, len(wT))
	if err := quantizeWeight(qT, wT, ps); err != nil {
		return fmt.Errorf("weight %q: %w", wt.Name, err)
	}
	qw := make([]int8, len(w))
	for i := range k {
		for j := range m {
			qw[i*m+j] = qT[j*k+i]
		}
	}
	setQuantizedWeight(g, n, wt, qw, ps, 1)
	g.Invalidate()
	return nil
}

// quantizeWeight writes w's codes on the grids ps into dst: one grid for
// the whole tensor, or one per channel (w's rows).
func quantizeWeight(dst []int8, w []float32, ps []qdq.Params) error {
	if len(ps) == 1 {
		return qdq.QuantizeSlice(dst, w, ps[0])
	}
	return qdq.QuantizePerChannel(dst, w, ps)
}

// setQuantizedWeight makes n read its weight wt (input 1) as the int8 codes
// qw behind a DequantizeLinear with ps's scales, per channel on axis when
// there is more than one, and returns the scales and the name its
// initializers are based on: the weight's, or n's when another node shares
// the weight.
func setQuantizedWeight(g *graph.Graph, n *graph.Node, wt *graph.Tensor, qw []int8, ps []qdq.Params, axis int64) ([]float32, string) {
	scales := make([]float32, len(ps))
	for i, q := range ps {
		scales[i] = q.Scale
	}
	base := wt.Name
	if g.Initializer(base) == nil || len(g.Consumers(base)) > 1 {
		base = n.Name + ".weight"
	}
	qName := g.UniqueName(base + "_quantized")
	g.SetInitializer(graph.NewInt8(qName, wt.Dims, qw))
	n.Inputs[1] = dequantizeConstAxis(g, qName, base, scales, make([]int8, len(scales)), nil, axis)
	return scales, base
}

// centreBias returns bias (nil: zeros) minus, per output channel, the
// weights' rounding error applied to the input's centre c (one value per
// input channel): Σ (DQ(qw) − w)·c over the channel's inputs and taps.
func centreBias(bias, w []float32, qw []int8, ps []qdq.Params, c []float32) ([]float32, error) {
	out := len(ps)
	if len(ps) == 1 {
		out = 0
	}
	per := len(w)
	if out > 0 {
		per = len(w) / out
	} else if bias != nil {
		out, per = len(bias), len(w)/len(bias)
	}
	if out == 0 || per%len(c) != 0 {
		return nil, fmt.Errorf("centre of %d channels does not fit weights of %d values", len(c), len(w))
	}
	taps := per / len(c)
	nb := make([]float32, out)
	copy(nb, bias)
	for o := range out {
		q := ps[0]
		if len(ps) > 1 {
			q = ps[o]
		}
		var acc float64
		for i := range per {
			k := o*per + i
			d := float64(q.Dequantize(int32(qw[k]))) - float64(w[k])
			acc += d * float64(c[i/taps])
		}
		nb[o] -= float32(acc)
	}
	return nb, nil
}

// dequantizeConst adds DequantizeLinear(q, scales, zero points) and returns
// its output. More than one scale means per-channel on axis 0.
func dequantizeConst(g *graph.Graph, q, base string, scales []float32, zp8 []int8, zp32 []int32) string {
	return dequantizeConstAxis(g, q, base, scales, zp8, zp32, 0)
}

// dequantizeConstAxis is dequantizeConst with the per-channel axis given
// (1: the columns of a MatMul's B).
func dequantizeConstAxis(g *graph.Graph, q, base string, scales []float32, zp8 []int8, zp32 []int32, axis int64) string {
	var dims []int64
	if len(scales) > 1 {
		dims = []int64{int64(len(scales))}
	}
	s := g.UniqueName(base + "_scale")
	z := g.UniqueName(base + "_zero_point")
	g.SetInitializer(graph.NewFloat32(s, dims, scales))
	if zp8 != nil {
		g.SetInitializer(graph.NewInt8(z, dims, zp8))
	} else {
		g.SetInitializer(graph.NewInt32(z, dims, zp32))
	}
	out := g.UniqueName(base + "_dequantized")
	dn := &graph.Node{Name: g.UniqueName(base + "_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{q, s, z}, Outputs: []string{out}}
	if len(scales) > 1 {
		dn.SetAttrInt("axis", axis)
	}
	g.AddNode(dn)
	return out
}

// shapeOfQuantized makes every Shape that reads a dequantized value read the
// quantized one instead: same shape, but ORT then never has to materialise
// the float tensor just to measure it.
func shapeOfQuantized(g *graph.Graph) {
	for _, n := range g.Nodes {
		if !isOp(n, "Shape") || len(n.Inputs) != 1 {
			continue
		}
		if dq := g.Producer(n.Inputs[0]); dq != nil && isOp(dq, "DequantizeLinear") {
			g.ReplaceInput(n, 0, dq.Inputs[0])
		}
	}
}
