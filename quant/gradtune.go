package quant

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/srquant/srq/grad"
	"github.com/srquant/srq/grad/ortconv"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/gtune"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

// Gradient tuning (Config.GradSteps, after the layer-wise tuner) moves
// every quantized Conv's bias by Adam on the whole network's output error
// (package gtune), on the deploy graph itself, the weights as the
// layer-wise tuner rounded them; the result ships only if the held-out
// patches agree, as the layer-wise tuner's stages do.

// floatWeights returns the float weight of every Conv of g by node name.
func floatWeights(g *graph.Graph) map[string][]float32 {
	out := map[string][]float32{}
	for _, n := range g.Nodes {
		if n.OpType != "Conv" || len(n.Inputs) < 2 {
			continue
		}
		if t, ok := g.Const(n.Inputs[1]); ok && t.DType == onnx.TensorProto_FLOAT {
			if v, err := t.Float32(); err == nil {
				out[n.Name] = slices.Clone(v)
			}
		}
	}
	return out
}

// gradTune runs gtune on the deploy model of pr.g with qs and, when the
// held-out patches score it higher, puts the tuned weights and biases into
// pr.g (weights on their grids, recorded in qs.weights) for rewrite.
//
// fg is the float graph as it was before the layer-wise tuner put pr.g's
// weights on their grids: AdaRound rounds from its weights, and its
// outputs are the targets.
func gradTune(ctx context.Context, pr *prepared, pl0 *passes.Plan, cal *calibration, qs *quantizers, fg *graph.Graph, cfg Config, t *Tuning, ev Events) error {
	start := time.Now()
	if cfg.TimeBudget > 0 && t.Time >= cfg.TimeBudget {
		t.GradientSkipped = fmt.Sprintf("time budget (%s) spent", cfg.TimeBudget)
		ev.log("gradient tuning left out: " + t.GradientSkipped)
		return nil
	}
	floats := floatWeights(fg)
	g := pr.g.Clone()
	pl, err := passes.PlanQDQ(g, pr.pol)
	if err != nil {
		return err
	}
	pl.Split = slices.Clone(pl0.Split)
	ins := passes.InsertQDQ{Plan: pl, Act: qs.act, Weights: weightConfig(cfg), WeightParams: qs.weights, ConvIn: qs.convIn, Forms: qs.forms, Partials: qs.partials, WeightBits: qs.weightBits}
	if err := passes.Run(g, ins); err != nil {
		return err
	}
	nt, err := grad.NewNet(g)
	if err == nil {
		// One forward pass on a patch finds the attributes the tape does
		// not model (a bilinear Resize), which compiling does not look at.
		var x *grad.Var
		if x, err = grad.NewTape().Const([]int{1, cal.shape[0], cal.shape[1], cal.shape[2]}, cal.batches[0]); err == nil {
			_, err = nt.Forward(grad.NewTape(), map[string]*grad.Var{g.Inputs[0].Name: x}, nil)
		}
	}
	if err != nil {
		// An op the tape lacks: the model ships as the layer-wise tuner
		// left it, and says why.
		t.GradientSkipped = err.Error()
		ev.log("gradient tuning left out: " + err.Error())
		return nil
	}
	ws, convs, err := tunableWeights(g, pl, nt, floats, qs, cfg)
	if err != nil {
		return err
	}
	if len(ws) == 0 {
		ev.log("gradient tuning: no quantized Conv weight to round")
		return nil
	}
	train, held := cal.batches[:len(cal.batches)-tuneHoldout], cal.batches[len(cal.batches)-tuneHoldout:]
	d, err := tuneData(ctx, pr, fg, cal, train, cfg)
	if err != nil {
		return err
	}
	k := ortconv.New(ortconv.Options{Threads: 1})
	defer k.Close()
	o := gtune.DefaultOptions()
	o.Steps, o.Seed, o.Kernels = cfg.GradSteps, uint64(cfg.Seed), k
	if gradOptionsHook != nil {
		gradOptionsHook(&o)
	}
	if cfg.TimeBudget > 0 {
		// What the layer-wise tuner left of the budget (gradTune returns
		// at once when nothing is left), less the held-out scoring.
		o.Budget = max(cfg.TimeBudget-t.Time-time.Since(start), time.Second)
	}
	o.Progress = func(step, steps int, loss float64) {
		ev.Progress.Report("gradient tuning", step, steps)
		if step%max(steps/5, 1) == 0 {
			ev.log(fmt.Sprintf("  gradient tuning step %d/%d: output loss %.3f of the first step's (smoothed), %s", step, steps, loss, time.Since(start).Round(time.Second)))
		}
	}
	what := "biases"
	if o.LR > 0 {
		what = "rounding and biases"
	}
	ev.log(fmt.Sprintf("gradient tuning: %d Convs' %s, %d steps of %d patches (%dx%d crops), %d patches held out", len(ws), what, o.Steps, o.Batch, o.Crop, o.Crop, len(held)))
	r, err := gtune.Tune(ctx, nt, g.Inputs[0].Name, g.Outputs[0].Name, ws, d, o)
	if err != nil {
		return err
	}
	ev.log(fmt.Sprintf("gradient tuning: %d steps, %s", r.Steps, r.Time.Round(time.Millisecond)))

	// The held-out patches decide: the model as it stands against the
	// tuned one.
	ref, err := runPatches(ctx, fg, held, cal.shape, pr.rng, cfg)
	if err != nil {
		return err
	}
	before, err := heldOutPSNR(ctx, pr, pl0, pr.g.Clone(), qs, cfg, held, cal.shape, ref)
	if err != nil {
		return err
	}
	tg := pr.g.Clone()
	tq := applyGradTuning(tg, qs, ws, convs, r)
	after, err := heldOutPSNR(ctx, pr, pl0, tg.Clone(), tq, cfg, held, cal.shape, ref)
	if err != nil {
		return err
	}
	t.HeldOut["before gradient tuning"], t.HeldOut["gradient tuning"] = before, after
	ev.log(fmt.Sprintf("  held-out PSNR-Y vs FP32: %.3f dB before gradient tuning, %.3f after", before, after))
	if after > before {
		*qs = *applyGradTuning(pr.g, qs, ws, convs, r)
		t.Kept += " + gradient tuning"
	}
	t.Time += time.Since(start)
	return nil
}

// tunableWeights lists the Conv weights of the deploy graph g that gtune
// can round: read through a folded DequantizeLinear of integer codes on a
// symmetric grid, with their float weights known; convs[i] is ws[i]'s Conv.
func tunableWeights(g *graph.Graph, pl *passes.Plan, nt *grad.Net, floats map[string][]float32, qs *quantizers, cfg Config) ([]gtune.Weight, []string, error) {
	var ws []gtune.Weight
	var convs []string
	for _, n := range g.Nodes {
		if n.OpType != "Conv" || len(n.Inputs) < 2 {
			continue
		}
		if _, ok := nt.Folded[n.Inputs[1]]; !ok {
			continue
		}
		f, ok := floats[n.Name]
		dq := g.Producer(n.Inputs[1])
		if !ok || dq == nil || len(dq.Inputs) < 2 {
			continue
		}
		st := g.Initializer(dq.Inputs[1])
		if st == nil {
			continue
		}
		scale, err := st.Float32()
		if err != nil {
			return nil, nil, err
		}
		w := nt.Const(n.Inputs[1])
		if w == nil || len(w.Data) != len(f) || len(w.Data)%len(scale) != 0 {
			continue
		}
		// The grid InsertQDQ chose: searched by the layer-wise tuner, or
		// the Conv's width (8 bits for the Plan's wide Convs).
		bits := cfg.Bits.W
		if b, ok := qs.weightBits[n.Name]; ok {
			bits = b
		}
		if pl.Wide[n] {
			bits = 8
		}
		qmin, qmax := qdq.SignedRange(bits, true)
		if ps := qs.weights[n.Name]; len(ps) > 0 {
			qmin, qmax = ps[0].QMin, ps[0].QMax
		}
		// Start from the rounding the graph holds (GPTQ's, when the
		// layer-wise tuner kept it).
		start := make([]float32, len(w.Data))
		inner := len(w.Data) / len(scale)
		for i, v := range w.Data {
			start[i] = float32(math.Round(float64(v / scale[i/inner])))
		}
		wt := gtune.Weight{Value: n.Inputs[1], Float: f, Shape: slices.Clone(w.Shape), Scale: scale, QMin: qmin, QMax: qmax, Start: start}
		if len(n.Inputs) > 2 && n.Inputs[2] != "" {
			if _, ok := nt.Folded[n.Inputs[2]]; ok {
				wt.Bias = n.Inputs[2]
			}
		}
		ws = append(ws, wt)
		convs = append(convs, n.Name)
	}
	return ws, convs, nil
}

// tuneData is the training patches with the FP32 network's outputs on
// them, in the model's units.
func tuneData(ctx context.Context, pr *prepared, fg *graph.Graph, cal *calibration, train [][]float32, cfg Config) (gtune.Data, error) {
	outs, err := runPatches(ctx, fg, train, cal.shape, pr.rng, cfg)
	if err != nil {
		return gtune.Data{}, err
	}
	d := gtune.Data{Inputs: train, In: cal.shape, Scale: pr.scale}
	for _, o := range outs {
		pix := make([]float32, len(o.Pix))
		for i, v := range o.Pix {
			pix[i] = v * pr.rng
		}
		d.Targets = append(d.Targets, pix)
		d.Out = [3]int{o.C, o.H, o.W}
	}
	return d, nil
}

// applyGradTuning puts r's weights (on their grids) and biases into g's
// Convs, by name, and returns qs with the weights' grids recorded so that
// the rewrite keeps them.
func applyGradTuning(g *graph.Graph, qs0 *quantizers, ws []gtune.Weight, convs []string, r *gtune.Result) *quantizers {
	qs := *qs0
	qs.weights = map[string][]qdq.Params{}
	for k, v := range qs0.weights {
		qs.weights[k] = v
	}
	for i, w := range ws {
		n := nodeNamed(g, convs[i])
		if n == nil {
			continue
		}
		if hw, ok := r.Weights[w.Value]; ok {
			name := g.UniqueName(n.Name + ".adaround_weight")
			wt, _ := g.Const(n.Inputs[1])
			g.SetInitializer(graph.NewFloat32(name, wt.Dims, hw))
			g.ReplaceInput(n, 1, name)
			ps := make([]qdq.Params, len(w.Scale))
			for c, s := range w.Scale {
				ps[c] = qdq.Params{Scale: s, QMin: w.QMin, QMax: w.QMax}
			}
			qs.weights[n.Name] = ps
		}
		if b, ok := r.Biases[w.Bias]; ok && len(n.Inputs) > 2 {
			bn := g.UniqueName(n.Name + ".tuned_bias")
			g.SetInitializer(graph.NewFloat32(bn, []int64{int64(len(b))}, b))
			g.ReplaceInput(n, 2, bn)
		}
	}
	return &qs
}

// gradOptionsHook, set by tests, edits the tuner's options.
var gradOptionsHook func(*gtune.Options)
