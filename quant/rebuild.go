package quant

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

// Building the models accuracy control measures: the rewrite stage run
// again on the calibrated base for a widenState, and the per-rung noise
// the ranking starts from.

// built is a model accuracy control measured.
type built struct {
	model   *onnx.ModelProto
	plan    *passes.Plan
	qs      *quantizers
	padded  []string
	convs   [2]int // quantized, total
	skipped []string
}

// build writes the deploy model of state s: the tuned graph planned with
// s's float nodes skipped and its carrier Convs wide, the base quantizers
// with the widened Convs' replaced, and the rewrite stage (no calibration:
// every value it needs was calibrated for the base plan).
func (w *widener) build(ctx context.Context, s widenState, cal *calibration) (*built, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g := w.tuned.Clone()
	pol := w.pr.pol
	skip := slices.Sorted(maps.Keys(s.float))
	pol.Skip = append(slices.Clone(w.cfg.Skip), skip...)
	carrier := map[string]bool{}
	for c, f := range s.form {
		if f != formOwn && w.start.form[c] == formOwn {
			carrier[c] = true
		}
	}
	pl, err := planGraph(g, pol, w.cfg, carrier)
	if err != nil {
		return nil, err
	}
	// The values read in two parts are the state's: planning alone would
	// also give the long-skip sum two parts once its reader is at 8 bits.
	pl.Split = slices.DeleteFunc(pl.Split, func(v string) bool { return !w.start.split[v] && !s.split[v] })
	for _, v := range sortedKeys(s.split) {
		if !slices.Contains(pl.Split, v) && slices.Contains(pl.Values, v) {
			pl.Split = append(pl.Split, v)
		}
	}
	qs := w.quantizersFor(pl, s)
	for _, v := range pl.Values {
		if _, ok := qs.act[v]; ok {
			continue
		}
		// A value that shared its producer's grid in the base plan (the
		// output of a pixel shuffle) needs one of its own once that
		// producer is float: the same values, so the same grid.
		src, ok := w.base.Shared[v]
		q, has := qs.act[src]
		if !ok || !has {
			return nil, fmt.Errorf("value %q has no calibrated range", v)
		}
		qs.act[v] = q
		lo, hi := q.Range()
		qs.ranges = append(qs.ranges, Range{Value: v, Lo: lo, Hi: hi, Scale: q.Scale, Zero: q.ZeroPoint, Reason: "grid of " + src})
	}
	if w.cfg.Tune {
		w.restoreWeights(g, s)
	}
	b := &built{plan: pl, qs: qs, skipped: skip}
	b.convs[0], b.convs[1] = pl.Convs(g)
	if b.model, b.padded, err = rewrite(g, w.pr, pl, qs, cal.set, w.cfg); err != nil {
		return nil, err
	}
	return b, nil
}

// restoreWeights puts the float weights and biases back into the Convs
// whose rung changed: tuning rounded them for the setting's grid and input.
func (w *widener) restoreWeights(g *graph.Graph, s widenState) {
	for _, u := range w.units {
		if s.form[u.conv] == w.start.form[u.conv] {
			continue
		}
		n, f := nodeNamed(g, u.conv), nodeNamed(w.float, u.conv)
		if n == nil || f == nil {
			continue
		}
		for i := 1; i < min(len(n.Inputs), len(f.Inputs), 3); i++ {
			t, ok := w.float.Const(f.Inputs[i])
			if !ok || f.Inputs[i] == "" {
				continue
			}
			c := t.Clone()
			c.Name = g.UniqueName(u.conv + ".float_param")
			g.SetInitializer(c)
			g.ReplaceInput(n, i, c.Name)
		}
	}
}

// quantizersFor derives the quantizers of plan pl (state s) from the
// base ones: Convs still at their own rung keep theirs (tuned or not),
// widened Convs lose their own input quantizer and tuned weight grid, and
// values newly read in two parts get a grid over every value seen.
func (w *widener) quantizersFor(pl *passes.Plan, s widenState) *quantizers {
	b := w.qs
	qs := &quantizers{act: maps.Clone(b.act), weights: map[string][]qdq.Params{}, convIn: map[string]qdq.Quantizer{}, forms: map[string]passes.Form{},
		partials: map[string][2]qdq.Params{}, weightBits: map[string]int{}, sensitivity: b.sensitivity, ranges: slices.Clone(b.ranges)}
	keep := func(c string) bool {
		_, ok := w.byConv[c]
		return !ok || s.form[c] == w.start.form[c]
	}
	for c, q := range b.convIn {
		if keep(c) {
			qs.convIn[c], qs.forms[c] = q, b.forms[c]
			if p, ok := b.partials[c]; ok {
				qs.partials[c] = p
			}
		}
	}
	for c, v := range b.weights {
		if keep(c) {
			qs.weights[c] = v
		}
	}
	for c, v := range b.weightBits {
		if keep(c) {
			qs.weightBits[c] = v
		}
	}
	for _, l := range b.layers {
		if keep(l.Conv) {
			qs.layers = append(qs.layers, l)
		}
	}
	w.cachedWeights(pl, qs)
	for _, v := range pl.Split {
		if w.start.split[v] {
			continue
		}
		i := slices.IndexFunc(qs.ranges, func(r Range) bool { return r.Value == v })
		if i < 0 || qs.ranges[i].Reason != "" {
			continue
		}
		r := &qs.ranges[i]
		r.Lo, r.Hi = calib.RangeMinMax(w.stats[v])
		r.Reason = "two-part encoding (--max-drop)"
		q := qdq.Asymmetric(r.Lo, r.Hi, 8)
		r.Scale, r.Zero = q.Scale, q.ZeroPoint
		qs.act[v] = q
	}
	return qs
}

// measureNoise measures, for every unit, the output noise of its rungs
// with only that Conv quantized (passes.FakeQuantConv on the float
// graph): its own quantizer and weights, its input alone on the 8-bit
// carrier, and its 8-bit weights alone.
func (w *widener) measureNoise(ctx context.Context, m *outputMeter, ev Events) error {
	w8 := weightConfig(w.cfg)
	w8.Bits = 8
	total := 0
	for _, u := range w.units {
		total += 2
		if u.own != nil {
			total++
		}
	}
	done := 0
	step := func(e *float64, p passes.FakeQuantConv) error {
		v, err := m.noise(ctx, p)
		if err != nil {
			return fmt.Errorf("node %q: %w", p.Conv, err)
		}
		*e = v
		done++
		ev.Progress.Report("sensitivity", done, total)
		return nil
	}
	for _, u := range w.units {
		if u.own != nil {
			wc := weightConfig(w.cfg)
			if b, ok := w.qs.weightBits[u.conv]; ok {
				wc.Bits = b
			}
			if err := step(&u.eOwn, passes.FakeQuantConv{Conv: u.conv, Input: u.own, Weights: wc}); err != nil {
				return err
			}
		}
		carrier := qdq.UniformOf(w.qs.act[u.src], 8)
		if err := step(&u.eIn, passes.FakeQuantConv{Conv: u.conv, Input: carrier}); err != nil {
			return err
		}
		if err := step(&u.eW, passes.FakeQuantConv{Conv: u.conv, Weights: w8}); err != nil {
			return err
		}
	}
	return nil
}

// cropBatches cuts the centre side×side of each patch (CHW, shape).
func cropBatches(batches [][]float32, shape [3]int, side int) ([][]float32, [3]int) {
	c, h, wd := shape[0], shape[1], shape[2]
	if side >= h && side >= wd {
		return batches, shape
	}
	sh, sw := min(side, h), min(side, wd)
	y0, x0 := (h-sh)/2, (wd-sw)/2
	out := make([][]float32, len(batches))
	for i, b := range batches {
		d := make([]float32, 0, c*sh*sw)
		for ch := range c {
			for y := range sh {
				row := b[ch*h*wd+(y0+y)*wd+x0:]
				d = append(d, row[:sw]...)
			}
		}
		out[i] = d
	}
	return out, [3]int{c, sh, sw}
}

// measureBlocks measures, for every block, the output noise of the model
// with only that block quantized (every other node float, on meter's
// patches) and keeps, as the block's extra, what its Convs' own noises and
// its sub-blocks' extras do not explain: the per-Conv measurements see a
// Conv's input and weights, not the carriers of the block's other values,
// and without this a block made float looked like no gain (SPAN's
// attention blocks: 0.47 dB left with every Conv widened alone, 0.03 dB
// with the blocks float). Smaller blocks first, so that a block's extra
// leaves out its sub-blocks'.
func (w *widener) measureBlocks(ctx context.Context, m *outputMeter, cal *calibration, ev Events) error {
	blocks := slices.Clone(w.blocks)
	slices.SortStableFunc(blocks, func(a, b *block) int { return len(a.members) - len(b.members) })
	for i, b := range blocks {
		s := w.start.clone()
		in := map[string]bool{}
		for _, n := range b.members {
			in[n] = true
		}
		for n := range w.quant {
			if !in[n] {
				s.float[n] = true
			}
		}
		var own float64
		for _, u := range w.units {
			if in[u.conv] {
				own += w.unitNoise(w.start, u)
			} else {
				s.form[u.conv] = formFloat
			}
		}
		for _, v := range sortedKeys(s.split) {
			if !slices.ContainsFunc(w.float.Consumers(v), func(c *graph.Node) bool { return in[c.Name] }) {
				delete(s.split, v)
			}
		}
		bm, err := w.build(ctx, s, cal)
		if err != nil {
			return fmt.Errorf("block %s: %w", b.prefix, err)
		}
		g, err := graph.FromModel(bm.model)
		if err != nil {
			return err
		}
		e, err := m.noiseOf(ctx, g)
		if err != nil {
			return fmt.Errorf("block %s: %w", b.prefix, err)
		}
		for _, sub := range blocks[:i] {
			if len(sub.members) < len(b.members) && subset(sub.members, in) && !slices.ContainsFunc(blocks[:i], func(o *block) bool {
				return o != sub && len(o.members) < len(b.members) && len(o.members) > len(sub.members) && subset(o.members, in) && subset(sub.members, setOf(o.members))
			}) {
				own += sub.extra
			}
		}
		b.extra = max(e-own, 0)
		ev.Progress.Report("blocks", i+1, len(blocks))
	}
	return nil
}

func subset(xs []string, set map[string]bool) bool {
	return !slices.ContainsFunc(xs, func(x string) bool { return !set[x] })
}

func setOf(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// cachedWeights gives every quantized Conv of pl without a weight grid in
// qs the grid InsertQDQ would search for it (qdq.WeightParams on its float
// weights at its width), searched once per Conv and width for all the
// models accuracy control builds: the MSE clip search over every output
// channel is most of a rewrite. A Conv reading a value in two parts is
// left to InsertQDQ: its weights are widened first.
func (w *widener) cachedWeights(pl *passes.Plan, qs *quantizers) {
	if w.wcache == nil {
		w.wcache = map[string][]qdq.Params{}
	}
	for _, n := range pl.Nodes {
		if n.OpType != "Conv" || qs.weights[n.Name] != nil || slices.Contains(pl.Split, n.Inputs[0]) {
			continue
		}
		bits := w.cfg.Bits.W
		if b, ok := qs.weightBits[n.Name]; ok {
			bits = b
		}
		if pl.Wide[n] {
			bits = 8
		}
		key := fmt.Sprintf("%s@%d", n.Name, bits)
		ps, ok := w.wcache[key]
		if !ok {
			f := nodeNamed(w.float, n.Name)
			if f == nil {
				continue
			}
			wt, ok := w.float.Const(f.Inputs[1])
			if !ok || len(wt.Dims) < 1 {
				continue
			}
			v, err := wt.Float32()
			if err != nil {
				continue
			}
			if ps, err = qdq.WeightParams(v, int(wt.Dims[0]), bits, !w.cfg.PerTensorWeights, w.cfg.WeightMethod); err != nil {
				continue // InsertQDQ will say why
			}
			w.wcache[key] = ps
		}
		qs.weights[n.Name] = slices.Clone(ps) // InsertQDQ adjusts scales for the bias in place
	}
}
