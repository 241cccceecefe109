package quant

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
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
	g       *graph.Graph // prepared float graph, not modified
	pol     passes.Policy
	weights passes.WeightConfig
	wparams map[string][]qdq.Params // weight quantizers, searched once
	batches [][]float32
	shape   [3]int
	cfg     Config
	ref     []float32 // FP32 output of every batch, concatenated
	evals   int
}

// tuneMinGain is the relative output-error reduction a candidate must bring
// to replace the current choice. Smaller differences are within what 16
// patches can tell apart: on EDSR x2, a 0.1% gain on the patches was a
// 0.013 dB loss on Set5.
const tuneMinGain = 0.01

// tunePatches bounds the patches a candidate runs on; enough for a stable
// mean, few enough that one evaluation stays well under a second.
const tunePatches = 16

func newTuner(g *graph.Graph, pol passes.Policy, plan *passes.Plan, weights passes.WeightConfig, batches [][]float32, shape [3]int, cfg Config) (*tuner, error) {
	t := &tuner{g: g, pol: pol, weights: weights, batches: batches[:min(len(batches), tunePatches)], shape: shape, cfg: cfg,
		wparams: map[string][]qdq.Params{}}
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

// run runs graph c on the tuning patches and returns the concatenated
// output.
func (t *tuner) run(c *graph.Graph) ([]float32, error) {
	m, err := c.ToModel()
	if err != nil {
		return nil, err
	}
	data, err := onnx.Marshal(m)
	if err != nil {
		return nil, err
	}
	s, err := ort.NewSession(data, "tuning model", ort.Options{Threads: t.cfg.Threads})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	per := t.shape[0] * t.shape[1] * t.shape[2]
	batch := max(t.cfg.Batch, 1)
	var out []float32
	buf := make([]float32, 0, batch*per)
	for start := 0; start < len(t.batches); start += batch {
		end := min(start+batch, len(t.batches))
		buf = buf[:0]
		for _, p := range t.batches[start:end] {
			buf = append(buf, p...)
		}
		res, err := s.Run(&ort.Tensor{Shape: []int64{int64(end - start), int64(t.shape[0]), int64(t.shape[1]), int64(t.shape[2])}, Data: buf})
		if err != nil {
			return nil, err
		}
		out = append(out, res[0].Data...)
	}
	return out, nil
}

// score builds the deploy model for act and returns its output MSE against
// the FP32 output.
func (t *tuner) score(act map[string]qdq.Params) (float64, error) {
	t.evals++
	c := t.g.Clone()
	p, err := passes.PlanQDQ(c, t.pol)
	if err != nil {
		return 0, err
	}
	if err := passes.Run(c, passes.InsertQDQ{Plan: p, Act: act, Weights: t.weights, WeightParams: t.wparams}); err != nil {
		return 0, err
	}
	out, err := t.run(c)
	if err != nil {
		return 0, err
	}
	if len(out) != len(t.ref) {
		return 0, fmt.Errorf("tuning: quantized output has %d values, FP32 %d", len(out), len(t.ref))
	}
	var sum float64
	for i, v := range out {
		d := float64(v - t.ref[i])
		sum += d * d
	}
	return sum / float64(len(out)), nil
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
	log(fmt.Sprintf("tuning: output MSE %.4g at percentile %g", best, t.cfg.Percentile))
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
			if e < best*(1-tuneMinGain) {
				best, tg.Percentile = e, pct
			}
		}
		set(tg, tg.Percentile)
		log(fmt.Sprintf("tuning: %d %s outputs at percentile %g (output MSE %.4g)", len(tg.Values), tg.Op, tg.Percentile, best))
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
	if math.IsNaN(best) {
		return nil, fmt.Errorf("tuning: output error is NaN")
	}
	return out, nil
}
