package kernelcheck

import (
	"fmt"
	"slices"
	"strings"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// group is one candidate for a fused kernel: float operators connected by
// float tensors, read through DequantizeLinear and written through
// QuantizeLinear. ORT's QDQ fusion replaces exactly such a region (DQ →
// Conv → Q, DQ → Add → Q, DQ → Sigmoid → Q ...) with one int8 kernel, so a
// group is the unit whose two forms must agree.
type group struct {
	main    *graph.Node   // the node that names the group in messages
	nodes   []*graph.Node // the members, in graph order
	members map[*graph.Node]bool
	// inputs are the float values the members read from outside:
	// activation DQ outputs (rebuilt as Q → DQ in isolation) and graph
	// inputs.
	inputs []string
	// support are the other producers the members need: constants
	// (weight DQs, Constant nodes) and shape arithmetic on activations.
	// Their values do not depend on the kernels under test, so the
	// isolation model computes them once for every group.
	support []*graph.Node
	// supportInputs are the float values the support nodes read (a
	// Shape of an activation): fed from the reference run as they are.
	supportInputs []string
	// codes are member outputs read by a QuantizeLinear: compared in that
	// quantizer's codes. floats are member outputs that leave as floats
	// (graph outputs): compared with a relative tolerance.
	codes  []*graph.Node // the Q nodes
	floats []string
}

// analysis is what groups need to know about the whole graph.
type analysis struct {
	g      *graph.Graph
	types  map[string]onnx.TensorProto_DataType
	static map[string]bool // constant: initializers and what only they feed
}

func analyse(g *graph.Graph) *analysis {
	a := &analysis{g: g, types: g.ElemTypes(), static: map[string]bool{}}
	for _, t := range g.Initializers() {
		if !g.IsGraphInput(t.Name) {
			a.static[t.Name] = true
		}
	}
	for _, n := range g.Nodes {
		all := true
		for _, in := range n.Inputs {
			if in != "" && !a.static[in] {
				all = false
			}
		}
		if all {
			for _, out := range n.Outputs {
				a.static[out] = true
			}
		}
	}
	return a
}

func isQuant(n *graph.Node) bool {
	return n.OpType == "QuantizeLinear" || n.OpType == "DequantizeLinear"
}

// activationDQ reports whether v is the output of a DequantizeLinear of
// non-constant codes: a boundary where the isolated group reads codes.
func (a *analysis) activationDQ(v string) *graph.Node {
	p := a.g.Producer(v)
	if p == nil || p.OpType != "DequantizeLinear" || a.static[v] {
		return nil
	}
	return p
}

// compute reports whether n computes float activations: not a quantizer,
// not a constant subgraph, and not shape arithmetic (a Shape of an
// activation writes int64; the groups that need it compute it as support).
func (a *analysis) compute(n *graph.Node) bool {
	if isQuant(n) {
		return false
	}
	float := false
	for _, out := range n.Outputs {
		if out != "" && a.static[out] {
			return false
		}
		float = float || (out != "" && graph.IsFloat(a.types[out]))
	}
	return float
}

// groups partitions the compute nodes of g into groups: union over float
// tensors one compute node writes and another reads. Each group then takes
// the constant producers (weight DQs, Constant nodes) and the non-float
// shape arithmetic it reads, so that it runs on its own.
func (a *analysis) groups() []*group {
	g := a.g
	parent := map[*graph.Node]*graph.Node{}
	var find func(n *graph.Node) *graph.Node
	find = func(n *graph.Node) *graph.Node {
		for parent[n] != n {
			parent[n] = parent[parent[n]]
			n = parent[n]
		}
		return n
	}
	var computes []*graph.Node
	for _, n := range g.Nodes {
		if a.compute(n) {
			parent[n] = n
			computes = append(computes, n)
		}
	}
	for _, n := range computes {
		for _, in := range n.Inputs {
			if in == "" || !graph.IsFloat(a.types[in]) {
				continue
			}
			if p := g.Producer(in); p != nil && parent[p] != nil {
				parent[find(p)] = find(n)
			}
		}
	}
	byRoot := map[*graph.Node]*group{}
	var out []*group
	for _, n := range computes {
		r := find(n)
		gr := byRoot[r]
		if gr == nil {
			gr = &group{members: map[*graph.Node]bool{}}
			byRoot[r] = gr
			out = append(out, gr)
		}
		gr.members[n] = true
	}
	for _, gr := range out {
		a.complete(gr)
	}
	return slices.DeleteFunc(out, func(gr *group) bool {
		return len(gr.inputs) == 0 || len(gr.codes)+len(gr.floats) == 0 || gr.movesOnly()
	})
}

// movement lists the ops that only move values: with Q and DQ around them
// ORT runs them on the uint8 codes, no arithmetic and no kernel to get
// wrong (window transformers have hundreds of them).
var movement = map[string]bool{"Transpose": true, "Reshape": true, "Slice": true, "Squeeze": true, "Unsqueeze": true,
	"Flatten": true, "Split": true, "Gather": true, "Identity": true, "Shape": true, "Expand": true, "Tile": true}

// movesOnly reports whether every member of gr only moves values.
func (gr *group) movesOnly() bool {
	for n := range gr.members {
		if !movement[n.OpType] {
			return false
		}
	}
	return true
}

// complete finds gr's inputs, the support nodes it needs (neither its
// inputs nor its members: constants, weight DQs, shape arithmetic), its
// outputs and its name.
func (a *analysis) complete(gr *group) {
	g := a.g
	support := map[*graph.Node]bool{}
	seenIn, seenSup := map[string]bool{}, map[string]bool{}
	var need func(v string, member bool)
	need = func(v string, member bool) {
		if v == "" || g.Initializer(v) != nil && !g.IsGraphInput(v) {
			return
		}
		p := g.Producer(v)
		if p != nil && (support[p] || (member && gr.members[p])) {
			return
		}
		// Support is computed once for all groups, from the reference's
		// values: a support node reads a member's output as an input.
		if p == nil || a.activationDQ(v) != nil || (graph.IsFloat(a.types[v]) && !a.static[v]) || gr.members[p] {
			switch {
			case member && !seenIn[v]:
				seenIn[v] = true
				gr.inputs = append(gr.inputs, v)
			case !member && !seenSup[v]:
				seenSup[v] = true
				gr.supportInputs = append(gr.supportInputs, v)
			}
			return
		}
		support[p] = true
		for _, pin := range p.Inputs {
			need(pin, false)
		}
	}
	for _, n := range g.Nodes {
		if gr.members[n] {
			gr.nodes = append(gr.nodes, n)
			for _, v := range n.Inputs {
				need(v, true)
			}
		}
	}
	// The rebuilt input quantizers and the output quantizers read their
	// scales and zero points too.
	for _, v := range gr.inputs {
		if dq := a.activationDQ(v); dq != nil {
			need(input(dq, 1), false)
			need(input(dq, 2), false)
		}
	}
	for _, n := range gr.nodes {
		if gr.main == nil || weight(n) > weight(gr.main) {
			gr.main = n
		}
		for _, v := range n.Outputs {
			if v == "" || !graph.IsFloat(a.types[v]) {
				continue
			}
			for _, c := range g.Consumers(v) {
				if c.OpType == "QuantizeLinear" && c.Inputs[0] == v {
					gr.codes = append(gr.codes, c)
					need(input(c, 1), false)
					need(input(c, 2), false)
				}
			}
			if g.IsGraphOutput(v) {
				gr.floats = append(gr.floats, v)
			}
		}
	}
	for _, n := range g.Nodes {
		if support[n] {
			gr.support = append(gr.support, n)
		}
	}
}

// weight ranks the ops that name a group: the one doing the arithmetic a
// user recognises (a Conv rather than the Relu fused after it).
func weight(n *graph.Node) int {
	if n == nil {
		return -1
	}
	switch n.OpType {
	case "Conv", "ConvTranspose", "MatMul", "Gemm":
		return 3
	case "Add", "Mul", "Sub", "Concat", "Sigmoid", "LeakyRelu", "PRelu", "GlobalAveragePool", "Resize", "MaxPool", "AveragePool":
		return 2
	}
	return 1
}

// nodeName names a node in messages: its name, or its type and first output.
func nodeName(n *graph.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return n.OpType + "→" + n.Outputs[0]
}

// ops lists the op types of a group's members, in graph order.
func (gr *group) ops() string {
	var ops []string
	for _, n := range gr.nodes {
		ops = append(ops, n.OpType)
	}
	return strings.Join(ops, "+")
}

// isolation is the model that runs every group on its own: group k's values
// are renamed "k<k>/<name>", its inputs become graph inputs, each rebuilt
// through the same Q → DQ the full model read them through (exact: the
// captured DQ output re-quantizes to the same codes), and each compared
// output leaves through its Q and a DQ.
type isolation struct {
	model  *onnx.ModelProto
	inputs []isoInput // graph inputs, in order
	// outputs[k] are group k's outputs, in model output order.
	outputs [][]isoOutput
}

type isoInput struct {
	name  string // graph input name
	value string // the full model's value it is fed from
}

type isoOutput struct {
	name  string
	codes bool    // compared in codes of a Q whose scale is scale
	scale float32 // for codes
}

// isolate builds the isolation model of groups. The support nodes of all
// groups are added once under their own names, their float inputs fed as
// they are; each group's members and inputs are renamed under its prefix.
func (a *analysis) isolate(groups []*group) (*isolation, error) {
	src := a.g
	iso := graph.New(src.Name+"_kernelcheck", src.Opsets)
	iso.IRVersion = src.IRVersion
	res := &isolation{outputs: make([][]isoOutput, len(groups))}
	for _, t := range src.Initializers() {
		if !src.IsGraphInput(t.Name) {
			iso.SetInitializer(t)
		}
	}
	support, fed := map[*graph.Node]bool{}, map[string]bool{}
	for _, gr := range groups {
		for _, n := range gr.support {
			support[n] = true
		}
		for _, v := range gr.supportInputs {
			if !fed[v] {
				fed[v] = true
				iso.Inputs = append(iso.Inputs, &graph.Value{Name: v, DType: onnx.TensorProto_FLOAT})
				res.inputs = append(res.inputs, isoInput{name: v, value: v})
			}
		}
	}
	for _, n := range src.Nodes {
		if support[n] {
			iso.AddNode(&graph.Node{Name: n.Name, OpType: n.OpType, Domain: n.Domain, Attrs: n.Attrs, Inputs: n.Inputs, Outputs: n.Outputs})
		}
	}
	for k, gr := range groups {
		prefix := fmt.Sprintf("k%d/", k)
		own := map[string]bool{}
		for _, n := range gr.nodes {
			for _, v := range n.Outputs {
				own[v] = true
			}
		}
		for _, v := range gr.inputs {
			own[v] = true
		}
		name := func(v string) string {
			if v == "" || !own[v] {
				return v // initializer, support value or omitted
			}
			return prefix + v
		}
		for _, v := range gr.inputs {
			in := prefix + "in/" + v
			iso.Inputs = append(iso.Inputs, &graph.Value{Name: in, DType: onnx.TensorProto_FLOAT})
			res.inputs = append(res.inputs, isoInput{name: in, value: v})
			dq := a.activationDQ(v)
			if dq == nil {
				iso.AddNode(&graph.Node{Name: prefix + "feed/" + v, OpType: "Identity", Inputs: []string{in}, Outputs: []string{name(v)}})
				continue
			}
			// Same codes the full model's DQ read: Q with its parameters,
			// then the DQ itself.
			codes := prefix + "codes/" + v
			iso.AddNode(&graph.Node{Name: prefix + "q/" + v, OpType: "QuantizeLinear", Domain: dq.Domain, Attrs: dq.Attrs,
				Inputs: trimEmpty([]string{in, input(dq, 1), input(dq, 2)}), Outputs: []string{codes}})
			iso.AddNode(&graph.Node{Name: prefix + nodeName(dq), OpType: dq.OpType, Domain: dq.Domain, Attrs: dq.Attrs,
				Inputs: trimEmpty([]string{codes, input(dq, 1), input(dq, 2)}), Outputs: []string{name(v)}})
		}
		for _, n := range gr.nodes {
			c := &graph.Node{Name: prefix + nodeName(n), OpType: n.OpType, Domain: n.Domain, Attrs: n.Attrs}
			for _, v := range n.Inputs {
				c.Inputs = append(c.Inputs, name(v))
			}
			for _, v := range n.Outputs {
				c.Outputs = append(c.Outputs, name(v))
			}
			iso.AddNode(c)
		}
		for _, q := range gr.codes {
			scale, ok := scalar(src, q.Inputs[1])
			if !ok {
				continue // a per-axis or computed scale: not an activation quantizer
			}
			codes := prefix + "out/" + q.Outputs[0]
			iso.AddNode(&graph.Node{Name: prefix + nodeName(q), OpType: q.OpType, Domain: q.Domain, Attrs: q.Attrs,
				Inputs: trimEmpty([]string{name(q.Inputs[0]), input(q, 1), input(q, 2)}), Outputs: []string{codes}})
			out := prefix + "deq/" + q.Outputs[0]
			iso.AddNode(&graph.Node{Name: prefix + "dq/" + q.Outputs[0], OpType: "DequantizeLinear", Domain: q.Domain,
				Inputs: trimEmpty([]string{codes, input(q, 1), input(q, 2)}), Outputs: []string{out}})
			iso.Outputs = append(iso.Outputs, &graph.Value{Name: out, DType: onnx.TensorProto_FLOAT})
			res.outputs[k] = append(res.outputs[k], isoOutput{name: out, codes: true, scale: scale})
		}
		for _, v := range gr.floats {
			iso.Outputs = append(iso.Outputs, &graph.Value{Name: name(v), DType: onnx.TensorProto_FLOAT})
			res.outputs[k] = append(res.outputs[k], isoOutput{name: name(v)})
		}
	}
	iso.RemoveDead()
	if err := iso.TopoSort(); err != nil {
		return nil, fmt.Errorf("kernel check: isolation model: %w", err)
	}
	m, err := iso.ToModel()
	if err != nil {
		return nil, fmt.Errorf("kernel check: isolation model: %w", err)
	}
	res.model = m
	return res, nil
}

func input(n *graph.Node, i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

// trimEmpty drops trailing omitted inputs.
func trimEmpty(in []string) []string {
	for len(in) > 0 && in[len(in)-1] == "" {
		in = in[:len(in)-1]
	}
	return in
}

// scalar reads a one-element float constant.
func scalar(g *graph.Graph, v string) (float32, bool) {
	t, ok := g.Const(v)
	if !ok {
		return 0, false
	}
	f, err := t.Float32()
	if err != nil || len(f) != 1 {
		return 0, false
	}
	return f[0], true
}
