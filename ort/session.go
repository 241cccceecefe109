package ort

import (
	"context"
	"errors"
	"fmt"
	"strings"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/srquant/srq/onnx"
)

// Options configures a session. The zero value runs on the CPU with ORT's
// default threading and all graph optimisations.
type Options struct {
	// EP is the execution provider: "cpu" (or ""), "cuda", or "tensorrt"
	// (TensorRT first, CUDA for the nodes TensorRT rejects, then CPU).
	EP string
	// Threads is the intra-op thread count; 0 keeps ORT's default (one per
	// physical core).
	Threads int
	// OptimizedModelPath, when set, makes ORT write the graph it actually runs
	// after its rewrites; this is how srq checks that QDQ Convs became
	// QLinearConv.
	OptimizedModelPath string
	// ProfilePrefix, when set, makes ORT profile every run: per-node
	// times go to a JSON file named PREFIX_<date>.json, written when the
	// session closes (see ParseProfile).
	ProfilePrefix string
	// OptLevel is the graph optimisation level: "all" (or ""), "extended",
	// "basic", or "disable".
	OptLevel string
}

// Tensor is a dense float32 tensor in row-major order, owned by Go.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// IOInfo describes one model input or output as ORT sees it.
type IOInfo struct {
	Name string
	// Type is the element type in ONNX spelling ("float", "int64", ...), or
	// the value kind ("sequence", "map", ...) for non-tensor values.
	Type string
	// Dims holds the shape; symbolic or unknown dimensions are -1.
	Dims []int64
}

// Session is an ORT inference session over one model. Run may be called from
// several goroutines at once (ORT sessions are thread-safe); Close must not
// race with Run.
type Session struct {
	name    string
	s       *ortgo.DynamicAdvancedSession
	inputs  []IOInfo
	outputs []IOInfo
}

// NewSession creates a session from serialised model bytes. name (usually the
// model's file path) prefixes every error the session reports. Init must have
// succeeded first.
func NewSession(model []byte, name string, o Options) (*Session, error) {
	lib := libraryPath()
	if lib == "" {
		return nil, fmt.Errorf("ort: %s: ONNX Runtime is not initialised (call ort.Init)", name)
	}
	if len(model) == 0 {
		return nil, fmt.Errorf("%s: empty model", name)
	}
	opts, err := sessionOptions(o, lib)
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()

	// DynamicAdvancedSession needs the IO names up front and cannot list
	// them. They are read from the model's own declarations; ORT's way, a
	// temporary session, cost a third of the load time of an EDSR model
	// and half of a QDQ window transformer's (20 s of 40 here).
	ins, outs, err := declaredIO(model)
	if err != nil {
		if ins, outs, err = ioInfo(model); err != nil {
			return nil, fmt.Errorf("%s: load: %s", name, oneLine(err))
		}
	}
	inNames := make([]string, len(ins))
	for i, in := range ins {
		inNames[i] = in.Name
	}
	outNames := make([]string, len(outs))
	for i, out := range outs {
		outNames[i] = out.Name
	}
	s, err := ortgo.NewDynamicAdvancedSessionWithONNXData(model, inNames, outNames, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: create %s session: %s", name, epName(o.EP), oneLine(err))
	}
	return &Session{name: name, s: s, inputs: ins, outputs: outs}, nil
}

// sessionOptions translates Options into ORT session options; the caller
// destroys the result.
func sessionOptions(o Options, lib string) (*ortgo.SessionOptions, error) {
	level, err := optLevel(o.OptLevel)
	if err != nil {
		return nil, err
	}
	if o.Threads < 0 {
		return nil, fmt.Errorf("ort: threads %d: want 0 (ORT default) or more", o.Threads)
	}
	opts, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: session options: %s", oneLine(err))
	}
	ok := false
	defer func() {
		if !ok {
			opts.Destroy()
		}
	}()
	if err := opts.SetGraphOptimizationLevel(level); err != nil {
		return nil, fmt.Errorf("ort: optimisation level %q: %s", o.OptLevel, oneLine(err))
	}
	if o.Threads > 0 {
		if err := opts.SetIntraOpNumThreads(o.Threads); err != nil {
			return nil, fmt.Errorf("ort: threads %d: %s", o.Threads, oneLine(err))
		}
		// srq graphs are chains; a sequential executor needs no inter-op pool.
		if err := opts.SetInterOpNumThreads(1); err != nil {
			return nil, fmt.Errorf("ort: inter-op threads: %s", oneLine(err))
		}
	}
	if o.OptimizedModelPath != "" {
		if err := opts.SetOptimizedModelFilePath(o.OptimizedModelPath); err != nil {
			return nil, fmt.Errorf("ort: optimized model path %s: %s", o.OptimizedModelPath, oneLine(err))
		}
	}
	if o.ProfilePrefix != "" {
		if err := opts.EnableProfiling(o.ProfilePrefix); err != nil {
			return nil, fmt.Errorf("ort: profiling to %s: %s", o.ProfilePrefix, oneLine(err))
		}
	}
	if err := appendEP(opts, o.EP, lib); err != nil {
		return nil, err
	}
	ok = true
	return opts, nil
}

// appendEP registers the requested execution provider. ORT falls back to the
// CPU provider for nodes the accelerator cannot take.
func appendEP(opts *ortgo.SessionOptions, ep, lib string) error {
	unavailable := func(name string, err error) error {
		return fmt.Errorf("ort: execution provider %q is not available in %s: %s (it needs a GPU build of ONNX Runtime, `make setup-gpu`, and the NVIDIA driver, CUDA 13 and cuDNN 9 libraries on the library path)", name, lib, oneLine(err))
	}
	switch epName(ep) {
	case "cpu":
		return nil
	case "cuda":
		return appendCUDA(opts, unavailable)
	case "tensorrt":
		trt, err := ortgo.NewTensorRTProviderOptions()
		if err != nil {
			return unavailable("tensorrt", err)
		}
		defer trt.Destroy()
		if err := opts.AppendExecutionProviderTensorRT(trt); err != nil {
			return unavailable("tensorrt", err)
		}
		return appendCUDA(opts, unavailable)
	default:
		return fmt.Errorf("ort: unknown execution provider %q: want cpu, cuda or tensorrt", ep)
	}
}

func appendCUDA(opts *ortgo.SessionOptions, unavailable func(string, error) error) error {
	cuda, err := ortgo.NewCUDAProviderOptions()
	if err != nil {
		return unavailable("cuda", err)
	}
	defer cuda.Destroy()
	if err := opts.AppendExecutionProviderCUDA(cuda); err != nil {
		return unavailable("cuda", err)
	}
	return nil
}

// epName normalises an EP name; "" means cpu.
func epName(ep string) string {
	ep = strings.ToLower(strings.TrimSpace(ep))
	if ep == "" {
		return "cpu"
	}
	return ep
}

func optLevel(s string) (ortgo.GraphOptimizationLevel, error) {
	switch strings.ToLower(s) {
	case "", "all":
		return ortgo.GraphOptimizationLevelEnableAll, nil
	case "extended":
		return ortgo.GraphOptimizationLevelEnableExtended, nil
	case "basic":
		return ortgo.GraphOptimizationLevelEnableBasic, nil
	case "disable", "none":
		return ortgo.GraphOptimizationLevelDisableAll, nil
	}
	return 0, fmt.Errorf("ort: unknown optimisation level %q: want all, extended, basic or disable", s)
}

// Name returns the name the session was opened with (usually the model path).
func (s *Session) Name() string { return s.name }

// Inputs lists the model inputs in the order Run takes them.
func (s *Session) Inputs() []IOInfo { return cloneInfo(s.inputs) }

// Outputs lists the model outputs in the order Run returns them.
func (s *Session) Outputs() []IOInfo { return cloneInfo(s.outputs) }

// Run feeds one float32 tensor per model input, in Inputs order, and returns
// every output as a Go-owned float32 tensor. All ORT values are freed before
// it returns, on success and on error.
func (s *Session) Run(inputs ...*Tensor) ([]*Tensor, error) {
	return s.RunContext(context.Background(), inputs...)
}

// RunContext is Run that stops when ctx is done: ORT's terminate flag for
// the run is set, ORT abandons it between two nodes, and RunContext
// returns ctx's error. A context that is already done runs nothing.
func (s *Session) RunContext(ctx context.Context, inputs ...*Tensor) ([]*Tensor, error) {
	return s.RunReuse(ctx, nil, inputs...)
}

// RunReuse is RunContext writing the outputs into out: the tensors an
// earlier run on inputs of the same shapes returned. ORT then writes into
// that Go memory, so a loop over same-sized batches (calibration captures
// a hundred feature maps per batch) neither allocates nor copies outputs.
// A nil out runs as RunContext; an out of other shapes is an error.
func (s *Session) RunReuse(ctx context.Context, out []*Tensor, inputs ...*Tensor) ([]*Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ro *ortgo.RunOptions
	if ctx.Done() != nil {
		var err error
		if ro, err = ortgo.NewRunOptions(); err != nil {
			return nil, fmt.Errorf("%s: run options: %s", s.name, oneLine(err))
		}
		defer ro.Destroy()
		stop := context.AfterFunc(ctx, func() { ro.Terminate() })
		defer stop()
	}
	res, err := s.run(ro, inputs, out)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, err
}

func (s *Session) run(ro *ortgo.RunOptions, inputs []*Tensor, reuse []*Tensor) ([]*Tensor, error) {
	if s == nil || s.s == nil {
		return nil, errors.New("ort: run on a closed session")
	}
	if len(inputs) != len(s.inputs) {
		return nil, fmt.Errorf("%s: got %d inputs, the model takes %d (%s)", s.name, len(inputs), len(s.inputs), infoNames(s.inputs))
	}
	in := make([]ortgo.Value, len(inputs))
	defer destroyAll(in)
	for i, t := range inputs {
		info := s.inputs[i]
		if info.Type != "float" {
			return nil, fmt.Errorf("%s: input %q has element type %s; srq only feeds float", s.name, info.Name, info.Type)
		}
		if t == nil {
			return nil, fmt.Errorf("%s: input %q: nil tensor", s.name, info.Name)
		}
		if err := checkShape(t); err != nil {
			return nil, fmt.Errorf("%s: input %q: %w", s.name, info.Name, err)
		}
		v, err := ortgo.NewTensor(ortgo.NewShape(t.Shape...), t.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: input %q: %s", s.name, info.Name, oneLine(err))
		}
		in[i] = v
	}
	out := make([]ortgo.Value, len(s.outputs))
	defer destroyAll(out)
	if reuse != nil {
		if len(reuse) != len(out) {
			return nil, fmt.Errorf("%s: %d output tensors to reuse, the model has %d outputs", s.name, len(reuse), len(out))
		}
		for i, t := range reuse {
			if t == nil {
				return nil, fmt.Errorf("%s: output %q to reuse: nil tensor", s.name, s.outputs[i].Name)
			}
			if err := checkShape(t); err != nil {
				return nil, fmt.Errorf("%s: output %q to reuse: %w", s.name, s.outputs[i].Name, err)
			}
			v, err := ortgo.NewTensor(ortgo.NewShape(t.Shape...), t.Data)
			if err != nil {
				return nil, fmt.Errorf("%s: output %q to reuse: %s", s.name, s.outputs[i].Name, oneLine(err))
			}
			out[i] = v
		}
	}
	if err := s.s.RunWithOptions(in, out, ro); err != nil {
		return nil, fmt.Errorf("%s: run: %s", s.name, oneLine(err))
	}
	if reuse != nil {
		return reuse, nil
	}
	res := make([]*Tensor, len(out))
	for i, v := range out {
		ft, ok := v.(*ortgo.Tensor[float32])
		if !ok {
			return nil, fmt.Errorf("%s: output %q is %s, not float; srq reads float outputs only", s.name, s.outputs[i].Name, valueType(v))
		}
		// onnxruntime_go already copied the output into a Go slice that
		// outlives the ORT value, so no second copy is needed.
		res[i] = &Tensor{Shape: append([]int64(nil), ft.GetShape()...), Data: ft.GetData()}
	}
	return res, nil
}

// Close frees the session. It is safe to call more than once.
func (s *Session) Close() error {
	if s == nil || s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	if err != nil {
		return fmt.Errorf("%s: close session: %s", s.name, oneLine(err))
	}
	return nil
}

// checkShape rejects shapes ORT would reject less clearly, and data whose
// length does not match the shape.
func checkShape(t *Tensor) error {
	if len(t.Shape) == 0 {
		return errors.New("empty shape (scalars are not supported)")
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d <= 0 {
			return fmt.Errorf("shape %v has a non-positive dimension", t.Shape)
		}
		n *= d
	}
	if n != int64(len(t.Data)) {
		return fmt.Errorf("shape %v needs %d values, got %d", t.Shape, n, len(t.Data))
	}
	return nil
}

// destroyAll frees ORT values; nil entries (never created or never
// allocated by a failed run) are skipped.
func destroyAll(vs []ortgo.Value) {
	for i, v := range vs {
		if v != nil {
			v.Destroy()
			vs[i] = nil
		}
	}
}

// valueType names what an ORT value holds, for error messages.
func valueType(v ortgo.Value) string {
	if v == nil {
		return "missing"
	}
	if v.GetONNXType() != ortgo.ONNXTypeTensor {
		return strings.ToLower(strings.TrimPrefix(ortgo.ONNXType(v.GetONNXType()).String(), "ONNXType"))
	}
	return elemTypeName(ortgo.TensorElementDataType(v.DataType()))
}

func infoNames(infos []IOInfo) string {
	names := make([]string, len(infos))
	for i, in := range infos {
		names[i] = in.Name
	}
	return strings.Join(names, ", ")
}

func cloneInfo(in []IOInfo) []IOInfo {
	out := make([]IOInfo, len(in))
	for i, x := range in {
		out[i] = IOInfo{Name: x.Name, Type: x.Type, Dims: append([]int64(nil), x.Dims...)}
	}
	return out
}

// declaredIO lists a model's inputs (those no initializer backs, as ORT
// lists them) and outputs as the model declares them.
func declaredIO(model []byte) ([]IOInfo, []IOInfo, error) {
	m, err := onnx.LoadBytes(model, "model", "")
	if err != nil {
		return nil, nil, err
	}
	g := m.GetGraph()
	if g == nil {
		return nil, nil, errors.New("model has no graph")
	}
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var ins, outs []IOInfo
	for _, v := range g.GetInput() {
		if !inits[v.GetName()] {
			ins = append(ins, declared(v))
		}
	}
	for _, v := range g.GetOutput() {
		outs = append(outs, declared(v))
	}
	return ins, outs, nil
}

func declared(v *onnx.ValueInfoProto) IOInfo {
	info := IOInfo{Name: v.GetName()}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		info.Type = "non-tensor"
		return info
	}
	info.Type = elemTypeName(ortgo.TensorElementDataType(tt.GetElemType()))
	for _, d := range tt.GetShape().GetDim() {
		n := int64(-1)
		if d.GetDimParam() == "" && d.GetDimValue() > 0 {
			n = d.GetDimValue()
		}
		info.Dims = append(info.Dims, n)
	}
	return info
}

// ioInfo lists a model's inputs and outputs as ORT reports them.
func ioInfo(model []byte) ([]IOInfo, []IOInfo, error) {
	ins, outs, err := ortgo.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		return nil, nil, err
	}
	return convertInfo(ins), convertInfo(outs), nil
}

func convertInfo(in []ortgo.InputOutputInfo) []IOInfo {
	out := make([]IOInfo, len(in))
	for i, x := range in {
		info := IOInfo{Name: x.Name}
		if x.OrtValueType == ortgo.ONNXTypeTensor {
			info.Type = elemTypeName(x.DataType)
			info.Dims = make([]int64, len(x.Dimensions))
			for j, d := range x.Dimensions {
				if d < 0 {
					d = -1
				}
				info.Dims[j] = d
			}
		} else {
			info.Type = strings.ToLower(strings.TrimPrefix(x.OrtValueType.String(), "ONNXType"))
		}
		out[i] = info
	}
	return out
}

// elemTypeName spells ORT element types the way ONNX does.
func elemTypeName(t ortgo.TensorElementDataType) string {
	names := map[ortgo.TensorElementDataType]string{
		ortgo.TensorElementDataTypeFloat:      "float",
		ortgo.TensorElementDataTypeUint8:      "uint8",
		ortgo.TensorElementDataTypeInt8:       "int8",
		ortgo.TensorElementDataTypeUint16:     "uint16",
		ortgo.TensorElementDataTypeInt16:      "int16",
		ortgo.TensorElementDataTypeInt32:      "int32",
		ortgo.TensorElementDataTypeInt64:      "int64",
		ortgo.TensorElementDataTypeString:     "string",
		ortgo.TensorElementDataTypeBool:       "bool",
		ortgo.TensorElementDataTypeFloat16:    "float16",
		ortgo.TensorElementDataTypeDouble:     "double",
		ortgo.TensorElementDataTypeUint32:     "uint32",
		ortgo.TensorElementDataTypeUint64:     "uint64",
		ortgo.TensorElementDataTypeComplex64:  "complex64",
		ortgo.TensorElementDataTypeComplex128: "complex128",
		ortgo.TensorElementDataTypeBFloat16:   "bfloat16",
		ortgo.TensorElementDataTypeUint4:      "uint4",
		ortgo.TensorElementDataTypeInt4:       "int4",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("element type %d", int(t))
}
