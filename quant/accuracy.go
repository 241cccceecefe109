package quant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strings"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/verify"
)

// Accuracy control (Config.MaxDrop, Config.MaxDropVsFP32) turns "quantize"
// into "quantize within a budget": after the normal pipeline, the drop is
// measured on validation images that calibration did not see, and while it
// exceeds the budget the model is widened where accuracy is cheapest to
// buy back (widen.go: a Conv's next rung, a value read in two parts, a
// block made float), until it holds. It reuses the stages: calibration
// runs once, and every model measured is the rewrite stage run again on
// the same statistics with another plan.
//
// The base model is measured first: one within the budget as it is needs
// nothing else. Otherwise the order of the widenings comes from
// measurements taken once: the output noise each rung of each Conv adds
// with that Conv alone quantized, and each block beyond its Convs
// (sensitivity, on a few calibration patches), and the latency of each
// rung (latency.go). Greedily, the next widening is the one that removes
// the most predicted noise per predicted millisecond. That order is then
// walked by measuring models on the validation images: a prefix of it is
// a model, and the model returned is the shortest prefix whose measured
// drop (its confidence bound over the validation tiles, validation.go) is
// within the budget. A linear walk would measure every prefix up
// to it — on IMDN, whose W8A8 loss is spread over all 44 Convs, dozens of
// models — so the walk jumps where the noise model predicts the budget is
// met (scaled by the last measurement) and then bisects between the
// longest prefix measured over the budget and the shortest within it,
// each model one of Config.MaxSteps measurements. Every model measured is
// logged and recorded (srq.accuracy), so the drop-vs-speed curve of the
// search is in the model.

// minVerdictMACs is the work per LR pixel (multiply-accumulates of the
// Convs accuracy control can widen) below which it does not judge the
// chosen model's speed against FP32: a network that small runs in a few
// milliseconds at 96x96, mostly per-run overhead, and its timings are noise
// (the 1,656-MAC test network's FP32 median measured 1.3 to 5.3 ms between
// runs, its speed-ups 0.2x to 1.8x), while the networks accuracy control is
// for do hundreds of thousands (SPAN, IMDN, CARN-M: 0.4 to 0.7 M per
// pixel). Counted, not timed, so the verdict cannot flip between runs.
const minVerdictMACs = 50_000

// DefaultMaxSteps bounds the models accuracy control measures: the base
// model, a jump or two, then bisection over an order of up to ~200
// widenings (RCAN's 137 Convs) within a few.
const DefaultMaxSteps = 10

const (
	// accuracyPatches and accuracyPatchSide are the patches the per-rung
	// noise is measured on (the centres of the first calibration
	// patches): the noises differ by orders of magnitude, and a few
	// patches rank them; three measurements per Conv must stay cheap.
	accuracyPatches   = 4
	accuracyPatchSide = 24
)

// AccuracyStep is one model accuracy control measured.
type AccuracyStep struct {
	// Widened is how many widenings of the ranked order it has.
	Widened int `json:"widened"`
	// Added and Removed are the widenings it has beyond, or lacks against,
	// the model measured before it.
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// Drop is the mean PSNR-Y drop against the ground truth on the
	// validation images, FP32 minus quantized (without ground truth:
	// absent); PSNRvsFP32 the mean PSNR-Y against the FP32 output.
	Drop       *float64 `json:"drop_db,omitempty"`
	PSNRvsFP32 float64  `json:"psnr_vs_fp32_db"`
	// DropHigh and PSNRvsFP32Low are the confidence bounds the budget is
	// checked on (validationConfidence over the tiles).
	DropHigh      *float64 `json:"drop_high_db,omitempty"`
	PSNRvsFP32Low float64  `json:"psnr_vs_fp32_low_db"`
	// Speedup is the FP32 latency over the model's, both from the latency
	// table (see latency.go): an estimate, kept in the model because it is
	// as repeatable as the table; 0 when no table was measured.
	Speedup float64 `json:"speedup_est,omitempty"`
	Within  bool    `json:"within"`
}

// Accuracy is what accuracy control did, recorded in the model as
// srq.accuracy.
type Accuracy struct {
	MaxDrop       float64 `json:"max_drop_db,omitempty"`
	MaxDropVsFP32 float64 `json:"min_psnr_vs_fp32_db,omitempty"`
	// Validation names the validation tiles (image@x,y, Tile HR pixels a
	// side, each scored as an image); HeldOut says the images were held
	// out from the calibration images (else they came from --val).
	Validation []string `json:"validation"`
	Tile       int      `json:"tile"`
	HeldOut    bool     `json:"held_out"`
	// FP32PSNR is the FP32 model's mean PSNR-Y against the ground truth on
	// them.
	FP32PSNR *float64 `json:"fp32_psnr_db,omitempty"`
	// Candidates is the length of the ranked order of widenings.
	Candidates int            `json:"candidates"`
	Steps      []AccuracyStep `json:"steps"`
	// Chosen indexes Steps: the model written (the shortest prefix within
	// the budget, or with KeepBest the best one measured); Met says
	// whether it is within the budget.
	Chosen int  `json:"chosen"`
	Met    bool `json:"met"`
	// Widened lists the chosen model's widenings, in order.
	Widened []string `json:"widened"`
	// Latency says how the speed-ups were estimated (nil: they were not,
	// the base model being within the budget or the only step allowed).
	Latency *AccuracyLatency `json:"latency,omitempty"`
	// Speedup is the chosen model's speed-up over the FP32 model, timed
	// (not estimated) on the latency input when widenings were made: a
	// model within the budget that runs no faster than FP32 is not one to
	// ship (0: not timed).
	Speedup float64 `json:"speedup_timed,omitempty"`
}

// AccuracyLatency describes the latency table behind the estimates.
type AccuracyLatency struct {
	Size    int     `json:"size"`
	Runs    int     `json:"runs"`
	Threads int     `json:"threads"`
	FP32MS  float64 `json:"fp32_ms"`
	BaseMS  float64 `json:"base_ms"`
	CPU     string  `json:"cpu"`
	ORT     string  `json:"ort"`
	// Cached is not recorded: a run that read the table writes the same
	// model as the run that measured it.
	Cached bool `json:"-"`
}

// DropNotMetError says accuracy control found no model within the budget:
// even with every widening, or within Config.MaxSteps measurements.
// Quantize returns it with the result of the best model it measured.
type DropNotMetError struct {
	Model  string
	Reason string
	Best   AccuracyStep
	Budget string
}

func (e *DropNotMetError) Error() string {
	d := ""
	if e.Best.Drop != nil {
		d = fmt.Sprintf("drop %.3f dB, ", *e.Best.Drop)
	}
	speed := ""
	if e.Best.Speedup > 0 {
		speed = fmt.Sprintf(" at an estimated %.2fx", e.Best.Speedup)
	}
	return fmt.Sprintf("%s: no model within %s: %s; the best measured (%s) has %sPSNR-Y vs FP32 %.2f dB%s",
		e.Model, e.Budget, e.Reason, plural(e.Best.Widened, "widening"), d, e.Best.PSNRvsFP32, speed)
}

// accuracy reports whether accuracy control is on.
func (c Config) accuracy() bool { return c.MaxDrop > 0 || c.MaxDropVsFP32 > 0 }

// budget describes the limits for messages.
func (c Config) budget() string {
	var parts []string
	if c.MaxDrop > 0 {
		parts = append(parts, fmt.Sprintf("a drop of %g dB", c.MaxDrop))
	}
	if c.MaxDropVsFP32 > 0 {
		parts = append(parts, fmt.Sprintf("%g dB PSNR-Y vs FP32", c.MaxDropVsFP32))
	}
	return strings.Join(parts, " and ")
}

// accuracyRun is the state of one accuracy control search.
type accuracyRun struct {
	w     *widener
	val   *validation
	cal   *calibration
	cfg   Config
	ev    Events
	order []ranked
	steps []AccuracyStep
	built map[int]*built
	exc   map[int]float64
	last  int
	// in is the LR input the latencies are timed on, and key the latency
	// cache's key for this model, setting and machine (both set by rank).
	in  *ort.Tensor
	key string
}

// accuracyControl runs the search on the calibrated base (plan pl,
// quantizers qs; pr.g tuned if Config.Tune, float its float graph) and
// returns the model chosen with its record. When no model meets the
// budget it returns the best one measured and a *DropNotMetError.
func accuracyControl(ctx context.Context, pr *prepared, pl *passes.Plan, cal *calibration, qs *quantizers, float *graph.Graph, data []byte, calImgs []string, val *validation, cfg Config, ev Events) (*built, *Accuracy, error) {
	w, err := newWidener(pr, cfg, pl, qs, float, cal.stats)
	if err != nil {
		return nil, nil, err
	}
	a := &accuracyRun{w: w, val: val, cal: cal, cfg: cfg, ev: ev, built: map[int]*built{}, exc: map[int]float64{}}
	// The base model first: one within the budget as it is (or a single
	// step allowed) needs no ranking.
	if err := a.measure(ctx, 0); err != nil {
		return nil, nil, err
	}
	if err := w.sizes(ctx, cal); err != nil {
		return nil, nil, err
	}
	if a.exc[0] > 1 && cfg.MaxSteps > 1 {
		if err := a.rank(ctx, data, calImgs, float); err != nil {
			return nil, nil, err
		}
	} else if cfg.LatencyCache != "" {
		// A table measured before still estimates the speed-up.
		if key, err := latencyKey(data, cfg, cal.set); err == nil {
			w.lat, _ = loadLatency(cfg.LatencyCache, key)
		}
	}
	if w.lat != nil {
		a.steps[0].Speedup = round4(w.lat.FP32 / a.timeAt(0))
	}
	best, err := a.search(ctx)
	if err != nil {
		return nil, nil, err
	}
	acc := a.record(best)
	b := a.built[best]
	if !acc.Met {
		return b, acc, &DropNotMetError{Model: pr.name, Budget: cfg.budget(), Best: acc.Steps[acc.Chosen], Reason: a.why()}
	}
	if best > 0 && w.lat != nil {
		// The estimates interpolate between whole models timed with every
		// Conv at one rung; a model with most of it float and a few int8
		// Convs between float neighbours pays conversions they do not
		// see (IMDN x4 at 0.05 dB: estimated 1.01x, ran at 0.83x). The
		// model chosen is timed against FP32 before it is written.
		if acc.Speedup, err = a.timeChosen(ctx, float, b); err != nil {
			return nil, nil, err
		}
		if acc.Speedup < 1 && w.lat.FP32 > w.lat.Base && w.macsPerPixel(a.cal.shape) >= minVerdictMACs {
			// The base model pays and the widenings spent all of it. (A
			// network whose int8 model never beats FP32 here, or one so
			// small that a run is mostly overhead and timing noise, is
			// quantize's speed warning's business.)
			acc.Met = false
			return b, acc, &DropNotMetError{Model: pr.name, Budget: cfg.budget(), Best: acc.Steps[acc.Chosen],
				Reason: fmt.Sprintf("the fastest model within it runs at %.2fx of the FP32 model here (timed at %dx%d): the FP32 model meets it faster", acc.Speedup, latencySize, latencySize)}
		}
	}
	return b, acc, nil
}

// macsPerPixel is the widenable Convs' multiply-accumulates per input pixel
// (sizes counts them on one calibration patch of shape).
func (w *widener) macsPerPixel(shape [3]int) float64 {
	var m float64
	for _, u := range w.units {
		m += w.macs[u.conv]
	}
	return m / float64(shape[1]*shape[2])
}

// timeChosen times the chosen model b against the FP32 model, alternated
// in pairs on the latency input, and returns the speed-up. The pair is
// kept in Config.LatencyCache beside the table (the order, so the model
// chosen, follows from the table and the validation images), so that a
// second run decides as the first did.
func (a *accuracyRun) timeChosen(ctx context.Context, float *graph.Graph, b *built) (float64, error) {
	cfg := a.cfg
	mb, err := onnx.Marshal(b.model)
	if err != nil {
		return 0, err
	}
	h := sha256.Sum256(mb)
	key := a.key + "-chosen-" + hex.EncodeToString(h[:8])
	if cfg.LatencyCache != "" {
		if t, ok := loadLatency(cfg.LatencyCache, key); ok {
			return round4(t.FP32 / t.Base), nil
		}
	}
	fm, err := float.ToModel()
	if err != nil {
		return 0, err
	}
	a.ev.log(fmt.Sprintf("max-drop: timing the model chosen against FP32 on a %dx%d LR input", latencySize, latencySize))
	t := &latencyTable{Size: latencySize, Runs: latencyRuns, PerMAC: map[string]float64{}}
	if t.FP32, t.Base, err = timePair(ctx, fm, b.model, a.in, cfg.Threads); err != nil {
		return 0, err
	}
	if cfg.LatencyCache != "" {
		if err := saveLatency(cfg.LatencyCache, key, t); err != nil {
			return 0, err
		}
	}
	return round4(t.FP32 / t.Base), nil
}

// rank measures (or reads from Config.LatencyCache) the latency of every
// rung and the noise of every rung, and ranks the widenings.
func (a *accuracyRun) rank(ctx context.Context, data []byte, calImgs []string, float *graph.Graph) error {
	w, cal, cfg, ev := a.w, a.cal, a.cfg, a.ev
	im, err := img.Read(calImgs[0])
	if err != nil {
		return err
	}
	in, err := verify.LatencyInput(im, latencySize, w.pr.rng)
	if err != nil {
		return err
	}
	key, err := latencyKey(data, cfg, cal.set)
	if err != nil {
		return err
	}
	a.in, a.key = in, key
	var ok bool
	if cfg.LatencyCache != "" {
		w.lat, ok = loadLatency(cfg.LatencyCache, key)
	}
	if !ok {
		ev.log(fmt.Sprintf("max-drop: timing every rung on a %dx%d LR input (whole models, alternated in pairs)", latencySize, latencySize))
		if w.lat, err = measureLatency(ctx, w, cal, in); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		if cfg.LatencyCache != "" {
			if err := saveLatency(cfg.LatencyCache, key, w.lat); err != nil {
				return err
			}
		}
	} else {
		ev.log("max-drop: latencies read from the latency cache " + cfg.LatencyCache)
	}
	batches, shape := cropBatches(cal.batches[:min(accuracyPatches, len(cal.batches))], cal.shape, accuracyPatchSide)
	meter, err := newOutputMeterOn(ctx, w.pr, float, batches, shape, cfg)
	if err != nil {
		return err
	}
	ev.log(fmt.Sprintf("max-drop: measuring the output noise of every rung of %d Convs and of %s on %d patches of %dx%d", len(w.units), plural(len(w.blocks), "block"), len(batches), shape[2], shape[1]))
	if err := w.measureNoise(ctx, meter, ev); err != nil {
		return fmt.Errorf("sensitivity: %w", err)
	}
	if err := w.measureBlocks(ctx, meter, cal, ev); err != nil {
		return fmt.Errorf("sensitivity: %w", err)
	}
	a.order = w.order()
	ev.log(fmt.Sprintf("max-drop: %s ranked by predicted accuracy per millisecond; budget %s on %d validation tiles", plural(len(a.order), "widening"), cfg.budget(), len(a.val.ims)))
	return nil
}

// search measures prefixes of the order (see the top of this file) and
// returns the prefix to write: the shortest within the budget, or the
// best measured when none is.
func (a *accuracyRun) search(ctx context.Context) (int, error) {
	n := len(a.order)
	lo, hi := 0, -1 // longest prefix over the budget, shortest within (-1: none yet)
	if a.exc[0] <= 1 {
		hi = 0
	}
	for hi != 0 && len(a.steps) < a.cfg.MaxSteps {
		var k int
		if hi < 0 {
			if lo == n {
				break // every widening applied, still over
			}
			// Aim a little inside the budget: a jump that lands just over
			// it costs a step.
			k = a.predict(lo, lo+1, 0.8)
		} else {
			if hi-lo <= 1 {
				break
			}
			// The prediction from each end of the interval, averaged.
			p := (a.predict(lo, lo+1, 1) + a.predict(hi, lo+1, 1)) / 2
			// Halfway between the prediction and the middle: at least a
			// quarter of the interval goes each step, whatever the noise
			// model says.
			k = min(max((p+(lo+hi)/2)/2, lo+1), hi-1)
		}
		if err := a.measure(ctx, k); err != nil {
			return 0, err
		}
		if a.exc[k] <= 1 {
			hi = k
		} else {
			lo = k
		}
	}
	if hi >= 0 {
		return hi, nil
	}
	best := 0
	for k, e := range a.exc {
		if e < a.exc[best] || e == a.exc[best] && k < best {
			best = k
		}
	}
	return best, nil
}

// predict is the shortest prefix from on whose predicted excess, scaled
// from the measured prefix j, is at most target (len(order) if none).
func (a *accuracyRun) predict(j, from int, target float64) int {
	nj := a.noiseAt(j)
	if nj <= 0 {
		return from
	}
	for k := from; k <= len(a.order); k++ {
		if a.exc[j]*a.noiseAt(k)/nj <= target {
			return k
		}
	}
	return len(a.order)
}

// noiseAt and timeAt are the predicted noise and latency of prefix k.
func (a *accuracyRun) noiseAt(k int) float64 {
	if k == 0 {
		return a.w.noise(a.w.start)
	}
	return a.order[k-1].noise
}

func (a *accuracyRun) timeAt(k int) float64 {
	if k == 0 {
		return a.w.lat.estimate(a.w, a.w.start)
	}
	return a.order[k-1].timeMS
}

// measure builds prefix k, scores it on the validation images and logs
// the step.
func (a *accuracyRun) measure(ctx context.Context, k int) error {
	b, err := a.w.build(ctx, a.w.stateAt(a.order, k), a.cal)
	if err != nil {
		return fmt.Errorf("model with %d widenings: %w", k, err)
	}
	sc, err := a.val.measure(ctx, b.model, a.cfg.Threads)
	if err != nil {
		return err
	}
	st := AccuracyStep{Widened: k, PSNRvsFP32: round4(sc.psnr), PSNRvsFP32Low: round4(sc.psnrLo)}
	if a.w.lat != nil {
		st.Speedup = round4(a.w.lat.FP32 / a.timeAt(k))
	}
	if a.val.gt {
		d, hi := round4(sc.drop), round4(sc.dropHi)
		st.Drop, st.DropHigh = &d, &hi
	}
	a.exc[k] = a.cfg.excess(sc)
	st.Within = a.exc[k] <= 1
	for i := min(a.last, k); i < max(a.last, k); i++ {
		if k > a.last {
			st.Added = append(st.Added, a.order[i].String())
		} else {
			st.Removed = append(st.Removed, a.order[i].String())
		}
	}
	a.last = k
	a.built[k] = b
	a.steps = append(a.steps, st)
	what := "the base model"
	switch {
	case len(st.Added) > 0:
		what = fmt.Sprintf("%d of %d widenings (+ %s)", k, len(a.order), describeWidenings(st.Added, 4))
	case len(st.Removed) > 0:
		what = fmt.Sprintf("%d of %d widenings (− %s)", k, len(a.order), describeWidenings(st.Removed, 4))
	}
	drop := ""
	if st.Drop != nil {
		drop = fmt.Sprintf("drop %.3f dB (≤ %.3f at %.0f%%), ", *st.Drop, *st.DropHigh, 100*validationConfidence)
	}
	verdict := "over the budget"
	if st.Within {
		verdict = "within the budget"
	}
	speed := ""
	if st.Speedup > 0 {
		speed = fmt.Sprintf(", speed-up %.2fx (estimated)", st.Speedup)
	}
	a.ev.log(fmt.Sprintf("max-drop step %d, %s: %sPSNR-Y vs FP32 %.2f dB%s: %s", len(a.steps), what, drop, st.PSNRvsFP32, speed, verdict))
	return nil
}

// why says why no model met the budget.
func (a *accuracyRun) why() string {
	if a.order != nil && len(a.order) == 0 {
		return "no widening is predicted to remove noise"
	}
	if _, ok := a.exc[len(a.order)]; ok && len(a.order) > 0 {
		return fmt.Sprintf("even with all %d widenings (every Conv at its widest form) the validation images stay over it", len(a.order))
	}
	return fmt.Sprintf("none of the %d models measured (--max-steps %d) is within it", len(a.steps), a.cfg.MaxSteps)
}

// record writes what the search did, chosen being the prefix written.
func (a *accuracyRun) record(chosen int) *Accuracy {
	acc := &Accuracy{MaxDrop: a.cfg.MaxDrop, MaxDropVsFP32: a.cfg.MaxDropVsFP32, Candidates: len(a.order), Steps: a.steps}
	if lat := a.w.lat; lat != nil {
		acc.Latency = &AccuracyLatency{Size: lat.Size, Runs: lat.Runs, Threads: a.cfg.Threads, FP32MS: round4(lat.FP32), BaseMS: round4(a.timeAt(0)),
			CPU: verify.HostCPU().String(), ORT: ort.Version(), Cached: lat.Cached}
	}
	for _, im := range a.val.ims {
		acc.Validation = append(acc.Validation, im.name)
	}
	acc.Tile = validationTile
	if a.val.gt {
		p := round4(a.val.fp32GT)
		acc.FP32PSNR = &p
	}
	for i, s := range a.steps {
		if s.Widened == chosen {
			acc.Chosen = i
		}
	}
	acc.Met = a.exc[chosen] <= 1
	for _, r := range a.order[:chosen] {
		acc.Widened = append(acc.Widened, r.String())
	}
	return acc
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// plural writes n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
