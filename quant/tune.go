package quant

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

// Tuning (Config.Tune) improves the quantizers layer by layer, with the
// network's weights frozen as a function. Each quantized Conv gets
//
//   - its weights rounded, column by column, so that the Conv's own output on
//     windows of its real, quantized input stays closest to the float one
//     (GPTQ: Frantar et al. 2023, the layer-wise reconstruction of
//     OBQ/AdaRound/BRECQ, in closed form from the inputs' Hessian);
//   - optionally, its input quantizer's breakpoint (dual-region) or clip
//     (uniform) moved to where the Conv's output error on those windows is
//     least, with GPTQ weights for that input;
//   - optionally, bias correction: the mean output shift that remains.
//
// Layers are tuned one at a time, the most damaged first, until
// Config.TimeBudget runs out.
//
// Every Conv shape a model can hold is tuned or left as calibrated with a
// logged reason, never a failed run: windows are cut per Conv with its own
// kernel, strides, padding and dilations (ESA's strided 3x3 and its 1x1
// read one value, and windows keyed by the value once gave one of them the
// other's windows), and a grouped or depthwise Conv is one GPTQ problem per
// group (calib.ConvWeights).
//
// Every change must carry over: the calibration patches are split, the
// windows come from the first part, and the deploy model's output error
// against FP32 on the held-out part decides which stages are kept (the
// percentile tuner srq had before won 0.4 dB on its own patches and lost
// on Set5/Set14; it scored whole-model candidates on the patches that
// chose them). On EDSR x2 W4A4 (32 patches of 32x32) the held-out PSNR
// against FP32 was 44.71 dB calibrated, 44.16 with tuned inputs alone,
// 46.11 with GPTQ weights, 46.65 with both.

// Tuning constants.
const (
	// tuneWindows is the number of input windows per layer: enough to rank
	// candidates and to estimate a 576×576 Hessian, few enough that a
	// candidate costs milliseconds.
	tuneWindows = 1024
	// tuneHoldout is the number of calibration patches held out to check
	// that the tuned model is better on data that did not choose it.
	tuneHoldout = 16
	// tuneMinPatches leaves a few patches to tune on beside the held-out.
	tuneMinPatches = tuneHoldout + 4
	// tuneChunkBytes bounds the windows held at once (layers are sampled in
	// chunks): about 200 MB.
	tuneChunkBytes = 200 << 20
	// gptqDamp is GPTQ's damping, a fraction of the Hessian's mean diagonal.
	gptqDamp = 0.01
)

// Tuning reports what tuning did.
type Tuning struct {
	Layers  int `json:"layers"`  // Convs tuned
	Skipped int `json:"skipped"` // Convs left as calibrated
	// Untuned says why each skipped Conv was left as calibrated (the time
	// budget, a shape reconstruction cannot model, a Hessian that is not
	// positive definite...), by node name.
	Untuned map[string]string `json:"untuned,omitempty"`
	Time    time.Duration     `json:"time_ns"`
	// HeldOut is the mean PSNR-Y against FP32 on the held-out patches of
	// each variant measured (gradient tuning's, keys "held-out images: …",
	// on the patches of held-out images), and Kept the one shipped.
	HeldOut map[string]float64 `json:"held_out_psnr_db"`
	Kept    string             `json:"kept"`
	// GradientSkipped says why gradient tuning (Config.GradSteps) did not
	// run: an op of the deploy graph it cannot differentiate.
	GradientSkipped string `json:"gradient_skipped,omitempty"`
}

// tuneLayer is one Conv's tuning state.
type tuneLayer struct {
	n       *graph.Node
	input   string // the value it reads
	geom    calib.ConvGeom
	wbits   int               // weight width
	w       calib.ConvWeights // float weight
	b       []float32         // float bias (nil: none)
	q       qdq.Quantizer
	x       *calib.Windows
	before  float64 // output error of the calibrated quantizers
	damaged float64 // relative output error, for the order
	// Results: GPTQ weights (on grids ps) and corrected bias for the
	// calibrated input quantizer, and for the tuned one qTuned (nil when
	// no candidate beat the calibrated one).
	ps               []qdq.Params
	wq, bias         []float32
	qTuned           qdq.Quantizer
	wqTuned, biasTun []float32
	describe         []string
}

// tune runs the tuner on the calibrated quantizers qs and updates them, the
// graph's weights and biases (weights on their grids, biases corrected) and
// qs.weights (the grids InsertQDQ must keep): each Conv tuned on its own
// (tuneConvs), then the stages kept that the held-out patches agree with
// (keepTuning).
func tune(ctx context.Context, pr *prepared, pl *passes.Plan, cal *calibration, qs *quantizers, cfg Config, res *Result, ev Events) error {
	start := time.Now()
	if len(cal.batches) < tuneMinPatches {
		return fmt.Errorf("tuning needs at least %d calibration patches (%d held out), got %d", tuneMinPatches, tuneHoldout, len(cal.batches))
	}
	res.Tuning = &Tuning{HeldOut: map[string]float64{}, Untuned: map[string]string{}}
	layers, err := tuneConvs(ctx, pr, pl, cal, qs, cfg, res.Tuning, ev)
	if err != nil {
		return err
	}
	if err := keepTuning(ctx, pr, pl, cal, qs, cfg, layers, res.Tuning, ev); err != nil {
		return err
	}
	res.Tuning.Time = time.Since(start)
	ev.log(fmt.Sprintf("tuning: kept %q, %d Convs tuned, %d left as calibrated, %s", res.Tuning.Kept, res.Tuning.Layers, res.Tuning.Skipped, res.Tuning.Time.Round(time.Millisecond)))
	return nil
}

// tuneConvs tunes each Conv tuning can improve on windows of its input
// from the training patches (all but the last tuneHoldout), most damaged
// first, and returns them; the ones left as calibrated, and why, go into
// t.Untuned (their results stay nil).
func tuneConvs(ctx context.Context, pr *prepared, pl *passes.Plan, cal *calibration, qs *quantizers, cfg Config, t *Tuning, ev Events) ([]*tuneLayer, error) {
	start := time.Now()
	log := ev.log
	train, held := cal.batches[:len(cal.batches)-tuneHoldout], cal.batches[len(cal.batches)-tuneHoldout:]
	skip := func(n *graph.Node, why string) {
		t.Untuned[n.Name] = why
		log(fmt.Sprintf("tuning: %s left as calibrated: %s", n.Name, why))
	}
	budget := fmt.Sprintf("time budget (%s) spent", cfg.TimeBudget)
	layers, err := tuneLayers(pr, pl, qs, cfg, skip)
	if err != nil {
		return nil, err
	}
	log(fmt.Sprintf("tuning %d Convs: windows from %d patches, %d patches held out", len(layers), len(train), len(held)))

	perPatch := max(1, tuneWindows/len(train))
	// Sample and tune in chunks of layers so that the windows fit in memory.
	var chunk []*tuneLayer
	var bytes int
	done, seen, late := 0, 0, 0
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		// Windows per Conv (by node name), not per input value: Convs
		// reading one value may differ in kernel, stride or groups.
		specs := map[string]calib.WindowSpec{}
		for _, l := range chunk {
			specs[l.n.Name] = calib.WindowSpec{Value: l.input, Geom: l.geom}
		}
		ws, missing, err := calib.SampleWindows(ctx, pr.g, specs, train, cal.shape, perPatch, cfg.Seed, calib.CaptureOptions{Batch: cfg.Batch, Session: ort.Options{Threads: cfg.Threads}})
		if err != nil {
			return err
		}
		var ready []*tuneLayer
		for _, l := range chunk {
			if why, ok := missing[l.n.Name]; ok {
				seen++
				skip(l.n, "no input windows: "+why)
				continue
			}
			l.x = ws[l.n.Name]
			var full float64
			if l.before, err = calib.OutputError(l.w, calib.InputErrors(l.x, l.q)); err == nil {
				full, err = calib.OutputError(l.w, l.x)
			}
			if err != nil {
				l.x = nil
				seen++
				skip(l.n, err.Error())
				continue
			}
			l.damaged = l.before / max(full, 1e-30)
			ready = append(ready, l)
		}
		// Most damaged first, so that a short budget goes where it pays.
		sort.SliceStable(ready, func(i, j int) bool { return ready[i].damaged > ready[j].damaged })
		for _, l := range ready {
			if err := ctx.Err(); err != nil {
				return err
			}
			seen++
			if cfg.TimeBudget > 0 && time.Since(start) > cfg.TimeBudget*3/4 {
				// One line for all of them, below: the rest of a long
				// network would be a line each.
				l.x = nil
				t.Untuned[l.n.Name] = budget
				late++
				continue
			}
			if err := tuneOne(ctx, l, cfg); err != nil {
				if ctx.Err() != nil {
					return err
				}
				l.reset()
				skip(l.n, err.Error())
			} else {
				done++
			}
			l.x = nil // free the windows
			ev.Progress.Report("tuning", seen, len(layers))
		}
		chunk, bytes = chunk[:0], 0
		return nil
	}
	for _, l := range layers {
		need := perPatch * len(train) * l.geom.D() * 4
		if bytes+need > tuneChunkBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		chunk = append(chunk, l)
		bytes += need
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if late > 0 {
		log(fmt.Sprintf("tuning: %d Convs left as calibrated: %s", late, budget))
	}
	t.Layers, t.Skipped = done, len(t.Untuned)
	return layers, nil
}

// keepTuning measures which stages of the tuned layers carry over to the
// held-out patches (the deploy model's PSNR-Y against FP32 on them), and
// applies the best variant to pr.g and qs.
func keepTuning(ctx context.Context, pr *prepared, pl *passes.Plan, cal *calibration, qs *quantizers, cfg Config, layers []*tuneLayer, t *Tuning, ev Events) error {
	held := cal.batches[len(cal.batches)-tuneHoldout:]
	ref, err := runPatches(ctx, pr.g, held, cal.shape, pr.rng, cfg)
	if err != nil {
		return err
	}
	type variant struct {
		name                 string
		inputs, gptq, biasCo bool
	}
	variants := []variant{{"calibrated", false, false, false}, {"GPTQ weights", false, true, false}, {"tuned inputs + GPTQ weights", true, true, false}}
	if cfg.BiasCorrection {
		variants = append(variants, variant{"GPTQ weights + bias correction", false, true, true}, variant{"tuned inputs + GPTQ weights + bias correction", true, true, true})
	}
	best, bestPSNR := 0, math.Inf(-1)
	for i, v := range variants {
		g := pr.g.Clone()
		vq := applyTuning(g, qs, layers, v.inputs, v.gptq, v.biasCo)
		p, err := heldOutPSNR(ctx, pr, pl, g, vq, cfg, held, cal.shape, ref)
		if err != nil {
			return err
		}
		t.HeldOut[v.name] = p
		ev.log(fmt.Sprintf("  held-out PSNR-Y vs FP32, %s: %.3f dB", v.name, p))
		if p > bestPSNR {
			best, bestPSNR = i, p
		}
	}
	v := variants[best]
	t.Kept = v.name
	*qs = *applyTuning(pr.g, qs, layers, v.inputs, v.gptq, v.biasCo) // in place: the plan's nodes stay valid
	for i := range qs.layers {
		for _, l := range layers {
			if l.n.Name == qs.layers[i].Conv && v.gptq && len(l.describe) > 0 {
				d := l.describe[:1]
				if v.inputs {
					d = l.describe
				}
				qs.layers[i].Tuned = strings.Join(d, ", ")
			}
		}
	}
	return nil
}

// tuneLayers lists the Convs tuning can improve: quantized, not kept at 8
// bits, a 2-D Conv (any strides, pads, dilations, groups) with constant
// float weights. Others are passed to skip with the reason.
func tuneLayers(pr *prepared, pl *passes.Plan, qs *quantizers, cfg Config, skip func(*graph.Node, string)) ([]*tuneLayer, error) {
	var out []*tuneLayer
	for _, n := range pl.Nodes {
		if n.OpType != "Conv" || pl.Wide[n] {
			continue
		}
		wt, ok := pr.g.Const(n.Inputs[1])
		if !ok || wt.DType != onnx.TensorProto_FLOAT {
			skip(n, "the weight is not a constant float tensor")
			continue
		}
		geom, err := calib.ConvGeomOf(n, wt.Dims)
		if err != nil {
			skip(n, err.Error())
			continue
		}
		w, err := wt.Float32()
		if err != nil {
			return nil, fmt.Errorf("weight %q: %w", wt.Name, err)
		}
		l := &tuneLayer{n: n, input: n.Inputs[0], geom: geom, w: calib.ConvWeights{W: w, Out: int(wt.Dims[0]), Groups: geom.Groups}, wbits: cfg.Bits.W}
		if b, ok := qs.weightBits[n.Name]; ok {
			l.wbits = b
		}
		if len(n.Inputs) > 2 && n.Inputs[2] != "" {
			bt, ok := pr.g.Const(n.Inputs[2])
			if !ok || bt.DType != onnx.TensorProto_FLOAT {
				skip(n, "the bias is not a constant float tensor")
				continue
			}
			if l.b, err = bt.Float32(); err != nil {
				return nil, fmt.Errorf("bias %q: %w", bt.Name, err)
			}
			if len(l.b) != l.w.Out {
				skip(n, fmt.Sprintf("%d biases for %d output channels", len(l.b), l.w.Out))
				continue
			}
		}
		src := l.input
		if s, ok := pl.Shared[src]; ok {
			src = s
		}
		if q, ok := qs.convIn[n.Name]; ok {
			l.q = q
		} else if p, ok := qs.act[src]; ok {
			l.q = qdq.UniformOf(p, 8)
		} else {
			skip(n, fmt.Sprintf("its input %q has no quantizer", src))
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// reset drops what tuneOne computed, leaving l as calibrated.
func (l *tuneLayer) reset() {
	l.ps, l.wq, l.bias, l.qTuned, l.wqTuned, l.biasTun, l.describe = nil, nil, nil, nil, nil, nil, nil
}

// tuneOne rounds l's weights with GPTQ on the inputs the quantized Conv
// sees, looks for a better input quantizer, and measures the bias
// correction of both. It returns ctx's error when ctx ends, checked
// between its steps and candidates: one layer of a large Conv takes
// seconds on a loaded machine, and Ctrl-C must not wait for it. Another
// error leaves l partly computed: the caller resets it.
func tuneOne(ctx context.Context, l *tuneLayer, cfg Config) error {
	ps, err := qdq.WeightParams(l.w.W, l.w.Out, l.wbits, !cfg.PerTensorWeights, cfg.WeightMethod)
	if err != nil {
		return err
	}
	l.ps = ps
	if err := ctx.Err(); err != nil {
		return err
	}
	xq := calib.Quantized(l.x, l.q)
	if l.wq, err = calib.GPTQ(l.w, ps, xq, gptqDamp); err != nil {
		return err
	}
	rtn := make([]float32, len(l.w.W))
	if err := qdq.FakeQuantPerChannel(rtn, l.w.W, expandParams(ps, l.w.Out)); err != nil {
		return err
	}
	before, err := calib.ReconError(l.w, rtn, l.x, xq)
	if err != nil {
		return err
	}
	after, err := calib.ReconError(l.w, l.wq, l.x, xq)
	if err != nil {
		return err
	}
	l.describe = append(l.describe, fmt.Sprintf("GPTQ weights (output error −%.0f%%)", 100*(1-after/max(before, 1e-30))))
	if l.bias, err = correctedBias(l, l.wq, xq); err != nil {
		return err
	}

	// Input quantizer: the candidate with the least output error, keeping
	// the form (a quantizer that ran on one 8-bit grid keeps doing so).
	best, bestErr := l.q, l.before
	_, fits := l.q.Fine()
	for _, c := range l.q.Neighbours() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, ok := c.Fine(); fits && !ok {
			continue
		}
		e, err := calib.OutputError(l.w, calib.InputErrors(l.x, c))
		if err != nil {
			return err
		}
		if e < bestErr {
			best, bestErr = c, e
		}
	}
	if best == l.q {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.qTuned = best
	xt := calib.Quantized(l.x, best)
	if l.wqTuned, err = calib.GPTQ(l.w, ps, xt, gptqDamp); err != nil {
		return err
	}
	if l.biasTun, err = correctedBias(l, l.wqTuned, xt); err != nil {
		return err
	}
	l.describe = append(l.describe, fmt.Sprintf("input %s (output error −%.0f%%)", best, 100*(1-bestErr/l.before)))
	return nil
}

// correctedBias is l's bias plus the mean output shift of weights wq on
// inputs xq (nil when the Conv has no bias).
func correctedBias(l *tuneLayer, wq []float32, xq *calib.Windows) ([]float32, error) {
	if l.b == nil {
		return nil, nil
	}
	shift, err := calib.MeanOutputShift(l.w, wq, l.x, xq)
	if err != nil {
		return nil, err
	}
	b := make([]float32, len(l.b))
	for o := range l.b {
		b[o] = l.b[o] + float32(shift[o])
	}
	return b, nil
}

// expandParams repeats a per-tensor quantizer once per channel.
func expandParams(ps []qdq.Params, channels int) []qdq.Params {
	if len(ps) != 1 {
		return ps
	}
	out := make([]qdq.Params, channels)
	for i := range out {
		out[i] = ps[0]
	}
	return out
}

// applyTuning applies the chosen stages to graph g (weights and biases) and
// returns the quantizers to write it with (a copy of qs0's).
func applyTuning(g *graph.Graph, qs0 *quantizers, layers []*tuneLayer, inputs, gptq, biasCor bool) *quantizers {
	qs := &quantizers{act: qs0.act, convIn: maps.Clone(qs0.convIn), forms: maps.Clone(qs0.forms), partials: qs0.partials, weightBits: qs0.weightBits, sensitivity: qs0.sensitivity,
		ranges: qs0.ranges, layers: slices.Clone(qs0.layers), weights: map[string][]qdq.Params{}}
	for k, v := range qs0.weights {
		qs.weights[k] = v
	}
	for _, l := range layers {
		if l.wq == nil {
			continue // not tuned (time budget)
		}
		wq, bias := l.wq, l.bias
		if _, own := qs.convIn[l.n.Name]; inputs && own && l.qTuned != nil {
			qs.convIn[l.n.Name] = l.qTuned
			for i := range qs.layers {
				if qs.layers[i].Conv == l.n.Name {
					qs.layers[i].Quantizer = l.qTuned.String()
				}
			}
			wq, bias = l.wqTuned, l.biasTun
		}
		n := nodeNamed(g, l.n.Name)
		if gptq {
			name := g.UniqueName(l.n.Name + ".gptq_weight")
			wt, _ := g.Const(n.Inputs[1])
			g.SetInitializer(graph.NewFloat32(name, wt.Dims, wq))
			g.ReplaceInput(n, 1, name)
			qs.weights[l.n.Name] = l.ps
		}
		if biasCor && bias != nil {
			name := g.UniqueName(l.n.Name + ".corrected_bias")
			g.SetInitializer(graph.NewFloat32(name, []int64{int64(len(bias))}, bias))
			g.ReplaceInput(n, 2, name)
		}
	}
	return qs
}

func nodeNamed(g *graph.Graph, name string) *graph.Node {
	for _, n := range g.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// insertQDQ turns g (a copy of pr.g) into the deploy graph of quantizers
// qs, planned as pl0 (its split values kept), and returns its plan.
func insertQDQ(pr *prepared, pl0 *passes.Plan, g *graph.Graph, qs *quantizers, cfg Config) (*passes.Plan, error) {
	pl, err := passes.PlanQDQ(g, pr.pol)
	if err != nil {
		return nil, err
	}
	pl.Split = slices.Clone(pl0.Split)
	ins := passes.InsertQDQ{Plan: pl, Act: qs.act, Weights: weightConfig(cfg), WeightParams: qs.weights, ConvIn: qs.convIn, Forms: qs.forms, Partials: qs.partials, WeightBits: qs.weightBits}
	return pl, passes.Run(g, ins)
}

// heldOutPSNR builds the deploy model of graph g with quantizers qs and
// returns its mean PSNR-Y against the FP32 outputs ref on the held-out
// patches.
func heldOutPSNR(ctx context.Context, pr *prepared, pl0 *passes.Plan, g *graph.Graph, qs *quantizers, cfg Config, held [][]float32, shape [3]int, ref []*img.Image) (float64, error) {
	if _, err := insertQDQ(pr, pl0, g, qs, cfg); err != nil {
		return 0, err
	}
	out, err := runPatches(ctx, g, held, shape, pr.rng, cfg)
	if err != nil {
		return 0, err
	}
	return meanPSNRY(out, ref, pr.scale)
}
