// Package quant runs srq's post-training quantization end to end: it probes
// the FP32 model, prepares its graph, plans where Q/DQ goes, calibrates
// activation ranges in ONNX Runtime on image patches, and writes the QDQ
// model. The CLI's `srq quantize` is a thin wrapper around Quantize.
package quant

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/enum"
	"github.com/srquant/srq/internal/progress"
	"github.com/srquant/srq/internal/version"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
	"github.com/srquant/srq/sr"
)

// Method is an activation range method.
type Method string

const (
	MinMax     Method = "minmax"
	Percentile Method = "percentile"
	MSE        Method = "mse"
	// Dual is the outlier-aware dual-region quantizer (qdq.Dual) on every
	// Conv input but the first and last Conv's: minmax range, breakpoint
	// by Config.Breakpoint, bits spent by Config.Accounting.
	Dual Method = "dual"
)

// ParseMethod checks a --method value.
func ParseMethod(s string) (Method, error) {
	return enum.Parse("method", s, MinMax, Percentile, MSE, Dual)
}

// Rotation is the --rotate setting: auto (rotate when tuning), on or off.
type Rotation string

const (
	RotateAuto Rotation = "auto"
	RotateOn   Rotation = "on"
	RotateOff  Rotation = "off"
)

// ParseRotation checks a --rotate value.
func ParseRotation(s string) (Rotation, error) {
	return enum.Parse("rotation", s, RotateAuto, RotateOn, RotateOff)
}

// Equalization is the --equalize setting.
type Equalization string

const (
	EqualizeAuto Equalization = "auto"
	EqualizeOn   Equalization = "on"
	EqualizeOff  Equalization = "off"
)

// ParseEqualization checks an --equalize value.
func ParseEqualization(s string) (Equalization, error) {
	return enum.Parse("equalization", s, EqualizeAuto, EqualizeOn, EqualizeOff)
}

// rotates says whether c rotates the channel spaces.
func (c Config) rotates() bool {
	return c.Rotate == RotateOn || (c.Rotate == RotateAuto && c.Tune)
}

// Bits is a weight/activation bit-width setting such as w8a8.
type Bits struct{ W, A int }

func (b Bits) String() string { return fmt.Sprintf("w%da%d", b.W, b.A) }

// MinBits and MaxBits bound the weight and activation widths srq accepts:
// below 2 bits a symmetric weight grid has no nonzero level, and 8 bits is
// the widest integer ORT's CPU kernels compute on.
const (
	MinBits = 2
	MaxBits = 8
)

// ParseBits reads "wNaM" with N and M in [MinBits, MaxBits] (w4a4, w8a8...).
func ParseBits(s string) (Bits, error) {
	var b Bits
	ls := strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexByte(ls, 'a')
	if !strings.HasPrefix(ls, "w") || i < 2 {
		return b, fmt.Errorf("bits %q: want wNaM, e.g. w4a4", s)
	}
	w, err1 := strconv.Atoi(ls[1:i])
	a, err2 := strconv.Atoi(ls[i+1:])
	if err1 != nil || err2 != nil {
		return b, fmt.Errorf("bits %q: want wNaM, e.g. w4a4", s)
	}
	if w < MinBits || w > MaxBits || a < MinBits || a > MaxBits {
		return b, fmt.Errorf("bits %q: weight and activation widths must be in %d..%d", s, MinBits, MaxBits)
	}
	return Bits{W: w, A: a}, nil
}

// Config is every knob of a quantization run; CLI flags map onto it one to one.
type Config struct {
	Bits       Bits
	Method     Method
	Percentile float64 // for Method == Percentile, e.g. 99.99
	// Weights: per output channel (default) or per tensor, clip by MSE
	// search (default) or min/max.
	PerTensorWeights bool
	WeightMethod     qdq.WeightMethod
	FirstLast        passes.FirstLast
	LongSkip         passes.LongSkip
	Skip             []string
	FloatOps         []string

	// Accounting is how the dual-region quantizer spends its bits
	// (Method == Dual).
	Accounting qdq.Accounting
	// Breakpoint chooses the dual-region breakpoints (Method == Dual).
	Breakpoint Breakpoint
	// Encoding is how the input quantizers of low-bit and dual-region
	// Convs are written; LayerEncoding overrides it per Conv (node name).
	Encoding      passes.Encoding
	LayerEncoding map[string]passes.Encoding

	// Calibration data.
	Patches   int   // number of LR patches
	PatchSize int   // LR patch side
	Seed      int64 // patch sampling seed
	CalibLR   bool  // images are LR already (no bicubic downscale)
	Batch     int   // patches per ORT run

	// Tune improves the quantizers layer by layer on the calibration
	// patches (see tune): each Conv's input quantizer (breakpoint or clip)
	// and weight rounding (GPTQ) for the least error at its own output,
	// kept stage by stage only where the held-out patches agree.
	// TimeBudget bounds it (0: none); BiasCorrection also removes the mean
	// output shift each quantized Conv leaves.
	Tune           bool
	TimeBudget     time.Duration
	BiasCorrection bool
	// GradSteps, with Tune, is the number of Adam steps of gradient tuning
	// after the layer-wise tuner (see gradTune): every quantized Conv's
	// bias and per-channel weight steps on the whole network's output
	// error, kept only where the patches of held-out images agree. 0
	// leaves it out.
	GradSteps int

	// BudgetBits, if positive, is the mean width (weights and inputs,
	// weighted by multiply-accumulates) of the low-bit Convs under mixed
	// precision: each gets its own width from its measured sensitivity
	// (see mixedPrecision). Bits sets the width the sensitivity is measured
	// at.
	BudgetBits float64

	// Rotate says whether each residual-stream channel space is turned by
	// a Hadamard matrix before calibration (passes.Rotate): exact, and it
	// spreads a few outlier channels over all of them. RotateAuto (the
	// default) rotates when tuning: a rotated stream is incoherent, which
	// is what GPTQ's error feedback needs (QuIP), while on its own, with
	// calibrated clips only, rotation measured worse on EDSR x4 W4A4.
	Rotate Rotation

	// Equalize chooses the channel spaces rescaled before calibration
	// (passes.Equalize, strength equalizeAlpha): EqualizeAuto those whose
	// channels pass a per-channel PRelu, EqualizeOn every space,
	// EqualizeOff none (see equalizeSpaces for the measurements).
	Equalize Equalization

	// AvoidKernelDefects pads the int8 Convs whose shapes ORT 1.24.x is
	// known to compute wrong on CPUs with AMX to 32 output channels
	// (passes.AvoidKernelDefects): the same codes on every CPU, at the
	// cost of a few zero filters. Off only to reproduce the defect.
	AvoidKernelDefects bool

	// Threads is ORT's intra-op thread count; DefaultConfig sets the
	// logical CPUs. 0 leaves the choice to ORT, which on the 2-core CI
	// machine kept about one core busy: calibrating EDSR x4 took 24 s
	// against 15 s with 2 threads, same model written.
	Threads int
	Probe   sr.ProbeOptions // scale / input range overrides

	// MaxDrop, if positive, turns on accuracy control (see accuracy.go):
	// the written model's mean PSNR-Y drop against the ground truth, on
	// validation images calibration did not use, must be at most MaxDrop
	// dB, and the model is widened (a Conv to 8 bits, a value read in two
	// int8 parts, a Conv or block float) where that buys the most accuracy
	// per millisecond until it is. MaxDropVsFP32, if positive, is a floor
	// in dB on the PSNR-Y of the quantized output against the FP32 output
	// on the same images, for images without ground truth (--calib-lr).
	MaxDrop       float64
	MaxDropVsFP32 float64
	// Validation are the validation images (--val); none: every 4th
	// calibration image, by sorted name, is held out for it.
	Validation []string
	// MaxSteps bounds the models accuracy control measures.
	MaxSteps int
	// LatencyCache, if set, is a folder where the per-Conv kernel times
	// accuracy control measures are kept, per model, setting, calibration
	// and machine: a later run reads them instead of timing again, so it
	// ranks, and writes, exactly as the first run did.
	LatencyCache string
}

// DefaultConfig returns the defaults of `srq quantize`. The range method is
// the two-sided 99.999th percentile: on Set5 it lost 0.105 dB on EDSR x2,
// 0.040 on EDSR x4 and 0.071 on RCAN x4 where MSE lost 0.149, 0.058 and
// 0.103 (99.99 lost 0.33 on EDSR x2). The tails of SR activations are few
// but coherent (edges, saturated colours), and clipping them costs the
// output more than the rounding noise a wider range adds. (Those numbers
// predate the precise long skip; with it EDSR x2 loses 0.048.)
//
// 64 patches rather than 32: the percentile of a tail is a noisy estimate,
// and on EDSR x2 the Set5 loss moved between 0.040 and 0.052 dB with the
// patch seed at 32 patches, between 0.045 and 0.049 at 64.
//
// Tuning is off: its choices did not carry over from the calibration
// patches to the benchmark sets (see Config.Tune).
//
// The dual-region breakpoint starts, as published, at the 99th percentile
// of |x|. Searching it for the least quantization error on the calibration
// patches (calib.BPSearch) was no better on the benchmark sets: W4A4 Set5 /
// Set14 drop, mean of seeds 1 and 2, p99 vs search: EDSR x4 0.59/0.34 vs
// 0.77/0.37, RCAN x4 0.86/0.52 vs 0.86/0.49, SRResNet x4 0.14/0.10 vs
// 0.13/0.09; and the searched breakpoints moved the EDSR x4 result by
// 0.1 dB between seeds where p99 moved it by 0.05.
func DefaultConfig() Config {
	return Config{Bits: Bits{8, 8}, Method: Percentile, Percentile: 99.999, WeightMethod: qdq.MSE, FirstLast: passes.FirstLast8, Rotate: RotateAuto,
		LongSkip: passes.LongSkipPrecise, Accounting: qdq.Reference, Breakpoint: Breakpoint{Method: calib.BPPercentile, Percentile: 99},
		Encoding: passes.EncodingInt8, Patches: 64, PatchSize: 64, Seed: 1, Batch: 8, Threads: runtime.NumCPU(), AvoidKernelDefects: true, Equalize: EqualizeAuto,
		MaxSteps: DefaultMaxSteps, GradSteps: DefaultGradSteps}
}

// DefaultGradSteps is Config.GradSteps by default: 60 steps gained on Set5
// and Set14 with EDSR x4 strict, RCAN x4, IMDN x4, CARN-M and SPAN at
// W4A4 and IMDN at W8A8; 150 did not score higher on RCAN's held-out
// images (BENCHMARKS.md, "Gradient tuning").
const DefaultGradSteps = 60

// Breakpoint is the rule that places the dual-region breakpoints.
type Breakpoint struct {
	Method     calib.BreakpointMethod
	Percentile float64 // of |x|, for calib.BPPercentile
	// Value, if positive, is the breakpoint of every dual-region tensor,
	// given by hand; it must lie inside (0, max|x|) of each.
	Value float32
}

// ParseBreakpoint reads a --breakpoint value: "search" (minimise the
// quantization error), "pP" (the P-th percentile of |x|, p99 being the
// published start) or a positive number (by hand).
func ParseBreakpoint(s string) (Breakpoint, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch {
	case t == string(calib.BPSearch):
		return Breakpoint{Method: calib.BPSearch}, nil
	case strings.HasPrefix(t, "p"):
		p, err := strconv.ParseFloat(t[1:], 64)
		if err != nil || !(p > 0 && p < 100) {
			return Breakpoint{}, fmt.Errorf("breakpoint %q: a percentile is pP with 0 < P < 100, e.g. p99", s)
		}
		return Breakpoint{Method: calib.BPPercentile, Percentile: p}, nil
	}
	v, err := strconv.ParseFloat(t, 32)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return Breakpoint{}, fmt.Errorf("breakpoint %q: want search, pP (e.g. p99) or a positive number", s)
	}
	return Breakpoint{Value: float32(v)}, nil
}

func (b Breakpoint) String() string {
	switch {
	case b.Value > 0:
		return strconv.FormatFloat(float64(b.Value), 'g', -1, 32)
	case b.Method == calib.BPPercentile:
		return "p" + strconv.FormatFloat(b.Percentile, 'g', -1, 64)
	}
	return string(b.Method)
}

// Range is the chosen range of one activation value.
type Range struct {
	Value  string  `json:"value"`
	Min    float32 `json:"min"` // observed
	Max    float32 `json:"max"`
	Std    float64 `json:"std"`
	Lo     float32 `json:"lo"` // chosen clip
	Hi     float32 `json:"hi"`
	Scale  float32 `json:"scale"`
	Zero   int32   `json:"zero_point"`
	Reason string  `json:"reason,omitempty"` // why the range is not the method's
}

// Layer is what srq chose for the input of one low-bit or dual-region Conv:
// its quantizer and how the model writes it.
type Layer struct {
	Conv      string `json:"conv"`
	Input     string `json:"input"`
	Kind      string `json:"kind"`
	Bits      int    `json:"bits"`
	Codes     int    `json:"codes"` // distinct levels
	Quantizer string `json:"quantizer"`
	Form      string `json:"form"`
	Why       string `json:"why,omitempty"`   // why not the int8 form asked for
	Tuned     string `json:"tuned,omitempty"` // what tuning changed
}

// Result is a quantized model with what a summary needs.
type Result struct {
	Model      *onnx.ModelProto
	Scale      int
	InputRange float32
	ConvsInt8  int
	Convs      int
	// Skipped lists the model's own quantizable nodes that stay float, with
	// the reason (--skip, the precise long skip's Adds, ...).
	Skipped map[string]string // node -> reason
	// Added lists the nodes srq added to the graph that stay float, with
	// what each is (the precise long skip's float copy of the head conv):
	// not the user's nodes, so not "skipped".
	Added  map[string]string // node -> what it is
	Ranges []Range
	// Layers lists the Convs whose input has its own quantizer (low-bit
	// settings, the dual-region method), in graph order.
	Layers      []Layer
	Patches     int
	Calibration Calibration // the images, as recorded in the model
	CalibTime   time.Duration
	// Tuning says what Config.Tune did (nil when it did not run).
	Tuning       *Tuning
	RewriteTime  time.Duration
	PrepareNotes []string
	// Padded lists the Convs given zero filters so that ORT's int8 kernel
	// runs a shape it computes right (Config.AvoidKernelDefects).
	Padded []string
	// Accuracy says what accuracy control did (nil when it did not run);
	// RewriteTime then includes it.
	Accuracy *Accuracy
}

// Events receives what a quantization run reports; both may be nil.
type Events struct {
	// Log receives information lines: warnings, what was chosen.
	Log func(string)
	// Progress hears of every step of the long stages ("calibration",
	// "tuning").
	Progress progress.Func
}

func (e Events) log(s string) {
	if e.Log != nil {
		e.Log(s)
	}
}

// Quantize quantizes the FP32 model (parsed m, serialized data, named name
// in messages) with calibration images imgs under cfg, reporting to ev. It
// stops with ctx's error when ctx ends, every ORT session closed. The
// pipeline, each stage a function:
//
//	prepare   probe scale and range, fold exporter quirks, plan the float long skip
//	plan      which nodes run quantized, which values need ranges
//	calibrate capture activation statistics on image patches in ORT
//	choose    8-bit carriers of the values, input quantizers of low-bit Convs
//	tune      optional range tuning on the deploy model
//	rewrite   insert Q/DQ, int8 weights and int32 biases; record the choices
func Quantize(ctx context.Context, m *onnx.ModelProto, data []byte, name string, imgs []string, cfg Config, ev Events) (*Result, error) {
	log := ev.log
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
	calImgs, valImgs, heldOut, err := splitValidation(imgs, cfg)
	if err != nil {
		return nil, wrap(err)
	}
	var val *validation
	if cfg.accuracy() {
		if val, err = loadValidation(ctx, data, name, valImgs, pr, cfg); err != nil {
			return nil, wrap(err)
		}
	}
	t0 := time.Now()
	cal, err := cutPatches(pr, calImgs, cfg, log)
	if err != nil {
		return nil, err
	}
	if err := ownGrids(ctx, pr, cal, cfg, log); err != nil {
		return nil, wrap(err)
	}
	pl, err := plan(pr, cfg)
	if err != nil {
		return nil, wrap(err)
	}
	res := &Result{Scale: pr.scale, InputRange: pr.rng, Skipped: map[string]string{}, Added: map[string]string{}}
	own := map[string]bool{}
	for _, n := range m.GetGraph().GetNode() {
		own[n.GetName()] = true
	}
	for n, why := range pl.Skipped {
		switch ls := pr.pol.LongSkip; {
		case ls != nil && n.Name == ls.Copy:
			res.Added[n.Name] = fmt.Sprintf("float copy of the head conv %s, for the precise long skip (--long-skip precise)", ls.Head)
		case !own[n.Name]:
			res.Added[n.Name] = fmt.Sprintf("%s added by srq, kept float (%s)", n.OpType, why)
		default:
			res.Skipped[n.Name] = why
		}
	}
	if err := calibrate(ctx, pr, pl, cal, cfg, ev); err != nil {
		return nil, err
	}
	res.Patches, res.CalibTime, res.Calibration = len(cal.batches), time.Since(t0), cal.set

	var bits map[string]int
	var sens []LayerSensitivity
	if cfg.BudgetBits > 0 {
		if bits, sens, err = mixedPrecision(ctx, pr, pl, cal, cfg, ev); err != nil {
			return nil, wrap(fmt.Errorf("mixed precision: %w", err))
		}
	}
	t1 := time.Now()
	qs, err := choose(ctx, pr, pl, cal, cfg, bits, log)
	if err != nil {
		return nil, wrap(err)
	}
	qs.sensitivity = sens
	res.Ranges, res.Layers = qs.ranges, qs.layers
	float := pr.g
	if cfg.Tune {
		float = pr.g.Clone() // tuning rounds pr.g's weights
	}
	if cfg.Tune {
		if err := tune(ctx, pr, pl, cal, qs, cfg, res, ev); err != nil {
			return nil, wrap(fmt.Errorf("tuning: %w", err))
		}
		if cfg.GradSteps > 0 {
			if err := gradTune(ctx, pr, pl, cal, qs, float, cfg, res.Tuning, ev); err != nil {
				return nil, wrap(fmt.Errorf("gradient tuning: %w", err))
			}
		}
		res.Layers = qs.layers
		t1 = time.Now()
	}
	if cfg.accuracy() {
		b, acc, err := accuracyControl(ctx, pr, pl, cal, qs, float, data, calImgs, val, cfg, ev)
		if b == nil {
			return nil, wrap(err)
		}
		acc.HeldOut = heldOut
		if err := setMeta(b.model, MetaAccuracy, acc); err != nil {
			return nil, err
		}
		res.Model, res.Padded, res.Ranges, res.Layers, res.Accuracy = b.model, b.padded, b.qs.ranges, b.qs.layers, acc
		res.ConvsInt8, res.Convs = b.convs[0], b.convs[1]
		for _, n := range b.skipped {
			if own[n] {
				res.Skipped[n] = "kept float by --max-drop"
			}
		}
		res.RewriteTime = time.Since(t1)
		return res, err
	}
	res.ConvsInt8, res.Convs = pl.Convs(pr.g)
	if res.Model, res.Padded, err = rewrite(pr.g, pr, pl, qs, cal.set, cfg); err != nil {
		return nil, wrap(err)
	}
	res.RewriteTime = time.Since(t1)
	return res, nil
}

// check rejects settings the pipeline cannot honour, before any work.
func (c Config) check() error {
	if c.Patches <= 0 || c.PatchSize <= 0 {
		return fmt.Errorf("calibration needs a positive patch count and size, got %d patches of %d", c.Patches, c.PatchSize)
	}
	for _, b := range []int{c.Bits.W, c.Bits.A} {
		if b < MinBits || b > MaxBits {
			return fmt.Errorf("bits %s: weight and activation widths must be in %d..%d", c.Bits, MinBits, MaxBits)
		}
	}
	if _, err := ParseRotation(string(c.Rotate)); err != nil {
		return err
	}
	if _, err := ParseEqualization(string(c.Equalize)); err != nil {
		return err
	}
	if c.Method == Dual {
		if _, err := qdq.ParseAccounting(string(c.Accounting)); err != nil {
			return err
		}
	}
	if _, err := passes.ParseEncoding(string(c.Encoding)); err != nil {
		return err
	}
	if c.Tune && c.Patches < tuneMinPatches {
		return fmt.Errorf("tuning needs at least %d calibration patches (%d held out), got %d", tuneMinPatches, tuneHoldout, c.Patches)
	}
	if c.BudgetBits != 0 && !(c.BudgetBits >= MinBits && c.BudgetBits <= MaxBits) {
		return fmt.Errorf("--budget-bits %g: want a mean width in %d..%d", c.BudgetBits, MinBits, MaxBits)
	}
	if !(c.MaxDrop >= 0) || math.IsInf(c.MaxDrop, 0) {
		return fmt.Errorf("--max-drop %g: want a drop in dB, 0 for none", c.MaxDrop)
	}
	if !(c.MaxDropVsFP32 >= 0) || math.IsInf(c.MaxDropVsFP32, 0) {
		return fmt.Errorf("--max-drop-vs-fp32 %g: want a PSNR-Y floor in dB against the FP32 output, 0 for none", c.MaxDropVsFP32)
	}
	if c.accuracy() && c.MaxSteps < 1 {
		return fmt.Errorf("--max-steps %d: accuracy control measures at least one model", c.MaxSteps)
	}
	if !c.accuracy() && len(c.Validation) > 0 {
		return errors.New("--val images are for --max-drop or --max-drop-vs-fp32")
	}
	return nil
}

// ownInputs reports whether the setting gives low-bit Convs input
// quantizers of their own: at 8-bit uniform settings every Conv reads its
// input's carrier.
func (c Config) ownInputs() bool { return c.Bits.A < 8 || c.Method == Dual || c.BudgetBits > 0 }

// prepared is the float graph ready for planning, with the model's facts.
type prepared struct {
	g          *graph.Graph
	name       string
	scale      int
	rng        float32
	pol        passes.Policy
	grid       map[string]bool // values on the input image's 8-bit grid
	patchScale int
	// centers holds, per Conv, the value per input channel its input is
	// centred on (the folded mean shift's head: see InsertQDQ.Centers).
	centers map[string][]float32
}

// prepare probes the model's scale and input range, folds the exporter's
// identities and 1x1 mean shifts, spells PixelShuffle channels-last and
// spatial means as GlobalAveragePool, folds the input mean shift into the
// head, builds the float long skip and widens the image Conv.
func prepare(m *onnx.ModelProto, data []byte, name string, cfg Config) (*prepared, error) {
	probe, err := sr.Open(data, name, ort.Options{Threads: cfg.Threads}, cfg.Probe)
	if err != nil {
		return nil, err
	}
	pr := &prepared{name: name, scale: probe.Scale, rng: probe.Range, grid: map[string]bool{}}
	probe.Close()
	if pr.g, err = graph.FromModel(m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	g := pr.g
	if err := passes.Run(g, passes.FoldIdentity{}, passes.AffineInput{}, passes.FuseConv1x1{}, passes.PixelShuffleNHWC{}, passes.SpatialMean{}); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	pr.pol = passes.Policy{Skip: cfg.Skip, FirstLast: cfg.FirstLast, FloatOps: cfg.FloatOps}
	fold, err := passes.FoldInputShift(g, pr.rng)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if fold.Padded != "" {
		pr.grid[fold.Padded] = true
		pr.centers = map[string][]float32{fold.Head: fold.Center}
	}
	if cfg.LongSkip == passes.LongSkipPrecise {
		if pr.pol.LongSkip, err = passes.PreciseLongSkip(g); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	// The Conv that writes the image is widened for ORT's int8 kernel.
	if v := passes.WidenImageConv(g, pr.pol); v != "" {
		pr.grid[v] = true
	}
	return pr, nil
}

// plan decides which nodes run quantized. Low-bit Convs read the long-skip
// sum through their own quantizer, so it gets no two-part encoding then.
func plan(pr *prepared, cfg Config) (*passes.Plan, error) {
	return planGraph(pr.g, pr.pol, cfg, nil)
}

// planGraph plans g under pol as plan does. The Convs named in carrier
// read their input's 8-bit carrier with 8-bit weights (Plan.Wide)
// whatever the setting: accuracy control widens low-bit Convs so, and
// their --layer-encoding no longer applies.
func planGraph(g *graph.Graph, pol passes.Policy, cfg Config, carrier map[string]bool) (*passes.Plan, error) {
	pl, err := passes.PlanQDQ(g, pol)
	if err != nil {
		return nil, err
	}
	for _, n := range pl.Nodes {
		if carrier[n.Name] {
			pl.Wide[n] = true
		}
	}
	if len(cfg.LayerEncoding) > 0 {
		var missing []string
		for name := range cfg.LayerEncoding {
			if carrier[name] || slices.Contains(pol.Skip, name) && !slices.Contains(cfg.Skip, name) {
				continue
			}
			i := slices.IndexFunc(pl.Nodes, func(n *graph.Node) bool { return n.Name == name })
			if !cfg.ownInputs() || i < 0 || pl.Nodes[i].OpType != "Conv" || pl.Wide[pl.Nodes[i]] {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return nil, fmt.Errorf("--layer-encoding: no low-bit or dual-region Conv named %s (the first and last Conv keep their 8-bit input)", strings.Join(missing, ", "))
		}
	}
	if cfg.ownInputs() {
		pl.Split = slices.DeleteFunc(pl.Split, func(v string) bool {
			for _, c := range g.Consumers(v) {
				if pl.Quantized(c) && !pl.Wide[c] && c.OpType == "Conv" {
					return true
				}
			}
			return false
		})
	}
	return pl, nil
}

// calibration is the activation statistics of the planned values on the
// calibration patches (kept for tuning).
type calibration struct {
	stats   map[string]*calib.Stats
	batches [][]float32
	src     []int // per patch, the index of its image in the calibration list
	shape   [3]int
	set     Calibration
}

// captureBytes bounds the memory of one calibration batch's captured
// tensors (calib.CaptureOptions.MaxBytes): every CNN here fits 8 patches of
// 64² under it (RCAN x4, 283 tensors, about 2.3 GB), while CRAFT's 870
// tensors held 10 GB at 8 patches and now run fewer at a time.
const captureBytes = 4 << 30

// cutPatches cuts the calibration patches from the images and records
// which images they came from.
func cutPatches(pr *prepared, imgs []string, cfg Config, log func(string)) (*calibration, error) {
	patches, src, err := calib.PatchesFrom(imgs, calib.PatchOptions{Scale: pr.scale, Size: cfg.PatchSize, Count: cfg.Patches, Seed: cfg.Seed, LR: cfg.CalibLR}, func(s string) { log("warning: " + s) })
	if err != nil {
		return nil, err
	}
	c := &calibration{src: src}
	if c.batches, c.shape, err = patchData(patches, pr.rng); err != nil {
		return nil, err
	}
	if c.set, err = calibrationOf(imgs, cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// calibrate rotates the channel spaces when the setting asks for it and
// captures the statistics of every planned value on the patches.
func calibrate(ctx context.Context, pr *prepared, pl *passes.Plan, c *calibration, cfg Config, ev Events) error {
	log := ev.log
	if cfg.rotates() {
		n := 0
		if err := passes.Run(pr.g, passes.Rotate{Spaces: passes.LinearSpaces(pr.g), Rotated: &n}); err != nil {
			return fmt.Errorf("%s: %w", pr.name, err)
		}
		log(fmt.Sprintf("rotated %d channel spaces", n))
	}
	if n, err := equalize(ctx, pr.g, pl, c, cfg); err != nil {
		return fmt.Errorf("%s: %w", pr.name, err)
	} else if n > 0 {
		log(fmt.Sprintf("equalized %d channel spaces", n))
	}
	log(fmt.Sprintf("calibrating %d activation tensors on %d patches of %dx%d", len(pl.Values), len(c.batches), c.shape[2], c.shape[1]))
	var err error
	c.stats, err = calib.Capture(ctx, pr.g, pl.Values, c.batches, c.shape, calib.CaptureOptions{
		Batch: cfg.Batch, Session: ort.Options{Threads: cfg.Threads}, MaxBytes: captureBytes,
		Progress: func(done, total int) { ev.Progress.Report("calibration", done, total) },
	})
	if err != nil {
		return fmt.Errorf("%s: %w", pr.name, err)
	}
	return nil
}

// quantizers is what choose picked: the 8-bit carrier of every planned
// value, and the input quantizer of every Conv that has its own, with its
// form in the graph.
type quantizers struct {
	act         map[string]qdq.Params
	weights     map[string][]qdq.Params // weight quantizers the tuner already searched
	convIn      map[string]qdq.Quantizer
	partials    map[string][2]qdq.Params // two-branch Convs' partial outputs
	weightBits  map[string]int           // per-Conv weight widths (mixed precision)
	sensitivity []LayerSensitivity       // measured by mixed precision, recorded in the model
	forms       map[string]passes.Form
	ranges      []Range
	layers      []Layer
}

// choose picks the quantizers. Every planned value gets an 8-bit carrier
// (the residual stream, Conv outputs, the model output stay at 8 bits) by
// the range method, or by percentile when the method is Dual. Under a
// low-bit or dual setting, every quantized Conv but Plan.Wide ones reads
// its input through a quantizer of its own: a uniform grid of Bits.A by the
// range method, or the dual-region quantizer.
func choose(ctx context.Context, pr *prepared, pl *passes.Plan, cal *calibration, cfg Config, bits map[string]int, log func(string)) (*quantizers, error) {
	g := pr.g
	qs := &quantizers{act: map[string]qdq.Params{}, convIn: map[string]qdq.Quantizer{}, forms: map[string]passes.Form{}, weightBits: map[string]int{}}
	carrier := cfg.Method
	if carrier == Dual {
		carrier = Percentile
	}
	for _, v := range pl.Values {
		r := chooseRange(g, v, cal.stats[v], carrier, cfg.Percentile, 8, pr.rng, pr.grid[v])
		if slices.Contains(pl.Split, v) && r.Reason == "" {
			// The residual branch carries the rounding error, not clipped
			// tails, so the grid must cover every value seen.
			r.Lo, r.Hi = calib.RangeMinMax(cal.stats[v])
			r.Reason = "two-part encoding"
		}
		q := qdq.Asymmetric(r.Lo, r.Hi, 8)
		r.Scale, r.Zero = q.Scale, q.ZeroPoint
		qs.act[v] = q
		qs.ranges = append(qs.ranges, r)
	}
	if !cfg.ownInputs() {
		return qs, nil
	}
	byValue := map[string]qdq.Quantizer{}
	for _, n := range pl.Nodes {
		if n.OpType != "Conv" || pl.Wide[n] {
			continue
		}
		v := n.Inputs[0]
		src := v
		if s, ok := pl.Shared[v]; ok {
			src = s
		}
		c := cfg
		if b, ok := bits[n.Name]; ok {
			c.Bits = Bits{b, b}
			if b == 8 {
				c.Method = nonDual(cfg.Method)
			}
			qs.weightBits[n.Name] = b
		}
		key := fmt.Sprintf("%s@%s", src, c.Bits)
		q, ok := byValue[key]
		if !ok {
			var err error
			if q, err = inputQuantizer(cal.stats[src], c); err != nil {
				return nil, fmt.Errorf("input %q of node %q: %w", src, n.Name, err)
			}
			byValue[key] = q
		}
		enc := cfg.Encoding
		if e, ok := cfg.LayerEncoding[n.Name]; ok {
			enc = e
		}
		f, why, err := passes.ChooseForm(q, enc)
		if err != nil {
			return nil, fmt.Errorf("--encoding %s: layer %q (input %q): %w", enc, n.Name, src, err)
		}
		qs.convIn[n.Name], qs.forms[n.Name] = q, f
		codes, _ := qdq.CodeCount(q)
		qs.layers = append(qs.layers, Layer{Conv: n.Name, Input: src, Kind: string(q.Kind()), Bits: q.Bits(), Codes: codes,
			Quantizer: q.String(), Form: string(f), Why: why})
	}
	return qs, calibratePartials(ctx, pr, cal, qs, carrier, cfg, log)
}

// calibratePartials gives the two partial outputs of every two-branch Conv
// an 8-bit quantizer, by the carriers' method, from a second calibration run
// of the float graph with those partial Convs added (passes.CalibrationSplit).
func calibratePartials(ctx context.Context, pr *prepared, cal *calibration, qs *quantizers, m Method, cfg Config, log func(string)) error {
	split := map[string]qdq.Quantizer{}
	for name, f := range qs.forms {
		if f == passes.FormTwoBranch {
			split[name] = qs.convIn[name]
		}
	}
	if len(split) == 0 {
		return nil
	}
	g := pr.g.Clone()
	outs, err := passes.CalibrationSplit(g, split)
	if err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(outs))
	var values []string
	for _, n := range names {
		values = append(values, outs[n][0], outs[n][1])
	}
	log(fmt.Sprintf("calibrating the partial outputs of %d two-branch Convs", len(names)))
	stats, err := calib.Capture(ctx, g, values, cal.batches, cal.shape, calib.CaptureOptions{Batch: cfg.Batch, Session: ort.Options{Threads: cfg.Threads}})
	if err != nil {
		return err
	}
	qs.partials = map[string][2]qdq.Params{}
	for _, n := range names {
		var ps [2]qdq.Params
		for i, v := range outs[n] {
			r := chooseRange(g, v, stats[v], m, cfg.Percentile, 8, pr.rng, false)
			ps[i] = qdq.Asymmetric(r.Lo, r.Hi, 8)
			r.Scale, r.Zero = ps[i].Scale, ps[i].ZeroPoint
			r.Reason = fmt.Sprintf("%s branch of %s", [2]string{"dense", "tail"}[i], n)
			qs.ranges = append(qs.ranges, r)
		}
		qs.partials[n] = ps
	}
	return nil
}

// inputQuantizer is the quantizer of a low-bit or dual-region Conv's input.
func inputQuantizer(s *calib.Stats, cfg Config) (qdq.Quantizer, error) {
	a := cfg.Bits.A
	var lo, hi float32
	switch cfg.Method {
	case Dual:
		d, err := calib.RangeDual(s, calib.DualOptions{Bits: a, Accounting: cfg.Accounting, Breakpoint: cfg.Breakpoint.Method,
			Percentile: cfg.Breakpoint.Percentile, BP: cfg.Breakpoint.Value})
		if err != nil {
			return nil, fmt.Errorf("--breakpoint %s: %w", cfg.Breakpoint, err)
		}
		return d, nil
	case MinMax:
		lo, hi = calib.RangeMinMax(s)
	case Percentile:
		lo, hi = calib.RangePercentile(s, cfg.Percentile)
	default:
		lo, hi = calib.RangeMSE(s, a)
	}
	return qdq.NewUniform(lo, hi, a)
}

func weightConfig(cfg Config) passes.WeightConfig {
	return passes.WeightConfig{Bits: cfg.Bits.W, PerChannel: !cfg.PerTensorWeights, Method: cfg.WeightMethod}
}

// rewrite writes the deploy model of g (pr.g, or a copy accuracy control
// plans its own way) and records the setting in its metadata.
func rewrite(g *graph.Graph, pr *prepared, pl *passes.Plan, qs *quantizers, cal Calibration, cfg Config) (*onnx.ModelProto, []string, error) {
	ins := passes.InsertQDQ{Plan: pl, Act: qs.act, Weights: weightConfig(cfg), WeightParams: qs.weights, ConvIn: qs.convIn, Forms: qs.forms, Partials: qs.partials, WeightBits: qs.weightBits,
		Centers: pr.centers}
	ps := []passes.Pass{ins}
	var padded []string
	if cfg.AvoidKernelDefects {
		ps = append(ps, passes.AvoidKernelDefects{Padded: &padded})
	}
	if err := passes.Run(g, ps...); err != nil {
		return nil, nil, err
	}
	m, err := g.ToModel()
	if err != nil {
		return nil, nil, err
	}
	// The model is srq's output, not the exporter's: a tool that reads
	// producer_name/producer_version must not take it for a PyTorch export.
	m.ProducerName, m.ProducerVersion = "srq", version.Number()
	if err := setMetadata(m, cfg, cal, qs); err != nil {
		return nil, nil, err
	}
	if err := setMeta(m, sr.MetaIO, sr.IO{Scale: pr.scale, InputRange: pr.rng}); err != nil {
		return nil, nil, err
	}
	return m, padded, nil
}

// chooseRange picks the clip range of one 8-bit carrier by method m. The
// model's input and output are images on a known 8-bit grid, so they get
// exactly [0, range]: the 8-bit input is then represented without error,
// and the output quantizer does what the metric does anyway (clip, round to
// 8 bits). So does a value onGrid: the padded image FoldInputShift makes.
func chooseRange(g *graph.Graph, v string, s *calib.Stats, m Method, pct float64, bits int, rng float32, onGrid bool) Range {
	r := Range{Value: v, Min: s.Min, Max: s.Max, Std: s.Std()}
	switch {
	case onGrid || g.IsGraphInput(v) || g.IsGraphOutput(v):
		r.Lo, r.Hi, r.Reason = 0, rng, "image grid"
		return r
	}
	switch m {
	case MinMax:
		r.Lo, r.Hi = calib.RangeMinMax(s)
	case Percentile:
		r.Lo, r.Hi = calib.RangePercentile(s, pct)
	default:
		r.Lo, r.Hi = calib.RangeMSE(s, bits)
	}
	return r
}

// patchData scales patches to the model's input range and flattens them.
func patchData(patches []*img.Image, rng float32) ([][]float32, [3]int, error) {
	var shape [3]int
	var out [][]float32
	for i, p := range patches {
		if i == 0 {
			shape = [3]int{p.C, p.H, p.W}
		} else if [3]int{p.C, p.H, p.W} != shape {
			continue // whole small images of another size are not batched
		}
		d := make([]float32, len(p.Pix))
		for j, v := range p.Pix {
			d[j] = v * rng
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, shape, fmt.Errorf("calibration: no patches")
	}
	return out, shape, nil
}
