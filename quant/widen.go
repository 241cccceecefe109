package quant

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

// Widening is how accuracy control (accuracy.go) buys accuracy back: each
// quantized Conv of the model climbs a ladder of wider forms, one rung at
// a time, and a whole block of the network can go float at once.
//
//	own      the setting's input quantizer of a low-bit or dual-region Conv
//	carrier  its input's 8-bit carrier and 8-bit weights (Plan.Wide)
//	two-part the carrier read in two int8 parts, ~12 bits (Plan.Split), weights 8-bit
//	float    the Conv float; it still reads the 8-bit carrier its producer writes
//
// Intermediate widths (a 4-bit Conv at 6 bits) are not rungs: on ORT's
// CPU kernels every uniform width up to 8 runs on the same int8 kernel
// (Q→Clip→DQ), and a wider dual-region input needs the two-branch form,
// two convs instead of one; the 8-bit carrier is at least as fast and
// more precise than either. Two-part is a rung of a value, not of a Conv:
// every Conv reading the value reads both parts (and must be at its
// carrier). A Conv made float alone keeps reading its 8-bit input, because
// its producer's int8 kernel writes codes; only a block made float as a
// whole (every quantized node under one module name, such as IMDN's
// /IMDB3 or EDSR's /body/body.4) frees the values inside it.

// form is one rung of a Conv's ladder.
type form int

const (
	formOwn form = iota
	formCarrier
	formTwoPart
	formFloat
)

var formNames = [...]string{"own", "carrier", "two-part", "float"}

func (f form) String() string { return formNames[f] }

// unit is one quantized Conv of the base plan, with what its rungs cost
// the output: noises measured with that Conv alone quantized (see
// measureNoise), in units of full-scale MSE on Y.
type unit struct {
	conv string
	relu string // the Relu its output quantizer absorbs ("": none)
	in   string // the value it reads
	out  string // the value its output quantizer sits on (Plan.OutputOf)
	src  string // the calibrated value its input quantizer is of
	own  qdq.Quantizer
	// eOwn: the setting's input quantizer and weights; eIn: only the input
	// on its 8-bit carrier; eW: only 8-bit weights.
	eOwn, eIn, eW float64
}

// splitValue is a value whose Conv readers may read it in two parts.
type splitValue struct {
	v       string
	k       int      // the gain of the residual part (passes.SplitGain)
	readers []string // the Convs reading it
}

// block is a module of the network that can go float as a whole.
type block struct {
	prefix  string
	members []string // quantized nodes under it, Relus absorbed by its Convs included
	convs   []string
	// extra is the output noise the block adds beyond its Convs' own (and
	// its sub-blocks'): the 8-bit carriers of its other values (an
	// attention's Sigmoid and Mul, a residual Add), which only making the
	// whole block float removes (see measureBlocks).
	extra float64
}

// widenState is where every Conv stands on its ladder.
type widenState struct {
	form  map[string]form // per unit
	split map[string]bool // values written in two parts
	float map[string]bool // nodes accuracy control keeps float
}

func (s widenState) clone() widenState {
	return widenState{form: maps.Clone(s.form), split: maps.Clone(s.split), float: maps.Clone(s.float)}
}

// widening is one step up a ladder.
type widening struct {
	to    form   // formCarrier, formTwoPart (of value), formFloat (of conv or block)
	conv  string // the Conv (carrier, float)
	value string // the value (two-part)
	block string // the module prefix (block float)
}

func (w widening) String() string {
	switch {
	case w.value != "":
		return w.value + ": two-part"
	case w.block != "":
		return w.block + ": block float"
	case w.to == formCarrier:
		return w.conv + ": 8-bit"
	}
	return w.conv + ": float"
}

// costFloor is the least cost a widening is ranked at, as a share of the
// base model's latency.
const costFloor = 0.01

// ranked is a widening with what the ranking predicted for the model once
// it and every widening before it are applied.
type ranked struct {
	widening
	noise  float64 // predicted output noise (sum over Convs)
	timeMS float64 // predicted latency (latency table)
}

// widener holds what accuracy control builds models from: the calibrated
// base (plan, quantizers, tuned graph) and the float graph.
type widener struct {
	pr     *prepared
	cfg    Config
	base   *passes.Plan
	qs     *quantizers
	tuned  *graph.Graph // the graph rewrite writes (tuning's weights in it)
	float  *graph.Graph // the float graph: original weights, sensitivity
	stats  map[string]*calib.Stats
	units  []*unit
	byConv map[string]*unit
	values []*splitValue
	blocks []*block
	quant  map[string]bool // nodes the base plan quantizes, absorbed Relus included
	start  widenState      // the base model's forms
	lat    *latencyTable
	macs   map[string]float64 // per unit, on a calibration patch
	elems  map[string]float64 // per value, on a calibration patch
	// nonConv maps the quantized nodes other than Convs and the Relus
	// they absorb to their (first) output.
	nonConv map[string]string
	// keep is the Conv the order leaves int8 (keepInt8).
	keep string
	// wcache holds weight grids by Conv and width (cachedWeights).
	wcache map[string][]qdq.Params
}

// newWidener lists the units, values and blocks of the base plan.
func newWidener(pr *prepared, cfg Config, base *passes.Plan, qs *quantizers, float *graph.Graph, stats map[string]*calib.Stats) (*widener, error) {
	w := &widener{pr: pr, cfg: cfg, base: base, qs: qs, tuned: pr.g, float: float, stats: stats, byConv: map[string]*unit{}, quant: map[string]bool{},
		start: widenState{form: map[string]form{}, split: map[string]bool{}, float: map[string]bool{}}}
	for _, n := range base.Nodes {
		w.quant[n.Name] = true
	}
	for _, r := range base.ReluOf {
		w.quant[r.Name] = true
	}
	for _, n := range base.Nodes {
		if n.OpType != "Conv" {
			continue
		}
		u := &unit{conv: n.Name, in: n.Inputs[0], out: base.OutputOf(n), src: n.Inputs[0]}
		if s, ok := base.Shared[u.src]; ok {
			u.src = s
		}
		if r, ok := base.ReluOf[n]; ok {
			u.relu = r.Name
		}
		if _, ok := qs.act[u.src]; !ok {
			return nil, fmt.Errorf("node %q: input %q has no carrier", n.Name, u.src)
		}
		w.start.form[n.Name] = formCarrier
		if q, ok := qs.convIn[n.Name]; ok {
			u.own = q
			w.start.form[n.Name] = formOwn
		}
		w.units = append(w.units, u)
		w.byConv[n.Name] = u
	}
	for _, v := range base.Split {
		w.start.split[v] = true
		for _, c := range pr.g.Consumers(v) {
			if u, ok := w.byConv[c.Name]; ok && u.own == nil {
				w.start.form[c.Name] = formTwoPart
			}
		}
	}
	isQuant := func(n *graph.Node) bool { return w.quant[n.Name] }
	for _, v := range base.Values {
		if w.start.split[v] {
			continue
		}
		convs, k, ok := passes.SplitReaders(float, v, w.splitParams(v), isQuant)
		if !ok {
			continue
		}
		sv := &splitValue{v: v, k: k}
		for _, c := range convs {
			sv.readers = append(sv.readers, c.Name)
		}
		w.values = append(w.values, sv)
	}
	w.blocks = blocksOf(base, w.units)
	w.nonConv = map[string]string{}
	for _, n := range base.Nodes {
		if _, conv := w.byConv[n.Name]; !conv && len(n.Outputs) > 0 && n.Outputs[0] != "" {
			w.nonConv[n.Name] = n.Outputs[0]
		}
	}
	return w, nil
}

// splitParams is the grid of v in the two-part encoding: every value seen
// (choose does the same), unless v is on the image grid.
func (w *widener) splitParams(v string) qdq.Params {
	for _, r := range w.qs.ranges {
		if r.Value == v && r.Reason != "" {
			return w.qs.act[v]
		}
	}
	lo, hi := calib.RangeMinMax(w.stats[v])
	return qdq.Asymmetric(lo, hi, 8)
}

// blocksOf lists the modules of the network, from the node names an
// exporter writes (/body/body.4/conv1/Conv: modules /body and
// /body/body.4; esa.conv1: module esa), that hold at least two of the
// units and not all of them. Modules with the same members are one block.
func blocksOf(pl *passes.Plan, units []*unit) []*block {
	var nodes []*graph.Node
	nodes = append(nodes, pl.Nodes...)
	for _, r := range pl.ReluOf {
		nodes = append(nodes, r)
	}
	isUnit := map[string]bool{}
	for _, u := range units {
		isUnit[u.conv] = true
	}
	byPrefix := map[string]*block{}
	for _, n := range nodes {
		for _, p := range modulePrefixes(n.Name) {
			b := byPrefix[p]
			if b == nil {
				b = &block{prefix: p}
				byPrefix[p] = b
			}
			b.members = append(b.members, n.Name)
			if isUnit[n.Name] {
				b.convs = append(b.convs, n.Name)
			}
		}
	}
	seen := map[string]bool{}
	var out []*block
	for _, p := range slices.Sorted(maps.Keys(byPrefix)) {
		b := byPrefix[p]
		if len(b.convs) < 2 || len(b.convs) == len(units) {
			continue
		}
		slices.Sort(b.members)
		slices.Sort(b.convs)
		key := strings.Join(b.members, "\x00")
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, b)
	}
	return out
}

// modulePrefixes returns the module paths a node name lies under.
func modulePrefixes(name string) []string {
	sep := "/"
	if !strings.Contains(name, "/") {
		sep = "."
	}
	parts := strings.Split(strings.TrimPrefix(name, sep), sep)
	var out []string
	for i := 1; i < len(parts); i++ {
		p := strings.Join(parts[:i], sep)
		if sep == "/" {
			p = "/" + p
		}
		if p != "" && p != "/" {
			out = append(out, p)
		}
	}
	return out
}

// apply returns s with w applied.
func (w *widener) apply(s widenState, x widening) widenState {
	s = s.clone()
	switch {
	case x.value != "":
		s.split[x.value] = true
		for _, c := range w.splitValue(x.value).readers {
			if s.form[c] != formFloat {
				s.form[c] = formTwoPart
			}
		}
	case x.block != "":
		b := w.block(x.block)
		for _, m := range b.members {
			s.float[m] = true
		}
		for _, c := range b.convs {
			s.form[c] = formFloat
		}
	case x.to == formCarrier:
		s.form[x.conv] = formCarrier
	default:
		s.form[x.conv] = formFloat
		s.float[x.conv] = true
		if r := w.byConv[x.conv].relu; r != "" {
			s.float[r] = true
		}
	}
	return s
}

func (w *widener) splitValue(v string) *splitValue {
	for _, sv := range w.values {
		if sv.v == v {
			return sv
		}
	}
	return nil
}

func (w *widener) block(p string) *block {
	for _, b := range w.blocks {
		if b.prefix == p {
			return b
		}
	}
	return nil
}

// candidates lists the next rung of every ladder in s, in a fixed order.
func (w *widener) candidates(s widenState) []widening {
	var out []widening
	for _, u := range w.units {
		switch s.form[u.conv] {
		case formOwn:
			out = append(out, widening{to: formCarrier, conv: u.conv})
		case formCarrier, formTwoPart:
			out = append(out, widening{to: formFloat, conv: u.conv})
		}
	}
	for _, sv := range w.values {
		if s.split[sv.v] {
			continue
		}
		ready, any := true, false
		for _, c := range sv.readers {
			switch s.form[c] {
			case formFloat:
			case formCarrier:
				any = true
			default:
				ready = false
			}
		}
		if ready && any {
			out = append(out, widening{to: formTwoPart, value: sv.v})
		}
	}
	for _, b := range w.blocks {
		if !w.blockFloat(s, b) {
			out = append(out, widening{to: formFloat, block: b.prefix})
		}
	}
	return out
}

// quantized reports whether node n runs quantized in s.
func (w *widener) quantized(s widenState, n *graph.Node) bool {
	return n != nil && w.quant[n.Name] && !s.float[n.Name]
}

// interior reports whether the value v is float in s: neither its
// producer nor any reader runs quantized.
func (w *widener) interior(s widenState, v string) bool {
	if w.quantized(s, w.float.Producer(v)) {
		return false
	}
	return !slices.ContainsFunc(w.float.Consumers(v), func(c *graph.Node) bool { return w.quantized(s, c) })
}

// noise predicts the output noise of the model in state s: the sum over
// the Convs of the noise each adds at its rung (independent sources add).
// A two-part input keeps 1/k of the carrier's rounding (1/k² of its noise);
// a float Conv keeps its input's noise unless the value is float too.
func (w *widener) noise(s widenState) float64 {
	var e float64
	for _, u := range w.units {
		e += w.unitNoise(s, u)
	}
	for _, b := range w.blocks {
		if !w.blockFloat(s, b) {
			e += b.extra
		}
	}
	return e
}

// unitNoise is the noise Conv u adds at its rung in s. Block extras come on
// top (noise).
func (w *widener) unitNoise(s widenState, u *unit) float64 {
	switch s.form[u.conv] {
	case formOwn:
		return u.eOwn
	case formCarrier:
		return u.eIn + u.eW
	case formTwoPart:
		k := float64(w.gain(u.in))
		return u.eIn/(k*k) + u.eW
	}
	if w.interior(s, u.in) {
		return 0
	}
	return u.eIn
}

// blockFloat reports whether every member of b is float in s.
func (w *widener) blockFloat(s widenState, b *block) bool {
	return !slices.ContainsFunc(b.members, func(m string) bool { return !s.float[m] })
}

// gain is the two-part gain of value v (16 when unknown).
func (w *widener) gain(v string) int {
	if sv := w.splitValue(v); sv != nil {
		return sv.k
	}
	if q, ok := w.qs.act[v]; ok {
		if k := passes.SplitGain(q.ZeroPoint, q.QMin, q.QMax); k >= 2 {
			return k
		}
	}
	return passes.MaxSplitGain
}

// order ranks the widenings greedily: from the base model, each time the
// next rung (of a Conv, a value or a block) whose predicted noise removed
// per predicted millisecond added is largest. A rung that costs less than
// costFloor of the base model's time (or saves time) is ranked as if it
// cost that much, by the noise it removes: per-rung times are not more
// precise than that. Once no rung is predicted to remove noise, the
// rest follow, the least harmful first, until every ladder is at its top
// but one Conv stays int8 (keepInt8): predictions err (a block's noise is measured
// with the block alone quantized), and the measured search (accuracy.go)
// may still find what it needs at the widest forms. Accuracy control then
// measures prefixes of this order.
func (w *widener) order() []ranked {
	w.keep = w.keepInt8()
	s := w.start
	floor := costFloor * w.lat.Base
	var out []ranked
	for {
		n0, t0 := w.noise(s), w.lat.estimate(w, s)
		var best, fallback *ranked
		var bestState, fallbackState widenState
		bestScore, fallbackGain := math.Inf(-1), math.Inf(-1)
		for _, c := range w.candidates(s) {
			s2 := w.apply(s, c)
			if w.allFloat(s2) || w.keep != "" && s2.form[w.keep] == formFloat {
				continue // the FP32 model, not a quantized one
			}
			n, t := w.noise(s2), w.lat.estimate(w, s2)
			g := n0 - n
			if !(g > 1e-12*max(n0, 1e-30)) {
				if g > fallbackGain {
					fallback, fallbackGain, fallbackState = &ranked{widening: c, noise: n, timeMS: t}, g, s2
				}
				continue
			}
			if score := g / max(t-t0, floor); score > bestScore {
				best, bestScore, bestState = &ranked{widening: c, noise: n, timeMS: t}, score, s2
			}
		}
		if best == nil {
			best, bestState = fallback, fallbackState
		}
		if best == nil {
			return out
		}
		out = append(out, *best)
		s = bestState
	}
}

// keepInt8 picks the Conv that stays int8 when everything else is widened
// (a model with none is the FP32 model): of the Convs in no block, the one
// whose quantization adds the least noise, so that every block can still
// go float; "" when every Conv is in some block.
func (w *widener) keepInt8() string {
	inBlock := map[string]bool{}
	for _, b := range w.blocks {
		for _, c := range b.convs {
			inBlock[c] = true
		}
	}
	keep, least := "", math.Inf(1)
	for _, u := range w.units {
		if e := w.unitNoise(w.start, u); !inBlock[u.conv] && e < least {
			keep, least = u.conv, e
		}
	}
	return keep
}

// allFloat reports whether no Conv runs int8 in s.
func (w *widener) allFloat(s widenState) bool {
	for _, u := range w.units {
		if s.form[u.conv] != formFloat {
			return false
		}
	}
	return true
}

// stateAt is the state after the first k widenings of order.
func (w *widener) stateAt(order []ranked, k int) widenState {
	s := w.start
	for _, r := range order[:k] {
		s = w.apply(s, r.widening)
	}
	return s
}

// describeWidenings lists widenings for a log line, at most n of them.
func describeWidenings(ws []string, n int) string {
	if len(ws) <= n {
		return strings.Join(ws, ", ")
	}
	return strings.Join(ws[:n], ", ") + fmt.Sprintf(", … (%d more)", len(ws)-n)
}

// sortedKeys is maps.Keys sorted, for deterministic loops.
func sortedKeys[V any](m map[string]V) []string {
	k := slices.Collect(maps.Keys(m))
	sort.Strings(k)
	return k
}
