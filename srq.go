// Package srq quantizes image super-resolution networks in ONNX form after
// training and proves the result: the API that the srq command line is
// built on, for Go programs (MLOps pipelines, services) that embed it.
//
// A typical pipeline step:
//
//	if err := srq.Init(""); err != nil { ... }          // find ONNX Runtime once ($SRQ_ORT_LIB, .ort/, system folders)
//	imgs, _ := srq.ListImages("photos/")
//	cfg := quant.DefaultConfig()                          // W8A8, percentile ranges
//	cfg.Bits, cfg.Method = quant.Bits{W: 4, A: 4}, quant.Dual
//	res, err := srq.Quantize(ctx, srq.QuantizeOptions{
//		Model: "edsr_x4.onnx", Images: imgs, Out: "edsr_x4_w4a4.onnx", Config: cfg,
//		SpeedCheck: srq.DefaultSpeedCheck})                 // time it against FP32 as the CLI does: res.Speed.Slower()
//	vcfg := verify.DefaultConfig()                        // CPU, 2 threads, 256x256 latency input, 10 runs
//	vcfg.HR = true                                        // set5 holds ground truth
//	rep, err := srq.Verify(ctx, srq.VerifyOptions{
//		Model: "edsr_x4.onnx", Quantized: "edsr_x4_w4a4.onnx", Images: set5, Config: vcfg})
//	if err := rep.Check(verify.Gates{MaxDrop: &maxDrop}); err != nil { ... } // gate the pipeline
//
// Or ask quantization for the guarantee itself (accuracy control, `srq
// quantize --max-drop`): with cfg.MaxDrop set, Quantize widens the model
// (a Conv to 8 bits, a value read in two int8 parts, a Conv or a block
// float) where accuracy is cheapest per millisecond, until its drop on
// validation images calibration did not use is within the budget; when
// no model is, it returns a *quant.DropNotMetError and writes nothing
// (QuantizeOptions.KeepBest: the best model measured). res.Accuracy lists
// every model it measured.
//
// Every function takes a context: when it ends (a deadline, Ctrl-C) the
// running ONNX Runtime call is abandoned within a node or two, every session
// is closed, nothing is written (files are written to a temporary name and
// renamed only when complete) and the context's error is returned.
// Settings are the typed structs of the packages that own them:
// quant.Config for quantization, verify.Config for verification.
package srq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/progress"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/verify"
)

// Init finds the ONNX Runtime shared library and initialises it for the
// process. Call it once before the other functions; later calls with the
// same library do nothing.
//
// lib, if not empty, is the library (libonnxruntime.so or
// libonnxruntime.so.1) or a folder holding it. Otherwise Init uses
// $SRQ_ORT_LIB, then looks for either file name in .ort/ (where `make
// setup` installs it) in the working directory and its parents, in the
// program's own folder, in $LD_LIBRARY_PATH and in the system library
// folders (/usr/local/lib, /usr/lib/x86_64-linux-gnu, /usr/lib); see
// ort.FindLibrary. A program built outside the srq checkout therefore
// needs only SRQ_ORT_LIB, or the library installed where the system keeps
// libraries.
func Init(lib string) error {
	path, err := ort.FindLibrary(lib)
	if err != nil {
		return err
	}
	return ort.Init(path)
}

// ListImages returns the PNG, JPEG, BMP and WebP files of a folder, sorted by name:
// calibration images for Quantize, benchmark images for Verify.
func ListImages(dir string) ([]string, error) { return img.List(dir) }

// Progress hears of the steps of a long stage ("calibration", "tuning",
// "verify"): done of total.
type Progress func(stage string, done, total int)

// QuantizeOptions says what to quantize, on which images, how, and where the
// result goes.
type QuantizeOptions struct {
	// Model is the FP32 ONNX model's path.
	Model string
	// Images are the calibration images (HR unless Config.CalibLR).
	Images []string
	// Out is where the quantized model is written, atomically, after ONNX
	// Runtime has loaded it; "" only returns it. It must not be Model.
	Out string
	// ExternalData stores the weights in Out + ".data".
	ExternalData bool
	// Config is every quantization setting; start from quant.DefaultConfig.
	Config quant.Config
	// Log receives information lines (warnings, choices); Progress the
	// steps of calibration and tuning. Both may be nil.
	Log      func(string)
	Progress Progress
	// SpeedCheck, if positive, is the side in LR pixels of a short latency
	// comparison of the written model with the FP32 one (SpeedCheckRuns
	// alternating runs after warm-up, on ORT's CPU provider with
	// Config.Threads, input cut from the first image): a quantized model
	// whose float parts and conversions cost more than its int8 convs save
	// is slower than FP32, and the user should hear it before deploying.
	// It needs Out. 0 (the zero value) runs none; `srq quantize` runs it
	// at DefaultSpeedCheck, so set it to that to check as the CLI does.
	SpeedCheck int
	// KernelCheck, if positive, is the LR side of the input on which every
	// fused int8 group of the quantized model is run on its own at ORT's
	// optimisation levels basic (the QDQ graph's meaning) and all (its
	// int8 kernels), before anything is written (kernelcheck.Check). A
	// Conv the kernels compute wrong is padded to a shape they get right
	// (with Config.AvoidKernelDefects) and checked again; a model that
	// still disagrees is not written and Quantize returns a
	// *kernelcheck.Error. DefaultKernelCheck is what the CLI uses.
	KernelCheck int

	// KeepBest writes the best model accuracy control measured even when
	// none meets Config.MaxDrop (or MaxDropVsFP32); Quantize still returns
	// the *quant.DropNotMetError, with the result. Off, nothing is written
	// then.
	KeepBest bool

	// simulateDefect, set by tests only, edits every model the kernel
	// check runs on so that its fused and unfused forms differ where a
	// real defect would: a stand-in for a runtime that computes some
	// shapes wrong, on machines whose runtime does not.
	simulateDefect func(*graph.Graph)
}

// DefaultKernelCheck is the CLI's QuantizeOptions.KernelCheck.
const DefaultKernelCheck = verify.KernelCheckSize

// DefaultSpeedCheck is the LR side of the speed check `srq quantize` runs
// after writing (QuantizeOptions.SpeedCheck; --speed-check): large enough
// that the convs, not per-run overheads, decide the ratio, small enough to
// cost seconds on EDSR x4.
const DefaultSpeedCheck = 96

// SpeedCheckRuns is the number of timed runs of QuantizeOptions.SpeedCheck:
// enough to tell 0.8x from 2x, not a benchmark (srq verify and srq bench
// measure speed for a report).
const SpeedCheckRuns = 3

// QuantizeResult is quant's result and what srq.Quantize measured on the
// written model.
type QuantizeResult struct {
	*quant.Result
	// Speed is the quick latency comparison of QuantizeOptions.SpeedCheck;
	// nil when none ran.
	Speed *SpeedCheck
	// Kernels is the kernel check of QuantizeOptions.KernelCheck on the
	// model written; nil when none ran. KernelFixed lists the Convs it
	// found wrong and padded.
	Kernels     *kernelcheck.Report
	KernelFixed []string
	KernelTime  time.Duration
	// CPU is the processor the checks ran on.
	CPU verify.CPU
}

// SpeedCheck is a short latency comparison of a quantized model with its
// FP32 model.
type SpeedCheck struct {
	Size            int // LR side of the input, pixels
	FP32, Quantized verify.LatencyStats
	Speedup         float64 // FP32 median over quantized median
}

// Slower reports whether the quantized model measured slower than FP32.
func (s *SpeedCheck) Slower() bool { return s != nil && s.Speedup < 1 }

// Quantize quantizes o.Model (see quant.Quantize for the pipeline) and, if
// o.Out is set, writes the result there once ONNX Runtime has loaded it back
// from disk: a model srq writes loads wherever it is deployed. On any error,
// cancellation included, no file is left at o.Out.
func Quantize(ctx context.Context, o QuantizeOptions) (*QuantizeResult, error) {
	if o.SpeedCheck < 0 {
		return nil, fmt.Errorf("speed check size %d: want 0 (none) or a positive side in pixels", o.SpeedCheck)
	}
	if o.SpeedCheck > 0 && o.Out == "" {
		return nil, errors.New("a speed check times the written model and needs an output path")
	}
	if o.KernelCheck < 0 {
		return nil, fmt.Errorf("kernel check size %d: want 0 (none) or a positive side in pixels", o.KernelCheck)
	}
	if o.Out != "" {
		if err := checkOutput(o.Out, o.Model); err != nil {
			return nil, err
		}
		if o.ExternalData {
			if err := checkOutput(o.Out+".data", o.Model); err != nil {
				return nil, err
			}
		}
	}
	m, data, err := LoadModel(o.Model)
	if err != nil {
		return nil, err
	}
	res, err := quant.Quantize(ctx, m, data, o.Model, o.Images, o.Config, quant.Events{Log: o.Log, Progress: progress.Func(o.Progress)})
	var notMet *quant.DropNotMetError
	if errors.As(err, &notMet) && o.KeepBest && res != nil {
		out, werr := writeQuantized(ctx, o, data, res)
		if werr != nil {
			return nil, werr
		}
		return out, err
	}
	if err != nil {
		return nil, err
	}
	return writeQuantized(ctx, o, data, res)
}

// writeQuantized checks the kernels of res's model, writes it to o.Out
// (if set), reloads it in ORT and runs the speed check.
func writeQuantized(ctx context.Context, o QuantizeOptions, data []byte, res *quant.Result) (*QuantizeResult, error) {
	out := &QuantizeResult{Result: res, CPU: verify.HostCPU()}
	if o.KernelCheck > 0 {
		t0 := time.Now()
		if err := checkKernels(ctx, o, out); err != nil {
			return nil, err
		}
		out.KernelTime = time.Since(t0)
	}
	if o.Out == "" {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := onnx.Save(o.Out, res.Model, onnx.SaveOptions{ExternalData: o.ExternalData}); err != nil {
		return nil, err
	}
	remove := func() {
		os.Remove(o.Out)
		if o.ExternalData {
			os.Remove(o.Out + ".data")
		}
	}
	q, err := selfCheck(o.Out, o.Config.Threads)
	if err != nil {
		remove()
		return nil, fmt.Errorf("%s: the written model fails its self-check, removed it: %w", o.Out, err)
	}
	defer q.Close()
	if o.SpeedCheck > 0 {
		if out.Speed, err = speedCheck(ctx, o.Model, data, q, o.Images[0], res.InputRange, o.SpeedCheck, o.Config.Threads); err != nil {
			remove()
			return nil, err
		}
	}
	return out, nil
}

// checkKernels runs the kernel check on the quantized model; where a Conv
// disagrees it pads it (passes.AvoidKernelDefects) and checks again. The
// verdict is recorded in the model's metadata (verify.MetaKernels).
func checkKernels(ctx context.Context, o QuantizeOptions, out *QuantizeResult) error {
	im, err := img.Read(o.Images[0])
	if err != nil {
		return err
	}
	in, err := verify.LatencyInput(im, o.KernelCheck, out.InputRange)
	if err != nil {
		return err
	}
	ko := kernelcheck.Options{Threads: o.Config.Threads, Range: out.InputRange}
	check := func(m *onnx.ModelProto) (*kernelcheck.Report, error) {
		if o.simulateDefect != nil {
			g, err := graph.FromModel(m)
			if err != nil {
				return nil, err
			}
			g = g.Clone()
			o.simulateDefect(g)
			if m, err = g.ToModel(); err != nil {
				return nil, err
			}
		}
		rep, err := kernelcheck.Check(ctx, m, in, ko)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.Model, err)
		}
		return rep, nil
	}
	rep, err := check(out.Model)
	if err != nil {
		return err
	}
	if convs := rep.Convs(); !rep.OK() && len(convs) > 0 && o.Config.AvoidKernelDefects {
		g, err := graph.FromModel(out.Model)
		if err != nil {
			return err
		}
		var padded []string
		if err := passes.Run(g, passes.AvoidKernelDefects{Nodes: convs, Padded: &padded}); err != nil {
			return fmt.Errorf("%s: %w", o.Model, err)
		}
		m, err := g.ToModel()
		if err != nil {
			return err
		}
		again, err := check(m)
		if err != nil {
			return err
		}
		if again.OK() {
			out.Model, out.KernelFixed, rep = m, padded, again
		}
	}
	if !rep.OK() {
		name := o.Out
		if name == "" {
			name = "the quantized " + o.Model
		}
		return &kernelcheck.Error{Model: name, Report: rep, CPU: out.CPU.String()}
	}
	out.Kernels = rep
	return setMeta(out.Model, verify.MetaKernels, verify.KernelsMeta{ORTVersion: rep.ORTVersion, CPU: out.CPU.String(),
		Groups: rep.Groups, MaxCodeDiff: rep.MaxCodeDiff, Padded: append(out.Padded, out.KernelFixed...)})
}

// setMeta sets one JSON metadata entry of m.
func setMeta(m *onnx.ModelProto, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("metadata %s: %w", key, err)
	}
	for _, p := range m.MetadataProps {
		if p.Key == key {
			p.Value = string(b)
			return nil
		}
	}
	m.MetadataProps = append(m.MetadataProps, &onnx.StringStringEntryProto{Key: key, Value: string(b)})
	return nil
}

// speedCheck times the FP32 model (at model, serialized fdata) against the quantized
// session q on a size×size input cut from the image at path.
func speedCheck(ctx context.Context, model string, fdata []byte, q *ort.Session, path string, rng float32, size, threads int) (*SpeedCheck, error) {
	im, err := img.Read(path)
	if err != nil {
		return nil, err
	}
	in, err := verify.LatencyInput(im, size, rng)
	if err != nil {
		return nil, err
	}
	f, err := ort.NewSession(fdata, model, ort.Options{Threads: threads})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lf, lq, err := verify.LatencyPair(ctx, f, q, in, SpeedCheckRuns)
	if err != nil {
		return nil, fmt.Errorf("speed check: %w", err)
	}
	return &SpeedCheck{Size: size, FP32: lf, Quantized: lq, Speedup: lf.MedianMS / lq.MedianMS}, nil
}

// VerifyOptions says which pair of models to compare on which images.
type VerifyOptions struct {
	Model     string   // the FP32 model's path
	Quantized string   // the quantized model's path
	Images    []string // LR inputs, or ground truth with Config.HR
	Config    verify.Config
	Progress  Progress // hears of every image compared; may be nil
	// Report, if set, is a folder (created if missing) where Verify also
	// writes a self-contained HTML report, index.html (verify.WriteHTML):
	// the summary, per image the window where the quantized output differs
	// most (Config.Detail is turned on), and the quantized model's setting
	// and per-layer choices from its metadata. The folder is checked
	// before anything runs; the page is written when the run succeeds,
	// before any gate is checked.
	Report string
	// Activations are charts for the report's activations section, such as
	// the histograms `srq verify --calib` renders; may be empty.
	Activations []verify.Figure
}

// Verify compares o.Quantized with o.Model (verify.Run): PSNR/SSIM against
// the FP32 output and the ground truth, latency, and int8 coverage from ONNX
// Runtime's own optimized graph; with o.Report, it also writes the HTML
// report. Gate on the report with Report.Check.
func Verify(ctx context.Context, o VerifyOptions) (*verify.Report, error) {
	if o.Report != "" {
		if err := verify.CheckHTMLDir(o.Report, append([]string{o.Model, o.Quantized}, o.Images...)); err != nil {
			return nil, err
		}
		o.Config.Detail = true
	}
	_, fdata, err := LoadModel(o.Model)
	if err != nil {
		return nil, err
	}
	qm, qdata, err := LoadModel(o.Quantized)
	if err != nil {
		return nil, err
	}
	r, err := verify.Run(ctx, verify.Source{Path: o.Model, Data: fdata}, verify.Source{Path: o.Quantized, Data: qdata}, o.Images, o.Config, progress.Func(o.Progress))
	if err != nil || o.Report == "" {
		return r, err
	}
	meta := map[string]string{}
	for _, p := range qm.GetMetadataProps() {
		meta[p.GetKey()] = p.GetValue()
	}
	if _, err := verify.WriteHTML(o.Report, r, verify.HTMLExtras{Metadata: meta, Activations: o.Activations}); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadModel reads and validates an ONNX model and returns it with its
// serialised form (external data inlined), ready for an ONNX Runtime
// session. Errors name the file.
func LoadModel(path string) (*onnx.ModelProto, []byte, error) {
	m, err := onnx.Load(path)
	if err != nil {
		return nil, nil, err
	}
	if err := onnx.Validate(m); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	b, err := onnx.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, b, nil
}

// checkOutput refuses an output path that would destroy the model or cannot
// be written, before any work is done.
func checkOutput(out, model string) error {
	if filepath.Clean(out) == filepath.Clean(model) || onnx.SameFile(out, model) {
		return fmt.Errorf("%s: output path is the same file as the model; refusing to overwrite it", out)
	}
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		return fmt.Errorf("%s: output path is a directory; give a file name", out)
	}
	dir := filepath.Dir(out)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s: output folder %s does not exist", out, dir)
	}
	return nil
}

// selfCheck reloads the written model from disk, validates it and opens it
// in ONNX Runtime; the caller closes the session.
func selfCheck(path string, threads int) (*ort.Session, error) {
	_, data, err := LoadModel(path)
	if err != nil {
		return nil, err
	}
	return ort.NewSession(data, path, ort.Options{Threads: threads})
}
