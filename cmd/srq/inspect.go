package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/srquant/srq"
	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/chart"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/sr"
)

func inspectFlags(fs *pflag.FlagSet) func(*app, []string) error {
	asJSON := fs.Bool("json", false, "print a JSON report")
	noProbe := fs.Bool("no-probe", false, "do not run the model to detect its scale and input range (no ONNX Runtime needed)")
	var pf probeFlags
	pf.register(fs, "")
	ao := activationFlags(fs)
	return func(a *app, args []string) error {
		if err := wantArgs(args, 1, "one MODEL"); err != nil {
			return err
		}
		po, err := pf.options()
		if err != nil {
			return err
		}
		if f := ao.setFlag(fs); f != "" && !ao.on {
			return fmt.Errorf("--%s needs --activations", f)
		}
		if ao.on {
			if *noProbe {
				return errors.New("--no-probe: --activations runs the model")
			}
			return a.inspectActivations(args[0], ao, po, *asJSON)
		}
		if !*noProbe {
			if err := a.initORT(); err != nil {
				return err
			}
		}
		r, err := srq.Inspect(a.ctx, args[0], srq.InspectOptions{Probe: !*noProbe, ProbeOptions: po})
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		}
		printInspect(a, r)
		return nil
	}
}

func printInspect(a *app, r *srq.Inspection) {
	w := a.stdout
	fmt.Fprintf(w, "model       %s\n", r.Model)
	var opsets []string
	for d, v := range r.Opsets {
		if d == "" {
			d = "ai.onnx"
		}
		opsets = append(opsets, fmt.Sprintf("%s %d", d, v))
	}
	sort.Strings(opsets)
	fmt.Fprintf(w, "ir version  %d, opsets %s\n", r.IRVersion, strings.Join(opsets, ", "))
	if r.Producer != "" {
		fmt.Fprintf(w, "producer    %s\n", r.Producer)
	}
	for _, io := range r.Inputs {
		fmt.Fprintf(w, "input       %s %s [%s]\n", io.Name, io.Type, strings.Join(io.Shape, " "))
	}
	for _, io := range r.Outputs {
		fmt.Fprintf(w, "output      %s %s [%s]\n", io.Name, io.Type, strings.Join(io.Shape, " "))
	}
	fmt.Fprintf(w, "nodes       %d (%d Conv), %d parameters\n", r.Nodes, r.Convs, r.Params)
	ops := make([]string, 0, len(r.Ops))
	for op := range r.Ops {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		if r.Ops[ops[i]] != r.Ops[ops[j]] {
			return r.Ops[ops[i]] > r.Ops[ops[j]]
		}
		return ops[i] < ops[j]
	})
	for _, op := range ops {
		fmt.Fprintf(w, "  %-22s %d\n", op, r.Ops[op])
	}
	if r.Scale != 0 {
		fmt.Fprintf(w, "scale       x%d (detected unless --scale)\n", r.Scale)
		fmt.Fprintf(w, "input range 0..%g (detected unless --input-range)\n", r.InputRange)
	}
	printProvenance(w, r.Provenance)
}

// printProvenance shows what srq recorded in a model it quantized: the
// version, setting and calibration set in full, and the per-layer choices
// and ranges as counts (--json has them all).
func printProvenance(w io.Writer, p map[string]json.RawMessage) {
	if len(p) == 0 {
		return
	}
	var by string
	_ = json.Unmarshal(p[quant.MetaVersion], &by)
	fmt.Fprintf(w, "quantized   by %s\n", by)
	if s, ok := p[quant.MetaSetting]; ok {
		fmt.Fprintf(w, "setting     %s\n", s)
	}
	var cal quant.Calibration
	if json.Unmarshal(p[quant.MetaCalibration], &cal) == nil && len(cal.Files) > 0 {
		fmt.Fprintf(w, "calibrated  on %d images (%s), sha256 %s, %d patches of %d, seed %d\n",
			len(cal.Files), strings.Join(cal.Files, ", "), cal.SHA256, cal.Patches, cal.PatchSize, cal.Seed)
	}
	var layers []quant.Layer
	if json.Unmarshal(p[quant.MetaLayers], &layers) == nil && len(layers) > 0 {
		forms := map[string]int{}
		for _, l := range layers {
			forms[l.Form]++
		}
		fmt.Fprintf(w, "layers      %d Conv inputs with their own quantizer: %s (--json for each)\n", len(layers), formsCell(forms))
	}
	var ranges []quant.Range
	if json.Unmarshal(p[quant.MetaRanges], &ranges) == nil && len(ranges) > 0 {
		fmt.Fprintf(w, "ranges      %d activation tensors (--json for each)\n", len(ranges))
	}
}

// activationOpts holds the flags of `srq inspect --activations`. Patches are
// cut with the flags and defaults of `srq quantize`, so the analysis sees
// what calibration sees; the uniform range method and bits only place the
// clip the plots mark.
type activationOpts struct {
	on                        bool
	images, plots             string
	method, bits              string
	percentile                float64
	patches, patchSize, batch int
	threads                   int
	seed                      int64
	calibLR                   bool
}

// activationOnly are the flags that mean nothing without --activations.
var activationOnly = []string{"images", "plots", "method", "bits", "percentile", "patches", "patch-size", "seed", "calib-lr", "batch", "threads"}

// defaultActivationBits is --bits' default, unlike srq quantize's w8a8 on
// purpose: the outlier analysis is about low-bit activations, where a
// uniform grid over the outliers costs most; --help says so.
const defaultActivationBits = "w4a4"

func activationFlags(fs *pflag.FlagSet) *activationOpts {
	def := quant.DefaultConfig()
	o := &activationOpts{}
	fs.BoolVar(&o.on, "activations", false, "analyse the outliers of every Conv input on calibration patches (needs --images)")
	fs.StringVar(&o.images, "images", "", "with --activations: folder of calibration images, HR unless --calib-lr")
	fs.StringVar(&o.plots, "plots", "", "with --activations: folder to write one histogram PNG per tensor into (created if missing)")
	fs.StringVar(&o.method, "method", string(def.Method), "with --activations: uniform range method whose clip the report and plots show: minmax, percentile or mse (the default is srq quantize's)")
	fs.Float64Var(&o.percentile, "percentile", def.Percentile, "with --activations: percentile kept on each side by --method percentile, in [50, 100]")
	fs.StringVar(&o.bits, "bits", defaultActivationBits, "with --activations: weight and activation bits, wNaM (--method mse searches the clip for the activation bits). The default is 4 bits, unlike srq quantize's w8a8: the outliers measured here cost most on a 4-bit uniform grid")
	fs.IntVar(&o.patches, "patches", def.Patches, "with --activations: number of calibration patches")
	fs.IntVar(&o.patchSize, "patch-size", def.PatchSize, "with --activations: side of a calibration patch in LR pixels")
	fs.Int64Var(&o.seed, "seed", def.Seed, "with --activations: seed of the patch positions")
	fs.BoolVar(&o.calibLR, "calib-lr", def.CalibLR, "with --activations: images are LR inputs already (no bicubic downscale)")
	fs.IntVar(&o.batch, "batch", def.Batch, "with --activations: patches per ONNX Runtime run (bounds memory)")
	fs.IntVar(&o.threads, "threads", def.Threads, "with --activations: intra-op threads (0: ONNX Runtime's own choice)")
	return o
}

// setFlag returns the first activation-only flag given, or "": without
// --activations such a flag is a mistake worth an error, not a silent no-op.
func (o *activationOpts) setFlag(fs *pflag.FlagSet) string {
	for _, f := range activationOnly {
		if fs.Changed(f) {
			return f
		}
	}
	return ""
}

// check validates the flags before any work, in the order a user reads them.
func (o *activationOpts) check() (quant.Bits, quant.Method, error) {
	if o.images == "" {
		return quant.Bits{}, "", errors.New("--activations needs --images DIR (calibration images)")
	}
	bits, err := quant.ParseBits(o.bits)
	if err != nil {
		return bits, "", fmt.Errorf("--bits: %w", err)
	}
	method, err := quant.ParseMethod(o.method)
	if err != nil {
		return bits, "", fmt.Errorf("--method: %w", err)
	}
	if !(o.percentile >= 50 && o.percentile <= 100) { // also rejects NaN
		return bits, "", fmt.Errorf("--percentile %g: want a value in [50, 100]", o.percentile)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"--patches", o.patches}, {"--patch-size", o.patchSize}, {"--batch", o.batch}} {
		if f.v <= 0 {
			return bits, "", fmt.Errorf("%s %d: want a positive integer", f.name, f.v)
		}
	}
	if o.threads < 0 {
		return bits, "", fmt.Errorf("--threads %d: want 0 (ONNX Runtime's default) or more", o.threads)
	}
	if o.plots != "" {
		if err := atomicfile.CheckDir(o.plots); err != nil {
			return bits, "", fmt.Errorf("--plots %w", err)
		}
	}
	return bits, method, nil
}

// activationsReport is the JSON form of `srq inspect --activations`; keys
// are a stable contract.
type activationsReport struct {
	Model      string  `json:"model"`
	Scale      int     `json:"scale"`
	InputRange float32 `json:"input_range"`
	Patches    int     `json:"patches"`
	PatchSize  int     `json:"patch_size"`
	Seed       int64   `json:"seed"`
	CalibLR    bool    `json:"calib_lr"`
	Method     string  `json:"method"`
	Percentile float64 `json:"percentile,omitempty"`
	Bits       string  `json:"bits"`
	// BreakpointPercentile is the percentile of |x| that bp is.
	BreakpointPercentile float64             `json:"bp_percentile"`
	Tensors              []tensorActivations `json:"tensors"`
}

// tensorActivations is one Conv input: its outlier statistics, the Convs
// that read it, the uniform clip [clip_lo, clip_hi] of --method at the
// activation bits of --bits, and the plot written for it.
type tensorActivations struct {
	calib.OutlierStats
	Consumers []string `json:"consumers"`
	ClipLo    float32  `json:"clip_lo"`
	ClipHi    float32  `json:"clip_hi"`
	Plot      string   `json:"plot,omitempty"`
}

// inspectActivations is `srq inspect MODEL --activations`: the outlier
// analysis of the method srq implements (narrow dense band, rare large
// outliers that carry colour), measured on the model's Conv inputs.
func (a *app) inspectActivations(path string, o *activationOpts, po sr.ProbeOptions, asJSON bool) error {
	start := time.Now()
	bits, method, err := o.check()
	if err != nil {
		return err
	}
	r, analysis, err := a.analyseActivations(path, o, bits, method, po)
	if err != nil {
		return err
	}
	if o.plots != "" {
		if err := writePlots(o.plots, r); err != nil {
			return err
		}
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printActivations(a.stdout, r, analysis, time.Since(start))
	return nil
}

// analyseActivations measures the outliers of every Conv input of the
// model at path on calibration patches cut as o says, with the uniform
// clip of method at bits for each; it returns the report and how long the
// analysis itself took. o must have passed check. Progress goes to stderr.
func (a *app) analyseActivations(path string, o *activationOpts, bits quant.Bits, method quant.Method, po sr.ProbeOptions) (*activationsReport, time.Duration, error) {
	imgs, err := calibImages(o.images)
	if err != nil {
		return nil, 0, err
	}
	m, data, err := srq.LoadModel(path)
	if err != nil {
		return nil, 0, err
	}
	probe, err := a.openSR(data, path, ort.Options{Threads: o.threads}, po)
	if err != nil {
		return nil, 0, err
	}
	scale, rng := probe.Scale, probe.Range
	probe.Close()

	// As quant.Quantize prepares the graph, minus the rewrites that rename
	// or add tensors (channels-last upsampler, input shift): the report
	// names the tensors of the model the user exported.
	g, err := graph.FromModel(m)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	if err := passes.Run(g, passes.FoldIdentity{}, passes.FuseConv1x1{}); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	values, consumers := convInputs(g)
	if len(values) == 0 {
		return nil, 0, fmt.Errorf("%s: no Conv reads an activation tensor", path)
	}

	log := func(s string) { fmt.Fprintln(a.stderr, s) }
	patches, err := calib.Patches(imgs, calib.PatchOptions{Scale: scale, Size: o.patchSize, Count: o.patches, Seed: o.seed, LR: o.calibLR},
		func(s string) { log("warning: " + s) })
	if err != nil {
		return nil, 0, err
	}
	patches = sameSize(patches)
	log(fmt.Sprintf("analysing %d Conv inputs on %d patches of %dx%d (two passes)", len(values), len(patches), patches[0].W, patches[0].H))
	t0 := time.Now()
	stats, err := calib.AnalyzeOutliers(a.ctx, g, values, patches, rng, calib.OutlierOptions{CaptureOptions: calib.CaptureOptions{
		Batch: o.batch, Session: ort.Options{Threads: o.threads},
		Progress: func(done, total int) {
			pass, half := 1, total/2
			if done > half {
				pass, done = 2, done-half
			}
			log(fmt.Sprintf("  pass %d/2: %d/%d patches", pass, done, half))
		},
	}})
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	analysis := time.Since(t0)

	r := &activationsReport{Model: path, Scale: scale, InputRange: rng, Patches: len(patches), PatchSize: o.patchSize, Seed: o.seed,
		CalibLR: o.calibLR, Method: string(method), Bits: bits.String(), BreakpointPercentile: calib.BreakpointPercentile}
	if method == quant.Percentile {
		r.Percentile = o.percentile
	}
	for _, s := range stats {
		t := tensorActivations{OutlierStats: s, Consumers: consumers[s.Value]}
		switch method {
		case quant.MinMax:
			t.ClipLo, t.ClipHi = calib.RangeMinMax(s.Stats)
		case quant.Percentile:
			t.ClipLo, t.ClipHi = calib.RangePercentile(s.Stats, o.percentile)
		default:
			t.ClipLo, t.ClipHi = calib.RangeMSE(s.Stats, bits.A)
		}
		r.Tensors = append(r.Tensors, t)
	}
	return r, analysis, nil
}

// convInputs lists the values read as input 0 (the activation) by Convs, in
// graph order without repeats, with the Convs that read each. Initializers
// are skipped: a Conv over a constant has no activation to measure.
func convInputs(g *graph.Graph) ([]string, map[string][]string) {
	var values []string
	consumers := map[string][]string{}
	for _, n := range g.Nodes {
		if n.OpType != "Conv" || (n.Domain != "" && n.Domain != "ai.onnx") || len(n.Inputs) == 0 || n.Inputs[0] == "" {
			continue
		}
		v := n.Inputs[0]
		if _, ok := g.Const(v); ok {
			continue
		}
		if _, seen := consumers[v]; !seen {
			values = append(values, v)
		}
		consumers[v] = append(consumers[v], n.Name)
	}
	return values, consumers
}

// sameSize keeps the patches of the first patch's size, as quant's
// calibration does: whole small images of another size are not batched.
func sameSize(p []*img.Image) []*img.Image {
	out := p[:0:0]
	for _, im := range p {
		if im.C == p[0].C && im.H == p[0].H && im.W == p[0].W {
			out = append(out, im)
		}
	}
	return out
}

// plotName turns a tensor name into a file name of [A-Za-z0-9._-] (others
// become _), unique among used (case-insensitively, for file systems that
// fold case), and records it.
func plotName(tensor string, used map[string]bool) string {
	b := []byte(strings.TrimLeft(tensor, "/")) // exporters start names with /
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	base := strings.TrimLeft(string(b), ".") // no hidden files, no ".."
	if len(base) > 200 {
		base = base[:200]
	}
	if base == "" {
		base = "tensor"
	}
	name := base + ".png"
	for i := 2; used[strings.ToLower(name)]; i++ {
		name = fmt.Sprintf("%s_%d.png", base, i)
	}
	used[strings.ToLower(name)] = true
	return name
}

// writePlots renders one histogram per tensor and writes them into dir
// (created if missing, as --report's folder is), each atomically. All are
// rendered before the first is written, and a failed write removes the
// ones this run wrote, and the folder if this run created it, so a failure
// leaves no partial set.
func writePlots(dir string, r *activationsReport) error {
	used := map[string]bool{}
	pngs := make([][]byte, len(r.Tensors))
	for i := range r.Tensors {
		t := &r.Tensors[i]
		t.Plot = filepath.Join(dir, plotName(t.Value, used))
		b, err := chart.PNG(histogramOf(t, r), chart.Size{})
		if err != nil {
			return fmt.Errorf("%s: %w", t.Value, err)
		}
		pngs[i] = b
	}
	_, err := os.Stat(dir)
	created := errors.Is(err, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--plots %s: %w", dir, err)
	}
	for i, t := range r.Tensors {
		if err := atomicfile.WriteBytes(t.Plot, pngs[i]); err != nil {
			for _, w := range r.Tensors[:i] {
				os.Remove(w.Plot)
			}
			if created {
				os.Remove(dir) // only if empty: nothing of anyone else's
			}
			return fmt.Errorf("%s: %w", t.Plot, err)
		}
	}
	return nil
}

// histogramOf is a tensor's histogram (the analysis' 2048 bins, shown as
// about 200 bars, counts on a log axis so the tails show) with markers at
// ±bp and at the uniform clip.
func histogramOf(t *tensorActivations, r *activationsReport) chart.Histogram {
	lo, width, counts := t.Stats.Histogram()
	method := methodName(r)
	bp := fmt.Sprintf("bp = p%g |x| = %.4g (%.3g%% outside)", r.BreakpointPercentile, t.Breakpoint, 100*t.OutlierFraction)
	clip := fmt.Sprintf("%s clip [%.4g, %.4g]", method, t.ClipLo, t.ClipHi)
	reader := t.Consumers[0]
	if len(t.Consumers) > 1 {
		reader += fmt.Sprintf(" and %d more", len(t.Consumers)-1)
	}
	// −bp is not drawn for a tensor without negative values (ReLU
	// outputs), nor bp for one without positive values: it would only widen
	// the axis over an empty half.
	var markers []chart.Marker
	for _, x := range []float32{-t.Breakpoint, t.Breakpoint} {
		if x >= min(t.Min, 0) && x <= max(t.Max, 0) {
			markers = append(markers, chart.Marker{X: float64(x), Label: bp})
		}
	}
	markers = append(markers, chart.Marker{X: float64(t.ClipLo), Label: clip}, chart.Marker{X: float64(t.ClipHi), Label: clip})
	return chart.Histogram{
		Title:  t.Value,
		XLabel: fmt.Sprintf("value (input of Conv %s; %s, %d patches)", reader, filepath.Base(r.Model), r.Patches),
		Lo:     lo, Width: width, Counts: counts, LogY: true, Markers: markers,
	}
}

// methodName names the uniform range method with its parameter: the
// percentile, or the activation bits MSE searched for.
func methodName(r *activationsReport) string {
	switch r.Method {
	case string(quant.Percentile):
		return fmt.Sprintf("percentile %g", r.Percentile)
	case string(quant.MSE):
		return fmt.Sprintf("mse %s", r.Bits)
	}
	return r.Method
}

// activationColumns names the columns of the activations table and says
// in the header what each is: the short names alone (r, ch90) read as
// puzzles.
var activationColumns = []struct{ name, what string }{
	{"min, max", "extremes of x"},
	{"p99.9|x|, p99.99|x|", "99.9th and 99.99th percentiles of |x|"},
	{"bp", "dual-region breakpoint: the %s of |x|"},
	{">bp %", "share of the samples with |x| > bp"},
	{"bp/max|x|", "bp as a fraction of max|x|"},
	{"ex.kurtosis", "excess kurtosis of x (0 for a Gaussian; large: heavy tails)"},
	{"outlier ch", "channels holding 90% of the samples beyond ±bp / all channels"},
	{"chroma corr", "correlation of a pixel's outlier count (channels with |x| > bp) with the chroma max(R,G,B) − min(R,G,B) of its LR input pixel"},
	{"chroma out/all", "mean chroma at pixels with outliers / at all pixels"},
	{"uniform clip", "the clip of a uniform quantizer, %s"},
}

// printActivations prints what each column is, then one row per tensor:
// the Convs that read it, its extremes and |x| percentiles, the breakpoint
// and what lies beyond it (share of samples, bp/max|x|, kurtosis, channels
// holding 90% of the outliers, correlation of per-pixel outlier counts
// with the input's chroma, mean chroma at outlier pixels vs all), and the
// uniform clip.
func printActivations(w io.Writer, r *activationsReport, analysis, total time.Duration) {
	fmt.Fprintf(w, "model       %s (x%d, input range 0..%g)\n", r.Model, r.Scale, r.InputRange)
	fmt.Fprintf(w, "patches     %d of %dx%d LR pixels, seed %d\n", r.Patches, r.PatchSize, r.PatchSize, r.Seed)
	fmt.Fprintf(w, "clip        uniform, %s\n", methodName(r))
	for i, c := range activationColumns {
		what := c.what
		switch c.name {
		case "bp":
			what = fmt.Sprintf(what, fmt.Sprintf("%gth percentile", r.BreakpointPercentile))
		case "uniform clip":
			what = fmt.Sprintf(what, methodName(r))
		}
		label := ""
		if i == 0 {
			label = "columns"
		}
		fmt.Fprintf(w, "%-11s %-19s  %s\n", label, c.name, what)
	}
	tw, cw := len("tensor"), len("conv")
	for _, t := range r.Tensors {
		tw, cw = max(tw, len(t.Value)), max(cw, len(convsOf(t.Consumers)))
	}
	row := func(cols ...string) {
		line := fmt.Sprintf("%-*s  %-*s  %9s %9s %9s %10s %9s  %7s %9s %11s %10s  %11s  %-14s  %s",
			tw, cols[0], cw, cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9], cols[10], cols[11], cols[12], cols[13])
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	row("tensor", "conv", "min", "max", "p99.9|x|", "p99.99|x|", "bp", ">bp %", "bp/max|x|", "ex.kurtosis", "outlier ch", "chroma corr", "chroma out/all", "uniform clip")
	for _, t := range r.Tensors {
		row(t.Value, convsOf(t.Consumers), g4(float64(t.Min)), g4(float64(t.Max)), g4(float64(t.AbsP999)), g4(float64(t.AbsP9999)),
			g4(float64(t.Breakpoint)), fmt.Sprintf("%.3f", 100*t.OutlierFraction), fmt.Sprintf("%.3f", t.BreakpointRatio),
			g4(t.ExcessKurtosis), fmt.Sprintf("%d/%d", t.Channels90, t.Channels),
			fmt.Sprintf("%+.2f", t.ChromaCorrelation), fmt.Sprintf("%.2f/%.2f", t.ChromaMeanOutlierPixels, t.ChromaMeanAllPixels),
			fmt.Sprintf("%s..%s", g4(float64(t.ClipLo)), g4(float64(t.ClipHi))))
	}
	if len(r.Tensors) > 0 && r.Tensors[0].Plot != "" {
		fmt.Fprintf(w, "plots       %d PNGs in %s\n", len(r.Tensors), filepath.Dir(r.Tensors[0].Plot))
	}
	fmt.Fprintf(w, "time        analysis %s, total %s\n", analysis.Round(time.Millisecond), total.Round(time.Millisecond))
}

// convsOf names the Convs reading a tensor: the first, and how many more.
func convsOf(names []string) string {
	if len(names) > 1 {
		return fmt.Sprintf("%s +%d", names[0], len(names)-1)
	}
	if len(names) == 1 {
		return names[0]
	}
	return "-"
}

// g4 formats a number in 4 significant digits.
func g4(v float64) string { return fmt.Sprintf("%.4g", v) }
