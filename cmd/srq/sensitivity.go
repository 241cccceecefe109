package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/srquant/srq"
	"github.com/srquant/srq/chart"
	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/internal/progress"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/qdq"
	"github.com/srquant/srq/quant"
)

// The defaults of `srq sensitivity` differ from `srq quantize`'s (w8a8,
// percentile) on purpose: the command exists to find which layers a
// low-bit setting hurts — at W8A8 percentile all of EDSR x2's layers
// together measure 57.0 dB against FP32 (README), so no single one matters
// much — so it defaults to the setting where that choice is made, and
// each --help says so.
const (
	defaultSensitivityBits   = "w4a4"
	defaultSensitivityMethod = quant.Dual
)

// sensitivityOpts are the flags of `srq sensitivity`: the setting whose
// layers are measured (the same flags as quantize) and where results go.
type sensitivityOpts struct {
	model, calib, jsonPath, plot string
	bits, method, accounting     string
	breakpoint, weights          string
	percentile                   float64
	patches, patchSize, threads  int
	seed                         int64
	calibLR                      bool
	probe                        probeFlags
}

func sensitivityFlags(fs *pflag.FlagSet) func(*app, []string) error {
	def := quant.DefaultConfig()
	var o sensitivityOpts
	fs.StringVar(&o.model, "model", "", "FP32 ONNX SR model (required)")
	fs.StringVar(&o.calib, "calib", "", "folder of calibration images, HR unless --calib-lr (required)")
	fs.StringVar(&o.bits, "bits", defaultSensitivityBits, "setting whose layers are measured, wNaM. The default is the low-bit setting, unlike srq quantize's w8a8: at 4 bits layers differ by up to dBs, and the ranking is what --skip and --budget-bits choices are made from (--bits w8a8 --method percentile measures quantize's default)")
	fs.StringVar(&o.method, "method", string(defaultSensitivityMethod), "activation range method: minmax, percentile, mse or dual. The default is the dual-region quantizer, the method for 4 bits, unlike srq quantize's percentile (its W8A8 default)")
	fs.Float64Var(&o.percentile, "percentile", def.Percentile, "percentile of --method percentile")
	fs.StringVar(&o.accounting, "accounting", string(def.Accounting), "dual-region bit accounting: reference or strict")
	fs.StringVar(&o.breakpoint, "breakpoint", def.Breakpoint.String(), "dual-region breakpoint: search, pP or a value")
	fs.StringVar(&o.weights, "weights", "per-channel", "weight quantizer granularity: per-channel or per-tensor")
	fs.IntVar(&o.patches, "patches", def.Patches, "calibration patches (the measurement runs on the first 16)")
	fs.IntVar(&o.patchSize, "patch-size", def.PatchSize, "side of a calibration patch in LR pixels")
	fs.Int64Var(&o.seed, "seed", def.Seed, "seed of the patch positions")
	fs.BoolVar(&o.calibLR, "calib-lr", false, "calibration images are LR inputs already")
	fs.IntVar(&o.threads, "threads", def.Threads, "intra-op threads (0: ONNX Runtime's own choice)")
	fs.StringVar(&o.jsonPath, "json", "", "also write the result as JSON to FILE (- for stdout, the table then goes to stderr)")
	fs.StringVar(&o.plot, "plot", "", "also write a PNG bar chart of the per-layer PSNR to FILE")
	o.probe.register(fs, "")
	return func(a *app, args []string) error {
		if err := wantArgs(args, 0, "no positional arguments (use --model and --calib)"); err != nil {
			return err
		}
		return a.sensitivity(&o)
	}
}

func (o *sensitivityOpts) config() (quant.Config, error) {
	cfg := quant.DefaultConfig()
	var err error
	if cfg.Bits, err = quant.ParseBits(o.bits); err != nil {
		return cfg, fmt.Errorf("--bits: %w", err)
	}
	if cfg.Method, err = quant.ParseMethod(o.method); err != nil {
		return cfg, fmt.Errorf("--method: %w", err)
	}
	if cfg.Accounting, err = qdq.ParseAccounting(o.accounting); err != nil {
		return cfg, fmt.Errorf("--accounting: %w", err)
	}
	if cfg.Breakpoint, err = quant.ParseBreakpoint(o.breakpoint); err != nil {
		return cfg, fmt.Errorf("--breakpoint: %w", err)
	}
	if !(o.percentile >= 50 && o.percentile <= 100) {
		return cfg, fmt.Errorf("--percentile %g: want a value in [50, 100]", o.percentile)
	}
	switch o.weights {
	case "per-channel", "per-tensor":
		cfg.PerTensorWeights = o.weights == "per-tensor"
	default:
		return cfg, fmt.Errorf("--weights %q: want per-channel or per-tensor", o.weights)
	}
	if o.patches <= 0 || o.patchSize <= 0 || o.threads < 0 {
		return cfg, fmt.Errorf("--patches, --patch-size: want positive integers; --threads: 0 or more")
	}
	cfg.Percentile, cfg.Patches, cfg.PatchSize, cfg.Seed, cfg.CalibLR, cfg.Threads = o.percentile, o.patches, o.patchSize, o.seed, o.calibLR, o.threads
	if cfg.Probe, err = o.probe.options(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func (a *app) sensitivity(o *sensitivityOpts) error {
	switch {
	case o.model == "":
		return errors.New("--model is required")
	case o.calib == "":
		return errors.New("--calib is required")
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	imgs, err := calibImages(o.calib)
	if err != nil {
		return err
	}
	inputs := append([]string{o.model, o.calib}, imgs...)
	if err := checkReportPath("--json", o.jsonPath, inputs); err != nil {
		return err
	}
	switch {
	case o.plot == "-":
		return errors.New("--plot -: a PNG chart goes to a file, not to stdout")
	case o.plot != "" && o.jsonPath != "" && (filepath.Clean(o.plot) == filepath.Clean(o.jsonPath) || onnx.SameFile(o.plot, o.jsonPath)):
		return fmt.Errorf("--plot %s: same file as --json; give each its own", o.plot)
	}
	if err := checkReportPath("--plot", o.plot, inputs); err != nil {
		return err
	}
	m, data, err := srq.LoadModel(o.model)
	if err != nil {
		return err
	}
	if err := a.initORT(); err != nil {
		return err
	}
	bar := progress.NewPrinter(a.stderr)
	res, err := quant.Sensitivity(a.ctx, m, data, o.model, imgs, cfg, quant.Events{Progress: bar.Report, Log: func(s string) {
		bar.Done()
		fmt.Fprintln(a.stderr, s)
	}})
	bar.Done()
	if err != nil {
		return err
	}
	table := a.stdout
	switch o.jsonPath {
	case "":
	case "-":
		table = a.stderr
		if err := json.NewEncoder(a.stdout).Encode(res); err != nil {
			return err
		}
	default:
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(o.jsonPath, append(b, '\n')); err != nil {
			return fmt.Errorf("%s: %w", o.jsonPath, err)
		}
	}
	printSensitivity(table, o, cfg, res)
	if o.plot != "" {
		if err := writeSensitivityPlot(o.plot, o, cfg, res); err != nil {
			return err
		}
		fmt.Fprintf(table, "wrote %s\n", o.plot)
	}
	return nil
}

func printSensitivity(w io.Writer, o *sensitivityOpts, cfg quant.Config, res *quant.SensitivityResult) {
	fmt.Fprintf(w, "layer sensitivity of %s at %s %s (each layer quantized alone, %d patches), most sensitive first\n",
		o.model, cfg.Bits, cfg.Method, res.Patches)
	fmt.Fprintln(w, "  PSNR vs fp32: output PSNR-Y against the FP32 output with only this layer quantized (lower: more sensitive)")
	fmt.Fprintln(w, "  score: the method's own sensitivity estimate, a softmax over layers of the input's std, as a share of all layers (%); score rank: 1 = highest score")
	width := len("conv")
	for _, l := range res.Layers {
		width = max(width, len(l.Conv))
	}
	ranks := scoreRanks(res.Layers)
	rankW := len(fmt.Sprint(len(res.Layers)))
	fmt.Fprintf(w, "  %-*s  %4s  %17s  %10s  %8s  %10s\n", width, "conv", "bits", "PSNR vs fp32 (dB)", "input std", "score %", "score rank")
	for i, l := range res.Layers {
		fmt.Fprintf(w, "  %-*s  %4d  %17.2f  %10.4g  %8s  %*d/%d\n", width, l.Conv, l.Bits, l.PSNR, l.InputStd, percent(l.Score), 10-rankW-1, ranks[i], len(res.Layers))
	}
	fmt.Fprintf(w, "rank correlation (Spearman) of the two measures: %+.2f (layers at %d bits only: %+.2f)\n", res.Spearman, cfg.Bits.A, res.SpearmanLowBit)
	fmt.Fprintf(w, "all %d layers at once: %.2f dB; their weights alone: %.2f dB; their inputs alone: %.2f dB (PSNR-Y vs FP32; a deploy model's 8-bit carriers come on top)\n",
		len(res.Layers), res.Whole.All, res.Whole.Weights, res.Whole.Inputs)
}

// scoreRanks returns each layer's rank by score, 1 for the highest; the
// softmax spans dozens of orders of magnitude (1 to 1e-23 on RCAN), so a
// rank and a percentage read where the raw value does not.
func scoreRanks(ls []quant.LayerSensitivity) []int {
	idx := make([]int, len(ls))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return ls[idx[a]].Score > ls[idx[b]].Score })
	ranks := make([]int, len(ls))
	for r, i := range idx {
		ranks[i] = r + 1
	}
	return ranks
}

// percent writes a share (0..1) as a percentage with two decimals, "<0.01"
// for a positive share too small to show.
func percent(share float64) string {
	p := 100 * share
	if p > 0 && p < 0.005 {
		return "<0.01"
	}
	return fmt.Sprintf("%.2f", p)
}

// writeSensitivityPlot draws the per-layer sensitivity chart.
func writeSensitivityPlot(path string, o *sensitivityOpts, cfg quant.Config, res *quant.SensitivityResult) error {
	b := sensitivityBars(strings.TrimSuffix(baseName(o.model), ".onnx"), cfg, res)
	png, err := chart.PNG(b, b.FitSize(1100))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := atomicfile.WriteBytes(path, png); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// sensitivityBars draws each layer's output noise when it alone is
// quantized, −PSNR dB (the noise power against a full-scale signal), with
// bars from just below the quietest layer: the most sensitive layer has
// the longest bar, and one more dB of bar is one dB less PSNR. Most
// sensitive on top.
func sensitivityBars(name string, cfg quant.Config, res *quant.SensitivityResult) chart.Bars {
	b := chart.Bars{Title: fmt.Sprintf("%s %s %s: output noise with one layer quantized", name, cfg.Bits, cfg.Method),
		XLabel: "noise against the FP32 output, dB of full scale (= −PSNR-Y); longer bar: more sensitive"}
	lo := math.Inf(1)
	for _, l := range res.Layers {
		b.Labels = append(b.Labels, l.Conv)
		b.Values = append(b.Values, -l.PSNR)
		b.Groups = append(b.Groups, fmt.Sprintf("%d-bit", l.Bits))
		lo = min(lo, -l.PSNR)
	}
	if !math.IsInf(lo, 0) {
		b.Base = math.Floor(lo) - 1
	}
	return b
}

func baseName(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}
