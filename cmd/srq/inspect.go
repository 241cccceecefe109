package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
)

// inspectReport is the JSON form of `srq inspect`; keys are a stable contract.
type inspectReport struct {
	Model      string           `json:"model"`
	IRVersion  int64            `json:"ir_version"`
	Opsets     map[string]int64 `json:"opsets"`
	Producer   string           `json:"producer,omitempty"`
	Nodes      int              `json:"nodes"`
	Ops        map[string]int   `json:"ops"`
	Convs      int              `json:"convs"`
	Params     int64            `json:"params"`
	Inputs     []ioDesc         `json:"inputs"`
	Outputs    []ioDesc         `json:"outputs"`
	Scale      int              `json:"scale,omitempty"`
	InputRange float32          `json:"input_range,omitempty"`
}

type ioDesc struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Shape []string `json:"shape"`
}

func inspectFlags(fs *pflag.FlagSet) func(*app, []string) error {
	asJSON := fs.Bool("json", false, "print a JSON report")
	noProbe := fs.Bool("no-probe", false, "do not run the model to detect its scale and input range (no ONNX Runtime needed)")
	var pf probeFlags
	pf.register(fs, "")
	return func(a *app, args []string) error {
		if err := wantArgs(args, 1, "one MODEL"); err != nil {
			return err
		}
		po, err := pf.options()
		if err != nil {
			return err
		}
		m, data, err := loadModel(args[0])
		if err != nil {
			return err
		}
		r, err := describe(args[0], m)
		if err != nil {
			return err
		}
		if !*noProbe {
			s, err := a.openSR(data, args[0], ort.Options{Threads: 1}, po)
			if err != nil {
				return err
			}
			defer s.Session.Close()
			r.Scale, r.InputRange = s.Scale, s.Range
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

// describe summarises a model's structure without running it.
func describe(path string, m *onnx.ModelProto) (*inspectReport, error) {
	g, err := graph.FromModel(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &inspectReport{Model: path, IRVersion: m.IrVersion, Opsets: g.Opsets, Producer: strings.TrimSpace(m.ProducerName + " " + m.ProducerVersion), Nodes: len(g.Nodes), Ops: map[string]int{}}
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
	return r, nil
}

func valueDesc(v *graph.Value) ioDesc {
	d := ioDesc{Name: v.Name, Type: strings.ToLower(v.DType.String())}
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

func printInspect(a *app, r *inspectReport) {
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
}
