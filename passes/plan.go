package passes

import (
	"fmt"
	"slices"
	"strings"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/internal/enum"
	"github.com/srquant/srq/onnx"
)

// FirstLast is the policy for the first and last Conv of an SR network,
// the layers the literature finds most sensitive.
type FirstLast string

const (
	FirstLast8    FirstLast = "8"    // first/last Convs at 8 bits whatever the other layers use
	FirstLastFP32 FirstLast = "fp32" // first/last Convs stay float
	FirstLastSame FirstLast = "same" // first/last Convs at the same bits as the others
)

// ParseFirstLast checks a --first-last value.
func ParseFirstLast(s string) (FirstLast, error) {
	return enum.Parse("first/last policy", s, FirstLast8, FirstLastFP32, FirstLastSame)
}

// Policy selects the layers to quantize.
type Policy struct {
	// Skip names nodes that stay float.
	Skip []string
	// FirstLast is the first/last Conv policy ("" means FirstLast8).
	FirstLast FirstLast
	// FloatOps lists operator types that stay float everywhere (e.g. Add).
	FloatOps []string
	// LongSkip, if set, is the float long-skip path PreciseLongSkip built:
	// its nodes stay float and its sum gets the two-part encoding.
	LongSkip *LongSkipPath
}

// Plan is the outcome of planning QDQ insertion on a graph: which nodes run
// quantized and which activation values need calibrated parameters. It is
// computed on the float graph, so its value names can be captured from the
// FP32 model in ONNX Runtime.
type Plan struct {
	// Nodes are the quantized nodes, in graph order.
	Nodes []*graph.Node
	// Values are the activation values whose ranges calibration must
	// provide, in graph order. Values that reuse another value's
	// parameters (outputs of data-movement ops) are not listed.
	Values []string
	// Shared maps a value to the value whose parameters it reuses.
	Shared map[string]string
	// ReluOf maps a quantized Conv to the Relu that its output quantizer
	// absorbs: the Relu's output is quantized with a range starting at 0
	// (zero point 0), so the saturating quantizer is the Relu.
	ReluOf map[*graph.Node]*graph.Node
	// BiasOf maps a quantized linear-layer MatMul (constant B) to the Add
	// of a constant bias that is its only consumer: the output quantizer
	// sits after the Add, so ORT runs DQ → MatMul → Add → Q as
	// com.microsoft MatMulIntegerToFloat → float Add → Q (QGemm where the
	// token count is static and ORT can make the MatMul a Gemm) instead of
	// QLinearMatMul → DQ → Add → Q: one conversion less per layer. The Add
	// stays in the graph, float in the QDQ model's meaning.
	BiasOf map[*graph.Node]*graph.Node
	// FloatOut marks the quantized MatMuls whose output stays float (see
	// floatMatMulOutputs).
	FloatOut map[*graph.Node]bool
	// First and Last are the first and last Convs (with any 1x1 Convs
	// between them and the graph input/output), as FirstLast sees them.
	First, Last []*graph.Node
	// Skipped lists the quantizable nodes that stay float by policy, with
	// the reason.
	Skipped map[*graph.Node]string
	// Wide holds the quantized Convs kept at 8 bits whatever the setting's
	// widths (First and Last under FirstLast8): they read their input on
	// its 8-bit carrier and have 8-bit weights.
	Wide map[*graph.Node]bool
	// Split lists values (in Values) that quantized Convs read in a
	// two-part int8 encoding rather than one Q→DQ pair: with v̂ = DQ(Q(v))
	// and r = v − v̂, the Conv reads DQ(Q(Concat(v, k·r))) on one grid and
	// its weight becomes [W, W/k] along the input channels, so
	// W·v̂ + (W/k)·(k·r) = W·v up to 1/k of the 8-bit rounding. It doubles
	// that Conv's cost; srq uses it where one tensor's precision decides
	// the output (the long-skip sum, see LongSkip).
	Split []string
}

// Quantized reports whether n is in the plan.
func (p *Plan) Quantized(n *graph.Node) bool { return slices.Contains(p.Nodes, n) }

// Convs counts the Convs of the graph and how many the plan quantizes.
func (p *Plan) Convs(g *graph.Graph) (quantized, total int) {
	for _, n := range g.Nodes {
		if isOp(n, "Conv") {
			total++
			if p.Quantized(n) {
				quantized++
			}
		}
	}
	return quantized, total
}

// Reasons floatReason gives.
const (
	floatOp = "float op type"
	skipped = "--skip"
)

// floatReason says why pol keeps node n float whatever it computes, or ""
// when pol lets it run quantized: its operator type is in FloatOps, its
// name in Skip, it is on the precise long skip's float path, or it is a
// first or last Conv (edge) under FirstLastFP32. PlanQDQ and the rewrites
// that only pay in int8 (WidenImageConv) ask the same question.
func (pol Policy) floatReason(n *graph.Node, edge bool) string {
	switch {
	case slices.Contains(pol.FloatOps, n.OpType):
		return floatOp
	case slices.Contains(pol.Skip, n.Name):
		return skipped
	case pol.LongSkip != nil && slices.Contains(pol.LongSkip.Float, n.Name):
		return "long skip kept precise"
	case isOp(n, "Conv") && edge && pol.FirstLast == FirstLastFP32:
		return "first/last conv kept float"
	}
	return ""
}

// KeepsFloat reports whether pol keeps n float whatever it computes; edge
// says whether n is one of the first or last Convs (Edges).
func (pol Policy) KeepsFloat(n *graph.Node, edge bool) bool { return pol.floatReason(n, edge) != "" }

// Edges returns g's first and last Convs as PlanQDQ sees them (a mean
// shift 1x1 Conv and the head are both first).
func Edges(g *graph.Graph) (first, last []*graph.Node) { return firstLast(g) }

// PlanQDQ decides which nodes of g run quantized under policy pol.
func PlanQDQ(g *graph.Graph, pol Policy) (*Plan, error) {
	p := &Plan{Shared: map[string]string{}, ReluOf: map[*graph.Node]*graph.Node{}, BiasOf: map[*graph.Node]*graph.Node{}, FloatOut: map[*graph.Node]bool{}, Skipped: map[*graph.Node]string{}, Wide: map[*graph.Node]bool{}}
	found := map[string]bool{}
	p.First, p.Last = firstLast(g)
	edge := map[*graph.Node]bool{}
	for _, n := range append(slices.Clone(p.First), p.Last...) {
		edge[n] = true
	}
	shapes := shapeValues(g)
	types := g.ElemTypes()
	for _, n := range g.Nodes {
		r, ok := ruleFor(n)
		if !ok || allIn(n.Outputs, shapes) || !floatIO(g, n, r, types) {
			continue
		}
		switch why := pol.floatReason(n, edge[n]); why {
		case "":
		case floatOp:
			continue
		default:
			if why == skipped {
				found[n.Name] = true
			}
			p.Skipped[n] = why
			continue
		}
		if (isOp(n, "Add") || isOp(n, "Mul")) && len(actInputs(g, n, r)) < len(n.Inputs) {
			// A constant operand: ORT's QLinearAdd/QLinearMul take two
			// quantized activations, so this stays float (e.g. the
			// padding arithmetic of FoldInputShift).
			continue
		}
		if isOp(n, "Conv") && r.weight >= 0 {
			if _, ok := g.Const(input(n, r.weight)); !ok {
				p.Skipped[n] = "weight is not a constant"
				continue
			}
		}
		if (isOp(n, "Slice") || isOp(n, "Gather")) && anyGraphOutput(g, n.Outputs) {
			// The image Slice of WidenImageConv: the model's output is
			// float anyway, and a classic CNN's graph stays as it was.
			continue
		}
		if isOp(n, "Add") && feedsNorm(g, n.Outputs[0]) {
			p.Skipped[n] = "residual stream of a normalization kept float"
			continue
		}
		if isOp(n, "Mul") && isGeluMul(g, n) {
			p.Skipped[n] = "GELU kept float"
			continue
		}
		if isOp(n, "MatMul") {
			if why := matMulFloatReason(g, n); why != "" {
				p.Skipped[n] = why
				continue
			}
		}
		if isOp(n, "Conv") && edge[n] && (pol.FirstLast == "" || pol.FirstLast == FirstLast8) {
			p.Wide[n] = true
		}
		p.Nodes = append(p.Nodes, n)
	}
	var missing []string
	for _, s := range pol.Skip {
		if !found[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("--skip: no quantizable node named %s", strings.Join(missing, ", "))
	}
	p.dropIslands(g)
	p.absorbRelus(g)
	p.absorbBiases(g)
	p.floatConcats(g)
	p.floatMatMulOutputs(g)
	p.collectValues(g)
	if pol.LongSkip != nil && slices.Contains(p.Values, pol.LongSkip.Sum) {
		p.Split = []string{pol.LongSkip.Sum}
	}
	return p, nil
}

// dropIslands keeps only the planned nodes connected, through activation
// tensors between planned nodes, to one that computes (a Conv, MatMul,
// Add, Mul, Sigmoid...: an int8 kernel). Data movement alone between float
// ops (the Transposes and Reshapes between a window transformer's
// LayerNorms and Softmax, which stay float) would only gain a Q → DQ
// pair on each side — rounding where the float graph had none, and two
// conversions for ORT to run — while a DepthToSpace between int8 Convs
// keeps the chain int8. Islands of computing ops stay: IMDN's contrast
// attention runs its Sub and Mul on uint8 faster than in float (2.6x
// against 2.3x over FP32 without them, Set5 −0.189 against −0.197 dB).
func (p *Plan) dropIslands(g *graph.Graph) {
	planned := map[*graph.Node]bool{}
	for _, n := range p.Nodes {
		planned[n] = true
	}
	parent := map[*graph.Node]*graph.Node{}
	var find func(*graph.Node) *graph.Node
	find = func(n *graph.Node) *graph.Node {
		for parent[n] != n {
			parent[n] = parent[parent[n]]
			n = parent[n]
		}
		return n
	}
	for _, n := range p.Nodes {
		parent[n] = n
	}
	for _, n := range p.Nodes {
		r, _ := ruleFor(n)
		for _, v := range actInputs(g, n, r) {
			if q := g.Producer(v); q != nil && planned[q] {
				parent[find(q)] = find(n)
			}
		}
	}
	anchored := map[*graph.Node]bool{}
	for _, n := range p.Nodes {
		if r, _ := ruleFor(n); !r.passThrough {
			anchored[find(n)] = true
		}
	}
	p.Nodes = slices.DeleteFunc(p.Nodes, func(n *graph.Node) bool { return !anchored[find(n)] })
}

// absorbRelus pairs each quantized Conv whose only consumer is a Relu with
// that Relu.
func (p *Plan) absorbRelus(g *graph.Graph) {
	for _, n := range p.Nodes {
		if !isOp(n, "Conv") || g.IsGraphOutput(n.Outputs[0]) {
			continue
		}
		cs := g.Consumers(n.Outputs[0])
		if len(cs) == 1 && isOp(cs[0], "Relu") && p.Quantized(cs[0]) {
			p.ReluOf[n] = cs[0]
		}
	}
	absorbed := map[*graph.Node]bool{}
	for _, r := range p.ReluOf {
		absorbed[r] = true
	}
	p.Nodes = slices.DeleteFunc(p.Nodes, func(n *graph.Node) bool { return absorbed[n] })
}

// matMulFloatReason says why MatMul n cannot run on ORT's int8 MatMul
// kernels as srq writes it, or "" when it can: a constant operand must be
// B (input 1), a float matrix [K, M] that srq quantizes per column. A
// constant A, or a constant B of another rank (a batched weight), is left
// float rather than given a layout the fused kernels were not measured on.
func matMulFloatReason(g *graph.Graph, n *graph.Node) string {
	if len(n.Inputs) != 2 {
		return "MatMul without two inputs"
	}
	if _, ok := g.Const(n.Inputs[0]); ok {
		return "MatMul with a constant first input"
	}
	if w, ok := g.Const(n.Inputs[1]); ok && (len(w.Dims) != 2 || w.DType != onnx.TensorProto_FLOAT) {
		return "MatMul weight is not a float matrix"
	}
	return ""
}

// absorbBiases pairs each quantized linear-layer MatMul with the Add of a
// constant bias [M] that is its only consumer (see Plan.BiasOf).
func (p *Plan) absorbBiases(g *graph.Graph) {
	for _, n := range p.Nodes {
		if !isOp(n, "MatMul") || g.IsGraphOutput(n.Outputs[0]) {
			continue
		}
		w, ok := g.Const(n.Inputs[1])
		if !ok {
			continue
		}
		cs := g.Consumers(n.Outputs[0])
		if len(cs) != 1 || !isOp(cs[0], "Add") || len(cs[0].Inputs) != 2 {
			continue
		}
		add := cs[0]
		other := add.Inputs[0]
		if other == n.Outputs[0] {
			other = add.Inputs[1]
		}
		b, ok := g.Const(other)
		if !ok || other == n.Outputs[0] || len(b.Dims) != 1 || b.Dims[0] != w.Dims[1] || b.DType != onnx.TensorProto_FLOAT {
			continue
		}
		p.BiasOf[n] = add
	}
}

// floatMatMulOutputs marks the quantized MatMuls whose output (OutputOf)
// no quantized node reads: Q·Kᵀ before the float Softmax, a linear layer
// before a float GELU or LayerNorm. Their output stays float, and ORT runs
// DQ → MatMul as com.microsoft MatMulIntegerToFloat (int8 product, float
// result) instead of QLinearMatMul → DequantizeLinear: one conversion of
// the output less, and no rounding of attention logits before Softmax.
func (p *Plan) floatMatMulOutputs(g *graph.Graph) {
	planned := map[*graph.Node]bool{}
	for _, n := range p.Nodes {
		planned[n] = true
	}
	for _, n := range p.Nodes {
		if !isOp(n, "MatMul") {
			continue
		}
		if !readByPlanned(g, p.OutputOf(n), planned) {
			p.FloatOut[n] = true
			delete(p.BiasOf, n)
		}
	}
}

// floatConcats takes out of the plan every Concat whose output no
// quantized node reads: quantized, its parts would be requantized onto one
// grid only to be dequantized for a float reader, while in float each part
// keeps its own grid (the runs of a Conv's output channels that
// SplitConvOutputs made, on their way to a float residual Add).
func (p *Plan) floatConcats(g *graph.Graph) {
	for changed := true; changed; {
		changed = false
		planned := map[*graph.Node]bool{}
		for _, n := range p.Nodes {
			planned[n] = true
		}
		p.Nodes = slices.DeleteFunc(p.Nodes, func(n *graph.Node) bool {
			if !isOp(n, "Concat") || readByPlanned(g, n.Outputs[0], planned) {
				return false
			}
			changed = true
			return true
		})
	}
}

// readByPlanned reports whether a planned node reads v as an activation
// input (one it would dequantize).
func readByPlanned(g *graph.Graph, v string, planned map[*graph.Node]bool) bool {
	for _, c := range g.Consumers(v) {
		if r, ok := ruleFor(c); ok && planned[c] && slices.Contains(actInputs(g, c, r), v) {
			return true
		}
	}
	return false
}

// isGeluMul reports whether Mul n is the x·(1 + erf(x/√2)) product of an
// exported GELU (Div → Erf → Add → Mul → Mul). It stays float: ORT then
// fuses the chain into one BiasGelu with the linear layer's bias, while a
// QLinearMul needs the Erf branch quantized and x dequantized for it. On
// craft_x4 (Set5, 128², same session) the float GELU ran 1.46x over FP32
// against 1.34x with the product quantized, at the same PSNR (−0.58 dB).
func isGeluMul(g *graph.Graph, n *graph.Node) bool {
	for _, in := range n.Inputs {
		a := g.Producer(in)
		if a == nil || !isOp(a, "Add") {
			continue
		}
		for _, ai := range a.Inputs {
			if e := g.Producer(ai); e != nil && isOp(e, "Erf") {
				return true
			}
		}
	}
	return false
}

// feedsNorm reports whether a normalization reads v: a LayerNormalization,
// or the x − mean(x) of one spelled out in elementwise ops (ReduceMean of v
// and a Sub of that mean from v, as CRAFT's channel norms are exported).
// The Add that writes such a value is a transformer's residual stream and
// stays float: the norm's input is wide (outlier channels) and the norm
// divides by its spread, so an 8-bit grid over the whole range leaves the
// normalised features few levels, while ORT runs the norm in float anyway.
// On craft_x4 (Set5, 128², W8A8) these Adds in float lost 0.35 dB against
// 0.58 with them int8 (0.54 keeping only the LayerNormalization readers
// float), and all Adds float (--float-ops Add) 0.34.
func feedsNorm(g *graph.Graph, v string) bool {
	for _, c := range g.Consumers(v) {
		if isOp(c, "LayerNormalization") && c.Inputs[0] == v {
			return true
		}
		if !isOp(c, "ReduceMean") || c.Inputs[0] != v || !channelAxis(g, c) {
			continue
		}
		for _, sub := range g.Consumers(c.Outputs[0]) {
			if isOp(sub, "Sub") && len(sub.Inputs) == 2 && sub.Inputs[0] == v && sub.Inputs[1] == c.Outputs[0] {
				return true
			}
		}
	}
	return false
}

// NormReads reports whether a normalization reads v, directly or as a
// term of the residual sum it reads (an Add whose output feeds a norm):
// the norm divides by the spread of what it reads, so each feature's
// rounding there counts relative to that spread, not to the tensor's
// range.
func NormReads(g *graph.Graph, v string) bool {
	if feedsNorm(g, v) {
		return true
	}
	for _, c := range g.Consumers(v) {
		if isOp(c, "Add") && feedsNorm(g, c.Outputs[0]) {
			return true
		}
	}
	return false
}

// channelAxis reports whether ReduceMean r averages over one axis, 1 (the
// channels of NCHW) or -1 (the features of tokens): a normalization's mean,
// not a spatial mean such as IMDN's contrast.
func channelAxis(g *graph.Graph, r *graph.Node) bool {
	axes := r.AttrInts("axes")
	if len(r.Inputs) > 1 && r.Inputs[1] != "" {
		t, ok := g.Const(r.Inputs[1])
		if !ok {
			return false
		}
		v, err := t.Int64()
		if err != nil {
			return false
		}
		axes = v
	}
	return len(axes) == 1 && (axes[0] == 1 || axes[0] == -1)
}

// anyGraphOutput reports whether one of vs is a graph output.
func anyGraphOutput(g *graph.Graph, vs []string) bool {
	for _, v := range vs {
		if g.IsGraphOutput(v) {
			return true
		}
	}
	return false
}

// collectValues lists the activation values around quantized nodes.
func (p *Plan) collectValues(g *graph.Graph) {
	seen := map[string]bool{}
	add := func(v string) {
		if !seen[v] {
			seen[v] = true
			p.Values = append(p.Values, v)
		}
	}
	for _, n := range p.Nodes {
		r, _ := ruleFor(n)
		for _, v := range actInputs(g, n, r) {
			if _, shared := p.Shared[v]; !shared {
				add(v)
			}
		}
		if r.passThrough {
			in := actInputs(g, n, r)
			if len(in) == 1 {
				src := in[0]
				if s, ok := p.Shared[src]; ok {
					src = s
				}
				for _, out := range p.OutputsOf(n) {
					p.Shared[out] = src
				}
				continue
			}
		}
		if !p.FloatOut[n] {
			add(p.OutputOf(n))
		}
	}
	// A value listed before it became shared (a pass-through output read by
	// an earlier node in the list) is not calibrated on its own.
	p.Values = slices.DeleteFunc(p.Values, func(v string) bool { _, ok := p.Shared[v]; return ok })
}

// OutputOf returns the value a quantized node's output quantizer sits on:
// the absorbed Relu's output for a Conv+Relu pair, the bias Add's output
// for a linear layer (BiasOf), else the node's (first) output.
func (p *Plan) OutputOf(n *graph.Node) string {
	if r, ok := p.ReluOf[n]; ok {
		return r.Outputs[0]
	}
	if a, ok := p.BiasOf[n]; ok {
		return a.Outputs[0]
	}
	return n.Outputs[0]
}

// OutputsOf returns every value a quantized node's output quantizers sit
// on: OutputOf, and each further output of a data-movement node with
// several (Split).
func (p *Plan) OutputsOf(n *graph.Node) []string {
	if _, ok := p.ReluOf[n]; ok || len(n.Outputs) == 1 {
		return []string{p.OutputOf(n)}
	}
	var out []string
	for _, v := range n.Outputs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// firstLast finds the first and last spatial Convs (kernel larger than 1x1)
// in graph order, together with the 1x1 Convs between them and the graph
// input or output (mean-shift convs), which belong to the same stage.
func firstLast(g *graph.Graph) (first, last []*graph.Node) {
	var convs []*graph.Node
	for _, n := range g.Nodes {
		if isOp(n, "Conv") {
			convs = append(convs, n)
		}
	}
	if len(convs) == 0 {
		return nil, nil
	}
	i := slices.IndexFunc(convs, func(n *graph.Node) bool { return !isPointwiseConv(n) })
	if i < 0 {
		return convs[:1], convs[len(convs)-1:]
	}
	j := len(convs) - 1
	for j > 0 && isPointwiseConv(convs[j]) {
		j--
	}
	return slices.Clone(convs[:i+1]), slices.Clone(convs[j:])
}

// shapeInputs lists, per operator, the inputs that are shapes, sizes or
// indices rather than data.
var shapeInputs = map[string][]int{
	"Reshape": {1}, "Expand": {1}, "Tile": {1}, "ConstantOfShape": {0},
	"Slice": {1, 2, 3, 4}, "Resize": {1, 2, 3}, "Upsample": {1}, "Gather": {1},
	"Squeeze": {1}, "Unsqueeze": {1}, "Pad": {1, 3}, "ReduceMean": {1}, "ReduceSum": {1},
}

// shapeValues returns the values that only feed shape-like inputs, directly
// or through arithmetic on them (Shape → Slice → Mul → Concat → Reshape):
// integer tensors that must never be quantized. Shape itself ends the walk,
// since its input is data.
func shapeValues(g *graph.Graph) map[string]bool {
	s := map[string]bool{}
	for _, n := range g.Nodes {
		for _, i := range shapeInputs[n.OpType] {
			if v := input(n, i); v != "" {
				s[v] = true
			}
		}
	}
	for changed := true; changed; {
		changed = false
		for i := len(g.Nodes) - 1; i >= 0; i-- {
			n := g.Nodes[i]
			if n.OpType == "Shape" || !allIn(n.Outputs, s) {
				continue
			}
			for _, v := range n.Inputs {
				if v != "" && !s[v] && onlyShapeUses(g, v, s) {
					s[v], changed = true, true
				}
			}
		}
	}
	return s
}

// onlyShapeUses reports whether every consumer of v uses it as a shape.
func onlyShapeUses(g *graph.Graph, v string, s map[string]bool) bool {
	if g.IsGraphOutput(v) {
		return false
	}
	for _, c := range g.Consumers(v) {
		if !allIn(c.Outputs, s) {
			return false
		}
	}
	return true
}

// floatIO reports whether n computes on float tensors: its outputs and
// activation inputs are float. Shape arithmetic on int64 or bool tensors
// (Shape → Gather → Mod → Add → Pad in a PyTorch export of a window
// transformer) uses the same op types as the image path but is never
// quantized.
func floatIO(g *graph.Graph, n *graph.Node, r opRule, types map[string]onnx.TensorProto_DataType) bool {
	for _, v := range n.Outputs {
		if v != "" && !graph.IsFloat(types[v]) {
			return false
		}
	}
	for _, v := range actInputs(g, n, r) {
		if !graph.IsFloat(types[v]) {
			return false
		}
	}
	return true
}

func allIn(vs []string, s map[string]bool) bool {
	for _, v := range vs {
		if !s[v] {
			return false
		}
	}
	return len(vs) > 0
}
