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

	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/verify"
)

// Latency of the rungs. Accuracy control ranks widenings by accuracy per
// millisecond, and the milliseconds are measured, not modelled: ORT's
// profiler times every kernel of four models on one LR input (median of
// latencyRuns calls per node, which a run interrupted by another job does
// not move): the float graph (each Conv's float kernel), the base
// quantized model (each Conv at its own rung), the model with every
// low-bit Conv at its 8-bit carrier, and the model with every value that
// can be read in two parts so read (each reader's doubled int8 kernel and
// the value's extra Sub, Mul, Concat, Q and DQ). A model's latency is
// predicted from the base model's by adding, per Conv, its kernel time at
// its rung minus at its base rung. What the table leaves out — the DQ/Q
// pair and layout reorders around a float Conv between int8 ones — the
// measured speed of the written model shows (srq quantize's speed check,
// srq verify).
//
// Timings on a shared machine are not repeatable, and a ranking that
// moved with them would make two runs write different models. So the
// table can be kept (Config.LatencyCache): keyed by the FP32 model's
// bytes, the setting, the calibration images, ORT's version, the CPU, the
// threads and the input size, it is measured once and read back by later
// runs, which then rank, measure and write exactly as the first did — as
// TensorRT keeps its timing cache.

const (
	// latencySize is the LR side of the profiled input: the calibration
	// patch size, where the Convs rather than per-run overheads decide.
	latencySize = 64
	// latencyRuns is the number of profiled runs of each model (the first
	// warms up; medians per node leave it out).
	latencyRuns = 5
	// latencyVersion changes when the table's meaning does, so that old
	// cache entries are not read.
	latencyVersion = "srq-latency-v1"
)

// latencyTable is the measured latency of every rung, in milliseconds
// per run (per-node medians of ORT's profile).
type latencyTable struct {
	Size int     `json:"size"`
	Runs int     `json:"runs"`
	FP32 float64 `json:"fp32_ms"` // the float graph, every node
	Base float64 `json:"base_ms"` // the base quantized model, every node
	// Convs holds, per rung (form name), each Conv's kernel time there.
	Convs map[string]map[string]float64 `json:"convs"`
	// Split holds, per value, the time of the extra ops that read it in
	// two parts.
	Split map[string]float64 `json:"split"`
	// Other holds, per node other than a Conv that runs in both the float
	// graph and the base model, its float time minus its int8 time: what
	// making a block float adds beyond its Convs.
	Other map[string]float64 `json:"other"`
	// Cached says the table was read from Config.LatencyCache.
	Cached bool `json:"-"`
}

func (t *latencyTable) conv(f form, c string) (float64, bool) {
	v, ok := t.Convs[f.String()][c]
	return v, ok
}

// estimate predicts the latency of the model in state s.
func (t *latencyTable) estimate(w *widener, s widenState) float64 {
	ms := t.Base
	for _, u := range w.units {
		f, f0 := s.form[u.conv], w.start.form[u.conv]
		if f == f0 {
			continue
		}
		a, ok1 := t.conv(f, u.conv)
		b, ok2 := t.conv(f0, u.conv)
		if ok1 && ok2 {
			ms += a - b
		}
	}
	for _, v := range sortedKeys(s.split) {
		if !w.start.split[v] {
			ms += t.Split[v]
		}
	}
	for _, n := range sortedKeys(s.float) {
		if _, conv := w.byConv[n]; !conv {
			ms += t.Other[n]
		}
	}
	return ms
}

// measureLatency profiles the four models (see above) on input in.
func measureLatency(ctx context.Context, w *widener, cal *calibration, in *ort.Tensor) (*latencyTable, error) {
	t := &latencyTable{Size: latencySize, Runs: latencyRuns, Convs: map[string]map[string]float64{}, Split: map[string]float64{}, Other: map[string]float64{}}
	for _, f := range formNames {
		t.Convs[f] = map[string]float64{}
	}
	fm, err := w.float.ToModel()
	if err != nil {
		return nil, err
	}
	fp, err := profile(ctx, fm, "float graph", in, w.cfg.Threads)
	if err != nil {
		return nil, err
	}
	var fpOther map[string]float64
	t.FP32, fpOther = w.attribute(fp, formFloat, t)
	b, err := w.build(ctx, w.start, cal)
	if err != nil {
		return nil, err
	}
	bp, err := profile(ctx, b.model, "base model", in, w.cfg.Threads)
	if err != nil {
		return nil, err
	}
	var baseOther map[string]float64
	t.Base, baseOther = w.attribute(bp, -1, t)
	for n, ms := range baseOther {
		if f, ok := fpOther[n]; ok {
			t.Other[n] = f - ms
		}
	}
	wide := w.start.clone()
	own := false
	for c, f := range wide.form {
		if f == formOwn {
			wide.form[c], own = formCarrier, true
		}
	}
	if own {
		m, err := w.build(ctx, wide, cal)
		if err != nil {
			return nil, err
		}
		p, err := profile(ctx, m.model, "8-bit model", in, w.cfg.Threads)
		if err != nil {
			return nil, err
		}
		w.attribute(p, formCarrier, t)
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
		w.attribute(p, formTwoPart, t)
	}
	t.fill(w)
	return t, nil
}

// fill gives a Conv whose kernel the profile of a rung did not show (ORT
// named it in a way attribute does not know) that rung's time scaled from
// its base rung by the median ratio of the Convs it did show: a gap must
// not make a rung look free.
func (t *latencyTable) fill(w *widener) {
	for _, f := range formNames {
		var ratios []float64
		for _, u := range w.units {
			b, ok1 := t.Convs[w.start.form[u.conv].String()][u.conv]
			v, ok2 := t.Convs[f][u.conv]
			if ok1 && ok2 && b > 0 {
				ratios = append(ratios, v/b)
			}
		}
		if len(ratios) == 0 {
			continue
		}
		slices.Sort(ratios)
		r := ratios[len(ratios)/2]
		for _, u := range w.units {
			b, ok1 := t.Convs[w.start.form[u.conv].String()][u.conv]
			if _, ok2 := t.Convs[f][u.conv]; ok1 && !ok2 {
				t.Convs[f][u.conv] = b * r
			}
		}
	}
}

// attribute sums a profile and files each node's median time under the
// Conv it runs (in t.Convs[f]; f < 0: each Conv's base rung), the value
// whose two-part encoding it belongs to (t.Split, for f = formTwoPart),
// or by name in the returned map. ORT names a fused int8 Conv
// CONV_token_N and a channels-blocked float one after the value it writes
// (that of the activation fused into it, if any) plus _nchwc.
func (w *widener) attribute(nts []ort.NodeTime, f form, t *latencyTable) (float64, map[string]float64) {
	owner := map[string]string{}
	for _, u := range w.units {
		owner[u.conv] = u.conv
		n := nodeNamed(w.float, u.conv)
		if n == nil {
			continue
		}
		out := n.Outputs[0]
		owner[out+"_nchwc"] = u.conv
		if cs := w.float.Consumers(out); len(cs) == 1 && len(cs[0].Outputs) > 0 {
			owner[cs[0].Outputs[0]+"_nchwc"] = u.conv
		}
	}
	var total float64
	other := map[string]float64{}
	for _, nt := range nts {
		ms := nt.MedianUS / 1000
		total += ms
		name := nt.Node
		if i := strings.LastIndex(name, "_token_"); i > 0 {
			name = name[:i]
		}
		if c, ok := owner[name]; ok {
			rung := f
			if f < 0 {
				rung = w.start.form[c]
			}
			t.Convs[rung.String()][c] += ms
			continue
		}
		if f == formTwoPart {
			if v := w.splitOwner(nt.Node); v != "" {
				t.Split[v] += ms
				continue
			}
		}
		other[nt.Node] += ms
	}
	return total, other
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

// profile runs model m latencyRuns times on in with ORT's profiler on and
// returns the kernel time of every node.
func profile(ctx context.Context, m *onnx.ModelProto, name string, in *ort.Tensor, threads int) ([]ort.NodeTime, error) {
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
	return ort.ParseProfile(files[0])
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
	if json.Unmarshal(b, &t) != nil || t.Convs == nil || t.Base <= 0 {
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
