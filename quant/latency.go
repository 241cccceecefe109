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
	"strings"
	"time"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/verify"
)

// Latency of the rungs. Accuracy control ranks widenings by accuracy per
// millisecond, and the milliseconds are measured on this machine, on one
// LR input: the FP32 and the base quantized model's wall times
// (alternated runs; every prediction starts from the base model's), the
// kernel time per multiply-accumulate of each int8 rung from ORT's
// profiler (the base model for its own rungs, the model with every
// low-bit Conv at its 8-bit carrier, the model with every value that can
// be read in two parts so read — the readers' doubled kernels, and the
// extra Sub, Mul, Concat, Q and DQ per element of the value), and the
// float rung from the wall time of the model with every Conv float
// between int8 neighbours, timed against the base model: its kernels and
// the DequantizeLinear, QuantizeLinear and layout changes around them, per
// multiply-accumulate.
//
// Rates are per MAC over all the Convs at a rung at once, and a Conv's
// time at a rung is its MACs times the rate: one Conv's own kernel time is
// not repeatable on a machine other jobs share (in four runs of IMDN's 44
// Convs the same 64-channel 3x3 Conv measured 1.2 ms in one profile and
// 6.9 ms in the next, two-part kernels came out faster than plain ones,
// and ORT names a float Conv after the value it writes, which a fused
// activation changes), while the sum over a rung's Convs moved by a few
// percent. A model's latency is predicted as the base model's plus, per
// widened Conv, its MACs times the difference of the rates, plus the
// two-part encodings' extra ops, plus, for a block made float, its other
// nodes' float cost per element (measured as the FP32 model's wall time
// against the every-Conv-float model's); the speed check of the written
// model and srq verify measure the result.
//
// Timings on a shared machine are not repeatable, and a ranking that
// moved with them would make two runs write different models. So the
// table can be kept (Config.LatencyCache): keyed by the FP32 model's
// bytes, the setting, the calibration images, ORT's version, the CPU, the
// threads and the input size, it is measured once and read back by later
// runs, which then rank, measure and write exactly as the first did — as
// TensorRT keeps its timing cache.

const (
	// latencySize is the LR side of the profiled input: srq quantize's
	// speed check's, where the Convs rather than per-run overheads decide.
	latencySize = 96
	// latencyRuns is the number of profiled runs of each model (the first
	// warms up; the per-node means leave it out), and of timed runs after
	// a warm-up.
	latencyRuns = 4
	// latencyVersion changes when the table's meaning does, so that old
	// cache entries are not read.
	latencyVersion = "srq-latency-v5"
)

// latencyTable is the measured latency of the rungs. Times are in
// milliseconds per run on a latencySize input; MACs and elements are
// counted on a calibration patch (the ratio of the two is the same for
// every Conv).
type latencyTable struct {
	Size int     `json:"size"`
	Runs int     `json:"runs"`
	FP32 float64 `json:"fp32_ms"` // the float graph's wall time per run
	Base float64 `json:"base_ms"` // the base quantized model's
	// PerMAC holds, per rung (form name), the kernel time of a Conv at
	// that rung per multiply-accumulate.
	PerMAC map[string]float64 `json:"per_mac_ms"`
	// Split is the time of a two-part encoding's extra ops per element of
	// the value.
	Split float64 `json:"split_per_element_ms"`
	// NonConv is what running a quantized node other than a Conv float
	// adds, per element of its output: the FP32 model's wall time minus
	// that of the model with every Conv float (where those nodes are
	// int8), over all of them. A block made float pays it for its other
	// nodes; with it, a model with every block float is predicted to run
	// as the FP32 model does.
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
	for _, v := range sortedKeys(s.split) {
		if !w.start.split[v] {
			ms += t.Split * w.elems[v]
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
	t := &latencyTable{Size: latencySize, Runs: latencyRuns, PerMAC: map[string]float64{}}
	fm, err := w.float.ToModel()
	if err != nil {
		return nil, err
	}
	b, err := w.build(ctx, w.start, cal)
	if err != nil {
		return nil, err
	}
	// Wall times from alternated runs, so that a change in the machine's
	// load between two measurements does not become a speed-up.
	if t.FP32, t.Base, err = timePair(ctx, fm, b.model, in, w.cfg.Threads); err != nil {
		return nil, err
	}
	bp, err := profile(ctx, b.model, "base model", in, w.cfg.Threads)
	if err != nil {
		return nil, err
	}
	for _, f := range []form{formOwn, formCarrier, formTwoPart} {
		w.rate(bp.nodes, t, f, func(u *unit) bool { return w.start.form[u.conv] == f })
	}
	wide := w.start.clone()
	for c, f := range wide.form {
		if f == formOwn {
			wide.form[c] = formCarrier
		}
	}
	if _, ok := t.PerMAC[formOwn.String()]; ok {
		m, err := w.build(ctx, wide, cal)
		if err != nil {
			return nil, err
		}
		p, err := profile(ctx, m.model, "8-bit model", in, w.cfg.Threads)
		if err != nil {
			return nil, err
		}
		w.rate(p.nodes, t, formCarrier, func(u *unit) bool { return w.start.form[u.conv] == formOwn })
	}
	if len(w.values) > 0 {
		two := wide.clone()
		for _, sv := range w.values {
			two = w.apply(two, widening{to: formTwoPart, value: sv.v})
		}
		m, err := w.build(ctx, two, cal)
		if err != nil {
			return nil, err
		}
		p, err := profile(ctx, m.model, "two-part model", in, w.cfg.Threads)
		if err != nil {
			return nil, err
		}
		w.rate(p.nodes, t, formTwoPart, func(u *unit) bool { return w.start.form[u.conv] != formTwoPart && two.form[u.conv] == formTwoPart })
		var ms, n float64
		for _, nt := range p.nodes {
			if v := w.splitOwner(nt.Node); v != "" {
				ms += nt.SteadyUS / 1000
			}
		}
		for _, sv := range w.values {
			n += w.elems[sv.v]
		}
		if n > 0 {
			t.Split = ms / n
		}
	}
	// The float rung: the model with every Conv float between int8
	// neighbours, timed against the base model; what it adds, per MAC of
	// the Convs, on top of their base rungs' kernels (the DequantizeLinear,
	// QuantizeLinear and layout changes around each float Conv included).
	floats := w.start.clone()
	for _, u := range w.units {
		floats = w.apply(floats, widening{to: formFloat, conv: u.conv})
	}
	fl, err := w.build(ctx, floats, cal)
	if err != nil {
		return nil, err
	}
	lb, lfl, err := timePair(ctx, b.model, fl.model, in, w.cfg.Threads)
	if err != nil {
		return nil, err
	}
	var macs, base float64
	for _, u := range w.units {
		macs += w.macs[u.conv]
		base += w.macs[u.conv] * t.PerMAC[w.start.form[u.conv].String()]
	}
	if macs > 0 {
		t.PerMAC[formFloat.String()] = (base + t.Base*lfl/lb - t.Base) / macs
	}
	var elems float64
	for _, v := range w.nonConv {
		elems += w.elems[v]
	}
	if elems > 0 {
		t.NonConv = (t.FP32 - t.Base*lfl/lb) / elems
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
	var times [2][]float64
	for i := range latencyRuns + 1 {
		for k, s := range ss {
			t0 := time.Now()
			if _, err := s.RunContext(ctx, in); err != nil {
				return 0, 0, fmt.Errorf("latency: %w", err)
			}
			if i > 0 {
				times[k] = append(times[k], float64(time.Since(t0).Nanoseconds())/1e6)
			}
		}
	}
	med := func(t []float64) float64 {
		slices.Sort(t)
		if len(t)%2 == 0 {
			return (t[len(t)/2-1] + t[len(t)/2]) / 2
		}
		return t[len(t)/2]
	}
	return med(times[0]), med(times[1]), nil
}

// rate sets t.PerMAC[f] from a profile: the kernel time of the Convs keep
// selects over their MACs. ORT names a fused int8 Conv CONV_token_N and a
// channels-blocked float one after the value it writes (that of the
// activation fused into it, if any) plus _nchwc; a Conv under neither
// name is left out of both sums.
func (w *widener) rate(nts []ort.NodeTime, t *latencyTable, f form, keep func(*unit) bool) {
	owner := map[string]*unit{}
	for _, u := range w.units {
		if !keep(u) {
			continue
		}
		owner[u.conv] = u
		n := nodeNamed(w.float, u.conv)
		if n == nil {
			continue
		}
		out := n.Outputs[0]
		owner[out+"_nchwc"] = u
		if cs := w.float.Consumers(out); len(cs) == 1 && len(cs[0].Outputs) > 0 {
			owner[cs[0].Outputs[0]+"_nchwc"] = u
		}
	}
	seen := map[string]bool{}
	var ms, macs float64
	for _, nt := range nts {
		name := nt.Node
		if i := strings.LastIndex(name, "_token_"); i > 0 {
			name = name[:i]
		}
		u, ok := owner[name]
		if !ok {
			continue
		}
		ms += nt.SteadyUS / 1000
		if !seen[u.conv] {
			seen[u.conv] = true
			macs += w.macs[u.conv]
		}
	}
	if macs > 0 {
		t.PerMAC[f.String()] = ms / macs
	}
}

// splitOwner is the value whose two-part encoding node name belongs to.
func (w *widener) splitOwner(name string) string {
	best := ""
	for _, sv := range w.values {
		if (strings.HasPrefix(name, sv.v+"_split") || strings.HasPrefix(name, sv.v+"_residual")) && len(sv.v) > len(best) {
			best = sv.v
		}
	}
	return best
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

// profiled is a model's profile: every node's kernel time.
type profiled struct {
	nodes []ort.NodeTime
}

// profile runs model m latencyRuns times on in with ORT's profiler on and
// returns the kernel time of every node.
func profile(ctx context.Context, m *onnx.ModelProto, name string, in *ort.Tensor, threads int) (*profiled, error) {
	data, err := onnx.Marshal(m)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "srq-profile-")
	if err != nil {
		return nil, fmt.Errorf("profiling the %s: %w", name, err)
	}
	defer os.RemoveAll(dir)
	s, err := ort.NewSession(data, name, ort.Options{Threads: threads, ProfilePrefix: filepath.Join(dir, "profile")})
	if err != nil {
		return nil, err
	}
	for range latencyRuns {
		if _, err := s.RunContext(ctx, in); err != nil {
			s.Close()
			return nil, fmt.Errorf("profiling the %s: %w", name, err)
		}
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "profile*.json"))
	if err != nil || len(files) != 1 {
		return nil, fmt.Errorf("profiling the %s: ORT wrote %d profiles", name, len(files))
	}
	nodes, err := ort.ParseProfile(files[0])
	if err != nil {
		return nil, err
	}
	return &profiled{nodes: nodes}, nil
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
