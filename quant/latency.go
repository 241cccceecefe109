package quant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/verify"
)

// Latency of the rungs. Accuracy control ranks widenings by accuracy per
// millisecond, and the milliseconds are measured on this machine, on one
// LR input, as wall times of whole models run alternately in pairs (so
// that a change in the machine's load between two measurements does not
// become a speed-up): the FP32 model against the base quantized model
// (every prediction starts from the base model's time), the base model
// against the one with every low-bit Conv at its 8-bit carrier, that one
// against the one with every value that can be read in two parts so read,
// and the base model against the one with every Conv float between int8
// neighbours. Each difference is what a rung costs all its Convs
// together, conversions, layout changes and extra ops included, and is
// shared among them by their multiply-accumulates; what a block's other
// nodes add when they go float is the FP32 model's time against the
// every-Conv-float model's, per element of their outputs. A model's
// latency is predicted as the base model's plus, per widened Conv, its
// MACs times its rungs' difference, plus its blocks' other nodes. With
// every Conv at one rung, the prediction is the measured time of that
// model; in between it is an interpolation, which the speed check of the
// written model and srq verify measure.
//
// Per-Conv kernel times from ORT's profiler were tried first and dropped:
// on a machine other jobs share, the same 64-channel 3x3 Conv of IMDN
// measured 1.2 ms in one profile and 6.9 ms in the next, two-part kernels
// came out faster than plain ones, and summed per rung they predicted
// EDSR x4 W4A4 at 6x where it ran at 2.5x (a 4-bit dual-region Conv's
// lookup tables and two-branch sums are separate nodes).
//
// Timings on a shared machine are not repeatable, and a ranking that
// moved with them would make two runs write different models. So the
// table can be kept (Config.LatencyCache): keyed by the FP32 model's
// bytes, the setting, the calibration images, ORT's version, the CPU, the
// threads and the input size, it is measured once and read back by later
// runs, which then rank, measure and write exactly as the first did — as
// TensorRT keeps its timing cache.

const (
	// latencySize is the LR side of the timed input: srq quantize's
	// speed check's, where the Convs rather than per-run overheads decide.
	latencySize = 96
	// latencyRuns is the number of timed runs of each model of a pair,
	// alternated, after one warm-up run each.
	latencyRuns = 4
	// latencyVersion changes when the table's meaning does, so that old
	// cache entries are not read.
	latencyVersion = "srq-latency-v7"
)

// latencyTable is the measured latency of the rungs. Times are in
// milliseconds per run on a latencySize input; MACs and elements are
// counted on a calibration patch (the ratio of the two is the same for
// every Conv).
type latencyTable struct {
	Size int     `json:"size"`
	Runs int     `json:"runs"`
	FP32 float64 `json:"fp32_ms"` // the FP32 model's wall time per run
	Base float64 `json:"base_ms"` // the base quantized model's
	// PerMAC holds, per rung (form name), the time per multiply-accumulate
	// of a Conv at that rung, relative to the own rung (0).
	PerMAC map[string]float64 `json:"per_mac_ms"`
	// NonConv is what running a quantized node other than a Conv float
	// adds, per element of its output. A block made float pays it for its
	// other nodes; with it, a model with every block float is predicted to
	// run as the FP32 model does.
	NonConv float64 `json:"non_conv_per_element_ms"`
	// Cached says the table was read from Config.LatencyCache.
	Cached bool `json:"-"`
}

// estimate predicts the wall time per run of the model in state s.
func (t *latencyTable) estimate(w *widener, s widenState) float64 {
	ms := t.Base
	for _, u := range w.units {
		f, f0 := s.form[u.conv], w.start.form[u.conv]
		if f != f0 {
			ms += w.macs[u.conv] * (t.PerMAC[f.String()] - t.PerMAC[f0.String()])
		}
	}
	for _, n := range sortedKeys(s.float) {
		if v, ok := w.nonConv[n]; ok {
			ms += t.NonConv * w.elems[v]
		}
	}
	return ms
}

// measureLatency measures the table on input in (see above).
func measureLatency(ctx context.Context, w *widener, cal *calibration, in *ort.Tensor) (*latencyTable, error) {
	t := &latencyTable{Size: latencySize, Runs: latencyRuns, PerMAC: map[string]float64{formOwn.String(): 0}}
	fm, err := w.float.ToModel()
	if err != nil {
		return nil, err
	}
	build := func(s widenState) (*onnx.ModelProto, error) {
		b, err := w.build(ctx, s, cal)
		if err != nil {
			return nil, err
		}
		return b.model, nil
	}
	base, err := build(w.start)
	if err != nil {
		return nil, err
	}
	if t.FP32, t.Base, err = timePair(ctx, fm, base, in, w.cfg.Threads); err != nil {
		return nil, err
	}
	// macsAt sums the MACs of the units whose rung is f in s and was f0
	// at the start (f0 < 0: any).
	macsAt := func(s widenState, f, f0 form) float64 {
		var m float64
		for _, u := range w.units {
			if s.form[u.conv] == f && (f0 < 0 || w.start.form[u.conv] == f0) {
				m += w.macs[u.conv]
			}
		}
		return m
	}
	// The 8-bit rung, relative to the own one.
	wide := w.start.clone()
	for c, f := range wide.form {
		if f == formOwn {
			wide.form[c] = formCarrier
		}
	}
	wideMS := t.Base
	var wideModel *onnx.ModelProto = base
	if m := macsAt(wide, formCarrier, formOwn); m > 0 {
		if wideModel, err = build(wide); err != nil {
			return nil, err
		}
		lb, l8, err := timePair(ctx, base, wideModel, in, w.cfg.Threads)
		if err != nil {
			return nil, err
		}
		wideMS = t.Base * l8 / lb
		t.PerMAC[formCarrier.String()] = (wideMS - t.Base) / m
	}
	// The two-part rung, relative to the 8-bit one, its extra ops
	// included.
	if len(w.values) > 0 {
		two := wide.clone()
		for _, sv := range w.values {
			two = w.apply(two, widening{to: formTwoPart, value: sv.v})
		}
		if m := macsAt(two, formTwoPart, -1) - macsAt(wide, formTwoPart, -1); m > 0 {
			tm, err := build(two)
			if err != nil {
				return nil, err
			}
			l8, l2, err := timePair(ctx, wideModel, tm, in, w.cfg.Threads)
			if err != nil {
				return nil, err
			}
			t.PerMAC[formTwoPart.String()] = t.PerMAC[formCarrier.String()] + (wideMS*l2/l8-wideMS)/m
		}
	}
	if _, ok := t.PerMAC[formTwoPart.String()]; !ok {
		t.PerMAC[formTwoPart.String()] = t.PerMAC[formCarrier.String()]
	}
	// The float rung: every Conv float between int8 neighbours, against
	// the base model.
	floats := w.start.clone()
	for _, u := range w.units {
		floats = w.apply(floats, widening{to: formFloat, conv: u.conv})
	}
	fl, err := build(floats)
	if err != nil {
		return nil, err
	}
	lb, lfl, err := timePair(ctx, base, fl, in, w.cfg.Threads)
	if err != nil {
		return nil, err
	}
	flMS := t.Base * lfl / lb
	var macs, rel float64
	for _, u := range w.units {
		macs += w.macs[u.conv]
		rel += w.macs[u.conv] * t.PerMAC[w.start.form[u.conv].String()]
	}
	if macs > 0 {
		t.PerMAC[formFloat.String()] = (rel + flMS - t.Base) / macs
	}
	var elems float64
	for _, v := range w.nonConv {
		elems += w.elems[v]
	}
	if elems > 0 {
		t.NonConv = (t.FP32 - flMS) / elems
	}
	return t, nil
}

// timePair times models a and b on in, alternating after one warm-up run
// each, and returns their median wall times in milliseconds over
// latencyRuns runs.
func timePair(ctx context.Context, a, b *onnx.ModelProto, in *ort.Tensor, threads int) (float64, float64, error) {
	var ss [2]*ort.Session
	for i, m := range []*onnx.ModelProto{a, b} {
		data, err := onnx.Marshal(m)
		if err != nil {
			return 0, 0, err
		}
		if ss[i], err = ort.NewSession(data, "timed model", ort.Options{Threads: threads}); err != nil {
			return 0, 0, err
		}
		defer ss[i].Close()
	}
	la, lb, err := verify.LatencyPairWarm(ctx, ss[0], ss[1], in, 1, latencyRuns)
	if err != nil {
		return 0, 0, err
	}
	return la.MedianMS, lb.MedianMS, nil
}

// sizes counts, on one calibration patch, every unit's MACs (output
// elements × input channels per group × kernel taps) and the elements of
// the values the latency model needs.
func (w *widener) sizes(ctx context.Context, cal *calibration) error {
	var values []string
	for _, u := range w.units {
		values = append(values, u.in, u.out, nodeNamed(w.float, u.conv).Outputs[0])
	}
	for _, sv := range w.values {
		values = append(values, sv.v)
	}
	for _, v := range w.nonConv {
		values = append(values, v)
	}
	values = slices.Compact(slices.Sorted(slices.Values(values)))
	dims, err := calib.Shapes(ctx, w.float, values, cal.batches, cal.shape, calib.CaptureOptions{Session: ort.Options{Threads: w.cfg.Threads}})
	if err != nil {
		return err
	}
	w.macs, w.elems = map[string]float64{}, map[string]float64{}
	for v, d := range dims {
		n := 1.0
		for _, x := range d {
			n *= float64(x)
		}
		w.elems[v] = n
	}
	for _, u := range w.units {
		n := nodeNamed(w.float, u.conv)
		wt, ok := w.float.Const(n.Inputs[1])
		if !ok || len(wt.Dims) < 2 {
			continue
		}
		per := 1.0
		for _, d := range wt.Dims[1:] {
			per *= float64(d)
		}
		w.macs[u.conv] = w.elems[n.Outputs[0]] * per
	}
	return nil
}

// latencyKey identifies a latency table: the same FP32 model, setting,
// calibration, ORT, CPU, threads and input give the same base model and
// the same kernels.
func latencyKey(data []byte, cfg Config, cal Calibration) (string, error) {
	c := cfg
	c.MaxDrop, c.MaxDropVsFP32, c.MaxSteps, c.Validation, c.LatencyCache = 0, 0, 0, nil, ""
	set, err := json.Marshal(SettingOf(c))
	if err != nil {
		return "", err
	}
	cb, err := json.Marshal(cal)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n", latencyVersion, len(data))
	h.Write(data)
	fmt.Fprintf(h, "\n%s\n%s\n%s\n%s\n%d %d %d\n", set, cb, ort.Version(), verify.HostCPU(), cfg.Threads, latencySize, latencyRuns)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// loadLatency reads the table stored under key in dir, if any.
func loadLatency(dir, key string) (*latencyTable, bool) {
	b, err := os.ReadFile(filepath.Join(dir, key+".json"))
	if err != nil {
		return nil, false
	}
	var t latencyTable
	if json.Unmarshal(b, &t) != nil || t.PerMAC == nil || t.Base <= 0 || t.FP32 <= 0 {
		return nil, false
	}
	t.Cached = true
	return &t, true
}

// saveLatency stores t under key in dir (created if missing).
func saveLatency(dir, key string, t *latencyTable) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("latency cache: %w", err)
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("latency cache: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, key+".json"), b); err != nil {
		return fmt.Errorf("latency cache: %w", err)
	}
	return nil
}
