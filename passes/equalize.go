package passes

import (
	"fmt"
	"math"
	"slices"

	"github.com/srquant/srq/graph"
)

// A ChannelSpace is a set of activation values that share one channel
// basis: values joined by operators that commute with a positive
// per-channel scale (Add, Relu, LeakyRelu, pooling, gating Mul), written
// only by Convs and read only by Convs or by those operators. Scaling
// channel c of every member by d_c > 0 — output rows of the producing
// Convs' weights and biases times d_c, input columns of the consuming
// Convs' weights divided by d_c — leaves the network's function unchanged
// (exact up to float rounding, borders included, since zero padding scales
// too). That freedom is what Equalize uses to even out per-channel ranges
// before per-tensor activation quantization: in a residual SR network the
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

// Equalize rescales the channels of each space so that the members'
// per-channel ranges are closer to each other, which shrinks the step of a
// per-tensor quantizer for all but the widest channels. For a space with
// per-channel ranges r_c (the largest over its members of the member's
// range in channel c, relative to that member's widest channel), channel c
// is scaled by d_c = r_c^(-Alpha), normalised to geometric mean 1 and
// limited to [1/MaxScale, MaxScale]. Alpha = 1 equalizes fully; 0.5 splits
// the range between activations and the next Conv's weights (the DFQ /
// SmoothQuant trade-off).
type Equalize struct {
	Spaces []ChannelSpace
	// Ranges holds per-channel ranges (e.g. max |x|) of space members from
	// calibration of the float graph; members without an entry are ignored.
	Ranges   map[string][]float32
	Alpha    float64
	MaxScale float64
}

func (Equalize) Name() string { return "equalize" }
func (Equalize) Doc() string {
	return "rescale channel spaces so per-tensor activation quantizers waste fewer levels"
}

func (e Equalize) Run(g *graph.Graph) error {
	for _, s := range e.Spaces {
		d := e.scales(s)
		if d == nil {
			continue
		}
		for _, n := range s.Producers {
			if err := scaleConv(g, n, d, true); err != nil {
				return err
			}
		}
		for _, n := range s.Consumers {
			if err := scaleConv(g, n, d, false); err != nil {
				return err
			}
		}
	}
	g.RemoveDead()
	return nil
}

// scales returns the per-channel factors of a space, or nil without data.
func (e Equalize) scales(s ChannelSpace) []float64 {
	prof := make([]float64, s.Channels)
	seen := 0
	for _, v := range s.Values {
		r := e.Ranges[v]
		if len(r) != s.Channels {
			continue
		}
		var top float64
		for _, x := range r {
			top = max(top, float64(x))
		}
		if top <= 0 {
			continue
		}
		seen++
		for c, x := range r {
			prof[c] += math.Log(max(float64(x)/top, 1e-6))
		}
	}
	if seen == 0 {
		return nil
	}
	for c := range prof {
		prof[c] = math.Exp(prof[c] / float64(seen))
	}
	alpha := e.Alpha
	if alpha <= 0 {
		alpha = 1
	}
	limit := e.MaxScale
	if limit <= 1 {
		limit = 16
	}
	d := make([]float64, s.Channels)
	var logSum float64
	for c, p := range prof {
		p = max(p, 1e-6)
		d[c] = math.Pow(p, -alpha)
		logSum += math.Log(d[c])
	}
	mean := math.Exp(logSum / float64(len(d)))
	for c := range d {
		d[c] = min(max(d[c]/mean, 1/limit), limit)
	}
	return d
}

// scaleConv multiplies a Conv's output channel o by d[o] (weight rows and
// bias) when out, else divides its input channel c's weight columns by d[c].
// New initializers are written, since weights may be shared.
func scaleConv(g *graph.Graph, n *graph.Node, d []float64, out bool) error {
	wt, _ := g.Const(n.Inputs[1])
	w, err := wt.Float32()
	if err != nil {
		return fmt.Errorf("node %q: weight: %w", n.Name, err)
	}
	oc, icg := int(wt.Dims[0]), int(wt.Dims[1])
	k := len(w) / (oc * icg)
	group := int(n.AttrInt("group", 1))
	if out {
		if len(d) != oc {
			return fmt.Errorf("node %q: %d output channels, %d scales", n.Name, oc, len(d))
		}
		for o := 0; o < oc; o++ {
			row := w[o*icg*k : (o+1)*icg*k]
			for i := range row {
				row[i] = float32(float64(row[i]) * d[o])
			}
		}
		if b := input(n, 2); b != "" {
			bt, _ := g.Const(b)
			bv, err := bt.Float32()
			if err != nil {
				return fmt.Errorf("node %q: bias: %w", n.Name, err)
			}
			for o := range bv {
				bv[o] = float32(float64(bv[o]) * d[o])
			}
			name := g.UniqueName(n.Name + ".eq_bias")
			g.SetInitializer(graph.NewFloat32(name, bt.Dims, bv))
			n.Inputs[2] = name
		}
	} else {
		if len(d) != icg*group {
			return fmt.Errorf("node %q: %d input channels, %d scales", n.Name, icg*group, len(d))
		}
		opg := oc / group
		for o := 0; o < oc; o++ {
			gi := o / opg
			for ci := 0; ci < icg; ci++ {
				f := 1 / d[gi*icg+ci]
				seg := w[(o*icg+ci)*k : (o*icg+ci+1)*k]
				for i := range seg {
					seg[i] = float32(float64(seg[i]) * f)
				}
			}
		}
	}
	name := g.UniqueName(n.Name + ".eq_weight")
	g.SetInitializer(graph.NewFloat32(name, wt.Dims, w))
	n.Inputs[1] = name
	g.Invalidate()
	return nil
}
