package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/sr"
	"github.com/srquant/srq/verify"
)

// benchRow is one model × method result of `srq bench`.
type benchRow struct {
	Model      string              `json:"model"`
	Method     string              `json:"method"`
	Scale      int                 `json:"scale"`
	FP32       map[string]float64  `json:"psnr_gt_fp32_db"`      // set -> mean PSNR-Y vs GT
	Quantized  map[string]float64  `json:"psnr_gt_quantized_db"` // set -> mean PSNR-Y vs GT
	VsFP32     map[string]float64  `json:"psnr_vs_fp32_db"`      // set -> mean PSNR-Y vs FP32 output
	QuantizeS  float64             `json:"quantize_s"`
	Latency    map[int][2]float64  `json:"latency_ms"` // size -> {fp32, int8} medians
	Coverage   verify.ConvCoverage `json:"int8_conv"`
	Skipped    map[string]string   `json:"skipped,omitempty"`
	Failure    string              `json:"failure,omitempty"`
	latencyAll map[int][2]verify.LatencyStats
}

func benchFlags(fs *pflag.FlagSet) func(*app, []string) error {
	models := fs.String("models", "../shared/models", "folder of FP32 .onnx models")
	data := fs.String("data", "../shared/data", "folder with the benchmark sets (HR ground truth)")
	calibDir := fs.String("calib", "../shared/images", "calibration images")
	sets := fs.StringSlice("sets", []string{"Set5", "Set14", "B100"}, "benchmark sets inside --data")
	methods := fs.StringSlice("methods", []string{"minmax", "percentile", "mse"}, "activation range methods")
	sizes := fs.IntSlice("sizes", []int{128, 256}, "LR sizes for latency")
	threads := fs.Int("threads", 2, "intra-op threads for every session")
	runs := fs.Int("runs", verify.RecommendedRuns, "timed runs per latency measurement")
	only := fs.StringSlice("only", nil, "model file names to bench (default: all in --models)")
	out := fs.String("out", "BENCHMARKS.md", "markdown report to write")
	jsonOut := fs.String("json", "", "also write the raw results as JSON")
	return func(a *app, args []string) error {
		if err := wantArgs(args, 0, "no positional arguments"); err != nil {
			return err
		}
		for _, m := range *methods {
			if _, err := quant.ParseMethod(m); err != nil {
				return err
			}
		}
		if *runs < 1 {
			return fmt.Errorf("--runs %d: want at least 1", *runs)
		}
		paths, err := filepath.Glob(filepath.Join(*models, "*.onnx"))
		if err != nil || len(paths) == 0 {
			return fmt.Errorf("%s: no .onnx models", *models)
		}
		if len(*only) > 0 {
			paths = slices.DeleteFunc(paths, func(p string) bool { return !slices.Contains(*only, filepath.Base(p)) })
		}
		calibImgs, err := calibImages(*calibDir)
		if err != nil {
			return err
		}
		if err := a.initORT(); err != nil {
			return err
		}
		var rows []*benchRow
		start := time.Now()
		for _, p := range paths {
			r, err := benchModel(a, p, calibImgs, *data, *sets, *methods, *sizes, *threads, *runs)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
		md := benchMarkdown(rows, *sets, *sizes, *threads, *runs, time.Since(start))
		if err := atomicfile.WriteBytes(*out, []byte(md)); err != nil {
			return fmt.Errorf("%s: %w", *out, err)
		}
		if *jsonOut != "" {
			b, err := json.MarshalIndent(rows, "", "  ")
			if err != nil {
				return err
			}
			if err := atomicfile.WriteBytes(*jsonOut, append(b, '\n')); err != nil {
				return fmt.Errorf("%s: %w", *jsonOut, err)
			}
		}
		fmt.Fprintf(a.stdout, "wrote %s (%d rows, %s)\n", *out, len(rows), time.Since(start).Round(time.Second))
		return nil
	}
}

// benchSet is one benchmark set loaded for a scale, with the FP32 outputs
// computed once and reused for every method.
type benchSet struct {
	name     string
	lr, gt   []*img.Image
	fp32Out  []*img.Image
	fp32PSNR float64
}

func benchModel(a *app, path string, calibImgs []string, dataDir string, sets, methods []string, sizes []int, threads, runs int) ([]*benchRow, error) {
	name := filepath.Base(path)
	fmt.Fprintf(a.stderr, "== %s\n", name)
	m, data, err := loadModel(path)
	if err != nil {
		return nil, err
	}
	opts := ort.Options{Threads: threads}
	fm, err := sr.Open(data, path, opts, sr.ProbeOptions{})
	if err != nil {
		return nil, err
	}
	defer fm.Close()
	var loaded []*benchSet
	for _, s := range sets {
		bs, err := loadBenchSet(fm, filepath.Join(dataDir, s))
		if err != nil {
			return nil, err
		}
		bs.name = s
		loaded = append(loaded, bs)
	}
	var rows []*benchRow
	for _, method := range methods {
		fmt.Fprintf(a.stderr, "   %s\n", method)
		row := &benchRow{Model: name, Method: method, Scale: fm.Scale, FP32: map[string]float64{}, Quantized: map[string]float64{},
			VsFP32: map[string]float64{}, Latency: map[int][2]float64{}, latencyAll: map[int][2]verify.LatencyStats{}}
		rows = append(rows, row)
		cfg := quant.DefaultConfig()
		cfg.Method = quant.Method(method)
		cfg.Threads = threads
		cfg.Probe = sr.ProbeOptions{Scale: fm.Scale, Range: fm.Range}
		t0 := time.Now()
		res, err := quant.Quantize(m, data, path, calibImgs, cfg, nil)
		if err != nil {
			row.Failure = err.Error()
			continue
		}
		row.QuantizeS = time.Since(t0).Seconds()
		row.Skipped = res.Skipped
		qdata, err := onnx.Marshal(res.Model)
		if err != nil {
			return nil, err
		}
		if err := benchQuantized(row, fm, qdata, loaded, sizes, threads, runs); err != nil {
			row.Failure = err.Error()
		}
	}
	return rows, nil
}

func loadBenchSet(fm *sr.Model, dir string) (*benchSet, error) {
	paths, err := img.List(dir)
	if err != nil {
		return nil, err
	}
	bs := &benchSet{}
	for _, p := range paths {
		lr, gt, err := verify.LoadLR(p, fm.Scale, true)
		if err != nil {
			return nil, err
		}
		out, err := fm.Upscale(lr, 0, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		v, err := verify.PSNRY(out, gt, fm.Scale)
		if err != nil {
			return nil, err
		}
		bs.lr, bs.gt, bs.fp32Out = append(bs.lr, lr), append(bs.gt, gt), append(bs.fp32Out, out)
		bs.fp32PSNR += v / float64(len(paths))
	}
	return bs, nil
}

func benchQuantized(row *benchRow, fm *sr.Model, qdata []byte, sets []*benchSet, sizes []int, threads, runs int) error {
	dir, err := os.MkdirTemp("", "srq-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	optPath := filepath.Join(dir, "optimized.onnx")
	qm, err := sr.Open(qdata, row.Model+" ("+row.Method+")", ort.Options{Threads: threads, OptimizedModelPath: optPath}, sr.ProbeOptions{Scale: fm.Scale, Range: fm.Range})
	if err != nil {
		return err
	}
	defer qm.Close()
	opt, err := onnx.Load(optPath)
	if err != nil {
		return err
	}
	row.Coverage = verify.Coverage(opt)
	for _, s := range sets {
		var gt, vs float64
		for i, lr := range s.lr {
			out, err := qm.Upscale(lr, 0, 0)
			if err != nil {
				return err
			}
			a, err := verify.PSNRY(out, s.gt[i], fm.Scale)
			if err != nil {
				return err
			}
			b, err := verify.PSNRY(out, s.fp32Out[i], fm.Scale)
			if err != nil {
				return err
			}
			gt += a / float64(len(s.lr))
			vs += min(b, verify.MaxPSNR) / float64(len(s.lr))
		}
		row.FP32[s.name], row.Quantized[s.name], row.VsFP32[s.name] = s.fp32PSNR, gt, vs
	}
	src := sets[0].gt[0]
	for _, size := range sizes {
		in, err := verify.LatencyInput(src, size, fm.Range)
		if err != nil {
			return err
		}
		a, b, err := verify.LatencyPair(fm.Session, qm.Session, in, runs)
		if err != nil {
			return err
		}
		row.Latency[size] = [2]float64{a.MedianMS, b.MedianMS}
		row.latencyAll[size] = [2]verify.LatencyStats{a, b}
	}
	return nil
}

func benchMarkdown(rows []*benchRow, sets []string, sizes []int, threads, runs int, took time.Duration) string {
	var b bytes.Buffer
	cpu := verify.HostCPU()
	def := quant.DefaultConfig()
	fmt.Fprintf(&b, "# srq benchmarks\n\nWritten by `make bench` (`srq bench`). W8A8: U8 per-tensor activations with zero point, S8 per-channel weights (MSE clip), int32 bias, first/last Conv at 8 bits, input mean shift folded into the head, long skip %s (float head copy and skip Add, two-part int8 upsampler input; models without a long skip are unaffected); calibration on %d LR patches of %dx%d from `../shared/images` (seed %d).\n\n",
		def.LongSkip, def.Patches, def.PatchSize, def.PatchSize, def.Seed)
	fmt.Fprintf(&b, "- machine: %s, %d logical CPUs, flags: %s\n", cpu.Model, runtime.NumCPU(), strings.Join(cpu.Flags, " "))
	fmt.Fprintf(&b, "- ONNX Runtime %s, CPU execution provider, %d intra-op threads; latency = median of %d runs after warm-up, FP32 and int8 alternated\n", ort.Version(), threads, runs)
	fmt.Fprintf(&b, "- PSNR-Y on 0..255, shave = scale, LR by Pillow-exact bicubic from HR cropped to a multiple of the scale; \"Δ\" = quantized − FP32 vs ground truth; \"vs FP32\" = PSNR-Y of the int8 output against the FP32 output\n")
	fmt.Fprintf(&b, "- total bench time %s\n\n", took.Round(time.Second))
	b.WriteString("| model | method |")
	for _, s := range sets {
		fmt.Fprintf(&b, " %s FP32 | %s int8 (Δ) | %s vs FP32 |", s, s, s)
	}
	b.WriteString(" quantize s |")
	for _, sz := range sizes {
		fmt.Fprintf(&b, " %d² FP32 ms | %d² int8 ms (speed-up) |", sz, sz)
	}
	b.WriteString(" int8 Convs |\n|---|---|")
	b.WriteString(strings.Repeat("---|", 3*len(sets)+1+2*len(sizes)+1))
	b.WriteString("\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |", strings.TrimSuffix(r.Model, ".onnx"), r.Method)
		if r.Failure != "" {
			fmt.Fprintf(&b, " failed: %s |\n", oneLine(r.Failure))
			continue
		}
		for _, s := range sets {
			fmt.Fprintf(&b, " %.2f | %.2f (%+.2f) | %.2f |", r.FP32[s], r.Quantized[s], r.Quantized[s]-r.FP32[s], r.VsFP32[s])
		}
		fmt.Fprintf(&b, " %.1f |", r.QuantizeS)
		for _, sz := range sizes {
			l := r.Latency[sz]
			fmt.Fprintf(&b, " %.0f | %.0f (%.2fx) |", l[0], l[1], l[0]/l[1])
		}
		fmt.Fprintf(&b, " %d/%d |\n", r.Coverage.Int8, r.Coverage.Total)
	}
	return b.String()
}
