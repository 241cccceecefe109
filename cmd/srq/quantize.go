package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/srquant/srq"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/internal/progress"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
	"github.com/srquant/srq/quant"
)

// quantizeOpts holds the raw flag values of `srq quantize`; config turns them
// into a quant.Config, one flag per field, so the CLI adds no knobs of its own
// beyond where files go and how much it prints.
type quantizeOpts struct {
	model, calib, out, rangesJSON     string
	bits, method, weights             string
	weightMethod, firstLast, longSkip string
	accounting, breakpoint, encoding  string
	layerEncoding                     []string
	percentile, budgetBits            float64
	skip, floatOps                    []string
	patches, patchSize, batch         int
	threads, speedCheck, kernelCheck  int
	gradSteps                         int
	gradStepsSet                      bool
	seed                              int64
	calibLR, externalData, tune       bool
	avoidKernelDefects                bool
	biasCorrection                    bool
	rotate, equalize                  string
	timeBudget                        time.Duration
	verbose                           bool
	maxDrop, maxDropVsFP32            float64
	val, latencyCache                 string
	maxSteps                          int
	keepBest                          bool
	probe                             probeFlags
}

func quantizeFlags(fs *pflag.FlagSet) func(*app, []string) error {
	def := quant.DefaultConfig()
	var o quantizeOpts
	fs.StringVar(&o.model, "model", "", "FP32 ONNX SR model (required)")
	fs.StringVar(&o.calib, "calib", "", "folder of calibration images, HR unless --calib-lr (required)")
	fs.StringVar(&o.out, "out", "", "path of the quantized model to write (required)")
	fs.StringVar(&o.bits, "bits", def.Bits.String(), "weight and activation bits, wNaM. The default is the int8 deploy setting; srq sensitivity and srq inspect --activations default to w4a4 instead, the low-bit setting their analyses are for")
	fs.StringVar(&o.method, "method", string(def.Method), "activation range method: minmax, percentile, mse or dual (the outlier-aware dual-region quantizer on the Conv inputs, the choice for 4 bits; srq sensitivity defaults to it)")
	fs.StringVar(&o.accounting, "accounting", string(def.Accounting), "dual-region bit accounting: reference (b-bit dense grid + (b-1)-bit tails, as the published code) or strict (at most 2^b levels in all)")
	fs.StringVar(&o.breakpoint, "breakpoint", def.Breakpoint.String(), "dual-region breakpoint: search (minimise the quantization error), pP (P-th percentile of |x|, e.g. p99 as published) or a value for every tensor")
	fs.StringVar(&o.encoding, "encoding", string(def.Encoding), "how low-bit and dual-region Conv inputs are written: int8 (ORT int8 kernels with the exact levels, float where they cannot be exact), shared-grid (int8 everywhere or an error naming the layer) or simulate (float fake-quant)")
	fs.StringSliceVar(&o.layerEncoding, "layer-encoding", nil, "per-Conv override of --encoding, NODE=ENCODING,...")
	fs.Float64Var(&o.percentile, "percentile", def.Percentile, "percentile kept on each side by --method percentile, in [50, 100]")
	fs.StringVar(&o.weights, "weights", "per-channel", "weight quantizer granularity: per-channel or per-tensor")
	fs.StringVar(&o.weightMethod, "weight-method", def.WeightMethod.String(), "weight clip: mse or minmax")
	fs.StringVar(&o.firstLast, "first-last", string(def.FirstLast), "first and last conv: 8 (8 bits), fp32 (stay float) or same (as the others)")
	fs.StringVar(&o.longSkip, "long-skip", string(def.LongSkip), "long skip (head output added back before the upsampler): precise (float head and skip adds, two-part int8 upsampler input) or int8")
	fs.BoolVar(&o.tune, "tune", def.Tune, "tune each Conv's input quantizer and weight rounding (GPTQ) for the least error at its output, on windows of its real input; keep each stage only if held-out patches agree (rotates the residual streams first, see --rotate)")
	fs.IntVar(&o.gradSteps, "grad-steps", def.GradSteps, "with --tune, Adam steps of gradient tuning after the layer-wise tuner: every quantized Conv's bias and per-channel weight steps fitted to the whole network's output error, kept only if the patches of held-out calibration images agree (0: none)")
	fs.DurationVar(&o.timeBudget, "time-budget", def.TimeBudget, "bound on the tuning time (e.g. 2m; 0: none); the layers that do not fit stay as calibrated")
	fs.BoolVar(&o.biasCorrection, "bias-correction", def.BiasCorrection, "with --tune: also correct each quantized Conv's bias for the mean output shift quantization leaves")
	fs.StringSliceVar(&o.skip, "skip", nil, "nodes that stay float, NAME,...")
	fs.Float64Var(&o.budgetBits, "budget-bits", def.BudgetBits, "mixed precision: mean width of the low-bit Convs, weighted by MACs (e.g. 4 with --bits w4a4: sensitive layers get more bits, others fewer; 0: off)")
	o.rotate = string(def.Rotate)
	fs.Var(optionalValue{&o.rotate}, "rotate", "turn residual-stream channel spaces by a Hadamard matrix before calibration (exact; spreads outlier channels): --rotate=auto rotates with --tune only, --rotate=on (or a bare --rotate) always, --rotate=off never; give the value after =")
	fs.Lookup("rotate").NoOptDefVal = string(quant.RotateOn)
	fs.StringVar(&o.equalize, "equalize", string(def.Equalize), "rescale channel spaces before calibration so one 8-bit grid fits all channels of a tensor (exact): auto (spaces whose channels pass a per-channel PRelu), on (every space) or off")
	fs.StringSliceVar(&o.floatOps, "float-ops", nil, "operator types that stay float everywhere, OP,... (e.g. Add)")
	fs.IntVar(&o.patches, "patches", def.Patches, "number of calibration patches")
	fs.IntVar(&o.patchSize, "patch-size", def.PatchSize, "side of a calibration patch in LR pixels")
	fs.Int64Var(&o.seed, "seed", def.Seed, "seed of the patch positions (same seed, same model)")
	fs.BoolVar(&o.calibLR, "calib-lr", def.CalibLR, "calibration images are LR inputs already (no bicubic downscale)")
	fs.IntVar(&o.batch, "batch", def.Batch, "patches per ONNX Runtime run during calibration (bounds memory)")
	fs.IntVar(&o.threads, "threads", def.Threads, "intra-op threads (0: ONNX Runtime's own choice)")
	o.probe.register(fs, "")
	fs.StringVar(&o.rangesJSON, "ranges-json", "", "also write the chosen activation ranges to this JSON file")
	fs.IntVar(&o.speedCheck, "speed-check", srq.DefaultSpeedCheck, fmt.Sprintf("after writing, time the model against FP32 on an S×S LR input (%d runs each; 0: skip) and warn when it is slower; srq verify measures speed for a report", srq.SpeedCheckRuns))
	fs.IntVar(&o.kernelCheck, "kernel-check", srq.DefaultKernelCheck, "before writing, run every fused int8 group on its own at ORT's levels basic (the QDQ graph's meaning) and all (its int8 kernels) on an S×S LR input, and refuse (exit 1) a model this machine's ORT computes wrong (0: skip)")
	fs.BoolVar(&o.avoidKernelDefects, "avoid-kernel-defects", def.AvoidKernelDefects, "pad int8 Convs whose shape ORT 1.24's kernel computes wrong on AMX CPUs (17–31 outputs), or that the kernel check finds wrong, to a shape it computes right (same codes)")
	fs.Float64Var(&o.maxDrop, "max-drop", 0, "accuracy control: widen the model (a Conv to 8 bits, a value read in two int8 parts, a Conv or block float), where that buys the most PSNR per millisecond, until its PSNR-Y drop against the ground truth on validation images calibration did not use is at most D dB; exit 1 when no model is (0: off)")
	fs.Float64Var(&o.maxDropVsFP32, "max-drop-vs-fp32", 0, "accuracy control against the FP32 output instead of the ground truth (images without it, --calib-lr): a floor P in dB on the PSNR-Y of the quantized output vs the FP32 output on the validation images (0: off)")
	fs.StringVar(&o.val, "val", "", "with --max-drop: folder of validation images, HR unless --calib-lr (default: every 4th --calib image by sorted name is held out of calibration)")
	fs.IntVar(&o.maxSteps, "max-steps", def.MaxSteps, "with --max-drop: most models measured on the validation images")
	fs.BoolVar(&o.keepBest, "keep-best", false, "with --max-drop: when no model meets it, write the best one measured anyway (still exit 1)")
	fs.StringVar(&o.latencyCache, "latency-cache", defaultLatencyCache(), "with --max-drop: folder that keeps the latencies measured for a model, setting and machine, so that a later run ranks the widenings, and writes the model, exactly as the first ('' to time every run)")
	fs.BoolVar(&o.externalData, "external-data", false, "store the weights in OUT.data beside the model")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "list every activation range, not just the first and last few")
	return func(a *app, args []string) error {
		if len(args) > 0 && fs.Changed("rotate") && slices.Contains([]string{"auto", "on", "off"}, args[0]) {
			// `--rotate off` parses as a bare --rotate (on) and an argument.
			return fmt.Errorf("--rotate takes its value after '=': --rotate=%s", args[0])
		}
		if err := wantArgs(args, 0, "no positional arguments (use --model, --calib, --out)"); err != nil {
			return err
		}
		o.gradStepsSet = fs.Changed("grad-steps")
		return a.quantize(&o)
	}
}

// optionalValue is a string flag whose value may be left out (a bare flag
// means its NoOptDefVal). Its empty Type keeps pflag's help from printing
// the Go type before the optional value, so --help shows `--rotate[=on]`
// instead of `--rotate string[="on"]`.
type optionalValue struct{ p *string }

func (v optionalValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v optionalValue) Set(s string) error { *v.p = s; return nil }

func (v optionalValue) Type() string { return "" }

// config validates the flags and maps them onto a quant.Config.
func (o *quantizeOpts) config() (quant.Config, error) {
	cfg := quant.DefaultConfig()
	var err error
	if cfg.Bits, err = quant.ParseBits(o.bits); err != nil {
		return cfg, fmt.Errorf("--bits: %w", err)
	}
	if cfg.Method, err = quant.ParseMethod(o.method); err != nil {
		return cfg, fmt.Errorf("--method: %w", err)
	}
	if !(o.percentile >= 50 && o.percentile <= 100) { // also rejects NaN
		return cfg, fmt.Errorf("--percentile %g: want a value in [50, 100]", o.percentile)
	}
	cfg.Percentile = o.percentile
	switch o.weights {
	case "per-channel":
		cfg.PerTensorWeights = false
	case "per-tensor":
		cfg.PerTensorWeights = true
	default:
		return cfg, fmt.Errorf("--weights %q: want per-channel or per-tensor", o.weights)
	}
	switch o.weightMethod {
	case qdq.MSE.String():
		cfg.WeightMethod = qdq.MSE
	case qdq.MinMax.String():
		cfg.WeightMethod = qdq.MinMax
	default:
		return cfg, fmt.Errorf("--weight-method %q: want mse or minmax", o.weightMethod)
	}
	if cfg.Accounting, err = qdq.ParseAccounting(o.accounting); err != nil {
		return cfg, fmt.Errorf("--accounting: %w", err)
	}
	if cfg.Breakpoint, err = quant.ParseBreakpoint(o.breakpoint); err != nil {
		return cfg, fmt.Errorf("--breakpoint: %w", err)
	}
	if cfg.Encoding, err = passes.ParseEncoding(o.encoding); err != nil {
		return cfg, fmt.Errorf("--encoding: %w", err)
	}
	for _, kv := range nonEmpty(o.layerEncoding) {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return cfg, fmt.Errorf("--layer-encoding %q: want NODE=ENCODING", kv)
		}
		e, err := passes.ParseEncoding(val)
		if err != nil {
			return cfg, fmt.Errorf("--layer-encoding %s: %w", name, err)
		}
		if cfg.LayerEncoding == nil {
			cfg.LayerEncoding = map[string]passes.Encoding{}
		}
		cfg.LayerEncoding[name] = e
	}
	if cfg.FirstLast, err = passes.ParseFirstLast(o.firstLast); err != nil {
		return cfg, fmt.Errorf("--first-last: %w", err)
	}
	if cfg.LongSkip, err = passes.ParseLongSkip(o.longSkip); err != nil {
		return cfg, fmt.Errorf("--long-skip: %w", err)
	}
	cfg.Tune, cfg.TimeBudget, cfg.BiasCorrection, cfg.GradSteps = o.tune, o.timeBudget, o.biasCorrection, o.gradSteps
	if o.gradSteps < 0 {
		return cfg, fmt.Errorf("--grad-steps %d: must not be negative", o.gradSteps)
	}
	if o.timeBudget < 0 {
		return cfg, fmt.Errorf("--time-budget %s: must not be negative", o.timeBudget)
	}
	if (o.biasCorrection || o.timeBudget > 0 || o.gradStepsSet) && !o.tune {
		return cfg, errors.New("--bias-correction, --grad-steps and --time-budget are part of --tune")
	}
	cfg.Skip = nonEmpty(o.skip)
	cfg.FloatOps = nonEmpty(o.floatOps)
	if cfg.Rotate, err = quant.ParseRotation(o.rotate); err != nil {
		return cfg, fmt.Errorf("--rotate: %w", err)
	}
	if cfg.Equalize, err = quant.ParseEqualization(o.equalize); err != nil {
		return cfg, fmt.Errorf("--equalize: %w", err)
	}
	cfg.BudgetBits = o.budgetBits
	for _, f := range []struct {
		name string
		v    int
	}{{"--patches", o.patches}, {"--patch-size", o.patchSize}, {"--batch", o.batch}} {
		if f.v <= 0 {
			return cfg, fmt.Errorf("%s %d: want a positive integer", f.name, f.v)
		}
	}
	if o.speedCheck < 0 {
		return cfg, fmt.Errorf("--speed-check %d: want 0 (skip) or a positive LR side in pixels", o.speedCheck)
	}
	if o.kernelCheck < 0 {
		return cfg, fmt.Errorf("--kernel-check %d: want 0 (skip) or a positive LR side in pixels", o.kernelCheck)
	}
	cfg.AvoidKernelDefects = o.avoidKernelDefects
	if o.threads < 0 {
		return cfg, fmt.Errorf("--threads %d: want 0 (ONNX Runtime's default) or more", o.threads)
	}
	cfg.Patches, cfg.PatchSize, cfg.Batch, cfg.Seed, cfg.CalibLR = o.patches, o.patchSize, o.batch, o.seed, o.calibLR
	cfg.Threads = o.threads
	if cfg.Probe, err = o.probe.options(); err != nil {
		return cfg, err
	}
	cfg.MaxDrop, cfg.MaxDropVsFP32, cfg.MaxSteps, cfg.LatencyCache = o.maxDrop, o.maxDropVsFP32, o.maxSteps, o.latencyCache
	accuracy := o.maxDrop != 0 || o.maxDropVsFP32 != 0
	if !accuracy && (o.val != "" || o.keepBest) {
		return cfg, errors.New("--val and --keep-best are part of --max-drop (or --max-drop-vs-fp32)")
	}
	if o.val != "" {
		if cfg.Validation, err = img.List(o.val); err != nil {
			return cfg, fmt.Errorf("--val: %w", err)
		}
	}
	return cfg, nil
}

// defaultLatencyCache is where --latency-cache keeps kernel times unless
// told otherwise: the user's cache folder ($XDG_CACHE_HOME or ~/.cache),
// or none when there is no home.
func defaultLatencyCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "srq", "latency")
}

// nonEmpty trims the items of a comma-separated flag and drops empty ones,
// so `--skip a,,b ` means a and b.
func nonEmpty(s []string) []string {
	var out []string
	for _, v := range s {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// checkOutputs refuses output paths that would destroy an input or cannot be
// written, before any work is done, so a bad path costs no calibration time.
func (o *quantizeOpts) checkOutputs() error {
	outs := []string{o.out}
	if o.externalData {
		outs = append(outs, o.out+".data")
	}
	if o.rangesJSON != "" {
		outs = append(outs, o.rangesJSON)
		if filepath.Clean(o.rangesJSON) == filepath.Clean(o.out) || onnx.SameFile(o.rangesJSON, o.out) {
			return fmt.Errorf("--ranges-json %s: same path as --out", o.rangesJSON)
		}
	}
	for _, p := range outs {
		if filepath.Clean(p) == filepath.Clean(o.model) || onnx.SameFile(p, o.model) {
			return fmt.Errorf("%s: output path is the same file as the model; refusing to overwrite it", p)
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return fmt.Errorf("%s: output path is a directory; give a file name", p)
		}
		dir := filepath.Dir(p)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s: output folder %s does not exist", p, dir)
		}
	}
	return nil
}

func (a *app) quantize(o *quantizeOpts) error {
	start := time.Now()
	switch {
	case o.model == "":
		return errors.New("--model is required")
	case o.calib == "":
		return errors.New("--calib is required")
	case o.out == "":
		return errors.New("--out is required")
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	if err := o.checkOutputs(); err != nil {
		return err
	}
	imgs, err := calibImages(o.calib)
	if err != nil {
		return err
	}
	if err := a.initORT(); err != nil {
		return err
	}
	// Progress and information go to stderr, the summary to stdout, so
	// scripts can keep the summary and still show progress.
	bar := progress.NewPrinter(a.stderr)
	log := func(s string) {
		bar.Done()
		fmt.Fprintln(a.stderr, s)
	}
	res, err := srq.Quantize(a.ctx, srq.QuantizeOptions{Model: o.model, Images: imgs, Out: o.out, ExternalData: o.externalData,
		Config: cfg, Log: log, Progress: bar.Report, SpeedCheck: o.speedCheck, KernelCheck: o.kernelCheck, KeepBest: o.keepBest})
	bar.Done()
	var kerr *kernelcheck.Error
	if errors.As(err, &kerr) {
		return &gateError{msg: err.Error()}
	}
	var notMet *quant.DropNotMetError
	if errors.As(err, &notMet) {
		msg := err.Error()
		if res == nil {
			return &gateError{msg: msg + "; nothing written (--keep-best writes it)"}
		}
		defer func() {
			fmt.Fprintf(a.stderr, "kept the best model measured (--keep-best) in %s, though it is not within the budget\n", o.out)
		}()
		err = &gateError{msg: msg}
	} else if err != nil {
		return err
	}
	gate := err
	if o.rangesJSON != "" {
		if err := writeRangesJSON(o.rangesJSON, o, cfg, res.Result); err != nil {
			return err
		}
	}
	printQuantizeSummary(a.stdout, o, cfg, res.Result, time.Since(start))
	printKernels(a.stdout, res)
	if sp := res.Speed; sp != nil {
		fmt.Fprintf(a.stdout, "speed     %dx%d LR, median of %d runs: fp32 %.1f ms, quantized %.1f ms, %.2fx (a quick check; srq verify reports speed)\n",
			sp.Size, sp.Size, sp.Quantized.Runs, sp.FP32.MedianMS, sp.Quantized.MedianMS, sp.Speedup)
		if sp.Slower() {
			fmt.Fprintf(a.stderr, "warning: %s is slower than the FP32 model on this machine (%.2fx at %dx%d): what stays float and the conversions around it cost more than its int8 convs save; see srq verify's int8 coverage\n",
				o.out, sp.Speedup, sp.Size, sp.Size)
		}
	}
	return gate
}

// printKernels reports the kernel check and any Conv padded for ORT's
// int8 kernel.
func printKernels(w io.Writer, res *srq.QuantizeResult) {
	if len(res.Padded) > 0 {
		fmt.Fprintf(w, "padded    %s to %d output channels (a shape ORT 1.24's int8 Conv computes wrong on AMX CPUs; same codes)\n", strings.Join(res.Padded, ", "), passes.DefectBlock)
	}
	if len(res.KernelFixed) > 0 {
		fmt.Fprintf(w, "padded    %s: the kernel check found ORT computing them wrong on this CPU; padded, they agree\n", strings.Join(res.KernelFixed, ", "))
	}
	k := res.Kernels
	if k == nil {
		fmt.Fprintln(w, "kernels   not checked (--kernel-check 0)")
		return
	}
	fmt.Fprintf(w, "kernels   %s; ORT %s on %s (%s)\n", k.Summary(), k.ORTVersion, res.CPU, res.KernelTime.Round(time.Millisecond))
	fmt.Fprintf(w, "          whole model, int8 kernels vs QDQ graph on the check input: up to %d levels apart, %.2f%% of values by more than 1 (rounding grown through the network)\n",
		k.Output.MaxDiff, 100*k.Output.Over1)
}

// rangesFile is the JSON form of --ranges-json; keys are a stable contract.
type rangesFile struct {
	Model      string        `json:"model"`
	Bits       string        `json:"bits"`
	Method     string        `json:"method"`
	Percentile float64       `json:"percentile,omitempty"`
	Patches    int           `json:"patches"`
	PatchSize  int           `json:"patch_size"`
	Seed       int64         `json:"seed"`
	Ranges     []quant.Range `json:"ranges"`
}

// writeRangesJSON writes the chosen ranges through a temporary file and a
// rename, like the model, so a reader never sees half a file.
func writeRangesJSON(path string, o *quantizeOpts, cfg quant.Config, res *quant.Result) (err error) {
	rf := rangesFile{Model: o.model, Bits: cfg.Bits.String(), Method: string(cfg.Method),
		Patches: res.Patches, PatchSize: cfg.PatchSize, Seed: cfg.Seed, Ranges: res.Ranges}
	if cfg.Method == quant.Percentile {
		rf.Percentile = cfg.Percentile
	}
	b, err := json.MarshalIndent(rf, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := atomicfile.WriteBytes(path, append(b, '\n')); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// rangeRowsShown is how many ranges the summary prints at each end of the
// list without -v: the input and output edges are where ranges go wrong.
const rangeRowsShown = 4

func printQuantizeSummary(w io.Writer, o *quantizeOpts, cfg quant.Config, res *quant.Result, total time.Duration) {
	weights := "per-channel"
	if cfg.PerTensorWeights {
		weights = "per-tensor"
	}
	method := string(cfg.Method)
	switch cfg.Method {
	case quant.Percentile:
		method = fmt.Sprintf("percentile %g", cfg.Percentile)
	case quant.Dual:
		method = fmt.Sprintf("dual-region (%s accounting, breakpoint %s)", cfg.Accounting, cfg.Breakpoint)
	}
	fmt.Fprintf(w, "wrote %s (x%d, input range 0..%g)\n", o.out, res.Scale, res.InputRange)
	fmt.Fprintf(w, "setting   %s, activations %s, weights %s %s, first/last %s, long skip %s\n", cfg.Bits, method, weights, cfg.WeightMethod, cfg.FirstLast, cfg.LongSkip)
	fmt.Fprintf(w, "convs     %d/%d quantized\n", res.ConvsInt8, res.Convs)
	printLayers(w, res.Layers, cfg, o.verbose)
	for _, n := range slices.Sorted(maps.Keys(res.Added)) {
		fmt.Fprintf(w, "added     %s: %s\n", n, res.Added[n])
	}
	if len(res.Skipped) == 0 {
		fmt.Fprintln(w, "skipped   none")
	} else {
		names := make([]string, 0, len(res.Skipped))
		for n := range res.Skipped {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(w, "skipped   %d:\n", len(names))
		widened := 0
		for _, n := range names {
			if res.Accuracy != nil && !o.verbose && strings.HasSuffix(res.Skipped[n], "--max-drop") {
				widened++
				continue
			}
			fmt.Fprintf(w, "  %s (%s)\n", n, res.Skipped[n])
		}
		if widened > 0 {
			fmt.Fprintf(w, "  %d nodes kept float by --max-drop (-v lists them)\n", widened)
		}
	}
	if t := res.Tuning; t != nil {
		keys := slices.Sorted(maps.Keys(t.HeldOut))
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s %.2f dB", k, t.HeldOut[k])
		}
		fmt.Fprintf(w, "tuned     %d Convs (%d left as calibrated), kept %q; held-out PSNR-Y vs FP32: %s\n", t.Layers, t.Skipped, t.Kept, strings.Join(parts, ", "))
		printUntuned(w, t.Untuned)
	}
	printAccuracy(w, res.Accuracy, o.verbose)
	printRanges(w, res.Ranges, o.verbose)
	tuning := ""
	if res.Tuning != nil {
		tuning = fmt.Sprintf(", tuning %s", res.Tuning.Time.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "time      calibration %s (%d patches of %dx%d)%s, rewrite %s, total %s (with loading, saving, ORT's check of the written model and the speed check)\n",
		res.CalibTime.Round(time.Millisecond), res.Patches, cfg.PatchSize, cfg.PatchSize, tuning,
		res.RewriteTime.Round(time.Millisecond), total.Round(time.Millisecond))
}

// widenedShown is how many widenings the summary lists without -v.
const widenedShown = 8

// printAccuracy prints what --max-drop did: the budget, every model
// measured, the one written and its widenings.
func printAccuracy(w io.Writer, a *quant.Accuracy, all bool) {
	if a == nil {
		return
	}
	var budget []string
	if a.MaxDrop > 0 {
		budget = append(budget, fmt.Sprintf("drop at most %g dB vs ground truth", a.MaxDrop))
	}
	if a.MaxDropVsFP32 > 0 {
		budget = append(budget, fmt.Sprintf("PSNR-Y at least %g dB vs FP32", a.MaxDropVsFP32))
	}
	images := map[string]bool{}
	var names []string
	for _, v := range a.Validation {
		n, _, _ := strings.Cut(v, "@")
		if !images[n] {
			images[n] = true
			names = append(names, n)
		}
	}
	from := "--val"
	if a.HeldOut {
		from = "every 4th --calib image, held out of calibration"
	}
	fp32 := ""
	if a.FP32PSNR != nil {
		fp32 = fmt.Sprintf("; FP32 PSNR-Y there %.2f dB", *a.FP32PSNR)
	}
	fmt.Fprintf(w, "accuracy  %s, on %d validation tiles of %d HR px (%s: %s)%s\n", strings.Join(budget, " and "), len(a.Validation), a.Tile, strings.Join(names, ", "), from, fp32)
	fmt.Fprintf(w, "          %-5s %-11s %-20s %-14s %s\n", "step", "widenings", "drop dB (90% bound)", "vs FP32 dB", "speed-up (est.)")
	for i, st := range a.Steps {
		drop := "–"
		if st.Drop != nil {
			drop = fmt.Sprintf("%.3f (%.3f)", *st.Drop, *st.DropHigh)
		}
		mark := ""
		if st.Within {
			mark = "within"
		}
		if i == a.Chosen {
			mark += ", written"
		}
		speed := "–"
		if st.Speedup > 0 {
			speed = fmt.Sprintf("%.2fx", st.Speedup)
		}
		fmt.Fprintf(w, "          %-5d %-11s %-20s %-14.2f %-7s %s\n", i+1, fmt.Sprintf("%d/%d", st.Widened, a.Candidates), drop, st.PSNRvsFP32, speed, strings.TrimPrefix(mark, ", "))
	}
	if len(a.Widened) == 0 {
		fmt.Fprintln(w, "widened   none: the quantized model is within the budget as it is")
		return
	}
	list := a.Widened
	if !all && len(list) > widenedShown {
		list = append(slices.Clone(list[:widenedShown]), fmt.Sprintf("… (%d more; -v lists all)", len(a.Widened)-widenedShown))
	}
	fmt.Fprintf(w, "widened   %d, in the order ranked: %s\n", len(a.Widened), strings.Join(list, ", "))
	if a.Speedup > 0 && a.Latency != nil {
		fmt.Fprintf(w, "          the model chosen timed against FP32 at %dx%d: %.2fx\n", a.Latency.Size, a.Latency.Size, a.Speedup)
	}
	if a.Latency != nil && a.Latency.Cached {
		fmt.Fprintln(w, "          (speed-ups estimated from the latencies in --latency-cache)")
	}
}

// printRanges prints the chosen activation ranges as a table: all of them
// with -v, else the first and last few.
func printRanges(w io.Writer, rs []quant.Range, all bool) {
	fmt.Fprintf(w, "ranges    %d activation tensors", len(rs))
	shown := rs
	cut := !all && len(rs) > 2*rangeRowsShown
	if cut {
		fmt.Fprintf(w, " (first and last %d; -v for all)", rangeRowsShown)
		shown = append(append([]quant.Range(nil), rs[:rangeRowsShown]...), rs[len(rs)-rangeRowsShown:]...)
	}
	fmt.Fprintln(w, ":")
	if len(rs) == 0 {
		return
	}
	width := len("value")
	for _, r := range shown {
		width = max(width, len(r.Value))
	}
	row := func(name, obs, chosen, scale, zp, note string) {
		line := fmt.Sprintf("  %-*s  %-21s  %-21s  %-11s  %-4s  %s", width, name, obs, chosen, scale, zp, note)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	row("value", "observed", "chosen", "scale", "zp", "")
	for i, r := range shown {
		if cut && i == rangeRowsShown {
			fmt.Fprintf(w, "  ... %d more\n", len(rs)-2*rangeRowsShown)
		}
		row(r.Value, fmt.Sprintf("%.4g..%.4g", r.Min, r.Max), fmt.Sprintf("%.4g..%.4g", r.Lo, r.Hi),
			fmt.Sprintf("%.4g", r.Scale), fmt.Sprint(r.Zero), r.Reason)
	}
}

// printLayers summarises the Convs with input quantizers of their own: how
// many take each form, every layer that fell back to float with the reason,
// and with -v every layer.
func printLayers(w io.Writer, ls []quant.Layer, cfg quant.Config, all bool) {
	if len(ls) == 0 {
		return
	}
	count := map[string]int{}
	var forms []string
	for _, l := range ls {
		if count[l.Form] == 0 {
			forms = append(forms, l.Form)
		}
		count[l.Form]++
	}
	parts := make([]string, len(forms))
	for i, f := range forms {
		parts[i] = fmt.Sprintf("%d %s", count[f], f)
	}
	fmt.Fprintf(w, "inputs    %d Convs read a %s input through their own quantizer (encoding %s): %s; other tensors stay 8-bit\n",
		len(ls), fmt.Sprintf("%d-bit", cfg.Bits.A), cfg.Encoding, strings.Join(parts, ", "))
	for _, l := range ls {
		if all || l.Why != "" {
			line := fmt.Sprintf("  %s: %s, %s", l.Conv, l.Quantizer, l.Form)
			if l.Why != "" {
				line += " (" + l.Why + ")"
			}
			fmt.Fprintln(w, line)
		}
	}
}

// printUntuned says why Convs were left as calibrated, one line per reason
// with the Convs it applies to (the first three named).
func printUntuned(w io.Writer, untuned map[string]string) {
	byWhy := map[string][]string{}
	for n, why := range untuned {
		byWhy[why] = append(byWhy[why], n)
	}
	for _, why := range slices.Sorted(maps.Keys(byWhy)) {
		names := slices.Sorted(slices.Values(byWhy[why]))
		more := ""
		if len(names) > 3 {
			names, more = names[:3], fmt.Sprintf(" and %d more", len(names)-3)
		}
		fmt.Fprintf(w, "          %d left as calibrated: %s (%s%s)\n", len(byWhy[why]), why, strings.Join(names, ", "), more)
	}
}
