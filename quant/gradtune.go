package quant

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/srquant/srq/grad"
	"github.com/srquant/srq/grad/ortconv"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/gtune"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

// Gradient tuning (Config.GradSteps, after the layer-wise tuner) moves
// every quantized Conv's bias and per-channel weight steps by Adam on the
// whole network's output error (package gtune), on the deploy graph
// itself, the weights' codes as the layer-wise tuner rounded them; the
// result ships only if held-out images agree, as the layer-wise tuner's
// stages do.

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
// held-out patches score it higher, puts what it learnt into pr.g and qs
// for rewrite: biases, input quantizers, and (when learnt) weights on
// their grids, recorded in qs.weights.
//
// fg is the float graph as it was before the layer-wise tuner put pr.g's
// weights on their grids: its outputs are the targets, and AdaRound
// rounds from its weights.
func gradTune(ctx context.Context, pr *prepared, pl0 *passes.Plan, cal *calibration, qs *quantizers, fg *graph.Graph, cfg Config, t *Tuning, ev Events) error {
	start := time.Now()
	if cfg.TimeBudget > 0 && t.Time >= cfg.TimeBudget {
		t.GradientSkipped = fmt.Sprintf("time budget (%s) spent", cfg.TimeBudget)
		ev.log("gradient tuning left out: " + t.GradientSkipped)
		return nil
	}
	floats := floatWeights(fg)
	g := pr.g.Clone()
	pl, err := insertQDQ(pr, pl0, g, qs, cfg)
	if err != nil {
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
		ev.log("gradient tuning: no quantized Conv to tune")
		return nil
	}
	train, held, byImage := splitByImage(cal)
	d, closeData, err := tuneData(ctx, pr, fg, cal, train, cfg)
	if err != nil {
		return err
	}
	defer closeData()
	k := ortconv.New(ortconv.Options{Threads: 1})
	defer k.Close()
	o := gtune.DefaultOptions()
	o.Steps, o.Seed, o.Kernels = cfg.GradSteps, uint64(cfg.Seed), k
	// The weight steps correct the whole network's error, whose size
	// follows the width the model is quantized to, not each Conv's own
	// grid (a wide 8-bit tail Conv of a W4A4 model corrects as much):
	// gtune's rate is 4-bit's, scaled by 7/QMax of --bits.
	_, qmax := qdq.SignedRange(cfg.Bits.W, true)
	o.ScaleLR *= 7 / float64(max(qmax, 1))
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
	acts, actConvs, unchecked, why := tunableActs(g, nt, qs)
	if unchecked > 0 && o.ActLR > 0 {
		ev.log(fmt.Sprintf("gradient tuning: %d Conv input quantizers kept as they are (the first: %s)", unchecked, why))
	}
	what := "biases"
	switch {
	case o.LR > 0:
		what = "rounding and biases"
	case o.ScaleLR > 0:
		what = "biases and per-channel weight steps"
	}
	if o.ActLR > 0 {
		what += fmt.Sprintf(", %d input quantizers", len(acts))
	}
	heldWhat := fmt.Sprintf("%d patches held out", len(held))
	if byImage > 0 {
		last := "the last image"
		if byImage > 1 {
			last = fmt.Sprintf("the last %d images", byImage)
		}
		heldWhat = fmt.Sprintf("%d patches of %s held out", len(held), last)
	}
	ev.log(fmt.Sprintf("gradient tuning: %d Convs' %s, %d steps of %d patches (%dx%d crops), %s", len(ws), what, o.Steps, o.Batch, o.Crop, o.Crop, heldWhat))
	r, err := gtune.Tune(ctx, nt, g.Inputs[0].Name, g.Outputs[0].Name, ws, acts, d, o)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		// A backward pass the tape cannot take (the forward pass ran):
		// the optional stage is left out, the quantization goes on.
		t.GradientSkipped = err.Error()
		ev.log("gradient tuning left out: " + err.Error())
		return nil
	}
	parts := ""
	if r.Micro > 0 && r.Micro < o.Batch {
		parts = fmt.Sprintf(", each batch in parts of %d crops (a step's tape kept within %d MiB)", r.Micro, o.TapeBytes>>20)
	}
	ev.log(fmt.Sprintf("gradient tuning: %d steps, %s%s", r.Steps, r.Time.Round(time.Millisecond), parts))

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
	tq := applyGradTuning(tg, qs, ws, convs, acts, actConvs, r)
	after, err := heldOutPSNR(ctx, pr, pl0, tg.Clone(), tq, cfg, held, cal.shape, ref)
	if err != nil {
		return err
	}
	t.HeldOut[heldBefore], t.HeldOut[heldAfter] = before, after
	ev.log(fmt.Sprintf("  PSNR-Y vs FP32 on the held-out images: %.3f dB before gradient tuning, %.3f after", before, after))
	if after > before {
		*qs = *applyGradTuning(pr.g, qs, ws, convs, acts, actConvs, r)
		t.Kept += " + gradient tuning"
	}
	t.Time += time.Since(start)
	return nil
}

// The keys of gradient tuning's scores in Tuning.HeldOut: measured on
// held-out images, not on the layer-wise tuner's held-out patches.
const (
	heldBefore = "held-out images: before gradient tuning"
	heldAfter  = "held-out images: gradient tuning"
)

// splitByImage splits the calibration patches into the ones gradient
// tuning fits and the ones that decide whether it ships: the patches of
// the last quarter of the images (at least one image) are held out, so
// that the decision is taken on photos the tuner never saw. Patches of the
// same photos did not tell (NOTES.md, "Gradient tuning"): the rounding won
// 0.9 dB on them and lost 1.6 on Set14. With a single image it falls back
// to the last tuneHoldout patches (images 0).
func splitByImage(cal *calibration) (train, held [][]float32, images int) {
	var order []int // distinct images in order of first patch
	seen := map[int]bool{}
	for _, s := range cal.src {
		if !seen[s] {
			seen[s] = true
			order = append(order, s)
		}
	}
	if len(order) < 2 || len(cal.src) != len(cal.batches) {
		n := len(cal.batches) - tuneHoldout
		return cal.batches[:n], cal.batches[n:], 0
	}
	images = max(len(order)/4, 1)
	out := map[int]bool{}
	for _, s := range order[len(order)-images:] {
		out[s] = true
	}
	for i, b := range cal.batches {
		if out[cal.src[i]] {
			held = append(held, b)
		} else {
			train = append(train, b)
		}
	}
	return train, held, images
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

// tunableActs lists the Conv input quantizers (qs.convIn) gradient tuning
// can learn: the element-wise chain of the deploy graph that ends in the
// Conv's input must be the 8-bit carrier's steps and then exactly the
// quantizer, checked on all 256 of the carrier's codes; unchecked counts
// the others.
func tunableActs(g *graph.Graph, nt *grad.Net, qs *quantizers) (acts []gtune.Act, convs []string, unchecked int, first string) {
	skip := func(why string) {
		if unchecked == 0 {
			first = why
		}
		unchecked++
	}
	for _, n := range g.Nodes {
		q, own := qs.convIn[n.Name]
		if n.OpType != "Conv" || !own {
			continue
		}
		_, steps, ok := nt.Chain(n.Inputs[0])
		prefix := carrierSteps(steps)
		if !ok || prefix == nil {
			skip(n.Name + ": its input is not an element-wise chain from a carrier")
			continue
		}
		a := gtune.Act{Value: n.Inputs[0], Prefix: prefix}
		switch q := q.(type) {
		case qdq.Dual:
			spec := q.Spec
			a.Dual = &spec
		case qdq.Uniform:
			a.Lo, a.Hi = q.Range()
			a.QMin, a.QMax = q.QMin, q.QMax
		default:
			skip(n.Name + ": a " + string(q.Kind()) + " quantizer")
			continue
		}
		// The chain reads the carrier's float value (its first step
		// quantizes it) or its codes.
		xs := make([]float32, 0, 256)
		if f := steps[0]; f.Kind == grad.PointQuantize {
			for k := f.Lo; k <= f.Hi; k++ {
				xs = append(xs, (k-f.B)*f.A)
			}
		} else {
			for k := range 256 {
				xs = append(xs, float32(k))
			}
		}
		if err := gtune.CheckAct(a, steps, xs); err != nil {
			skip(err.Error())
			continue
		}
		acts, convs = append(acts, a), append(convs, n.Name)
	}
	return acts, convs, unchecked, first
}

// carrierSteps returns the steps that give the 8-bit carrier's value a
// Conv input quantizer reads, from the start of the chain that ends in
// the Conv's input: the carrier's QuantizeLinear and the Clips on its
// codes, dequantized by its own grid (a one-grid form writes its own
// DequantizeLinear with another zero point), or, for a chain that starts
// from the carrier's codes, the steps up to its DequantizeLinear. nil: no
// such start.
func carrierSteps(steps []grad.Point) []grad.Point {
	if len(steps) == 0 {
		return nil
	}
	if q := steps[0]; q.Kind == grad.PointQuantize {
		i := 1
		for i < len(steps) && steps[i].Kind == grad.PointClip {
			i++
		}
		return append(slices.Clone(steps[:i]), grad.Point{Kind: grad.PointDequantize, A: q.A, B: q.B})
	}
	cut := slices.IndexFunc(steps, func(p grad.Point) bool { return p.Kind == grad.PointDequantize })
	if cut < 0 {
		return nil
	}
	return slices.Clone(steps[:cut+1])
}

// learntQuantizer builds the Conv input quantizer of the learnt
// parameters p of act a, if it can be written as the old one q was: same
// kind and width, and on one 8-bit grid if q was (its shared-grid form).
func learntQuantizer(q qdq.Quantizer, a gtune.Act, p []float32) (qdq.Quantizer, bool) {
	var n qdq.Quantizer
	switch old := q.(type) {
	case qdq.Dual:
		spec := old.Spec
		spec.BP = p[0]
		d, err := qdq.NewDual(spec)
		if err != nil {
			return nil, false
		}
		n = d
	case qdq.Uniform:
		u, err := qdq.NewUniform(p[0], p[1], old.Bits())
		if err != nil {
			return nil, false
		}
		n = u
	default:
		return nil, false
	}
	if _, fine := q.Fine(); fine {
		if _, ok := n.Fine(); !ok {
			return nil, false
		}
	}
	return n, true
}

// tuneData is the training patches, with the FP32 network run by ORT on
// each crop the tuner draws for its targets (gtune.Data.Reference), in the
// model's units; close frees the session.
func tuneData(ctx context.Context, pr *prepared, fg *graph.Graph, cal *calibration, train [][]float32, cfg Config) (d gtune.Data, close func(), err error) {
	s, err := graphSession(fg, "FP32 model", cfg.Threads)
	if err != nil {
		return d, nil, err
	}
	ref := func(x []float32, shape []int) ([]float32, error) {
		res, err := s.RunContext(ctx, &ort.Tensor{Shape: []int64{int64(shape[0]), int64(shape[1]), int64(shape[2]), int64(shape[3])}, Data: x})
		if err != nil {
			return nil, err
		}
		return res[0].Data, nil
	}
	d = gtune.Data{Inputs: train, In: cal.shape, Scale: pr.scale, Reference: ref}
	return d, func() { s.Close() }, nil
}

// applyGradTuning puts r's weights (on their grids, or their codes on the
// learnt steps) and biases into g's Convs, by name, and returns qs with the
// weights' grids recorded so that the rewrite keeps them.
func applyGradTuning(g *graph.Graph, qs0 *quantizers, ws []gtune.Weight, convs []string, acts []gtune.Act, actConvs []string, r *gtune.Result) *quantizers {
	qs := *qs0
	qs.weights = maps.Clone(qs0.weights)
	if qs.weights == nil {
		qs.weights = map[string][]qdq.Params{}
	}
	qs.convIn, qs.layers = maps.Clone(qs0.convIn), slices.Clone(qs0.layers)
	for i, a := range acts {
		p, ok := r.Acts[a.Value]
		if !ok {
			continue
		}
		q, ok := learntQuantizer(qs.convIn[actConvs[i]], a, p)
		if !ok {
			continue
		}
		qs.convIn[actConvs[i]] = q
		for j := range qs.layers {
			if qs.layers[j].Conv == actConvs[i] {
				qs.layers[j].Quantizer = q.String()
			}
		}
	}
	for i, w := range ws {
		n := nodeNamed(g, convs[i])
		if n == nil {
			continue
		}
		hw, ok := r.Weights[w.Value]
		if sc, learnt := r.Scales[w.Value]; learnt {
			// The codes as they were, on the learnt steps.
			inner := len(w.Start) / len(sc)
			hw, ok = make([]float32, len(w.Start)), true
			for i, c := range w.Start {
				hw[i] = c * sc[i/inner]
			}
			w.Scale = sc
		}
		if ok {
			name := g.UniqueName(n.Name + ".tuned_weight")
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
