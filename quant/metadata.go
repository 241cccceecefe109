package quant

import (
	"encoding/json"
	"fmt"

	"github.com/srquant/srq/onnx"
)

// Metadata keys srq writes into a quantized model's metadata_props, so that
// a model found on disk says how it was made. Values are JSON.
const (
	MetaSetting = "srq.setting"
	MetaLayers  = "srq.layers"
)

// Setting is the JSON of MetaSetting: the choices that decide a model's
// numerics.
type Setting struct {
	Bits       string  `json:"bits"`
	Method     string  `json:"method"`
	Percentile float64 `json:"percentile,omitempty"`
	Accounting string  `json:"accounting,omitempty"`
	Breakpoint string  `json:"breakpoint,omitempty"`
	Encoding   string  `json:"encoding"`
	Weights    string  `json:"weights"`
	FirstLast  string  `json:"first_last"`
	LongSkip   string  `json:"long_skip"`
	// Carriers says at what width the values that are not Conv inputs
	// (residual Adds, Conv outputs, the model output) are quantized.
	Carriers string `json:"carriers"`
}

// SettingOf describes cfg.
func SettingOf(cfg Config) Setting {
	s := Setting{Bits: cfg.Bits.String(), Method: string(cfg.Method), Encoding: string(cfg.Encoding),
		FirstLast: string(cfg.FirstLast), LongSkip: string(cfg.LongSkip), Carriers: "8-bit uniform"}
	if cfg.Method == Percentile || cfg.Method == Dual {
		s.Percentile = cfg.Percentile
	}
	if cfg.Method == Dual {
		s.Accounting, s.Breakpoint = string(cfg.Accounting), cfg.Breakpoint.String()
	}
	s.Weights = "per-channel " + cfg.WeightMethod.String()
	if cfg.PerTensorWeights {
		s.Weights = "per-tensor " + cfg.WeightMethod.String()
	}
	return s
}

// setMetadata records the setting and the per-layer choices in m.
func setMetadata(m *onnx.ModelProto, cfg Config, qs *quantizers) error {
	set := func(k string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("metadata %s: %w", k, err)
		}
		for _, p := range m.MetadataProps {
			if p.Key == k {
				p.Value = string(b)
				return nil
			}
		}
		m.MetadataProps = append(m.MetadataProps, &onnx.StringStringEntryProto{Key: k, Value: string(b)})
		return nil
	}
	if err := set(MetaSetting, SettingOf(cfg)); err != nil {
		return err
	}
	if len(qs.layers) > 0 {
		return set(MetaLayers, qs.layers)
	}
	return nil
}
