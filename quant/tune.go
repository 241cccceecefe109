package quant

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
	"github.com/srquant/srq/verify"
)

// TunePercentiles are the candidate percentiles of range tuning.
var TunePercentiles = []float64{99.99, 99.995, 99.999, 99.9995, 99.9999}

// TuneGroup is the set of activation values that share one tuned
// percentile: those produced by the same operator type (residual-stream
// Adds, Conv outputs, Relu outputs, ...). A role, not a tensor, is the unit:
// per-tensor choices on 32 patches would fit the patches, not the model.
type TuneGroup struct {
	Op         string   `json:"op"`
	Values     []string `json:"values"`
	Percentile float64  `json:"percentile"`
}

// tuner measures candidate range settings by what they do to the model's
// output: each candidate is the deploy model itself, run by ORT on the
// calibration patches, scored by its mean squared error against the FP32
// output on those patches. No labels are used.
type tuner struct {
	ctx     context.Context
	g       *graph.Graph // prepared float graph, not modified
	pol     passes.Policy
	weights passes.WeightConfig
	wparams map[string][]qdq.Params // weight quantizers, searched once
	batches [][]float32
	shape   [3]int
	cfg     Config
	shave   int // output pixels left out on each side when scoring: a quarter of the side
	rng     float32
	ref     []*img.Image // FP32 output of every patch
	evals   int
}

// tuneMinGain is the relative output-error reduction a candidate must bring,
// on each half of the tuning patches separately, to replace the current
// choice. Smaller or inconsistent differences are within what 16 patches
// can tell apart: on EDSR x2 a 0.1% gain on the patches was a 0.013 dB loss
// on Set5, and a first version that scored raw-output MSE on all 16 patches
// at once chose ranges that cost RCAN x4 0.02 dB on Set14.
const tuneMinGain = 0.005

// tunePatches bounds the patches a candidate runs on; enough for a stable
// mean, few enough that one evaluation stays well under a second.
const tunePatches = 16

func newTuner(ctx context.Context, g *graph.Graph, pol passes.Policy, plan *passes.Plan, weights passes.WeightConfig, batches [][]float32, shape [3]int, scale int, rng float32, cfg Config) (*tuner, error) {
	if len(batches) < 2 {
		return nil, fmt.Errorf("tuning needs at least 2 patches, got %d", len(batches))
	}
	t := &tuner{ctx: ctx, g: g, pol: pol, weights: weights, batches: batches[:min(len(batches), tunePatches)], shape: shape, cfg: cfg,
		shave: scale * min(shape[1], shape[2]) / 4, rng: rng, wparams: map[string][]qdq.Params{}}
	for _, n := range plan.Nodes {
		if n.OpType != "Conv" {
			continue
		}
		wt, ok := g.Const(n.Inputs[1])
		if !ok {
			continue
		}
		w, err := wt.Float32()
		if err != nil {
			return nil, fmt.Errorf("weight %q: %w", wt.Name, err)
		}
		if slices.ContainsFunc(plan.Split, func(v string) bool { return v == n.Inputs[0] }) {
			continue // widened by InsertQDQ; searched there
		}
		ps, err := qdq.WeightParams(w, int(wt.Dims[0]), weights.Bits, weights.PerChannel, weights.Method)
		if err != nil {
			return nil, fmt.Errorf("weight %q: %w", wt.Name, err)
		}
		t.wparams[n.Name] = ps
	}
	ref, err := t.run(g)
	if err != nil {
		return nil, err
	}
	t.ref = ref
	return t, nil
}

// run runs graph c on the tuning patches (see runPatches).
func (t *tuner) run(c *graph.Graph) ([]*img.Image, error) {
	return runPatches(t.ctx, c, t.batches, t.shape, t.rng, t.cfg)
}

// score builds the deploy model for act and returns its error against the
// FP32 output on each half of the patches: the mean over patches of MSE on
// Y, 8-bit, as PSNR-Y measures it, on the centre half of each patch (a 64-
// pixel patch is all border to a deep network; its centre is closer to
// what the network sees inside a real image).
func (t *tuner) score(act map[string]qdq.Params) ([2]float64, error) {
	var e [2]float64
	t.evals++
	c := t.g.Clone()
	p, err := passes.PlanQDQ(c, t.pol)
	if err != nil {
		return e, err
	}
	if err := passes.Run(c, passes.InsertQDQ{Plan: p, Act: act, Weights: t.weights, WeightParams: t.wparams}); err != nil {
		return e, err
	}
	out, err := t.run(c)
	if err != nil {
		return e, err
	}
	half := len(out) / 2
	for i, o := range out {
		mse, err := verify.MSEY(o, t.ref[i], t.shave)
		if err != nil {
			return e, fmt.Errorf("tuning: %w", err)
		}
		// Mean of log MSE, i.e. minus the mean PSNR-Y: benchmarks average
		// PSNR over images, which weighs a flat patch's small error as
		// much as a busy patch's large one.
		l := 10 * math.Log10(max(mse, 1e-6))
		if i < half {
			e[0] += l / float64(half)
		} else {
			e[1] += l / float64(len(out)-half)
		}
	}
	return e, nil
}

// better reports whether a beats b by tuneMinGain on both halves.
func better(a, b [2]float64) bool {
	return a[0] < b[0]-tuneMinGain && a[1] < b[1]-tuneMinGain
}

// tune picks, group by group (largest first) and one pass over the groups,
// the candidate percentile with the lowest output error, starting from the
// configured percentile everywhere. Values in fixed keep their range. It
// returns the groups with their choice and updates act and ranges.
func (t *tuner) tune(act map[string]qdq.Params, ranges []Range, stats map[string]*calib.Stats, fixed map[string]bool, log func(string)) ([]TuneGroup, error) {
	g := t.g
	byOp := map[string]*TuneGroup{}
	var groups []*TuneGroup
	for _, r := range ranges {
		if fixed[r.Value] {
			continue
		}
		op := "input"
		if p := g.Producer(r.Value); p != nil {
			op = p.OpType
		}
		tg, ok := byOp[op]
		if !ok {
			tg = &TuneGroup{Op: op, Percentile: t.cfg.Percentile}
			byOp[op] = tg
			groups = append(groups, tg)
		}
		tg.Values = append(tg.Values, r.Value)
	}
	sort.SliceStable(groups, func(i, j int) bool { return len(groups[i].Values) > len(groups[j].Values) })
	clip := map[string][2]float32{}
	set := func(tg *TuneGroup, pct float64) {
		for _, v := range tg.Values {
			lo, hi := calib.RangePercentile(stats[v], pct)
			act[v] = qdq.Asymmetric(lo, hi, t.cfg.Bits.A)
			clip[v] = [2]float32{lo, hi}
		}
	}
	best, err := t.score(act)
	if err != nil {
		return nil, err
	}
	log(fmt.Sprintf("tuning: output 10·log10 MSE-Y %.3f / %.3f at percentile %g", best[0], best[1], t.cfg.Percentile))
	for _, tg := range groups {
		start := tg.Percentile
		for _, pct := range TunePercentiles {
			if pct == start {
				continue
			}
			set(tg, pct)
			e, err := t.score(act)
			if err != nil {
				return nil, err
			}
			log(fmt.Sprintf("  %s outputs at %g: output 10·log10 MSE-Y %.3f / %.3f", tg.Op, pct, e[0], e[1]))
			if better(e, best) {
				best, tg.Percentile = e, pct
			}
		}
		set(tg, tg.Percentile)
		log(fmt.Sprintf("tuning: %d %s outputs at percentile %g (output 10·log10 MSE-Y %.3f / %.3f)", len(tg.Values), tg.Op, tg.Percentile, best[0], best[1]))
	}
	out := make([]TuneGroup, len(groups))
	for i, tg := range groups {
		out[i] = *tg
	}
	for i := range ranges {
		r := &ranges[i]
		c, ok := clip[r.Value]
		if !ok {
			continue
		}
		q := act[r.Value]
		r.Lo, r.Hi, r.Scale, r.Zero = c[0], c[1], q.Scale, q.ZeroPoint
		for _, tg := range groups {
			if tg.Percentile != t.cfg.Percentile && slices.Contains(tg.Values, r.Value) {
				r.Reason = fmt.Sprintf("tuned: percentile %g", tg.Percentile)
			}
		}
	}
	return out, nil
}
