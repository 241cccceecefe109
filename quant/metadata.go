package quant

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/srquant/srq/internal/version"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/verify"
)

// Metadata keys srq writes into a quantized model's metadata_props, so that
// a model found on disk says how it was made: which srq, with which
// settings, calibrated on which images, and what it chose per layer. Values
// are JSON except MetaVersion.
// The report reads them too, so verify (which quant imports) owns the
// names they share.
const (
	MetaVersion     = verify.MetaVersion
	MetaSetting     = verify.MetaSetting
	MetaCalibration = verify.MetaCalibration
	MetaLayers      = verify.MetaLayers
	MetaRanges      = "srq.ranges"
	// MetaSensitivity is the per-layer sensitivity (LayerSensitivity) when
	// a run measured it (mixed precision); reports chart it.
	MetaSensitivity = verify.MetaSensitivity
	// MetaAccuracy is what accuracy control did (Accuracy): the budget,
	// the validation images and every model measured.
	MetaAccuracy = verify.MetaAccuracy
)

// Setting is the JSON of MetaSetting: every choice that decides a model's
// numerics, one field per Config field that does.
type Setting struct {
	Bits           string            `json:"bits"`
	Method         string            `json:"method"`
	Percentile     float64           `json:"percentile,omitempty"`
	Accounting     string            `json:"accounting,omitempty"`
	Breakpoint     string            `json:"breakpoint,omitempty"`
	Encoding       string            `json:"encoding"`
	LayerEncoding  map[string]string `json:"layer_encoding,omitempty"`
	Weights        string            `json:"weights"`
	FirstLast      string            `json:"first_last"`
	LongSkip       string            `json:"long_skip"`
	Skip           []string          `json:"skip,omitempty"`
	FloatOps       []string          `json:"float_ops,omitempty"`
	Tune           bool              `json:"tune,omitempty"`
	TimeBudget     string            `json:"time_budget,omitempty"`
	BiasCorrection bool              `json:"bias_correction,omitempty"`
	GradSteps      int               `json:"grad_steps,omitempty"`
	Rotate         bool              `json:"rotate,omitempty"`
	Equalize       string            `json:"equalize,omitempty"`
	BudgetBits     float64           `json:"budget_bits,omitempty"`
	MaxDrop        float64           `json:"max_drop_db,omitempty"`
	MaxDropVsFP32  float64           `json:"max_drop_vs_fp32_db,omitempty"`
	MaxSteps       int               `json:"max_steps,omitempty"`
	// Carriers says at what width the values that are not Conv inputs
	// (residual Adds, Conv outputs, the model output) are quantized.
	Carriers string `json:"carriers"`
}

// SettingOf describes cfg.
func SettingOf(cfg Config) Setting {
	s := Setting{Bits: cfg.Bits.String(), Method: string(cfg.Method), Encoding: string(cfg.Encoding),
		FirstLast: string(cfg.FirstLast), LongSkip: string(cfg.LongSkip), Carriers: "8-bit uniform",
		Skip: cfg.Skip, FloatOps: cfg.FloatOps, Tune: cfg.Tune, BiasCorrection: cfg.BiasCorrection, Rotate: cfg.rotates(), BudgetBits: cfg.BudgetBits}
	if cfg.accuracy() {
		s.MaxDrop, s.MaxDropVsFP32, s.MaxSteps = cfg.MaxDrop, cfg.MaxDropVsFP32, cfg.MaxSteps
	}
	if cfg.Equalize != EqualizeOff {
		s.Equalize = string(cfg.Equalize)
	}
	if cfg.TimeBudget > 0 {
		s.TimeBudget = cfg.TimeBudget.String()
	}
	if cfg.Tune {
		s.GradSteps = cfg.GradSteps
	}
	if cfg.Method == Percentile || cfg.Method == Dual {
		s.Percentile = cfg.Percentile
	}
	if cfg.Method == Dual {
		s.Accounting, s.Breakpoint = string(cfg.Accounting), cfg.Breakpoint.String()
	}
	for n, e := range cfg.LayerEncoding {
		if s.LayerEncoding == nil {
			s.LayerEncoding = map[string]string{}
		}
		s.LayerEncoding[n] = string(e)
	}
	s.Weights = "per-channel " + cfg.WeightMethod.String()
	if cfg.PerTensorWeights {
		s.Weights = "per-tensor " + cfg.WeightMethod.String()
	}
	return s
}

// Calibration is the JSON of MetaCalibration: the images the ranges came
// from, and how they were sampled.
type Calibration struct {
	// Files are the images' base names, in the order they were sampled.
	Files []string `json:"files"`
	// SHA256 hashes each file's base name and bytes, in that order: the
	// same folder content gives the same hash wherever it lives.
	SHA256    string `json:"sha256"`
	Patches   int    `json:"patches"`
	PatchSize int    `json:"patch_size"`
	Seed      int64  `json:"seed"`
	LR        bool   `json:"lr,omitempty"`
}

// calibrationOf describes the calibration images (read once more to hash
// them).
func calibrationOf(imgs []string, cfg Config) (Calibration, error) {
	c := Calibration{Patches: cfg.Patches, PatchSize: cfg.PatchSize, Seed: cfg.Seed, LR: cfg.CalibLR}
	h := sha256.New()
	for _, p := range imgs {
		f, err := os.Open(p)
		if err != nil {
			return c, fmt.Errorf("calibration image %s: %w", p, err)
		}
		name := filepath.Base(p)
		fmt.Fprintf(h, "%d:%s", len(name), name)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return c, fmt.Errorf("calibration image %s: %w", p, err)
		}
		c.Files = append(c.Files, name)
	}
	c.SHA256 = hex.EncodeToString(h.Sum(nil))
	return c, nil
}

// setMeta sets metadata entry k of m to v (a string as it is, anything
// else as JSON).
func setMeta(m *onnx.ModelProto, k string, v any) error {
	val, ok := v.(string)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("metadata %s: %w", k, err)
		}
		val = string(b)
	}
	for _, p := range m.MetadataProps {
		if p.Key == k {
			p.Value = val
			return nil
		}
	}
	m.MetadataProps = append(m.MetadataProps, &onnx.StringStringEntryProto{Key: k, Value: val})
	return nil
}

// setMetadata records srq's version, the setting, the calibration set and
// the per-layer choices in m.
func setMetadata(m *onnx.ModelProto, cfg Config, cal Calibration, qs *quantizers) error {
	set := func(k string, v any) error { return setMeta(m, k, v) }
	entries := []struct {
		key string
		v   any
	}{{MetaVersion, version.String()}, {MetaSetting, SettingOf(cfg)}, {MetaCalibration, cal}, {MetaRanges, qs.ranges}}
	if len(qs.layers) > 0 {
		entries = append(entries, struct {
			key string
			v   any
		}{MetaLayers, qs.layers})
	}
	if len(qs.sensitivity) > 0 {
		entries = append(entries, struct {
			key string
			v   any
		}{MetaSensitivity, qs.sensitivity})
	}
	for _, e := range entries {
		if err := set(e.key, e.v); err != nil {
			return err
		}
	}
	return nil
}

// Provenance returns the srq.* metadata of a model (empty for a model srq
// did not write), keys sorted.
func Provenance(m *onnx.ModelProto) []*onnx.StringStringEntryProto {
	var out []*onnx.StringStringEntryProto
	for _, p := range m.GetMetadataProps() {
		if strings.HasPrefix(p.GetKey(), "srq.") {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *onnx.StringStringEntryProto) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// quantizedOps are operators only a quantized model contains.
var quantizedOps = map[string]bool{
	"QuantizeLinear": true, "DequantizeLinear": true, "QLinearConv": true, "ConvInteger": true,
	"QLinearMatMul": true, "MatMulInteger": true, "DynamicQuantizeLinear": true,
}

// checkNotQuantized refuses a model that is already quantized: quantizing
// it again would round twice and calibrate on dequantized values.
func checkNotQuantized(m *onnx.ModelProto) error {
	for _, p := range Provenance(m) {
		if p.Key == MetaSetting {
			var s Setting
			_ = json.Unmarshal([]byte(p.Value), &s)
			by := "srq"
			for _, v := range Provenance(m) {
				if v.Key == MetaVersion {
					by = v.Value
				}
			}
			return fmt.Errorf("already quantized by %s (%s %s); quantize its FP32 original instead", by, s.Bits, s.Method)
		}
	}
	for _, n := range m.GetGraph().GetNode() {
		if quantizedOps[n.GetOpType()] {
			return fmt.Errorf("already quantized: it contains %s nodes; quantize its FP32 original instead", n.GetOpType())
		}
	}
	return nil
}
