package quant

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
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
// The order of the widenings comes from measurements taken once: the
// output noise each rung of each Conv adds with that Conv alone quantized
// (sensitivity, on a few calibration patches) and the kernel time of each
// rung (latency.go). Greedily, the next widening is the one that removes
// the most predicted noise per predicted millisecond. That order is then
// walked by measuring models on the validation images: a prefix of it is
// a model, and the model returned is the shortest prefix whose measured
// drop is within the budget. A linear walk would measure every prefix up
// to it — on IMDN, whose W8A8 loss is spread over all 44 Convs, dozens of
// models — so the walk jumps where the noise model predicts the budget is
// met (scaled by the last measurement) and then bisects between the
// longest prefix measured over the budget and the shortest within it,
// each model one of Config.MaxSteps measurements. Every model measured is
// logged and recorded (srq.accuracy), so the drop-vs-speed curve of the
// search is in the model.

// DefaultMaxSteps bounds the models accuracy control measures: the base
// model, a jump or two, then bisection over an order of up to ~200
// widenings (RCAN's 137 Convs) within a few.
const DefaultMaxSteps = 10

const (
	// validationEvery holds out every 4th calibration image (sorted by
	// name) for validation: 2 of the 8 photos in ../shared/images.
	validationEvery = 4
	// accuracyPatches and accuracyPatchSide are the patches the per-rung
	// noise is measured on (the centres of the first calibration
	// patches): the noises differ by orders of magnitude, and a few
	// patches rank them; three measurements per Conv must stay cheap.
	accuracyPatches   = 4
	accuracyPatchSide = 32
	// validationTile is the side, in HR pixels, of the tiles validation
	// images are cut into, each scored as an image of its own: the size
	// of a Set5 image. Benchmarks average the drop per image, and a small
	// image's drop weighs its smooth, well reconstructed parts more than
	// a large one's does (a drop is the quantization noise over the FP32
	// model's own error): IMDN x4 W8A8 lost 0.113 dB on the two photos
	// held out of ../shared/images as whole images, 0.162 dB as tiles of
	// 256, and 0.189 dB on Set5. validationTiles bounds the tiles per
	// image, spread over it, so that a 2K photo costs what a benchmark
	// image does.
	validationTile  = 256
	validationTiles = 8
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
	// table (ORT's per-kernel times): an estimate, kept in the model
	// because it is as repeatable as the table.
	Speedup float64 `json:"speedup_est"`
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
	// Latency says how the speed-ups were estimated.
	Latency AccuracyLatency `json:"latency"`
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
	return fmt.Sprintf("%s: no model within %s: %s; the best measured (%d widenings) has %sPSNR-Y vs FP32 %.2f dB at an estimated %.2fx",
		e.Model, e.Budget, e.Reason, e.Best.Widened, d, e.Best.PSNRvsFP32, e.Best.Speedup)
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

// splitValidation returns the calibration and validation images: with
// Config.Validation those, else every validationEvery-th image by sorted
// base name held out (at least one, the last, and at least one left).
func splitValidation(imgs []string, cfg Config) (cal, val []string, heldOut bool, err error) {
	if !cfg.accuracy() {
		return imgs, nil, false, nil
	}
	if len(cfg.Validation) > 0 {
		return imgs, cfg.Validation, false, nil
	}
	if len(imgs) < 2 {
		return nil, nil, false, fmt.Errorf("--max-drop holds validation images out of the calibration images and needs at least 2 of them (got %d), or --val", len(imgs))
	}
	sorted := slices.Clone(imgs)
	slices.SortStableFunc(sorted, func(a, b string) int {
		if c := strings.Compare(filepath.Base(a), filepath.Base(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for i, p := range sorted {
		if i%validationEvery == validationEvery-1 {
			val = append(val, p)
		} else {
			cal = append(cal, p)
		}
	}
	if len(val) == 0 {
		cal, val = sorted[:len(sorted)-1], sorted[len(sorted)-1:]
	}
	return cal, val, true, nil
}

// validation is the validation images, ready to score models on.
type validation struct {
	ims    []valImage
	gt     bool
	fp32GT float64 // the FP32 model's mean PSNR-Y against the ground truth
	scale  int
	rng    float32
}

type valImage struct {
	name         string
	lr, gt, fp32 *img.Image
	fp32PSNR     float64 // of fp32 against gt
}

// loadValidation reads the validation images (ground truth unless
// Config.CalibLR: LR made by the benchmarks' bicubic), cropped to
// validationSide LR pixels around the centre, and runs the FP32 model
// (data) on them once.
func loadValidation(ctx context.Context, data []byte, name string, paths []string, pr *prepared, cfg Config) (*validation, error) {
	v := &validation{gt: !cfg.CalibLR, scale: pr.scale, rng: pr.rng}
	if cfg.MaxDrop > 0 && !v.gt {
		return nil, errors.New("--max-drop measures the drop against the ground truth, and --calib-lr images are LR inputs without it; use --max-drop-vs-fp32")
	}
	s, err := ort.NewSession(data, name, ort.Options{Threads: cfg.Threads})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	for _, p := range paths {
		tiles, err := cutValidation(p, pr.scale, v.gt)
		if err != nil {
			return nil, err
		}
		for _, vi := range tiles {
			if vi.fp32, err = runImage(ctx, s, vi.lr, pr.rng); err != nil {
				return nil, fmt.Errorf("validation image %s: %w", p, err)
			}
			v.ims = append(v.ims, vi)
		}
	}
	if v.gt {
		for i, vi := range v.ims {
			p, err := verify.PSNRY(vi.fp32, vi.gt, pr.scale)
			if err != nil {
				return nil, fmt.Errorf("validation image %s: %w", vi.name, err)
			}
			v.ims[i].fp32PSNR = min(p, verify.MaxPSNR)
			v.fp32GT += v.ims[i].fp32PSNR / float64(len(v.ims))
		}
	}
	return v, nil
}

// cutValidation cuts the image at path into tiles of validationTile HR
// pixels (a multiple of scale; the whole image if smaller), at most
// validationTiles of them spread over the tile grid, and makes each
// tile's LR input by the benchmarks' bicubic (with gt) or takes the image
// as LR (without: tiles of validationTile/scale LR pixels).
func cutValidation(path string, scale int, gt bool) ([]valImage, error) {
	im, err := img.Read(path)
	if err != nil {
		return nil, fmt.Errorf("validation image %w", err)
	}
	side := validationTile / scale * scale
	if !gt {
		side = validationTile / scale
	}
	tw, th := min(side, im.W), min(side, im.H)
	if gt {
		tw, th = tw-tw%scale, th-th%scale
	}
	if tw == 0 || th == 0 {
		return nil, fmt.Errorf("validation image %s: %dx%d is smaller than the scale %d", path, im.W, im.H, scale)
	}
	nx, ny := im.W/tw, im.H/th
	n := min(nx*ny, validationTiles)
	var out []valImage
	for i := range n {
		t := i * nx * ny / n
		x, y := t%nx*tw, t/nx*th
		crop := img.Crop(im, x, y, tw, th)
		vi := valImage{name: fmt.Sprintf("%s@%d,%d", filepath.Base(path), x, y), lr: crop}
		if gt {
			vi.gt, vi.lr = crop, img.ResizeBicubic(crop, tw/scale, th/scale)
		}
		out = append(out, vi)
	}
	return out, nil
}

// runImage runs session s on one LR image (values in 0..1, scaled to the
// model's range rng) and returns the output in 0..1.
func runImage(ctx context.Context, s *ort.Session, lr *img.Image, rng float32) (*img.Image, error) {
	in := make([]float32, len(lr.Pix))
	for i, v := range lr.Pix {
		in[i] = v * rng
	}
	out, err := s.RunContext(ctx, &ort.Tensor{Shape: []int64{1, int64(lr.C), int64(lr.H), int64(lr.W)}, Data: in})
	if err != nil {
		return nil, err
	}
	o := out[0]
	if len(o.Shape) != 4 || o.Shape[0] != 1 {
		return nil, fmt.Errorf("output of shape %v for one image", o.Shape)
	}
	pix := make([]float32, len(o.Data))
	for i, v := range o.Data {
		pix[i] = v / rng
	}
	return &img.Image{C: int(o.Shape[1]), H: int(o.Shape[2]), W: int(o.Shape[3]), Pix: pix}, nil
}

// score is a model's measurement on the validation images: the mean
// drop and PSNR-Y against the FP32 output over the tiles, and the bounds
// the budget is checked on.
type score struct {
	drop, psnr float64
	// dropHi is a one-sided upper confidence bound on the mean drop and
	// psnrLo a lower one on the mean PSNR-Y against FP32 (confidence
	// validationConfidence, Student's t over the tiles).
	dropHi, psnrLo float64
}

// validationConfidence is the confidence of the bounds a budget is
// checked on. The tiles are a sample of the images the model will see, and
// a budget is a guarantee: a mean that meets it by less than its own
// uncertainty has not met it. On IMDN x4 W8A8 at 0.05 dB the mean over
// the 4 held-out tiles chose a model that lost 0.041 dB there and 0.053 on
// Set5.
const validationConfidence = 0.9

// tQuantile90 is Student's t at one-sided 90% by degrees of freedom
// (index; 0: none), the normal quantile beyond the table.
var tQuantile90 = [...]float64{math.Inf(1), 3.078, 1.886, 1.638, 1.533, 1.476, 1.440, 1.415, 1.397, 1.383, 1.372,
	1.363, 1.356, 1.350, 1.345, 1.341, 1.337, 1.333, 1.330, 1.328, 1.325}

// upperBound is the one-sided validationConfidence upper bound on the
// mean of xs.
func upperBound(xs []float64) float64 {
	n := float64(len(xs))
	var m, v float64
	for _, x := range xs {
		m += x / n
	}
	if len(xs) < 2 {
		return m
	}
	for _, x := range xs {
		v += (x - m) * (x - m) / (n - 1)
	}
	t := 1.282
	if df := len(xs) - 1; df < len(tQuantile90) {
		t = tQuantile90[df]
	}
	return m + t*math.Sqrt(v/n)
}

// measure runs model m on the validation images.
func (v *validation) measure(ctx context.Context, m *onnx.ModelProto, threads int) (score, error) {
	data, err := onnx.Marshal(m)
	if err != nil {
		return score{}, err
	}
	s, err := ort.NewSession(data, "candidate model", ort.Options{Threads: threads})
	if err != nil {
		return score{}, err
	}
	defer s.Close()
	var drops, negPSNR []float64
	for _, im := range v.ims {
		out, err := runImage(ctx, s, im.lr, v.rng)
		if err != nil {
			return score{}, fmt.Errorf("validation image %s: %w", im.name, err)
		}
		p, err := verify.PSNRY(out, im.fp32, v.scale)
		if err != nil {
			return score{}, fmt.Errorf("validation image %s: %w", im.name, err)
		}
		negPSNR = append(negPSNR, -min(p, verify.MaxPSNR))
		if im.gt != nil {
			q, err := verify.PSNRY(out, im.gt, v.scale)
			if err != nil {
				return score{}, fmt.Errorf("validation image %s: %w", im.name, err)
			}
			drops = append(drops, im.fp32PSNR-min(q, verify.MaxPSNR))
		}
	}
	sc := score{psnr: -mean(negPSNR), psnrLo: -upperBound(negPSNR)}
	if v.gt {
		sc.drop, sc.dropHi = mean(drops), upperBound(drops)
	}
	return sc, nil
}

func mean(xs []float64) float64 {
	var m float64
	for _, x := range xs {
		m += x / float64(len(xs))
	}
	return m
}

// excess is how far a score's bounds are from the budget, as a ratio of
// noise powers: at most 1 within it. A drop is proportional to the noise
// added while it is small against the FP32 model's own error; a PSNR
// floor is a noise power itself.
func (c Config) excess(s score) float64 {
	r := math.Inf(-1)
	if c.MaxDrop > 0 {
		r = max(r, s.dropHi/c.MaxDrop)
	}
	if c.MaxDropVsFP32 > 0 {
		r = max(r, math.Pow(10, (c.MaxDropVsFP32-s.psnrLo)/10))
	}
	return r
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
	im, err := img.Read(calImgs[0])
	if err != nil {
		return nil, nil, err
	}
	in, err := verify.LatencyInput(im, latencySize, pr.rng)
	if err != nil {
		return nil, nil, err
	}
	if err := w.sizes(ctx, cal); err != nil {
		return nil, nil, err
	}
	key, err := latencyKey(data, cfg, cal.set)
	if err != nil {
		return nil, nil, err
	}
	var ok bool
	if cfg.LatencyCache != "" {
		w.lat, ok = loadLatency(cfg.LatencyCache, key)
	}
	if !ok {
		ev.log(fmt.Sprintf("max-drop: timing every Conv's kernels in ORT's profiler (%dx%d LR, %d runs of 5 models)", latencySize, latencySize, latencyRuns))
		if w.lat, err = measureLatency(ctx, w, cal, in); err != nil {
			return nil, nil, fmt.Errorf("latency: %w", err)
		}
		if cfg.LatencyCache != "" {
			if err := saveLatency(cfg.LatencyCache, key, w.lat); err != nil {
				return nil, nil, err
			}
		}
	} else {
		ev.log("max-drop: kernel times read from the latency cache " + cfg.LatencyCache)
	}
	batches, shape := cropBatches(cal.batches[:min(accuracyPatches, len(cal.batches))], cal.shape, accuracyPatchSide)
	meter, err := newOutputMeterOn(ctx, pr, float, batches, shape, cfg)
	if err != nil {
		return nil, nil, err
	}
	ev.log(fmt.Sprintf("max-drop: measuring the output noise of every rung of %d Convs on %d patches of %dx%d", len(w.units), len(batches), shape[2], shape[1]))
	if err := w.measureNoise(ctx, meter, ev); err != nil {
		return nil, nil, fmt.Errorf("sensitivity: %w", err)
	}
	a := &accuracyRun{w: w, val: val, cal: cal, cfg: cfg, ev: ev, order: w.order(), built: map[int]*built{}, exc: map[int]float64{}}
	best, err := a.search(ctx)
	if err != nil {
		return nil, nil, err
	}
	acc := a.record(best)
	b := a.built[best]
	if !acc.Met {
		return b, acc, &DropNotMetError{Model: pr.name, Budget: cfg.budget(), Best: acc.Steps[acc.Chosen], Reason: a.why()}
	}
	return b, acc, nil
}

// search measures prefixes of the order (see the top of this file) and
// returns the prefix to write: the shortest within the budget, or the
// best measured when none is.
func (a *accuracyRun) search(ctx context.Context) (int, error) {
	n := len(a.order)
	if err := a.measure(ctx, 0); err != nil {
		return 0, err
	}
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
	st := AccuracyStep{Widened: k, PSNRvsFP32: round4(sc.psnr), PSNRvsFP32Low: round4(sc.psnrLo), Speedup: round4(a.w.lat.FP32 / a.timeAt(k))}
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
	change := "the base model"
	switch {
	case len(st.Added) > 0:
		change = "+ " + describeWidenings(st.Added, 4)
	case len(st.Removed) > 0:
		change = "− " + describeWidenings(st.Removed, 4)
	}
	drop := ""
	if st.Drop != nil {
		drop = fmt.Sprintf("drop %.3f dB (≤ %.3f at %.0f%%), ", *st.Drop, *st.DropHigh, 100*validationConfidence)
	}
	verdict := "over the budget"
	if st.Within {
		verdict = "within the budget"
	}
	a.ev.log(fmt.Sprintf("max-drop step %d: %d of %d widenings (%s): %sPSNR-Y vs FP32 %.2f dB, speed-up %.2fx (estimated): %s",
		len(a.steps), k, len(a.order), change, drop, st.PSNRvsFP32, st.Speedup, verdict))
	return nil
}

// why says why no model met the budget.
func (a *accuracyRun) why() string {
	if _, ok := a.exc[len(a.order)]; ok {
		return fmt.Sprintf("even with all %d widenings (every Conv at its widest form) the validation images stay over it", len(a.order))
	}
	return fmt.Sprintf("none of the %d models measured (--max-steps %d) is within it", len(a.steps), a.cfg.MaxSteps)
}

// record writes what the search did, chosen being the prefix written.
func (a *accuracyRun) record(chosen int) *Accuracy {
	lat := a.w.lat
	acc := &Accuracy{MaxDrop: a.cfg.MaxDrop, MaxDropVsFP32: a.cfg.MaxDropVsFP32, Candidates: len(a.order), Steps: a.steps,
		Latency: AccuracyLatency{Size: lat.Size, Runs: lat.Runs, Threads: a.cfg.Threads, FP32MS: round4(lat.FP32), BaseMS: round4(a.timeAt(0)),
			CPU: verify.HostCPU().String(), ORT: ort.Version(), Cached: lat.Cached}}
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
