// Package quant runs srq's post-training quantization end to end: it probes
// the FP32 model, prepares its graph, plans where Q/DQ goes, calibrates
// activation ranges in ONNX Runtime on image patches, and writes the QDQ
// model. The CLI's `srq quantize` is a thin wrapper around Quantize.
package quant

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
	"github.com/srquant/srq/sr"
)

// Method is an activation range method.
type Method string

const (
	MinMax     Method = "minmax"
	Percentile Method = "percentile"
	MSE        Method = "mse"
)

// ParseMethod checks a --method value.
func ParseMethod(s string) (Method, error) {
	switch m := Method(s); m {
	case MinMax, Percentile, MSE:
		return m, nil
	}
	return "", fmt.Errorf("method %q: want minmax, percentile or mse", s)
}

// Bits is a weight/activation bit-width setting such as w8a8.
type Bits struct{ W, A int }

func (b Bits) String() string { return fmt.Sprintf("w%da%d", b.W, b.A) }

// MinBits and MaxBits bound the weight and activation widths srq accepts:
// below 2 bits a symmetric weight grid has no nonzero level, and 8 bits is
// the widest integer ORT's CPU kernels compute on.
const (
	MinBits = 2
	MaxBits = 8
)

// ParseBits reads "wNaM" with N and M in [MinBits, MaxBits] (w4a4, w8a8...).
func ParseBits(s string) (Bits, error) {
	var b Bits
	ls := strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexByte(ls, 'a')
	if !strings.HasPrefix(ls, "w") || i < 2 {
		return b, fmt.Errorf("bits %q: want wNaM, e.g. w4a4", s)
	}
	w, err1 := strconv.Atoi(ls[1:i])
	a, err2 := strconv.Atoi(ls[i+1:])
	if err1 != nil || err2 != nil {
		return b, fmt.Errorf("bits %q: want wNaM, e.g. w4a4", s)
	}
	if w < MinBits || w > MaxBits || a < MinBits || a > MaxBits {
		return b, fmt.Errorf("bits %q: weight and activation widths must be in %d..%d", s, MinBits, MaxBits)
	}
	return Bits{W: w, A: a}, nil
}

// Config is every knob of a quantization run; CLI flags map onto it one to one.
type Config struct {
	Bits       Bits
	Method     Method
	Percentile float64 // for Method == Percentile, e.g. 99.99
	// Weights: per output channel (default) or per tensor, clip by MSE
	// search (default) or min/max.
	PerTensorWeights bool
	WeightMethod     qdq.WeightMethod
	FirstLast        passes.FirstLast
	LongSkip         passes.LongSkip
	Skip             []string
	FloatOps         []string

	// Calibration data.
	Patches   int   // number of LR patches
	PatchSize int   // LR patch side
	Seed      int64 // patch sampling seed
	CalibLR   bool  // images are LR already (no bicubic downscale)
	Batch     int   // patches per ORT run

	// Tune picks the percentile of each group of activations (outputs of
	// the same operator type) from TunePercentiles by the output error of
	// the deploy model on the calibration patches; only with Method ==
	// Percentile. Off by default: measured on Set5/Set14 it gained
	// 0.005 dB on EDSR x2 Set5 but lost 0.013 on Set14 and 0.006/0.013 on
	// RCAN x4, though it gained up to 0.4 dB on the patches themselves:
	// 16 patches of photos do not tell which tails matter on other images.
	Tune bool

	// Equalize is the strength (alpha) of channel equalization before
	// calibration, 0 to disable; see passes.Equalize. Measured on EDSR x2
	// W8A8 it neither helps nor hurts (within 0.01 dB), so it is off by
	// default.
	Equalize float64

	Threads int             // ORT intra-op threads (0: ORT default)
	Probe   sr.ProbeOptions // scale / input range overrides
}

// DefaultConfig returns the defaults of `srq quantize`. The range method is
// the two-sided 99.999th percentile: on Set5 it lost 0.105 dB on EDSR x2,
// 0.040 on EDSR x4 and 0.071 on RCAN x4 where MSE lost 0.149, 0.058 and
// 0.103 (99.99 lost 0.33 on EDSR x2). The tails of SR activations are few
// but coherent (edges, saturated colours), and clipping them costs the
// output more than the rounding noise a wider range adds. (Those numbers
// predate the precise long skip; with it EDSR x2 loses 0.048.)
//
// 64 patches rather than 32: the percentile of a tail is a noisy estimate,
// and on EDSR x2 the Set5 loss moved between 0.040 and 0.052 dB with the
// patch seed at 32 patches, between 0.045 and 0.049 at 64.
//
// Tuning is off: its choices did not carry over from the calibration
// patches to the benchmark sets (see Config.Tune).
func DefaultConfig() Config {
	return Config{Bits: Bits{8, 8}, Method: Percentile, Percentile: 99.999, WeightMethod: qdq.MSE, FirstLast: passes.FirstLast8,
		LongSkip: passes.LongSkipPrecise, Patches: 64, PatchSize: 64, Seed: 1, Batch: 8}
}

// Range is the chosen range of one activation value.
type Range struct {
	Value  string  `json:"value"`
	Min    float32 `json:"min"` // observed
	Max    float32 `json:"max"`
	Std    float64 `json:"std"`
	Lo     float32 `json:"lo"` // chosen clip
	Hi     float32 `json:"hi"`
	Scale  float32 `json:"scale"`
	Zero   int32   `json:"zero_point"`
	Reason string  `json:"reason,omitempty"` // why the range is not the method's
}

// Result is a quantized model with what a summary needs.
type Result struct {
	Model      *onnx.ModelProto
	Scale      int
	InputRange float32
	ConvsInt8  int
	Convs      int
	Skipped    map[string]string // node -> reason
	Ranges     []Range
	Patches    int
	CalibTime  time.Duration
	// Tuned lists the range tuning's choice per group of values (empty
	// when tuning is off); TuneTime and TuneEvals are what it cost.
	Tuned        []TuneGroup
	TuneTime     time.Duration
	TuneEvals    int
	RewriteTime  time.Duration
	PrepareNotes []string
}

// Quantize quantizes the FP32 model (parsed m, serialized data, named name
// in messages) with calibration images imgs under cfg. log receives
// progress lines; it may be nil.
func Quantize(m *onnx.ModelProto, data []byte, name string, imgs []string, cfg Config, log func(string)) (*Result, error) {
	if log == nil {
		log = func(string) {}
	}
	if cfg.Patches <= 0 || cfg.PatchSize <= 0 {
		return nil, fmt.Errorf("calibration needs a positive patch count and size, got %d patches of %d", cfg.Patches, cfg.PatchSize)
	}
	probe, err := sr.Open(data, name, ort.Options{Threads: cfg.Threads}, cfg.Probe)
	if err != nil {
		return nil, err
	}
	scale, rng := probe.Scale, probe.Range
	probe.Close()

	g, err := graph.FromModel(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := passes.Run(g, passes.FoldIdentity{}, passes.FuseConv1x1{}, passes.PixelShuffleNHWC{}); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	plan, pol, grid, err := plan(g, cfg, rng)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	res := &Result{Scale: scale, InputRange: rng, Skipped: map[string]string{}}
	for n, why := range plan.Skipped {
		res.Skipped[n.Name] = why
	}

	t0 := time.Now()
	patches, err := calib.Patches(imgs, calib.PatchOptions{Scale: scale, Size: cfg.PatchSize, Count: cfg.Patches, Seed: cfg.Seed, LR: cfg.CalibLR}, func(s string) { log("warning: " + s) })
	if err != nil {
		return nil, err
	}
	batches, shape, err := patchData(patches, rng)
	if err != nil {
		return nil, err
	}
	res.Patches = len(batches)
	if cfg.Equalize > 0 {
		n, err := equalize(g, plan, batches, shape, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		log(fmt.Sprintf("equalized %d channel spaces", n))
	}
	log(fmt.Sprintf("calibrating %d activation tensors on %d patches of %dx%d", len(plan.Values), len(batches), shape[2], shape[1]))
	stats, err := calib.Capture(g, plan.Values, batches, shape, calib.CaptureOptions{
		Batch: cfg.Batch, Session: ort.Options{Threads: cfg.Threads},
		Progress: func(done, total int) { log(fmt.Sprintf("  calibration %d/%d patches", done, total)) },
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	res.CalibTime = time.Since(t0)

	t1 := time.Now()
	act := map[string]qdq.Params{}
	for _, v := range plan.Values {
		r := chooseRange(g, v, stats[v], cfg, rng, grid[v])
		if slices.Contains(plan.Split, v) && r.Reason == "" {
			// The residual branch carries the rounding error, not clipped
			// tails, so the grid must cover every value seen.
			r.Lo, r.Hi = calib.RangeMinMax(stats[v])
			r.Reason = "two-part encoding"
		}
		q := qdq.Asymmetric(r.Lo, r.Hi, cfg.Bits.A)
		r.Scale, r.Zero = q.Scale, q.ZeroPoint
		act[v] = q
		res.Ranges = append(res.Ranges, r)
	}
	wcfg := passes.WeightConfig{Bits: cfg.Bits.W, PerChannel: !cfg.PerTensorWeights, Method: cfg.WeightMethod}
	var wparams map[string][]qdq.Params // weight quantizers the tuner already searched
	if cfg.Tune && cfg.Method == Percentile {
		t2 := time.Now()
		fixed := map[string]bool{}
		for _, r := range res.Ranges {
			if r.Reason != "" {
				fixed[r.Value] = true
			}
		}
		log(fmt.Sprintf("tuning ranges on %d patches", min(len(batches), tunePatches)))
		tn, err := newTuner(g, pol, plan, wcfg, batches, shape, scale, rng, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: tuning: %w", name, err)
		}
		if res.Tuned, err = tn.tune(act, res.Ranges, stats, fixed, log); err != nil {
			return nil, fmt.Errorf("%s: tuning: %w", name, err)
		}
		res.TuneTime, res.TuneEvals, wparams = time.Since(t2), tn.evals, tn.wparams
		t1 = time.Now()
	}
	ins := passes.InsertQDQ{Plan: plan, Act: act, Weights: wcfg, WeightParams: wparams}
	res.ConvsInt8, res.Convs = plan.Convs(g)
	if err := passes.Run(g, ins); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if res.Model, err = g.ToModel(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	res.Model.ProducerName = "srq"
	res.RewriteTime = time.Since(t1)
	return res, nil
}

// plan decides where Q/DQ goes, after folding the input mean shift into the
// head and building the float long-skip path if cfg asks for it. It also
// returns the values that lie on the input image's grid.
func plan(g *graph.Graph, cfg Config, rng float32) (*passes.Plan, passes.Policy, map[string]bool, error) {
	grid := map[string]bool{}
	pol := passes.Policy{Skip: cfg.Skip, FirstLast: cfg.FirstLast, FloatOps: cfg.FloatOps}
	p, err := passes.FoldInputShift(g, rng)
	if err != nil {
		return nil, pol, nil, err
	}
	if p != "" {
		grid[p] = true
	}
	if cfg.LongSkip == passes.LongSkipPrecise {
		if pol.LongSkip, err = passes.PreciseLongSkip(g); err != nil {
			return nil, pol, nil, err
		}
	}
	pl, err := passes.PlanQDQ(g, pol)
	return pl, pol, grid, err
}

// chooseRange picks the clip range of one activation. The model's input and
// output are images on a known 8-bit grid, so they get exactly [0, range]:
// the 8-bit input is then represented without error, and the output
// quantizer does what the metric does anyway (clip, round to 8 bits). So
// does a value onGrid: the padded image FoldInputShift makes.
func chooseRange(g *graph.Graph, v string, s *calib.Stats, cfg Config, rng float32, onGrid bool) Range {
	r := Range{Value: v, Min: s.Min, Max: s.Max, Std: s.Std()}
	switch {
	case onGrid || g.IsGraphInput(v) || g.IsGraphOutput(v):
		r.Lo, r.Hi, r.Reason = 0, rng, "image grid"
		return r
	}
	switch cfg.Method {
	case MinMax:
		r.Lo, r.Hi = calib.RangeMinMax(s)
	case Percentile:
		r.Lo, r.Hi = calib.RangePercentile(s, cfg.Percentile)
	default:
		r.Lo, r.Hi = calib.RangeMSE(s, cfg.Bits.A)
	}
	return r
}

// patchData scales patches to the model's input range and flattens them.
func patchData(patches []*img.Image, rng float32) ([][]float32, [3]int, error) {
	var shape [3]int
	var out [][]float32
	for i, p := range patches {
		if i == 0 {
			shape = [3]int{p.C, p.H, p.W}
		} else if [3]int{p.C, p.H, p.W} != shape {
			continue // whole small images of another size are not batched
		}
		d := make([]float32, len(p.Pix))
		for j, v := range p.Pix {
			d[j] = v * rng
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, shape, fmt.Errorf("calibration: no patches")
	}
	return out, shape, nil
}

// equalizePatches bounds the patches used to measure per-channel ranges:
// equalization needs the channel profile, not the tails.
const equalizePatches = 16

// equalize measures per-channel ranges of the quantized values in each
// channel space of g and rescales the spaces (passes.Equalize).
func equalize(g *graph.Graph, plan *passes.Plan, batches [][]float32, shape [3]int, cfg Config) (int, error) {
	spaces := passes.ChannelSpaces(g)
	quantized := map[string]bool{}
	for _, v := range plan.Values {
		quantized[v] = true
	}
	for v := range plan.Shared {
		quantized[v] = true
	}
	var vals []string
	for _, s := range spaces {
		for _, v := range s.Values {
			if quantized[v] {
				vals = append(vals, v)
			}
		}
	}
	if len(vals) == 0 {
		return 0, nil
	}
	ranges, err := calib.CaptureChannelMax(g, vals, batches[:min(len(batches), equalizePatches)], shape,
		calib.CaptureOptions{Batch: cfg.Batch, Session: ort.Options{Threads: cfg.Threads}})
	if err != nil {
		return 0, err
	}
	if err := passes.Run(g, passes.Equalize{Spaces: spaces, Ranges: ranges, Alpha: cfg.Equalize}); err != nil {
		return 0, err
	}
	return len(spaces), nil
}
