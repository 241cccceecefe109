package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/spf13/pflag"

	"github.com/srquant/srq"
	"github.com/srquant/srq/chart"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/htmlpage"
	"github.com/srquant/srq/internal/progress"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/sr"
	"github.com/srquant/srq/verify"
)

// verifyFlags wires `srq verify` to verify.Run. Exit codes: 0 when every
// gate passes, 1 (gateError) when --min-psnr, --max-drop or --min-speedup is missed — the
// report is still printed and written, so CI keeps the numbers —, and 2 on
// bad input or a failure to run, with nothing written.
func verifyFlags(fs *pflag.FlagSet) func(*app, []string) error {
	model := fs.String("model", "", "FP32 ONNX model (required)")
	quantized := fs.String("quantized", "", "quantized ONNX model to verify against --model (required)")
	images := fs.String("images", "", "folder of .png/.jpg/.jpeg/.bmp/.webp images: LR inputs, or ground truth with --hr (required)")
	hr := fs.Bool("hr", false, "the images are ground truth: crop each at the top-left to a multiple of the scale, make the LR input with Pillow-exact bicubic, and also report PSNR-Y/SSIM-Y of both models against it")
	def := verify.DefaultConfig()
	ep := fs.String("ep", def.EP, "execution provider for both models: cpu, cuda or tensorrt (int8 coverage is read from the graph ORT builds for it)")
	size := fs.Int("size", def.Size, "latency input: an S×S LR image cut from the first image")
	threads := fs.Int("threads", def.Threads, "ORT intra-op threads, the same for both models (0: ORT's default, one per core; the fixed default keeps speed-ups comparable across machines)")
	runs := fs.Int("runs", def.Runs, fmt.Sprintf("timed runs per model after %d warm-up runs; the median is reported (use %d or more for published numbers)", verify.WarmupRuns, verify.RecommendedRuns))
	tile := fs.Int("tile", 0, "tile side in LR pixels for the images (0: whole image at once); bounds memory on large images. Exact (up to float rounding) for plain CNNs; for a network that pools over the whole image (RCAN, IMDN) srq warns with the difference measured on the first image")
	jsonPath := fs.String("json", "", "also write the JSON report to FILE (atomically; written even when a gate fails); - writes it to stdout and the table to stderr. An infinite PSNR (identical outputs) is written as 999")
	minPSNR := fs.Float64("min-psnr", 0, "quality gate: exit 1 when the mean PSNR-Y of the quantized output against the FP32 output (dB) is below this")
	maxDrop := fs.Float64("max-drop", 0, "quality gate (needs --hr): exit 1 when the mean ground-truth PSNR-Y drop, FP32 minus quantized (dB), is above this")
	minSpeedup := fs.Float64("min-speedup", 0, "speed gate: exit 1 when the quantized model's speed-up over FP32 (median latency, this machine and --ep) is below this, e.g. 1 to refuse a model slower than FP32")
	report := fs.String("report", "", "also write a self-contained HTML report to DIR/index.html (DIR is created if missing; written even when a gate fails): summary, per image the window where the quantized output differs most as zoomed crops with |ΔY| heat maps, per-layer charts from the quantized model's metadata")
	calibDir := fs.String("calib", "", "with --report: calibration images; the report then also shows histograms of the FP32 model's Conv inputs, cut and marked as the quantized model was calibrated")
	var pf probeFlags
	pf.register(fs, " of both models")
	return func(a *app, args []string) error {
		if err := wantArgs(args, 0, "no positional arguments (use --model, --quantized and --images)"); err != nil {
			return err
		}
		for _, f := range []struct{ name, v string }{{"--model", *model}, {"--quantized", *quantized}, {"--images", *images}} {
			if f.v == "" {
				return fmt.Errorf("%s is required", f.name)
			}
		}
		switch {
		case *runs < 1:
			return fmt.Errorf("--runs %d: want at least 1 (%d or more for published numbers)", *runs, verify.RecommendedRuns)
		case *size < 1:
			return fmt.Errorf("--size %d: want a positive LR side in pixels", *size)
		case *threads < 0:
			return fmt.Errorf("--threads %d: want 0 (ORT default) or more", *threads)
		case *tile < 0:
			return fmt.Errorf("--tile %d: must not be negative", *tile)
		case fs.Changed("max-drop") && !*hr:
			return errors.New("--max-drop gates on the ground-truth PSNR drop and needs --hr")
		case *calibDir != "" && *report == "":
			return errors.New("--calib draws activation histograms for the HTML report and needs --report")
		}
		po, err := pf.options()
		if err != nil {
			return err
		}
		paths, err := img.List(*images)
		if err != nil {
			return err
		}
		inputs := append([]string{*model, *quantized, *images}, paths...)
		if err := checkReportPath("--json", *jsonPath, inputs); err != nil {
			return err
		}
		var calibPaths []string
		if *report != "" {
			if err := verify.CheckHTMLDir(*report, inputs); err != nil {
				return fmt.Errorf("--report %w", err)
			}
			if *calibDir != "" {
				if calibPaths, err = calibImages(*calibDir); err != nil {
					return err
				}
			}
		}
		// Bad model files fail before ONNX Runtime is needed.
		if _, _, err := srq.LoadModel(*model); err != nil {
			return err
		}
		qm, _, err := srq.LoadModel(*quantized)
		if err != nil {
			return err
		}
		if err := a.initORT(); err != nil {
			return err
		}
		var acts []verify.Figure
		if len(calibPaths) > 0 {
			if acts, err = a.reportHistograms(*model, *calibDir, qm, *threads, po); err != nil {
				return err
			}
		}
		bar := progress.NewPrinter(a.stderr)
		r, err := srq.Verify(a.ctx, srq.VerifyOptions{Model: *model, Quantized: *quantized, Images: paths, Progress: bar.Report,
			Config: verify.Config{EP: *ep, Threads: *threads, HR: *hr, Tile: *tile, Size: *size, Runs: *runs, Probe: po},
			Report: *report, Activations: acts})
		bar.Done()
		if err != nil {
			return err
		}
		if r.Tiling != nil {
			fmt.Fprintf(a.stderr, "warning: %s: --tile %d: %s; the numbers below compare tiled outputs\n", *model, *tile, r.Tiling)
		}

		table := a.stdout
		switch *jsonPath {
		case "":
		case "-":
			table = a.stderr
			b, err := r.JSON()
			if err != nil {
				return err
			}
			if _, err := a.stdout.Write(b); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
		default:
			if err := r.WriteJSON(*jsonPath); err != nil {
				return err
			}
		}
		if err := r.WriteTable(table); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
		if *jsonPath != "" && *jsonPath != "-" {
			fmt.Fprintf(table, "wrote %s\n", *jsonPath)
		}
		if *report != "" {
			fmt.Fprintf(table, "wrote %s\n", filepath.Join(*report, htmlpage.Index))
		}

		var g verify.Gates
		if fs.Changed("min-psnr") {
			g.MinPSNR = minPSNR
		}
		if fs.Changed("max-drop") {
			g.MaxDrop = maxDrop
		}
		if fs.Changed("min-speedup") {
			g.MinSpeedup = minSpeedup
		}
		if err := r.Check(g); err != nil {
			return &gateError{msg: err.Error()}
		}
		return nil
	}
}

// checkReportPath refuses a report path given by flag (--json, --plot)
// that is one of the inputs (the report would replace a model or an image)
// or that cannot be written, so that a long run does not fail only at its
// very end. Errors name the flag the path came from. "" and "-" (stdout)
// pass.
func checkReportPath(flag, path string, inputs []string) error {
	if path == "" || path == "-" {
		return nil
	}
	for _, in := range inputs {
		if onnx.SameFile(path, in) {
			return fmt.Errorf("%s %s: is the same file as the input %s; refusing to overwrite it", flag, path, in)
		}
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s: not a regular file; refusing to replace it", flag, path)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s %s: folder %s does not exist", flag, path, dir)
	}
	return nil
}

// reportHistograms renders, for the HTML report, one histogram per Conv
// input of the FP32 model at path, as `srq inspect --activations --plots`
// draws them. The patches are cut from the images in dir as the quantized
// model qm was calibrated (its srq.calibration: count, size, seed, LR), and
// the clip marked is its setting's (srq.setting: the uniform method at its
// activation bits; for dual, the percentile its 8-bit carriers use), so
// the histograms show what its quantizers were chosen from; quantize's
// defaults stand in for a model without srq metadata.
func (a *app) reportHistograms(path, dir string, qm *onnx.ModelProto, threads int, po sr.ProbeOptions) ([]verify.Figure, error) {
	def := quant.DefaultConfig()
	o := &activationOpts{images: dir, method: string(def.Method), percentile: def.Percentile, bits: def.Bits.String(),
		patches: def.Patches, patchSize: def.PatchSize, seed: def.Seed, calibLR: def.CalibLR, batch: def.Batch, threads: threads}
	for _, p := range quant.Provenance(qm) {
		switch p.GetKey() {
		case quant.MetaCalibration:
			var c quant.Calibration
			if json.Unmarshal([]byte(p.GetValue()), &c) == nil && c.Patches > 0 && c.PatchSize > 0 {
				o.patches, o.patchSize, o.seed, o.calibLR = c.Patches, c.PatchSize, c.Seed, c.LR
			}
		case quant.MetaSetting:
			var s quant.Setting
			if json.Unmarshal([]byte(p.GetValue()), &s) != nil {
				continue
			}
			if _, err := quant.ParseBits(s.Bits); err == nil {
				o.bits = s.Bits
			}
			if m, err := quant.ParseMethod(s.Method); err == nil {
				o.method = string(m)
				if m == quant.Dual {
					o.method = string(quant.Percentile)
				}
			}
			if s.Percentile > 0 {
				o.percentile = s.Percentile
			}
		}
	}
	bits, method, err := o.check()
	if err != nil {
		return nil, fmt.Errorf("activation histograms: %w", err)
	}
	r, _, err := a.analyseActivations(path, o, bits, method, po)
	if err != nil {
		return nil, err
	}
	// Rendering dozens of charts takes longer than the analysis on a small
	// calibration; the charts are independent, so they render in parallel.
	figs := make([]verify.Figure, len(r.Tensors))
	errs := make([]error, len(r.Tensors))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), len(r.Tensors)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := &r.Tensors[i]
				b, err := chart.PNG(histogramOf(t, r), reportHistogramSize)
				figs[i], errs[i] = verify.Figure{Title: t.Value, PNG: b}, err
			}
		}()
	}
	for i := range r.Tensors {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Tensors[i].Value, err)
		}
	}
	return figs, nil
}

// reportHistogramSize is a histogram's size in the HTML report: smaller
// than the files of `srq inspect --plots` (dozens of them sit in one page),
// still wide enough for the legend and axis labels.
var reportHistogramSize = chart.Size{W: 800, H: 400}
