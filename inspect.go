package srq

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/sr"
)

// Inspection describes a model: its structure, the scale and input range
// ONNX Runtime finds by running it, and, for a model srq quantized, what
// srq recorded in it. It is the JSON of `srq inspect`; keys are a stable
// contract.
type Inspection struct {
	Model      string           `json:"model"`
	IRVersion  int64            `json:"ir_version"`
	Opsets     map[string]int64 `json:"opsets"`
	Producer   string           `json:"producer,omitempty"`
	Nodes      int              `json:"nodes"`
	Ops        map[string]int   `json:"ops"`
	Convs      int              `json:"convs"`
	Params     int64            `json:"params"`
	Inputs     []IO             `json:"inputs"`
	Outputs    []IO             `json:"outputs"`
	Scale      int              `json:"scale,omitempty"`
	InputRange float32          `json:"input_range,omitempty"`
	// Provenance holds what srq recorded in a model it quantized
	// (metadata_props srq.*): its version, the setting, the calibration
	// set, per-layer choices and ranges. JSON values stay JSON.
	Provenance map[string]json.RawMessage `json:"provenance,omitempty"`
}

// IO is a model input or output.
type IO struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Shape []string `json:"shape"`
}

// InspectOptions says how far Inspect goes.
type InspectOptions struct {
	// Probe runs the model (ONNX Runtime, initialised by Init) to detect
	// its scale and input range; ProbeOptions override what it detects.
	Probe        bool
	ProbeOptions sr.ProbeOptions
}

// Inspect describes the model at path.
func Inspect(ctx context.Context, path string, o InspectOptions) (*Inspection, error) {
	m, data, err := LoadModel(path)
	if err != nil {
		return nil, err
	}
	r, err := describe(path, m)
	if err != nil {
		return nil, err
	}
	if !o.Probe {
		return r, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := sr.Open(data, path, ort.Options{Threads: 1}, o.ProbeOptions)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	r.Scale, r.InputRange = s.Scale, s.Range
	return r, nil
}

// describe summarises a model's structure without running it.
func describe(path string, m *onnx.ModelProto) (*Inspection, error) {
	g, err := graph.FromModel(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &Inspection{Model: path, IRVersion: m.IrVersion, Opsets: g.Opsets, Producer: strings.TrimSpace(m.ProducerName + " " + m.ProducerVersion), Nodes: len(g.Nodes), Ops: map[string]int{}}
	for _, n := range g.Nodes {
		op := n.OpType
		if n.Domain != "" && n.Domain != "ai.onnx" {
			op = n.Domain + "." + op
		}
		r.Ops[op]++
		if n.OpType == "Conv" || n.OpType == "QLinearConv" || n.OpType == "ConvInteger" {
			r.Convs++
		}
	}
	for _, t := range g.Initializers() {
		r.Params += int64(t.NumElements())
	}
	for _, v := range g.Inputs {
		r.Inputs = append(r.Inputs, valueDesc(v))
	}
	for _, v := range g.Outputs {
		r.Outputs = append(r.Outputs, valueDesc(v))
	}
	for _, p := range quant.Provenance(m) {
		if r.Provenance == nil {
			r.Provenance = map[string]json.RawMessage{}
		}
		v := json.RawMessage(p.Value)
		if !json.Valid(v) {
			b, _ := json.Marshal(p.Value)
			v = b
		}
		r.Provenance[p.Key] = v
	}
	return r, nil
}

func valueDesc(v *graph.Value) IO {
	d := IO{Name: v.Name, Type: strings.ToLower(v.DType.String())}
	for _, dim := range v.Shape {
		switch {
		case dim.Param != "":
			d.Shape = append(d.Shape, dim.Param)
		case dim.Value >= 0:
			d.Shape = append(d.Shape, fmt.Sprint(dim.Value))
		default:
			d.Shape = append(d.Shape, "?")
		}
	}
	return d
}
