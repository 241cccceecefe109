package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/srquant/srq/internal/progress"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/sr"
)

// Source is a model to verify: its serialised bytes (external data inlined,
// as onnx.Marshal gives them) and the path it came from, which names it in
// messages and in the report.
type Source struct {
	Path string
	Data []byte
}

// Config is every knob of a verification run; `srq verify` flags map onto it
// one to one, with DefaultConfig's values as their defaults. A zero Size or
// Runs means the default too, so a zero Config runs (with ORT's own thread
// count).
type Config struct {
	// EP is the execution provider both models run on: "cpu" (or ""),
	// "cuda" or "tensorrt". Coverage is read from the graph ORT builds for
	// this EP.
	EP string
	// Threads is ORT's intra-op thread count for both models (0: ORT's
	// default, one per physical core).
	Threads int
	// HR: the images are ground truth (see CompareOptions.HR).
	HR bool
	// Tile is the LR tile side for upscaling the images (0: whole image).
	// Tiles are exact up to float rounding for plain CNNs; for a network
	// that pools over the whole image (sr.GlobalReductions) Run measures
	// what tiling changes on the first image (Report.Tiling).
	Tile int
	// Size is the side of the square LR input the latency is measured on
	// (0: DefaultLatencySize).
	Size int
	// Runs is the number of timed runs per model (0: RecommendedRuns);
	// RecommendedRuns or more for anything reported. Fewer (down to 1) is
	// for tests.
	Runs int
	// Probe overrides the detected scale and input range of both models.
	Probe sr.ProbeOptions
	// Detail keeps, per image, the window of largest error rendered for
	// WriteHTML (CompareOptions.Detail); off, the report has none.
	Detail bool
}

// DefaultLatencySize is the side of the LR input latency is measured on by
// default: 256×256 is the size srq's benchmarks report, large enough that
// the convolutions, not per-run overheads, decide the speed-up.
const DefaultLatencySize = 256

// DefaultThreads is the intra-op thread count of DefaultConfig: a fixed
// count, rather than ORT's one per physical core, so that speed-ups from
// different machines compare (srq's published numbers use 2).
const DefaultThreads = 2

// DefaultConfig returns the settings `srq verify` uses when no flag says
// otherwise: the CPU provider, DefaultThreads, a DefaultLatencySize input
// and RecommendedRuns timed runs, LR inputs (HR false), no tiling. Start
// from it and change what differs.
func DefaultConfig() Config {
	return Config{EP: "cpu", Threads: DefaultThreads, Size: DefaultLatencySize, Runs: RecommendedRuns}
}

// Run verifies a quantized model against its FP32 original on the images at
// paths (see ListImages): quality (Compare), latency on a Size×Size input
// (LatencyPair, both models on the same EP and thread count) and int8
// coverage (Coverage of the graph ORT optimised for the quantized session).
// It stops with ctx's error when ctx ends (sessions closed, nothing
// written); progress, which may be nil, hears of every image compared.
// ORT must be initialised (ort.Init). The two models must agree on scale and
// input range.
func Run(ctx context.Context, fp32, quantized Source, paths []string, cfg Config, progress progress.Func) (*Report, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no images to verify on")
	}
	ep := epName(cfg.EP)
	opts := ort.Options{EP: ep, Threads: cfg.Threads}

	fm, err := sr.Open(fp32.Data, fp32.Path, opts, cfg.Probe)
	if err != nil {
		return nil, err
	}
	defer fm.Close()

	// ORT writes the graph it optimised for this EP; counting its convs is
	// the only reliable way to know what runs in int8. TensorRT compiles
	// its part of the graph into nodes ORT refuses to serialise, so there
	// is no such graph to read.
	qopts := opts
	var optPath string
	if ep != "tensorrt" {
		dir, err := os.MkdirTemp("", "srq-verify-")
		if err != nil {
			return nil, fmt.Errorf("temporary folder for ORT's optimized model: %w", err)
		}
		defer os.RemoveAll(dir)
		optPath = filepath.Join(dir, "optimized.onnx")
		qopts.OptimizedModelPath = optPath
	}
	qm, err := sr.Open(quantized.Data, quantized.Path, qopts, cfg.Probe)
	if err != nil {
		return nil, err
	}
	defer qm.Close()
	if fm.Scale != qm.Scale {
		return nil, fmt.Errorf("scale mismatch: %s is x%d but %s is x%d; is it a quantized form of that model?", fp32.Path, fm.Scale, quantized.Path, qm.Scale)
	}
	if fm.Range != qm.Range {
		return nil, fmt.Errorf("input range mismatch: %s takes 0..%g but %s takes 0..%g; pass --input-range if detection is wrong", fp32.Path, fm.Range, quantized.Path, qm.Range)
	}

	var cov *ConvCoverage
	if optPath != "" {
		om, err := onnx.Load(optPath)
		if err != nil {
			return nil, fmt.Errorf("%s: reading the graph ORT optimised for %s: %w", quantized.Path, ep, err)
		}
		c := Coverage(om)
		cov = &c
	}

	lr, _, err := LoadLR(paths[0], fm.Scale, cfg.HR)
	if err != nil {
		return nil, err
	}
	tiling, err := fm.CheckTiling(ctx, lr, cfg.Tile, -1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", paths[0], err)
	}

	// The reference: the same model at level basic, on the CPU, is what
	// the QDQ graph means; the EP's int8 kernels are checked against it.
	ref, err := sr.Open(quantized.Data, quantized.Path+" (level basic)", ort.Options{Threads: cfg.Threads, OptLevel: "basic"},
		sr.ProbeOptions{Scale: qm.Scale, Range: qm.Range})
	if err != nil {
		return nil, err
	}
	defer ref.Close()

	results, err := Compare(ctx, fm, qm, paths, CompareOptions{HR: cfg.HR, Tile: cfg.Tile, Progress: progress, Detail: cfg.Detail, Reference: ref})
	if err != nil {
		return nil, err
	}

	kernels, err := checkKernels(ctx, quantized, lr, qm.Range, ep, cfg.Threads)
	if err != nil {
		return nil, err
	}
	in, err := LatencyInput(lr, cfg.Size, fm.Range)
	if err != nil {
		return nil, err
	}
	lf, lq, err := LatencyPair(ctx, fm.Session, qm.Session, in, cfg.Runs)
	if err != nil {
		return nil, err
	}

	r := newReport(results, cfg.HR)
	r.Model, r.Quantized = fp32.Path, quantized.Path
	r.Scale, r.InputRange = fm.Scale, fm.Range
	r.LatencyMS = Pair{FP32: round(lf.MedianMS, 3), Quantized: round(lq.MedianMS, 3)}
	r.Speedup = round(lf.MedianMS/lq.MedianMS, 3)
	r.LatencyInput = filepath.Base(paths[0])
	r.Latency = map[string]LatencyStats{"fp32": roundStats(lf), "quantized": roundStats(lq)}
	r.Int8Conv = cov
	r.Tiling = tiling
	r.EP, r.Threads, r.Size, r.Runs, r.Warmup = ep, cfg.Threads, cfg.Size, cfg.Runs, WarmupRuns
	r.ORTVersion = ort.Version()
	r.CPU = HostCPU()
	r.Kernels = kernels
	if r.Reference != nil {
		// The check ran on one crop; the agreement over every image is
		// the reference comparison's.
		r.Kernels.Output = r.Reference.Kernels
	}
	return r, nil
}

// resolve puts the defaults in place of zero Size and Runs and checks the
// rest.
func (cfg Config) resolve() (Config, error) {
	if cfg.Size == 0 {
		cfg.Size = DefaultLatencySize
	}
	if cfg.Runs == 0 {
		cfg.Runs = RecommendedRuns
	}
	switch {
	case cfg.Size < 1:
		return cfg, fmt.Errorf("latency size %d: want at least 1 (0: %d)", cfg.Size, DefaultLatencySize)
	case cfg.Runs < 1:
		return cfg, fmt.Errorf("latency runs %d: want at least 1 (0: %d, as a report should)", cfg.Runs, RecommendedRuns)
	case cfg.Threads < 0:
		return cfg, fmt.Errorf("threads %d: want 0 (ORT's default) or more", cfg.Threads)
	case cfg.Tile < 0:
		return cfg, fmt.Errorf("tile %d: want 0 (whole images) or a positive side", cfg.Tile)
	}
	return cfg, nil
}

// epName normalises an execution provider name; "" means cpu.
func epName(ep string) string {
	ep = strings.ToLower(strings.TrimSpace(ep))
	if ep == "" {
		return "cpu"
	}
	return ep
}
