package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/srquant/srq"
	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/internal/htmlpage"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/sr"
	"github.com/srquant/srq/verify"
)

// benchRow is one model × setting result of `srq bench`.
type benchRow struct {
	Model   string `json:"model"`
	Bits    string `json:"bits"`
	Method  string `json:"method"`
	Variant string `json:"variant,omitempty"` // what differs from the defaults (extra rows)
	Scale   int    `json:"scale"`

	FP32      map[string]float64  `json:"psnr_gt_fp32_db"`      // set -> mean PSNR-Y vs GT
	Quantized map[string]float64  `json:"psnr_gt_quantized_db"` // set -> mean PSNR-Y vs GT
	VsFP32    map[string]float64  `json:"psnr_vs_fp32_db"`      // set -> mean PSNR-Y vs FP32 output
	QuantizeS float64             `json:"quantize_s"`
	Latency   map[int][2]float64  `json:"latency_ms"` // size -> {fp32, int8} medians
	Coverage  verify.ConvCoverage `json:"int8_conv"`
	// Forms counts the Convs with their own input quantizer by form.
	Forms   map[string]int    `json:"forms,omitempty"`
	Skipped map[string]string `json:"skipped,omitempty"`
	Failure string            `json:"failure,omitempty"`
	// Kernels is the kernel check of the quantized model on this machine
	// (kernelcheck.Check on a verify.KernelCheckSize crop): its summary,
	// and whether every fused group agreed with the QDQ graph.
	Kernels   string `json:"kernel_check,omitempty"`
	KernelsOK bool   `json:"kernel_check_ok"`
}

// benchSetting is one quantization setting of the grid.
type benchSetting struct {
	bits    quant.Bits
	method  quant.Method
	variant string
	apply   func(*quant.Config) // the variant's change, if any
	// everyModel runs the variant on every model, not only the
	// --variants-for ones, unless --tune-every-model=false.
	everyModel bool
}

// benchVariants are the extra settings, mostly at W4A4: the strict bit
// accounting, per-tensor weights (the paper's) and the simulate encoding,
// each against the default dual row, and the tuning ablation (tuning alone,
// dual + tuning, bias correction, mixed precision at the same mean bits,
// rotation). They run on the --variants-for models; dual + tuning at W4A4
// runs on every model (--tune-every-model).
var benchVariants = []benchSetting{
	{bits: w4a4, method: quant.Dual, variant: "strict accounting", apply: func(c *quant.Config) { c.Accounting = qdq.Strict }},
	{bits: w6a6, method: quant.Dual, variant: "strict accounting", apply: func(c *quant.Config) { c.Accounting = qdq.Strict }},
	{bits: w4a4, method: quant.Dual, variant: "per-tensor weights", apply: func(c *quant.Config) { c.PerTensorWeights = true }},
	{bits: w4a4, method: quant.Percentile, variant: "per-tensor weights", apply: func(c *quant.Config) { c.PerTensorWeights = true }},
	{bits: w4a4, method: quant.Dual, variant: "simulate encoding", apply: func(c *quant.Config) { c.Encoding = passes.EncodingSimulate }},
	{bits: w4a4, method: quant.Dual, variant: "breakpoint search", apply: func(c *quant.Config) { c.Breakpoint = quant.Breakpoint{Method: calib.BPSearch} }},
	{bits: w4a4, method: quant.Percentile, variant: "tune", apply: func(c *quant.Config) { c.Tune, c.Rotate = true, quant.RotateOff }},
	{bits: w4a4, method: quant.Dual, variant: "tune", apply: func(c *quant.Config) { c.Tune, c.Rotate = true, quant.RotateOff }, everyModel: true},
	{bits: w4a4, method: quant.Dual, variant: "tune + bias correction", apply: func(c *quant.Config) { c.Tune, c.BiasCorrection, c.Rotate = true, true, quant.RotateOff }},
	{bits: w4a4, method: quant.Dual, variant: "strict accounting + tune", apply: func(c *quant.Config) { c.Accounting, c.Tune, c.Rotate = qdq.Strict, true, quant.RotateOff }},
	{bits: w4a4, method: quant.Dual, variant: "mixed precision, budget 4 bits", apply: func(c *quant.Config) { c.BudgetBits = 4 }},
	{bits: w4a4, method: quant.Dual, variant: "rotate", apply: func(c *quant.Config) { c.Rotate = quant.RotateOn }},
	{bits: w4a4, method: quant.Dual, variant: "rotate + tune", apply: func(c *quant.Config) { c.Rotate, c.Tune = quant.RotateOn, true }, everyModel: true},
	{bits: w6a6, method: quant.Dual, variant: "tune", apply: func(c *quant.Config) { c.Tune, c.Rotate = true, quant.RotateOff }},
}

var (
	w4a4 = quant.Bits{W: 4, A: 4}
	w6a6 = quant.Bits{W: 6, A: 6}
)

func benchFlags(fs *pflag.FlagSet) func(*app, []string) error {
	models := fs.String("models", "../shared/models", "folder of FP32 .onnx models")
	data := fs.String("data", "../shared/data", "folder with the benchmark sets (HR ground truth)")
	calibDir := fs.String("calib", "../shared/images", "calibration images")
	sets := fs.StringSlice("sets", []string{"Set5", "Set14", "B100"}, "benchmark sets inside --data")
	bits := fs.StringSlice("bits", []string{"w8a8", "w6a6", "w4a4"}, "bit-width settings")
	methods := fs.StringSlice("methods", []string{"minmax", "percentile", "mse", "dual"}, "activation range methods")
	variantsFor := fs.StringSlice("variants-for", []string{"edsr_x4.onnx"}, "models that also get the variant rows (strict accounting, per-tensor weights, simulate encoding, breakpoint search, the tuning ablation)")
	tuneEvery := fs.Bool("tune-every-model", true, "also run W4A4 dual + tune on every model")
	sizes := fs.IntSlice("sizes", []int{256}, "LR sizes for latency")
	sizeFor := fs.StringSlice("size-for", []string{"craft_x4.onnx=128"}, "per-model LR size for latency instead of --sizes, NAME=SIZE,... (a window transformer's FP32 run at 256² takes seconds on 2 cores)")
	threads := fs.Int("threads", 2, "intra-op threads for every session")
	runs := fs.Int("runs", verify.RecommendedRuns, "timed runs per latency measurement")
	patches := fs.Int("patches", quant.DefaultConfig().Patches, "calibration patches per quantization")
	only := fs.StringSlice("only", nil, "model file names to bench (default: all in --models)")
	out := fs.String("out", "BENCHMARKS.md", "markdown report to write")
	jsonOut := fs.String("json", "", "also write the raw results as JSON")
	merge := fs.String("merge", "", "carry the rows of an earlier run's --json FILE for the models this run does not bench (rerun one model, keep the others' rows)")
	report := fs.String("report", "", "also write a self-contained HTML report to DIR/index.html (DIR is created if missing): the tables and, per model, the first set's PSNR-Y against activation bits with one line per method")
	return func(a *app, args []string) error {
		if err := wantArgs(args, 0, "no positional arguments"); err != nil {
			return err
		}
		var grid []benchSetting
		for _, b := range *bits {
			bb, err := quant.ParseBits(b)
			if err != nil {
				return fmt.Errorf("--bits: %w", err)
			}
			for _, m := range *methods {
				mm, err := quant.ParseMethod(m)
				if err != nil {
					return fmt.Errorf("--methods: %w", err)
				}
				grid = append(grid, benchSetting{bits: bb, method: mm})
			}
		}
		switch {
		case len(grid) == 0:
			return fmt.Errorf("--bits and --methods: nothing to bench")
		case *runs < 1:
			return fmt.Errorf("--runs %d: want at least 1", *runs)
		case *patches < 1:
			return fmt.Errorf("--patches %d: want at least 1", *patches)
		}
		if *report != "" {
			if err := verify.CheckHTMLDir(*report, nil); err != nil {
				return fmt.Errorf("--report %w", err)
			}
			idx := filepath.Join(*report, htmlpage.Index)
			for _, f := range []string{*out, *jsonOut} {
				if f != "" && filepath.Clean(f) == filepath.Clean(idx) {
					return fmt.Errorf("--report %s: %s is also the markdown or JSON output", *report, idx)
				}
			}
		}
		var earlier []*benchRow
		if *merge != "" { // read before the long run, so a bad file fails at once
			b, err := os.ReadFile(*merge)
			if err != nil {
				return fmt.Errorf("--merge: %w", err)
			}
			if err := json.Unmarshal(b, &earlier); err != nil {
				return fmt.Errorf("--merge %s: %w", *merge, err)
			}
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
		perModel := map[string][]int{}
		for _, kv := range nonEmpty(*sizeFor) {
			name, v, ok := strings.Cut(kv, "=")
			n, err := strconv.Atoi(v)
			if !ok || err != nil || n < 1 {
				return fmt.Errorf("--size-for %q: want NAME=SIZE with a positive size", kv)
			}
			perModel[name] = []int{n}
		}
		if err := a.initORT(); err != nil {
			return err
		}
		var rows []*benchRow
		start := time.Now()
		for _, p := range paths {
			settings := slices.Clone(grid)
			for _, v := range benchVariants {
				if v.everyModel && *tuneEvery || slices.Contains(*variantsFor, filepath.Base(p)) {
					settings = append(settings, v)
				}
			}
			sz := *sizes
			if s, ok := perModel[filepath.Base(p)]; ok {
				sz = s
			}
			r, err := benchModel(a, p, calibImgs, *data, *sets, settings, sz, *threads, *runs, *patches)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
		took := time.Since(start)
		carried := ""
		if *merge != "" {
			n, models := mergeBenchRows(&rows, earlier)
			carried = fmt.Sprintf("%d rows (%s) carried over from %s, an earlier run with the same settings", n, strings.Join(models, ", "), *merge)
		}
		md := benchMarkdown(rows, *sets, *sizes, *threads, *runs, *patches, took, carried)
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
		fmt.Fprintf(a.stdout, "wrote %s (%d rows, %s)\n", *out, len(rows), took.Round(time.Second))
		if *report != "" {
			page, err := benchHTML(rows, *sets, *sizes, *threads, *runs, *patches, took)
			if err != nil {
				return err
			}
			p, err := htmlpage.Write(*report, page)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "wrote %s\n", p)
		}
		return nil
	}
}

// benchSet is one benchmark set loaded for a scale, with the FP32 outputs
// computed once and reused for every setting.
type benchSet struct {
	name     string
	lr, gt   []*img.Image
	fp32Out  []*img.Image
	fp32PSNR float64
}

func benchModel(a *app, path string, calibImgs []string, dataDir string, sets []string, settings []benchSetting, sizes []int, threads, runs, patches int) ([]*benchRow, error) {
	name := filepath.Base(path)
	fmt.Fprintf(a.stderr, "== %s\n", name)
	m, data, err := srq.LoadModel(path)
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
		bs, err := loadBenchSet(a.ctx, fm, filepath.Join(dataDir, s))
		if err != nil {
			return nil, err
		}
		bs.name = s
		loaded = append(loaded, bs)
	}
	var rows []*benchRow
	for _, st := range settings {
		label := fmt.Sprintf("%s %s", st.bits, st.method)
		if st.variant != "" {
			label += ", " + st.variant
		}
		fmt.Fprintf(a.stderr, "   %s\n", label)
		row := &benchRow{Model: name, Bits: st.bits.String(), Method: string(st.method), Variant: st.variant, Scale: fm.Scale,
			FP32: map[string]float64{}, Quantized: map[string]float64{}, VsFP32: map[string]float64{}, Latency: map[int][2]float64{}}
		rows = append(rows, row)
		cfg := quant.DefaultConfig()
		cfg.Bits, cfg.Method, cfg.Patches = st.bits, st.method, patches
		if st.apply != nil {
			st.apply(&cfg)
		}
		cfg.Threads = threads
		cfg.Probe = sr.ProbeOptions{Scale: fm.Scale, Range: fm.Range}
		t0 := time.Now()
		res, err := quant.Quantize(a.ctx, m, data, path, calibImgs, cfg, quant.Events{})
		if err != nil {
			if a.ctx.Err() != nil {
				return nil, a.ctx.Err()
			}
			row.Failure = err.Error()
			continue
		}
		row.QuantizeS = time.Since(t0).Seconds()
		row.Skipped = res.Skipped
		if len(res.Layers) > 0 {
			row.Forms = map[string]int{}
			for _, l := range res.Layers {
				row.Forms[l.Form]++
			}
		}
		qdata, err := onnx.Marshal(res.Model)
		if err != nil {
			return nil, err
		}
		if err := benchQuantized(a.ctx, row, fm, qdata, loaded, sizes, threads, runs); err != nil {
			if a.ctx.Err() != nil {
				return nil, a.ctx.Err()
			}
			row.Failure = err.Error()
		}
	}
	return rows, nil
}

func loadBenchSet(ctx context.Context, fm *sr.Model, dir string) (*benchSet, error) {
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
		out, err := fm.Upscale(ctx, lr, 0, 0)
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

func benchQuantized(ctx context.Context, row *benchRow, fm *sr.Model, qdata []byte, sets []*benchSet, sizes []int, threads, runs int) error {
	dir, err := os.MkdirTemp("", "srq-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	optPath := filepath.Join(dir, "optimized.onnx")
	label := row.Model + " (" + row.Bits + " " + row.Method + ")"
	qm, err := sr.Open(qdata, label, ort.Options{Threads: threads, OptimizedModelPath: optPath}, sr.ProbeOptions{Scale: fm.Scale, Range: fm.Range})
	if err != nil {
		return err
	}
	defer qm.Close()
	opt, err := onnx.Load(optPath)
	if err != nil {
		return err
	}
	row.Coverage = verify.Coverage(opt)
	qmodel, err := onnx.LoadBytes(qdata, label, "")
	if err != nil {
		return err
	}
	kin, err := verify.LatencyInput(sets[0].lr[0], verify.KernelCheckSize, fm.Range)
	if err != nil {
		return err
	}
	kr, err := kernelcheck.Check(ctx, qmodel, kin, kernelcheck.Options{Threads: threads, Range: fm.Range})
	if err != nil {
		return err
	}
	row.Kernels, row.KernelsOK = kr.Summary(), kr.OK()
	for _, s := range sets {
		var gt, vs float64
		for i, lr := range s.lr {
			out, err := qm.Upscale(ctx, lr, 0, 0)
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
		a, b, err := verify.LatencyPair(ctx, fm.Session, qm.Session, in, runs)
		if err != nil {
			return err
		}
		row.Latency[size] = [2]float64{a.MedianMS, b.MedianMS}
	}
	return nil
}

// benchMarkdown writes BENCHMARKS.md: the W8A8 table (every method, with
// latencies), the low-bit table (Δ per set, speed-up, int8 coverage, how
// the Conv inputs were written), and the variant rows.
func benchMarkdown(rows []*benchRow, sets []string, sizes []int, threads, runs, patches int, took time.Duration, carried string) string {
	var b bytes.Buffer
	cpu := verify.HostCPU()
	def := quant.DefaultConfig()
	fmt.Fprintf(&b, "# srq benchmarks\n\nWritten by `make bench` (`srq bench`). Every setting: U8 per-tensor activations with zero point, S8 per-channel weights (MSE clip), int32 bias, first/last Conv at 8 bits, input mean shift folded into the head, long skip %s (float head copy and skip Add; at W8A8 uniform a two-part int8 upsampler input; models without a long skip are unaffected); calibration on %d LR patches of %dx%d from `../shared/images` (seed %d).\n\n",
		def.LongSkip, patches, def.PatchSize, def.PatchSize, def.Seed)
	fmt.Fprintf(&b, "\"WxAy\": the weights and the input of every Conv but the first and last at x and y bits; the other tensors (residual Adds, Conv outputs, the model output) stay 8-bit. `dual` is the outlier-aware dual-region quantizer on those Conv inputs (reference accounting: a y-bit dense grid plus (y−1)-bit tails; breakpoint %s) with 8-bit percentile %g carriers; the uniform methods use their range at y bits. Encoding int8: ORT runs the Convs on its int8 kernels with the exact levels where they fit one 8-bit grid, in float otherwise (\"forms\").\n\n",
		def.Breakpoint, def.Percentile)
	fmt.Fprintf(&b, "Variant rows change one thing against the default row of their bits and method: `tune` is `--tune` (each Conv's input quantizer and GPTQ weight rounding fitted layer by layer to the FP32 network's features on the calibration patches, a stage kept only where held-out patches agree; its time is in \"quantize s\"), `bias correction` is `--bias-correction`, `mixed precision` is `--budget-bits` (per-layer widths from measured sensitivity, same MAC-weighted mean bits), `rotate` is `--rotate` (Hadamard rotation of the residual streams' channel spaces).\n\n")
	fmt.Fprintf(&b, "- machine: %s, %d logical CPUs, flags: %s\n", cpu.Model, runtime.NumCPU(), strings.Join(cpu.Flags, " "))
	fmt.Fprintf(&b, "- ONNX Runtime %s, CPU execution provider, %d intra-op threads; latency = median of %d runs after warm-up, FP32 and int8 alternated\n", ort.Version(), threads, runs)
	fmt.Fprintf(&b, "- PSNR-Y on 0..255, shave = scale, LR by Pillow-exact bicubic from HR cropped to a multiple of the scale; \"Δ\" = quantized − FP32 vs ground truth; \"vs FP32\" = PSNR-Y of the quantized output against the FP32 output\n")
	if carried != "" {
		fmt.Fprintf(&b, "- %s; bench time of this run %s\n", carried, took.Round(time.Second))
	} else {
		fmt.Fprintf(&b, "- total bench time %s\n", took.Round(time.Second))
	}

	for _, t := range benchTables(rows, sets, sizes) {
		fmt.Fprintf(&b, "\n## %s\n\n|", t.Title)
		for _, h := range t.Header {
			fmt.Fprintf(&b, " %s |", h)
		}
		b.WriteString("\n|" + strings.Repeat("---|", len(t.Header)) + "\n")
		for _, r := range t.Rows {
			b.WriteString("|")
			for _, c := range r {
				fmt.Fprintf(&b, " %s |", c)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// benchTable is one table of the bench report, rendered as markdown in
// BENCHMARKS.md and as HTML by --report. A failed row holds its leading
// cells and one "failed: …" cell (shorter than Header).
type benchTable struct {
	Title  string
	Header []string
	Rows   [][]string
}

// benchTables builds the W8A8 table (every method, with latencies), the
// low-bit table (Δ per set, speed-up, int8 coverage, how the Conv inputs
// were written), and the variant rows; tables without rows are left out.
func benchTables(rows []*benchRow, sets []string, sizes []int) []benchTable {
	var w8, low, variants []*benchRow
	for _, r := range rows {
		switch {
		case r.Variant != "":
			variants = append(variants, r)
		case r.Bits == "w8a8":
			w8 = append(w8, r)
		default:
			low = append(low, r)
		}
	}
	var tables []benchTable
	if t, ok := defaultsTable(w8, sets); ok {
		tables = append(tables, t)
	}
	if len(w8) > 0 {
		t := benchTable{Title: "W8A8", Header: []string{"model", "method"}}
		for _, s := range sets {
			t.Header = append(t.Header, s+" FP32", s+" int8 (Δ)", s+" vs FP32")
		}
		t.Header = append(t.Header, "quantize s")
		for _, sz := range sizes {
			t.Header = append(t.Header, fmt.Sprintf("%d² FP32 ms", sz), fmt.Sprintf("%d² int8 ms (speed-up)", sz))
		}
		t.Header = append(t.Header, "int8 Convs", "forms")
		for _, r := range w8 {
			row := []string{strings.TrimSuffix(r.Model, ".onnx"), r.Method}
			if r.Failure != "" {
				t.Rows = append(t.Rows, append(row, "failed: "+oneLine(r.Failure)))
				continue
			}
			for _, s := range sets {
				row = append(row, fmt.Sprintf("%.2f", r.FP32[s]), fmt.Sprintf("%.2f (%+.2f)", r.Quantized[s], r.Quantized[s]-r.FP32[s]), fmt.Sprintf("%.2f", r.VsFP32[s]))
			}
			row = append(row, fmt.Sprintf("%.1f", r.QuantizeS))
			for _, sz := range sizes {
				l, ok := r.Latency[sz]
				if !ok { // timed at its own size (--size-for): see the defaults table
					row = append(row, "–", "–")
					continue
				}
				row = append(row, fmt.Sprintf("%.0f", l[0]), fmt.Sprintf("%.0f (%.2fx)", l[1], l[0]/l[1]))
			}
			t.Rows = append(t.Rows, append(row, fmt.Sprintf("%d/%d", r.Coverage.Int8, r.Coverage.Total), formsCell(r.Forms)))
		}
		tables = append(tables, t)
	}
	lowTable := func(title string, rs []*benchRow, variant bool) {
		if len(rs) == 0 {
			return
		}
		t := benchTable{Title: title, Header: []string{"model", "bits", "method"}}
		if variant {
			t.Header = append(t.Header, "variant")
		}
		for _, s := range sets {
			t.Header = append(t.Header, s+" FP32", s+" q (Δ)")
		}
		sz := sizes[len(sizes)-1]
		t.Header = append(t.Header, sets[0]+" vs FP32", "quantize s", fmt.Sprintf("%d² speed-up", sz), "int8 Convs", "forms")
		for _, r := range rs {
			row := []string{strings.TrimSuffix(r.Model, ".onnx"), r.Bits, r.Method}
			if variant {
				row = append(row, r.Variant)
			}
			if r.Failure != "" {
				t.Rows = append(t.Rows, append(row, "failed: "+oneLine(r.Failure)))
				continue
			}
			for _, s := range sets {
				row = append(row, fmt.Sprintf("%.2f", r.FP32[s]), fmt.Sprintf("%.2f (%+.2f)", r.Quantized[s], r.Quantized[s]-r.FP32[s]))
			}
			speed := "–"
			if l, ok := r.Latency[sz]; ok {
				speed = fmt.Sprintf("%.2fx", l[0]/l[1])
			}
			row = append(row, fmt.Sprintf("%.2f", r.VsFP32[sets[0]]), fmt.Sprintf("%.1f", r.QuantizeS), speed,
				fmt.Sprintf("%d/%d", r.Coverage.Int8, r.Coverage.Total), formsCell(r.Forms))
			t.Rows = append(t.Rows, row)
		}
		tables = append(tables, t)
	}
	lowTable("Low bits", low, false)
	lowTable("Variants", variants, true)
	return tables
}

// defaultsTable is every model at srq quantize's defaults (W8A8,
// percentile ranges): the change against ground truth per set, PSNR-Y
// against FP32 on the first set, the speed-up at the model's latency size,
// int8 coverage and the kernel check, one row per model. ok is false when
// no row has the defaults.
func defaultsTable(w8 []*benchRow, sets []string) (benchTable, bool) {
	def := quant.DefaultConfig()
	t := benchTable{Title: "W8A8 defaults, every model", Header: []string{"model"}}
	for _, s := range sets {
		t.Header = append(t.Header, s+" Δ")
	}
	t.Header = append(t.Header, sets[0]+" vs FP32", "speed-up", "int8 Convs", "kernel check")
	for _, r := range w8 {
		if r.Method != string(def.Method) {
			continue
		}
		row := []string{strings.TrimSuffix(r.Model, ".onnx")}
		if r.Failure != "" {
			t.Rows = append(t.Rows, append(row, "failed: "+oneLine(r.Failure)))
			continue
		}
		for _, s := range sets {
			row = append(row, fmt.Sprintf("%+.3f", r.Quantized[s]-r.FP32[s]))
		}
		speed := "–"
		for _, sz := range slices.Sorted(maps.Keys(r.Latency)) {
			l := r.Latency[sz]
			speed = fmt.Sprintf("%.2fx at %d²", l[0]/l[1], sz)
		}
		kernels := "agree"
		if !r.KernelsOK {
			kernels = "WRONG: " + r.Kernels
		}
		row = append(row, fmt.Sprintf("%.2f", r.VsFP32[sets[0]]), speed, fmt.Sprintf("%d/%d", r.Coverage.Int8, r.Coverage.Total), kernels)
		t.Rows = append(t.Rows, row)
	}
	return t, len(t.Rows) > 0
}

// formsCell renders the count of Conv inputs per form, e.g. "35 shared-grid".
func formsCell(forms map[string]int) string {
	if len(forms) == 0 {
		return "–"
	}
	keys := make([]string, 0, len(forms))
	for k := range forms {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", forms[k], k)
	}
	return strings.Join(parts, ", ")
}

// mergeBenchRows adds to rows the earlier rows whose models rows does not
// have, keeping the models in name order (each model's rows in their
// order). It returns how many it added and from which models.
func mergeBenchRows(rows *[]*benchRow, earlier []*benchRow) (int, []string) {
	have := map[string]bool{}
	for _, r := range *rows {
		have[r.Model] = true
	}
	n, models := 0, []string{}
	for _, r := range earlier {
		if have[r.Model] {
			continue
		}
		*rows = append(*rows, r)
		n++
		if !slices.Contains(models, r.Model) {
			models = append(models, r.Model)
		}
	}
	slices.SortStableFunc(*rows, func(a, b *benchRow) int { return strings.Compare(a.Model, b.Model) })
	return n, models
}
