package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
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
	fs.StringVar(&o.bits, "bits", "w4a4", "setting whose layers are measured, wNaM")
	fs.StringVar(&o.method, "method", string(quant.Dual), "activation range method: minmax, percentile, mse or dual")
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
	fmt.Fprintf(w, "layer sensitivity of %s at %s %s (each layer quantized alone, %d patches; score = softmax of the input's std)\n",
		o.model, cfg.Bits, cfg.Method, res.Patches)
	width := len("conv")
	for _, l := range res.Layers {
		width = max(width, len(l.Conv))
	}
	fmt.Fprintf(w, "  %-*s  %4s  %9s  %10s  %9s\n", width, "conv", "bits", "PSNR dB", "input std", "score")
	for _, l := range res.Layers {
		fmt.Fprintf(w, "  %-*s  %4d  %9.2f  %10.4g  %9.3g\n", width, l.Conv, l.Bits, l.PSNR, l.InputStd, l.Score)
	}
	fmt.Fprintf(w, "rank correlation (Spearman) of the two measures: %+.2f (layers at %d bits only: %+.2f)\n", res.Spearman, cfg.Bits.A, res.SpearmanLowBit)
	fmt.Fprintf(w, "all %d layers at once: %.2f dB; their weights alone: %.2f dB; their inputs alone: %.2f dB (PSNR-Y vs FP32; a deploy model's 8-bit carriers come on top)\n",
		len(res.Layers), res.Whole.All, res.Whole.Weights, res.Whole.Inputs)
}

// writeSensitivityPlot draws the per-layer PSNR, most sensitive on top.
func writeSensitivityPlot(path string, o *sensitivityOpts, cfg quant.Config, res *quant.SensitivityResult) error {
	b := chart.Bars{Title: fmt.Sprintf("%s %s %s: output PSNR-Y vs FP32 with one layer quantized", strings.TrimSuffix(baseName(o.model), ".onnx"), cfg.Bits, cfg.Method),
		XLabel: "PSNR-Y (dB) against the FP32 output, higher is less sensitive"}
	lo := math.Inf(1)
	for _, l := range res.Layers {
		b.Labels = append(b.Labels, l.Conv)
		b.Values = append(b.Values, l.PSNR)
		b.Groups = append(b.Groups, fmt.Sprintf("%d-bit", l.Bits))
		lo = min(lo, l.PSNR)
	}
	b.Base = math.Floor(lo) - 1
	png, err := chart.PNG(b, b.FitSize(1100))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := atomicfile.WriteBytes(path, png); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func baseName(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}
