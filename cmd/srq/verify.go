package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/srquant/srq"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/progress"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/verify"
)

// verifyFlags wires `srq verify` to verify.Run. Exit codes: 0 when every
// gate passes, 1 (gateError) when --min-psnr or --max-drop is missed — the
// report is still printed and written, so CI keeps the numbers —, and 2 on
// bad input or a failure to run, with nothing written.
func verifyFlags(fs *pflag.FlagSet) func(*app, []string) error {
	model := fs.String("model", "", "FP32 ONNX model (required)")
	quantized := fs.String("quantized", "", "quantized ONNX model to verify against --model (required)")
	images := fs.String("images", "", "folder of .png/.jpg/.jpeg/.bmp images: LR inputs, or ground truth with --hr (required)")
	hr := fs.Bool("hr", false, "the images are ground truth: crop each at the top-left to a multiple of the scale, make the LR input with Pillow-exact bicubic, and also report PSNR-Y/SSIM-Y of both models against it")
	ep := fs.String("ep", "cpu", "execution provider for both models: cpu, cuda or tensorrt (int8 coverage is read from the graph ORT builds for it)")
	size := fs.Int("size", 256, "latency input: an S×S LR image cut from the first image")
	threads := fs.Int("threads", 2, "ORT intra-op threads, the same for both models (0: ORT's default)")
	runs := fs.Int("runs", verify.RecommendedRuns, fmt.Sprintf("timed runs per model after %d warm-up runs; the median is reported (use %d or more for published numbers)", verify.WarmupRuns, verify.RecommendedRuns))
	tile := fs.Int("tile", 0, "tile side in LR pixels for the images (0: whole image at once); bounds memory on large images")
	jsonPath := fs.String("json", "", "also write the JSON report to FILE (atomically; written even when a gate fails); - writes it to stdout and the table to stderr. An infinite PSNR (identical outputs) is written as 999")
	minPSNR := fs.Float64("min-psnr", 0, "quality gate: exit 1 when the mean PSNR-Y of the quantized output against the FP32 output (dB) is below this")
	maxDrop := fs.Float64("max-drop", 0, "quality gate (needs --hr): exit 1 when the mean ground-truth PSNR-Y drop, FP32 minus quantized (dB), is above this")
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
		}
		po, err := pf.options()
		if err != nil {
			return err
		}
		paths, err := img.List(*images)
		if err != nil {
			return err
		}
		if err := checkReportPath(*jsonPath, append([]string{*model, *quantized, *images}, paths...)); err != nil {
			return err
		}
		// Bad model files fail before ONNX Runtime is needed.
		for _, p := range []string{*model, *quantized} {
			if _, _, err := srq.LoadModel(p); err != nil {
				return err
			}
		}
		if err := a.initORT(); err != nil {
			return err
		}
		bar := progress.NewPrinter(a.stderr)
		r, err := srq.Verify(a.ctx, srq.VerifyOptions{Model: *model, Quantized: *quantized, Images: paths, Progress: bar.Report,
			Config: verify.Config{EP: *ep, Threads: *threads, HR: *hr, Tile: *tile, Size: *size, Runs: *runs, Probe: po}})
		bar.Done()
		if err != nil {
			return err
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

		var g verify.Gates
		if fs.Changed("min-psnr") {
			g.MinPSNR = minPSNR
		}
		if fs.Changed("max-drop") {
			g.MaxDrop = maxDrop
		}
		if err := r.Check(g); err != nil {
			return &gateError{msg: err.Error()}
		}
		return nil
	}
}

// checkReportPath refuses a --json path that is one of the inputs (the
// report would replace a model or an image) or that cannot be written, so
// that a long verification does not fail only at its very end.
func checkReportPath(path string, inputs []string) error {
	if path == "" || path == "-" {
		return nil
	}
	for _, in := range inputs {
		if onnx.SameFile(path, in) {
			return fmt.Errorf("--json %s: is the same file as the input %s; refusing to overwrite it", path, in)
		}
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("--json %s: not a regular file; refusing to replace it", path)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("--json %s: folder %s does not exist", path, dir)
	}
	return nil
}
