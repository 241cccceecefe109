package passes

import "github.com/srquant/srq/graph"

// opRule says how one operator type takes part in an int8 chain, in the
// spirit of ORT's quantizer registry: which inputs are activations that get
// a Q→DQ pair, where the weight and bias are, and whether the output simply
// reuses the input's quantization (data movement: ORT drops the Q/DQ pair
// and runs the op on uint8 directly).
type opRule struct {
	// acts lists the activation inputs; nil means all inputs.
	acts []int
	// weight and bias are input indexes (-1: none).
	weight, bias int
	// passThrough: the output is quantized with its input's parameters.
	passThrough bool
}

// rules lists the operators srq quantizes, chosen from what ORT's CPU
// provider fuses into int8 kernels (QLinearConv, QLinearMatMul, QGemm,
// QLinearAdd, QLinearMul, QLinearLeakyRelu, QLinearSigmoid,
// QLinearGlobalAveragePool, QLinearConcat) or runs directly on uint8
// (DepthToSpace, Resize, MaxPool, Reshape, Transpose...).
var rules = map[string]opRule{
	"Conv": {acts: []int{0}, weight: 1, bias: 2},
	// MatMul: a linear layer (constant B, int8 per output column) or an
	// activation product (Q·Kᵀ, attention·V: both inputs uint8). ORT 1.24
	// fuses DQ → MatMul → Q into QLinearMatMul (per-column B included) and
	// DQ → MatMul with a float output into com.microsoft
	// MatMulIntegerToFloat; srq leaves the output float where no int8
	// op reads it (Plan.FloatOut) and quantizes a linear layer after its
	// bias Add (Plan.BiasOf).
	"MatMul":            {weight: 1, bias: -1},
	"Add":               {weight: -1, bias: -1},
	"Mul":               {weight: -1, bias: -1},
	"Concat":            {weight: -1, bias: -1},
	"LeakyRelu":         {acts: []int{0}, weight: -1, bias: -1},
	"Sigmoid":           {acts: []int{0}, weight: -1, bias: -1},
	"GlobalAveragePool": {acts: []int{0}, weight: -1, bias: -1},
	"AveragePool":       {acts: []int{0}, weight: -1, bias: -1},
	"Relu":              {acts: []int{0}, weight: -1, bias: -1},
	"DepthToSpace":      {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	"SpaceToDepth":      {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	"Resize":            {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	"MaxPool":           {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	"Reshape":           {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	"Transpose":         {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	"Flatten":           {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	"Squeeze":           {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	"Unsqueeze":         {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	// Split: each part keeps its input's grid, so ORT splits the uint8
	// codes (IMDN's channel distillation) instead of dequantizing, splitting
	// in float and quantizing every part again on its own grid.
	"Split": {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	// Slice and Gather (on data, not shapes): a transformer cuts q, k and v
	// out of one linear layer's output and its windows out of the image
	// with them. ORT 1.24 drops DQ → Slice/Gather → Q with equal
	// parameters and cuts the uint8 codes.
	"Slice":  {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
	"Gather": {acts: []int{0}, weight: -1, bias: -1, passThrough: true},
}

// ruleFor returns the rule for n, if srq quantizes its op type.
func ruleFor(n *graph.Node) (opRule, bool) {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return opRule{}, false
	}
	r, ok := rules[n.OpType]
	return r, ok
}

// actInputs lists n's activation inputs under rule r: non-empty inputs that
// are not constants.
func actInputs(g *graph.Graph, n *graph.Node, r opRule) []string {
	idx := r.acts
	if idx == nil {
		idx = make([]int, len(n.Inputs))
		for i := range idx {
			idx[i] = i
		}
	}
	var out []string
	for _, i := range idx {
		name := input(n, i)
		if name == "" {
			continue
		}
		if _, ok := g.Const(name); ok {
			continue
		}
		out = append(out, name)
	}
	return out
}
