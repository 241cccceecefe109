// Package kernelcheck checks ONNX Runtime's fused int8 kernels against the
// graph's own QDQ semantics, on the machine at hand.
//
// A QDQ model means DequantizeLinear → float op → QuantizeLinear; that is
// what ORT computes at graph optimisation level "basic", where no QDQ group
// is fused. At level "all" ORT replaces each group with an int8 kernel
// (QLinearConv, QLinearAdd, ...) that must give the same codes up to one
// rounding. It does not always: ORT 1.24.x on CPUs with AMX computes some
// int8 Convs with 17–31 output channels wrong, by up to 160 codes, while
// the AMD machines srq was developed on compute them right. A model that
// passed every test on one machine can lose 5 dB on another, and no
// accuracy number measured elsewhere says so.
//
// Comparing whole-model outputs cannot tell a broken kernel from rounding:
// one-code differences in the first layers grow through a network (IMDN
// and SPAN at W8A8 differ from their own QDQ reference by up to 15–21
// codes on 20% of output values on a CPU whose kernels are all right). So
// Check runs every fused-kernel candidate on its own: the full model runs
// once at level basic to capture each group's real inputs, then every
// group runs in isolation at both levels on exactly those inputs. A
// correct kernel then agrees within one code; a defective one is named.
package kernelcheck

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
)

// Tolerance is the largest code difference a fused group may show against
// its QDQ reference: one requantization rounds once, and the fused and
// float forms may round a value that lies within float error of a half
// code to different sides.
const Tolerance = 1

// floatTolerance bounds the relative difference of float outputs (float
// ops ORT fuses or reorders at level all).
const floatTolerance = 1e-3

// Options configures a check.
type Options struct {
	// Threads is ORT's intra-op thread count (0: ORT's default).
	Threads int
	// EP is the execution provider whose kernels are checked ("" or
	// "cpu", "cuda", "tensorrt"). The reference always runs on the CPU
	// at level basic.
	EP string
	// Range is the value of a white pixel at the model's output (1 or
	// 255); the whole-model agreement is counted in 8-bit levels of it.
	// 0 counts in the output's own units.
	Range float32
}

// Report is what a kernel check found.
type Report struct {
	// ORTVersion is the ONNX Runtime the kernels belong to.
	ORTVersion string `json:"ort_version"`
	// Groups is the number of fused-kernel candidates compared.
	Groups int `json:"groups"`
	// ReferenceFused lists the int8 operators ORT's level-basic graph
	// holds. It must be empty: the reference is the unfused graph.
	ReferenceFused []string `json:"reference_fused"`
	// MaxCodeDiff is the largest code difference over every group.
	MaxCodeDiff int `json:"max_code_diff"`
	// Disagree lists the groups that differ by more than Tolerance.
	Disagree []Disagreement `json:"disagree"`
	// Output compares the whole model's output at the two levels on the
	// same input: reported next to the quantization error, it is the
	// rounding differences grown through the network (see the package
	// doc), not a verdict.
	Output Agreement `json:"output"`
}

// Disagreement is one group whose fused kernel differs from its QDQ
// reference beyond rounding.
type Disagreement struct {
	Node string `json:"node"`
	Ops  string `json:"ops"`
	// Shape describes the group's main op (channels, kernel, stride,
	// groups for a Conv), the facts kernel defects depend on.
	Shape       string  `json:"shape,omitempty"`
	MaxCodeDiff int     `json:"max_code_diff"`
	WrongShare  float64 `json:"wrong_share"` // outputs off by more than Tolerance
}

// Agreement compares two outputs of the same model on the same input.
type Agreement struct {
	// MaxDiff is the largest difference in 8-bit output levels (see
	// Options.Range).
	MaxDiff int `json:"max_levels"`
	// Over1 is the share of output values that differ by more than one
	// level.
	Over1  float64 `json:"over_one_level_share"`
	Values int     `json:"values"`
}

// OK reports whether the kernels agree with the graph's semantics.
func (r *Report) OK() bool { return len(r.Disagree) == 0 && len(r.ReferenceFused) == 0 }

// Summary is one line for a table or a log.
func (r *Report) Summary() string {
	if len(r.ReferenceFused) > 0 {
		return fmt.Sprintf("no reference: ORT %s fused %s at level basic", r.ORTVersion, strings.Join(r.ReferenceFused, ", "))
	}
	if r.OK() {
		return fmt.Sprintf("%d fused groups agree with the QDQ graph (largest difference %d code)", r.Groups, r.MaxCodeDiff)
	}
	d := r.Disagree[0]
	more := ""
	if len(r.Disagree) > 1 {
		more = fmt.Sprintf(" and %d more", len(r.Disagree)-1)
	}
	return fmt.Sprintf("%d of %d fused groups disagree with the QDQ graph: %s (%s) off by up to %d codes on %.1f%% of its outputs%s",
		len(r.Disagree), r.Groups, d.Node, d.Describe(), d.MaxCodeDiff, 100*d.WrongShare, more)
}

// Convs lists the Conv nodes among the disagreeing groups: what an exact
// rewrite to another shape can fix (passes.AvoidKernelDefects).
func (r *Report) Convs() []string {
	var out []string
	for _, d := range r.Disagree {
		if strings.HasPrefix(d.Shape, "Conv ") {
			out = append(out, d.Node)
		}
	}
	return out
}

// Error is a model srq refuses to write: ORT's int8 kernels on this
// machine compute it differently from its QDQ graph.
type Error struct {
	Model  string // the path that was not written
	Report *Report
	CPU    string // the processor, with its int8 flags
}

func (e *Error) Error() string {
	d := e.Report.Disagree[0]
	more := ""
	if n := len(e.Report.Disagree); n > 1 {
		more = fmt.Sprintf(" (and %d more groups)", n-1)
	}
	return fmt.Sprintf("%s not written: ONNX Runtime %s on this CPU, %s, computes the fused int8 node %q (%s) up to %d codes away from its QDQ graph%s; "+
		"deploy with an ONNX Runtime that computes it right (srq doctor checks one; --ort-lib), or keep that node float (--skip %s)",
		e.Model, e.Report.ORTVersion, e.CPU, d.Node, d.Describe(), d.MaxCodeDiff, more, d.Node)
}

// Describe is the group's ops and shape.
func (d Disagreement) Describe() string {
	if d.Shape != "" {
		return d.Shape
	}
	return d.Ops
}

// Check compares ORT's fused int8 kernels for model m with the graph's QDQ
// semantics on input (one NCHW float batch for the model's only input):
// see the package doc. It stops with ctx's error when ctx ends. ORT must
// be initialised.
func Check(ctx context.Context, m *onnx.ModelProto, input *ort.Tensor, o Options) (*Report, error) {
	g, err := graph.FromModel(m)
	if err != nil {
		return nil, fmt.Errorf("kernel check: %w", err)
	}
	if len(g.Inputs) != 1 {
		return nil, fmt.Errorf("kernel check: model has %d inputs, want 1", len(g.Inputs))
	}
	a := analyse(g)
	groups := a.groups()
	rep := &Report{ORTVersion: ort.Version(), Groups: len(groups), ReferenceFused: []string{}, Disagree: []Disagreement{}}

	// The reference run: the full model at level basic, every group input
	// an extra output.
	var boundary []string
	seen := map[string]bool{}
	for _, gr := range groups {
		for _, v := range append(slices.Clone(gr.inputs), gr.supportInputs...) {
			if !seen[v] && !g.IsGraphInput(v) {
				seen[v] = true
				boundary = append(boundary, v)
			}
		}
	}
	c := g.Clone()
	c.Outputs = c.Outputs[:1]
	for _, v := range boundary {
		c.Outputs = append(c.Outputs, &graph.Value{Name: v, DType: onnx.TensorProto_FLOAT})
	}
	dir, err := os.MkdirTemp("", "srq-kernelcheck-")
	if err != nil {
		return nil, fmt.Errorf("kernel check: %w", err)
	}
	defer os.RemoveAll(dir)
	ref, err := runModel(ctx, c, "kernel check reference", ort.Options{Threads: o.Threads, OptLevel: "basic", OptimizedModelPath: filepath.Join(dir, "basic.onnx")}, input)
	if err != nil {
		return nil, err
	}
	om, err := onnx.Load(filepath.Join(dir, "basic.onnx"))
	if err != nil {
		return nil, fmt.Errorf("kernel check: reading ORT's level-basic graph: %w", err)
	}
	rep.ReferenceFused = FusedOps(om)
	values := map[string]*ort.Tensor{g.Inputs[0].Name: input}
	for i, v := range boundary {
		values[v] = ref[i+1]
	}

	// The whole model as ORT runs it.
	full, err := runModel(ctx, g, "kernel check", ort.Options{Threads: o.Threads, EP: o.EP}, input)
	if err != nil {
		return nil, err
	}
	rep.Output = Compare(ref[0].Data, full[0].Data, o.Range)

	if len(groups) == 0 {
		return rep, nil
	}
	iso, err := a.isolate(groups)
	if err != nil {
		return nil, err
	}
	data, err := onnx.Marshal(iso.model)
	if err != nil {
		return nil, fmt.Errorf("kernel check: %w", err)
	}
	feeds := make([]*ort.Tensor, len(iso.inputs))
	for i, in := range iso.inputs {
		if feeds[i] = values[in.value]; feeds[i] == nil {
			return nil, fmt.Errorf("kernel check: no captured value for %q", in.value)
		}
	}
	basic, err := runBytes(ctx, data, "kernel check groups", ort.Options{Threads: o.Threads, OptLevel: "basic"}, feeds)
	if err != nil {
		return nil, err
	}
	fused, err := runBytes(ctx, data, "kernel check groups", ort.Options{Threads: o.Threads, EP: o.EP}, feeds)
	if err != nil {
		return nil, err
	}
	i := 0
	for k, gr := range groups {
		d := Disagreement{Node: nodeName(gr.main), Ops: gr.ops(), Shape: describe(g, gr)}
		wrong, total := 0, 0
		for _, out := range iso.outputs[k] {
			md, w := diff(basic[i].Data, fused[i].Data, out)
			d.MaxCodeDiff = max(d.MaxCodeDiff, md)
			wrong += w
			total += len(basic[i].Data)
			i++
		}
		rep.MaxCodeDiff = max(rep.MaxCodeDiff, d.MaxCodeDiff)
		if wrong > 0 {
			d.WrongShare = float64(wrong) / float64(total)
			rep.Disagree = append(rep.Disagree, d)
		}
	}
	return rep, nil
}

// diff compares one isolated output at the two levels: the largest code
// difference and how many values exceed the tolerance. Float outputs count
// a value wrong beyond floatTolerance of the output's largest magnitude
// and report the difference in units of that tolerance.
func diff(ref, got []float32, out isoOutput) (maxCodes, wrong int) {
	if out.codes {
		inv := 1 / float64(out.scale)
		for j, r := range ref {
			d := int(math.Round(math.Abs(float64(got[j])-float64(r)) * inv))
			maxCodes = max(maxCodes, d)
			if d > Tolerance {
				wrong++
			}
		}
		return maxCodes, wrong
	}
	var peak float64
	for _, r := range ref {
		peak = max(peak, math.Abs(float64(r)))
	}
	tol := floatTolerance * max(peak, 1e-6)
	for j, r := range ref {
		d := math.Abs(float64(got[j]) - float64(r))
		if d > tol || math.IsNaN(d) {
			wrong++
			maxCodes = max(maxCodes, int(math.Ceil(d/tol)))
		}
	}
	return maxCodes, wrong
}

// Compare counts how two model outputs (same shape) differ in 8-bit levels
// of rng (values clipped to [0, rng] and rounded, as an image is saved);
// rng 0 compares raw values rounded to integers.
func Compare(ref, got []float32, rng float32) Agreement {
	a := Agreement{Values: len(ref)}
	level := func(v float32) int {
		if rng <= 0 {
			return int(math.Round(float64(v)))
		}
		x := float64(v) / float64(rng)
		x = min(max(x, 0), 1)
		return int(math.Round(x * 255))
	}
	over := 0
	for i, r := range ref {
		d := level(got[i]) - level(r)
		if d < 0 {
			d = -d
		}
		a.MaxDiff = max(a.MaxDiff, d)
		if d > 1 {
			over++
		}
	}
	if len(ref) > 0 {
		a.Over1 = float64(over) / float64(len(ref))
	}
	return a
}

// Merge adds b's counts to a (several images of one verification).
func (a *Agreement) Merge(b Agreement) {
	n := a.Values + b.Values
	if n > 0 {
		a.Over1 = (a.Over1*float64(a.Values) + b.Over1*float64(b.Values)) / float64(n)
	}
	a.Values = n
	a.MaxDiff = max(a.MaxDiff, b.MaxDiff)
}

// FusedOps lists the int8 operators (QLinear*, the integer Conv and MatMul
// forms, ORT's NHWC int8 kernels) in a graph ORT optimised, sorted and
// counted: "QLinearConv×37".
func FusedOps(m *onnx.ModelProto) []string {
	count := map[string]int{}
	for _, n := range m.GetGraph().GetNode() {
		op := n.GetOpType()
		if strings.HasPrefix(op, "QLinear") || strings.HasPrefix(op, "NhwcQLinear") || op == "ConvInteger" || op == "MatMulInteger" ||
			op == "MatMulIntegerToFloat" || op == "DynamicQuantizeMatMul" {
			count[op]++
		}
	}
	out := []string{}
	for op, n := range count {
		out = append(out, fmt.Sprintf("%s×%d", op, n))
	}
	slices.Sort(out)
	return out
}

// describe gives a Conv group its shape (input and output channels,
// kernel, stride, groups), which is what int8 kernel selection and its
// defects depend on; other groups get none.
func describe(g *graph.Graph, gr *group) string {
	for _, n := range gr.nodes {
		if n.OpType != "Conv" {
			continue
		}
		w, ok := weightDims(g, n)
		if !ok || len(w) < 3 {
			return ""
		}
		groups := n.AttrInt("group", 1)
		k := w[2:]
		ks := make([]string, len(k))
		for i, d := range k {
			ks[i] = fmt.Sprint(d)
		}
		s := fmt.Sprintf("Conv %d→%d, %s", w[1]*groups, w[0], strings.Join(ks, "×"))
		if st := n.AttrInts("strides"); len(st) > 0 && slices.Max(st) > 1 {
			s += fmt.Sprintf(", stride %d", slices.Max(st))
		}
		if groups > 1 {
			s += fmt.Sprintf(", %d groups", groups)
		}
		return s
	}
	return ""
}

// weightDims finds a Conv's weight shape through its DequantizeLinear.
func weightDims(g *graph.Graph, n *graph.Node) ([]int64, bool) {
	v := input(n, 1)
	for range 4 {
		if t := g.Initializer(v); t != nil {
			return t.Dims, true
		}
		p := g.Producer(v)
		if p == nil || len(p.Inputs) == 0 {
			return nil, false
		}
		v = p.Inputs[0]
	}
	return nil, false
}

// runModel runs graph g once on input.
func runModel(ctx context.Context, g *graph.Graph, name string, o ort.Options, input *ort.Tensor) ([]*ort.Tensor, error) {
	m, err := g.ToModel()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	data, err := onnx.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return runBytes(ctx, data, name, o, []*ort.Tensor{input})
}

func runBytes(ctx context.Context, data []byte, name string, o ort.Options, inputs []*ort.Tensor) ([]*ort.Tensor, error) {
	s, err := ort.NewSession(data, name, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.RunContext(ctx, inputs...)
}
