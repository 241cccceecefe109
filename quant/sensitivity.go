package quant

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
	"github.com/srquant/srq/verify"
)

// LayerSensitivity is what quantizing one Conv alone costs, by two measures.
type LayerSensitivity struct {
	Conv  string `json:"conv"`
	Input string `json:"input"`
	Bits  int    `json:"bits"` // the layer's activation bits in the setting (first and last: 8)
	// PSNR is the mean PSNR-Y of the model's output with only this Conv
	// quantized (its input and its weights, the rest float) against the
	// FP32 output, over the sensitivity patches. Lower is more sensitive.
	PSNR float64 `json:"psnr_db"`
	// InputStd is the standard deviation of the Conv's input over the
	// calibration patches, and Score the method's own sensitivity: a
	// softmax of InputStd over the layers.
	InputStd float64 `json:"input_std"`
	Score    float64 `json:"score"`
}

// SensitivityResult lists the layers, most sensitive (lowest PSNR) first.
type SensitivityResult struct {
	Layers  []LayerSensitivity `json:"layers"`
	Patches int                `json:"patches"` // patches each candidate ran on
	// Spearman is the rank correlation between the two measures (sensitive
	// means low PSNR and high score, so agreement is positive).
	Spearman float64 `json:"spearman"`
	// Whole says where the loss of the whole setting is: the output PSNR-Y
	// against FP32 with every measured Conv quantized, with their weights
	// alone (inputs float) and with their inputs alone (weights float).
	// The 8-bit carriers a deploy model adds (Add outputs, Conv outputs
	// that no Conv reads) are not in it.
	Whole WholeSensitivity `json:"whole"`
	// SpearmanLowBit is the same over the layers at the low width only:
	// the score knows nothing of bits, so the 8-bit first and last Convs
	// (wide inputs, little error) can hide how well it ranks the rest.
	SpearmanLowBit float64 `json:"spearman_low_bit"`
}

// WholeSensitivity is the output PSNR-Y against FP32 with all layers
// quantized, and with only their weights or only their inputs.
type WholeSensitivity struct {
	All     float64 `json:"all_psnr_db"`
	Weights float64 `json:"weights_only_psnr_db"`
	Inputs  float64 `json:"inputs_only_psnr_db"`
}

// sensitivityPatches bounds the patches each single-layer model runs on:
// enough to rank layers that differ by tenths of a dB, few enough that a
// layer costs about a second on EDSR x4.
const sensitivityPatches = 16

// Sensitivity measures, for every quantized Conv of m under cfg, the output
// PSNR against FP32 when only that Conv is quantized (input quantizer and
// weights as cfg would choose them, written with float ops), and the
// paper's score: softmax over layers of the standard deviation of the
// layer's input. Calibration is as in Quantize; the measurement runs on the
// first sensitivityPatches patches.
func Sensitivity(ctx context.Context, m *onnx.ModelProto, data []byte, name string, imgs []string, cfg Config, ev Events) (*SensitivityResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	wrap := func(err error) error { return fmt.Errorf("%s: %w", name, err) }
	if err := checkNotQuantized(m); err != nil {
		return nil, wrap(err)
	}
	pr, err := prepare(m, data, name, cfg)
	if err != nil {
		return nil, err
	}
	cal, err := cutPatches(pr, imgs, cfg, ev.log)
	if err != nil {
		return nil, err
	}
	if err := ownGrids(ctx, pr, cal, cfg, ev.log); err != nil {
		return nil, wrap(err)
	}
	pl, err := plan(pr, cfg)
	if err != nil {
		return nil, wrap(err)
	}
	if err := calibrate(ctx, pr, pl, cal, cfg, ev); err != nil {
		return nil, err
	}
	bitsOf := func(n *graph.Node) Bits {
		if pl.Wide[n] {
			return Bits{8, 8}
		}
		return cfg.Bits
	}
	meter, err := newOutputMeter(ctx, pr, cal, cfg)
	if err != nil {
		return nil, wrap(err)
	}
	lqs, err := layerQuants(pl, cal, cfg, bitsOf)
	if err != nil {
		return nil, wrap(err)
	}
	res := &SensitivityResult{Patches: len(meter.batches)}
	if res.Layers, err = measureLayers(ctx, meter, lqs, cal, ev); err != nil {
		return nil, wrap(err)
	}
	if res.Whole, err = measureWhole(ctx, meter, lqs); err != nil {
		return nil, wrap(err)
	}
	scores(res.Layers)
	var psnrs, ss, lowPSNRs, lowSS []float64
	for _, l := range res.Layers {
		psnrs, ss = append(psnrs, -l.PSNR), append(ss, l.Score)
		if l.Bits == cfg.Bits.A {
			lowPSNRs, lowSS = append(lowPSNRs, -l.PSNR), append(lowSS, l.Score)
		}
	}
	res.Spearman, res.SpearmanLowBit = spearman(psnrs, ss), spearman(lowPSNRs, lowSS)
	sort.SliceStable(res.Layers, func(i, j int) bool { return res.Layers[i].PSNR < res.Layers[j].PSNR })
	return res, nil
}

// layerQuant is how one Conv is quantized when measured: its input
// quantizer and weight grid.
type layerQuant struct {
	n       *graph.Node
	src     string // the calibrated value its input quantizer is of
	bits    Bits
	input   qdq.Quantizer
	weights passes.WeightConfig
}

// layerQuants lists the quantized Convs of the plan in graph order, at the
// bits bitsOf gives them (none: left out; 8-bit layers with cfg's uniform
// method, or percentile for Dual).
func layerQuants(pl *passes.Plan, cal *calibration, cfg Config, bitsOf func(*graph.Node) Bits) ([]layerQuant, error) {
	var out []layerQuant
	for _, n := range pl.Nodes {
		if n.OpType != "Conv" {
			continue
		}
		src := n.Inputs[0]
		if s, ok := pl.Shared[src]; ok {
			src = s
		}
		c := cfg
		if c.Bits = bitsOf(n); c.Bits == (Bits{}) {
			continue
		}
		if c.Bits.A == 8 {
			c.Method = nonDual(cfg.Method)
		}
		q, err := inputQuantizer(cal.stats[src], c)
		if err != nil {
			return nil, fmt.Errorf("input %q of node %q: %w", src, n.Name, err)
		}
		out = append(out, layerQuant{n: n, src: src, bits: c.Bits, input: q, weights: weightConfig(c)})
	}
	return out, nil
}

// measureLayers quantizes each Conv of lqs alone and measures the output
// PSNR-Y against FP32 with m. It returns the layers in graph order.
func measureLayers(ctx context.Context, m *outputMeter, lqs []layerQuant, cal *calibration, ev Events) ([]LayerSensitivity, error) {
	var out []LayerSensitivity
	for i, l := range lqs {
		psnr, err := m.psnr(ctx, passes.FakeQuantConv{Conv: l.n.Name, Input: l.input, Weights: l.weights})
		if err != nil {
			return nil, err
		}
		out = append(out, LayerSensitivity{Conv: l.n.Name, Input: l.src, Bits: l.bits.A, PSNR: psnr, InputStd: cal.stats[l.src].Std()})
		ev.Progress.Report("sensitivity", i+1, len(lqs))
	}
	return out, nil
}

// measureWhole measures the setting with every Conv of lqs quantized: all
// of it, the weights alone and the inputs alone.
func measureWhole(ctx context.Context, m *outputMeter, lqs []layerQuant) (WholeSensitivity, error) {
	var w WholeSensitivity
	var err error
	for _, c := range []struct {
		to             *float64
		input, weights bool
	}{{&w.All, true, true}, {&w.Weights, false, true}, {&w.Inputs, true, false}} {
		var ps []passes.Pass
		for _, l := range lqs {
			fq := passes.FakeQuantConv{Conv: l.n.Name}
			if c.input {
				fq.Input = l.input
			}
			if c.weights {
				fq.Weights = l.weights
			}
			ps = append(ps, fq)
		}
		if *c.to, err = m.psnr(ctx, ps...); err != nil {
			return w, err
		}
	}
	return w, nil
}

// outputMeter measures a rewritten graph's output against the float one
// on a few patches (the first sensitivityPatches calibration patches).
type outputMeter struct {
	g       *graph.Graph // the float graph candidates are rewritten from
	pr      *prepared
	cfg     Config
	batches [][]float32
	shape   [3]int
	ref     []*img.Image
}

func newOutputMeter(ctx context.Context, pr *prepared, cal *calibration, cfg Config) (*outputMeter, error) {
	return newOutputMeterOn(ctx, pr, pr.g, cal.batches[:min(len(cal.batches), sensitivityPatches)], cal.shape, cfg)
}

// newOutputMeterOn measures rewrites of the float graph g on batches of
// the given shape.
func newOutputMeterOn(ctx context.Context, pr *prepared, g *graph.Graph, batches [][]float32, shape [3]int, cfg Config) (*outputMeter, error) {
	m := &outputMeter{g: g, pr: pr, cfg: cfg, batches: batches, shape: shape}
	var err error
	m.ref, err = runPatches(ctx, g, m.batches, shape, pr.rng, cfg)
	return m, err
}

// run returns the outputs of the graph rewritten by ps.
func (m *outputMeter) run(ctx context.Context, ps ...passes.Pass) ([]*img.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g := m.g.Clone()
	if err := passes.Run(g, ps...); err != nil {
		return nil, err
	}
	return runPatches(ctx, g, m.batches, m.shape, m.pr.rng, m.cfg)
}

// noiseOf is noise for a graph given whole (a deploy model accuracy
// control built).
func (m *outputMeter) noiseOf(ctx context.Context, g *graph.Graph) (float64, error) {
	outs, err := runPatches(ctx, g, m.batches, m.shape, m.pr.rng, m.cfg)
	if err != nil {
		return 0, err
	}
	return m.noiseOfOutputs(outs)
}

// psnr is the mean PSNR-Y against the float output of the graph rewritten
// by ps.
func (m *outputMeter) psnr(ctx context.Context, ps ...passes.Pass) (float64, error) {
	outs, err := m.run(ctx, ps...)
	if err != nil {
		return 0, err
	}
	return meanPSNRY(outs, m.ref, m.pr.scale)
}

// noise is the mean output noise against the float output of the graph
// rewritten by ps: the MSE on Y in units of full scale, 10^(−PSNR/10) per
// patch (PSNR capped at verify.MaxPSNR), averaged. Noises of independent
// sources add, which mean PSNRs do not.
func (m *outputMeter) noise(ctx context.Context, ps ...passes.Pass) (float64, error) {
	outs, err := m.run(ctx, ps...)
	if err != nil {
		return 0, err
	}
	return m.noiseOfOutputs(outs)
}

// noiseOfOutputs is noise's mean over the patches of outputs outs.
func (m *outputMeter) noiseOfOutputs(outs []*img.Image) (float64, error) {
	var e float64
	for i, o := range outs {
		p, err := verify.PSNRY(o, m.ref[i], m.pr.scale)
		if err != nil {
			return 0, err
		}
		e += math.Pow(10, -min(p, verify.MaxPSNR)/10) / float64(len(outs))
	}
	return e, nil
}

// nonDual is the uniform method that stands in for Dual on 8-bit layers.
func nonDual(m Method) Method {
	if m == Dual {
		return Percentile
	}
	return m
}

// scores sets Score = softmax(InputStd) over the layers, computed stably.
func scores(ls []LayerSensitivity) {
	top := math.Inf(-1)
	for _, l := range ls {
		top = max(top, l.InputStd)
	}
	var sum float64
	for _, l := range ls {
		sum += math.Exp(l.InputStd - top)
	}
	for i := range ls {
		ls[i].Score = math.Exp(ls[i].InputStd-top) / sum
	}
}

// spearman is the rank correlation of a and b (average ranks for ties).
func spearman(a, b []float64) float64 {
	ra, rb := ranks(a), ranks(b)
	return pearson(ra, rb)
}

func ranks(x []float64) []float64 {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return x[idx[i]] < x[idx[j]] })
	r := make([]float64, len(x))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && x[idx[j+1]] == x[idx[i]] {
			j++
		}
		avg := float64(i+j)/2 + 1
		for k := i; k <= j; k++ {
			r[idx[k]] = avg
		}
		i = j + 1
	}
	return r
}

func pearson(a, b []float64) float64 {
	n := float64(len(a))
	if n < 2 {
		return 0
	}
	var ma, mb float64
	for i := range a {
		ma += a[i] / n
		mb += b[i] / n
	}
	var sab, saa, sbb float64
	for i := range a {
		da, db := a[i]-ma, b[i]-mb
		sab += da * db
		saa += da * da
		sbb += db * db
	}
	if saa == 0 || sbb == 0 {
		return 0
	}
	return sab / math.Sqrt(saa*sbb)
}
