package passes

import (
	"slices"

	"github.com/srquant/srq/graph"
)

// A ChannelSpace is a set of activation values that share one channel
// basis, written only by Convs and read only by Convs or by the operators
// that join them (LinearSpaces: Add, Sub, Identity; ChannelSpaces: also
// the activations and pools that commute with a positive per-channel
// scale). Any invertible linear map of the
// channels — an orthogonal change of basis (see Rotate), a positive
// per-channel scale — folds exactly into those Convs' weights: the
// producers' output rows and biases, the consumers' input columns (borders
// included, since zero padding maps to zero). In a residual SR network the
// whole residual stream (head output, every block's Add) is one space.
type ChannelSpace struct {
	Values    []string      // members, in graph order
	Channels  int           // channel count
	Producers []*graph.Node // Convs whose outputs are members
	Consumers []*graph.Node // Convs reading a member as input 0
}

// linkOps commute with a positive per-channel scale of their data input(s):
// f(d·x) = d·f(x). Their data inputs and outputs join one space.
var linkOps = map[string]bool{
	"Add": true, "Sub": true, "Relu": true, "LeakyRelu": true, "PRelu": true,
	"MaxPool": true, "AveragePool": true, "GlobalAveragePool": true,
	"GlobalMaxPool": true, "Identity": true, "Resize": true,
}

// gateOps produce gates: a Mul by a gate scales with its other input.
var gateOps = map[string]bool{"Sigmoid": true, "HardSigmoid": true, "Softmax": true, "Tanh": true}

// ChannelSpaces finds the channel spaces of g that can be rescaled.
func ChannelSpaces(g *graph.Graph) []ChannelSpace { return channelSpaces(g, linkOps, true) }

// linearLinks join values that any invertible linear map of the channels
// commutes with: sums, not activations.
var linearLinks = map[string]bool{"Add": true, "Sub": true, "Identity": true}

// LinearSpaces finds the channel spaces of g whose members are joined only
// by Add, Sub and Identity, written and read only by Convs: any orthogonal
// change of basis of such a space (see Rotate) folds exactly into those
// Convs' weights. The residual stream of EDSR and RCAN is one.
func LinearSpaces(g *graph.Graph) []ChannelSpace { return channelSpaces(g, linearLinks, false) }

// channelSpaces is ChannelSpaces with the operators that link values
// (links) and whether a Mul by a gate links its other input (gates).
func channelSpaces(g *graph.Graph, links map[string]bool, gates bool) []ChannelSpace {
	parent := map[string]string{}
	var find func(string) string
	find = func(v string) string {
		if p, ok := parent[v]; ok && p != v {
			r := find(p)
			parent[v] = r
			return r
		}
		parent[v] = v
		return v
	}
	union := func(a, b string) { parent[find(a)] = find(b) }
	fixed := map[string]bool{} // roots are resolved at the end
	var fixedVals []string
	isAct := func(v string) bool {
		if v == "" {
			return false
		}
		_, c := g.Const(v)
		return !c
	}
	for _, n := range g.Nodes {
		switch {
		case isOp(n, "Conv") && convScalable(g, n):
			find(n.Inputs[0])
			find(n.Outputs[0])
		case n.Domain == "" && links[n.OpType]:
			data := []string{input(n, 0)}
			if n.OpType == "Add" || n.OpType == "Sub" {
				data = append(data, input(n, 1))
			}
			ok := true
			for _, v := range data {
				if !isAct(v) {
					ok = false
				}
			}
			if n.OpType == "PRelu" || n.OpType == "Resize" {
				for _, v := range n.Inputs[1:] {
					if isAct(v) {
						ok = false
					}
				}
			}
			if !ok || len(n.Outputs) != 1 {
				fixedVals = append(fixedVals, append(slices.Clone(n.Inputs), n.Outputs...)...)
				continue
			}
			for _, v := range data {
				union(v, n.Outputs[0])
			}
		case gates && isOp(n, "Mul") && len(n.Inputs) == 2:
			x, gate := n.Inputs[0], n.Inputs[1]
			if p := g.Producer(x); p != nil && gateOps[p.OpType] {
				x, gate = gate, x
			}
			if p := g.Producer(gate); p == nil || !gateOps[p.OpType] || !isAct(x) {
				fixedVals = append(fixedVals, append(slices.Clone(n.Inputs), n.Outputs...)...)
				continue
			}
			union(x, n.Outputs[0])
			fixedVals = append(fixedVals, gate)
		default:
			fixedVals = append(fixedVals, append(slices.Clone(n.Inputs), n.Outputs...)...)
		}
	}
	for _, v := range fixedVals {
		if isAct(v) {
			fixed[find(v)] = true
		}
	}
	for _, v := range g.Inputs {
		fixed[find(v.Name)] = true
	}
	for _, v := range g.Outputs {
		fixed[find(v.Name)] = true
	}

	spaces := map[string]*ChannelSpace{}
	var order []string
	member := func(v string) *ChannelSpace {
		r := find(v)
		if fixed[r] {
			return nil
		}
		s, ok := spaces[r]
		if !ok {
			s = &ChannelSpace{Channels: -1}
			spaces[r] = s
			order = append(order, r)
		}
		if !slices.Contains(s.Values, v) {
			s.Values = append(s.Values, v)
		}
		return s
	}
	bad := map[*ChannelSpace]bool{}
	setChannels := func(s *ChannelSpace, c int) {
		if s.Channels >= 0 && s.Channels != c {
			bad[s] = true
		}
		s.Channels = c
	}
	for _, n := range g.Nodes {
		for _, v := range append(slices.Clone(n.Inputs), n.Outputs...) {
			if isAct(v) {
				member(v)
			}
		}
		if !isOp(n, "Conv") || !convScalable(g, n) {
			continue
		}
		w, _ := g.Const(n.Inputs[1])
		if s := member(n.Outputs[0]); s != nil {
			s.Producers = append(s.Producers, n)
			setChannels(s, int(w.Dims[0]))
		}
		if s := member(n.Inputs[0]); s != nil {
			s.Consumers = append(s.Consumers, n)
			setChannels(s, int(w.Dims[1]*n.AttrInt("group", 1)))
		}
	}
	var out []ChannelSpace
	for _, r := range order {
		s := spaces[r]
		if bad[s] || len(s.Producers) == 0 || len(s.Consumers) == 0 || s.Channels <= 1 {
			continue
		}
		out = append(out, *s)
	}
	return out
}

// convScalable reports a Conv whose weight (and bias) are float constants,
// so its output rows and input columns can be rescaled.
func convScalable(g *graph.Graph, n *graph.Node) bool {
	w, ok := g.Const(input(n, 1))
	if !ok || len(w.Dims) < 3 || n.AttrInt("group", 1) <= 0 {
		return false
	}
	if b := input(n, 2); b != "" {
		if _, ok := g.Const(b); !ok {
			return false
		}
	}
	return true
}
