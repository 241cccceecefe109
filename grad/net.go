package grad

import (
	"fmt"
	"math"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// Net runs an ONNX graph — in practice the QDQ model srq writes — on a
// Tape, so that a tuner differentiates exactly the graph ORT runs: every
// QuantizeLinear, Clip and DequantizeLinear of it, with the package's
// straight-through rule for the roundings. Chains of element-wise steps
// with constant parameters are fused into one Pointwise op each;
// DequantizeLinear of an initializer (a quantized weight or bias) is
// folded into a constant, which the caller may replace by a Var of its own
// (a soft-rounded weight) through Forward's subst.
//
// Integer values (shape arithmetic: Shape, Slice, Concat, Gather...) are
// computed on the side as int64 slices. Ops the tape does not have, or
// attributes it does not model, are reported when the Net is built, not
// when it runs.
type Net struct {
	g      *graph.Graph
	steps  []netStep
	consts map[string]*Var    // float initializers and folded DequantizeLinears
	ints   map[string][]int64 // integer initializers
	// Folded names each DequantizeLinear of an initializer that was
	// folded (its output value), with the initializer it read.
	Folded map[string]string
	// Replace computes a fused chain's output (by value name) from its
	// input in place of the chain's own steps: a tuner puts a quantizer
	// with learnable parameters there (see Chain).
	Replace map[string]func(t *Tape, in *Var) (*Var, error)
}

// Chain returns the element-wise chain that computes value out: the value
// it reads and its steps (ok false when out is not a chain's output).
func (nt *Net) Chain(out string) (in string, steps []Point, ok bool) {
	for _, s := range nt.steps {
		if s.chain != nil && s.out == out {
			return s.in, slices.Clone(s.chain), true
		}
	}
	return "", nil, false
}

// ApplyPoints evaluates a chain of steps at x, as Pointwise does.
func ApplyPoints(chain []Point, x float32) float32 {
	for _, p := range chain {
		x, _ = p.eval(x)
	}
	return x
}

type netStep struct {
	n     *graph.Node
	in    string  // a chain's input
	out   string  // a chain's output
	chain []Point // non-nil: a fused element-wise chain
}

// NewNet compiles g (topologically sorted, as graph.FromModel leaves it).
func NewNet(g *graph.Graph) (*Net, error) {
	nt := &Net{g: g, consts: map[string]*Var{}, ints: map[string][]int64{}, Folded: map[string]string{}}
	for _, t := range g.Initializers() {
		switch t.DType {
		case onnx.TensorProto_FLOAT:
			v, err := t.Float32()
			if err != nil {
				return nil, err
			}
			c, err := newVar(intDims(t.Dims), v)
			if err != nil {
				return nil, fmt.Errorf("initializer %s: %w", t.Name, err)
			}
			nt.consts[t.Name] = c
		case onnx.TensorProto_INT64:
			v, err := t.Int64()
			if err != nil {
				return nil, err
			}
			nt.ints[t.Name] = v
		}
	}
	chainEnd := map[string]int{} // value -> index of the chain step ending in it
	for _, n := range g.Nodes {
		if n.OpType == "DequantizeLinear" && g.Initializer(n.Inputs[0]) != nil {
			v, err := dequantInit(g, n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n.Name, err)
			}
			nt.consts[n.Outputs[0]] = v
			nt.Folded[n.Outputs[0]] = n.Inputs[0]
			continue
		}
		if p, ok, err := pointOf(g, n); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", n.Name, n.OpType, err)
		} else if ok {
			in := n.Inputs[0]
			if i, found := chainEnd[in]; found && len(g.Consumers(in)) == 1 && !g.IsGraphOutput(in) {
				s := &nt.steps[i]
				s.chain = append(s.chain, p...)
				s.out = n.Outputs[0]
				delete(chainEnd, in)
				chainEnd[s.out] = i
				continue
			}
			nt.steps = append(nt.steps, netStep{n: n, in: in, out: n.Outputs[0], chain: p})
			chainEnd[n.Outputs[0]] = len(nt.steps) - 1
			continue
		}
		if !netOps[n.OpType] {
			return nil, fmt.Errorf("%s: op %s is not differentiable here", n.Name, n.OpType)
		}
		nt.steps = append(nt.steps, netStep{n: n})
	}
	return nt, nil
}

// netOps are the ops Forward runs besides the element-wise chains.
var netOps = map[string]bool{
	"Conv": true, "Add": true, "Sub": true, "Mul": true, "Div": true,
	"Concat": true, "Split": true, "Slice": true, "Pad": true, "DepthToSpace": true,
	"Reshape": true, "Transpose": true, "Shape": true, "Identity": true,
	"Gather": true, "Unsqueeze": true, "Squeeze": true, "Cast": true, "Constant": true,
	"PRelu": true, "Resize": true, "GlobalAveragePool": true, "ReduceMean": true,
	"MaxPool": true, "MatMul": true, "Softmax": true, "LayerNormalization": true,
	"Relu": true, "LeakyRelu": true, "Sigmoid": true, "Sqrt": true, "Clip": true,
	"QuantizeLinear": true, "DequantizeLinear": true,
	"Mod": true, "ConstantOfShape": true, "Erf": true, "Pow": true, "ReduceSum": true,
}

func intDims(d []int64) []int {
	out := make([]int, len(d))
	for i, v := range d {
		out[i] = int(v)
	}
	return out
}

// scalarConst returns the value of a one-element float or integer
// constant input, or ok false.
func scalarConst(g *graph.Graph, name string) (float32, bool) {
	if name == "" {
		return 0, false
	}
	t, ok := g.Const(name)
	if !ok || t.NumElements() != 1 {
		return 0, false
	}
	switch t.DType {
	case onnx.TensorProto_FLOAT:
		v, err := t.Float32()
		return v[0], err == nil
	case onnx.TensorProto_UINT8:
		v, err := t.Uint8()
		return float32(v[0]), err == nil
	case onnx.TensorProto_INT8:
		v, err := t.Int8()
		return float32(v[0]), err == nil
	case onnx.TensorProto_INT32:
		v, err := t.Int32()
		return float32(v[0]), err == nil
	}
	return 0, false
}

// pointOf returns n as element-wise steps when it is one with constant,
// per-tensor parameters (ok false otherwise).
func pointOf(g *graph.Graph, n *graph.Node) ([]Point, bool, error) {
	one := func(p Point) ([]Point, bool, error) { return []Point{p}, true, p.Check() }
	arg := func(i int) (float32, bool) {
		if i >= len(n.Inputs) {
			return 0, false
		}
		return scalarConst(g, n.Inputs[i])
	}
	switch n.OpType {
	case "Relu":
		return one(Point{Kind: PointLeaky})
	case "LeakyRelu":
		return one(Point{Kind: PointLeaky, A: n.AttrFloat("alpha", 0.01)})
	case "Sigmoid":
		return one(Point{Kind: PointSigmoid})
	case "Sqrt":
		return one(Point{Kind: PointSqrt})
	case "QuantizeLinear", "DequantizeLinear":
		s, ok := arg(1)
		if !ok {
			return nil, false, nil // per-axis: not element-wise
		}
		zp, _ := arg(2)
		if n.OpType == "DequantizeLinear" {
			return one(Point{Kind: PointDequantize, A: s, B: zp})
		}
		lo, hi := float32(0), float32(255)
		if len(n.Inputs) > 2 && n.Inputs[2] != "" {
			t, ok := g.Const(n.Inputs[2])
			if !ok {
				return nil, false, fmt.Errorf("zero point %s is not a constant", n.Inputs[2])
			}
			switch t.DType {
			case onnx.TensorProto_UINT8:
			case onnx.TensorProto_INT8:
				lo, hi = -128, 127
			default:
				return nil, false, fmt.Errorf("quantizes to %s, only 8-bit codes are modelled", t.DType)
			}
		}
		return one(Point{Kind: PointQuantize, A: s, B: zp, Lo: lo, Hi: hi})
	case "Clip":
		lo, hasLo := arg(1)
		hi, hasHi := arg(2)
		if !hasLo {
			lo = -math.MaxFloat32
		}
		if !hasHi {
			hi = math.MaxFloat32
		}
		if (len(n.Inputs) > 1 && n.Inputs[1] != "" && !hasLo) || (len(n.Inputs) > 2 && n.Inputs[2] != "" && !hasHi) {
			return nil, false, fmt.Errorf("clip bounds are not constants")
		}
		return one(Point{Kind: PointClip, Lo: lo, Hi: hi})
	case "Add", "Mul", "Div", "Sub":
		if len(n.Inputs) != 2 {
			return nil, false, nil
		}
		if c, ok := arg(1); ok {
			switch n.OpType {
			case "Add":
				return one(Point{Kind: PointAdd, A: c})
			case "Sub":
				return one(Point{Kind: PointAdd, A: -c})
			case "Mul":
				return one(Point{Kind: PointMul, A: c})
			default:
				return one(Point{Kind: PointDiv, A: c})
			}
		}
		if c, ok := arg(0); ok && g.Initializer(n.Inputs[1]) == nil {
			switch n.OpType {
			case "Add":
				return one(Point{Kind: PointAdd, A: c})
			case "Sub":
				return one(Point{Kind: PointRSub, A: c})
			case "Mul":
				return one(Point{Kind: PointMul, A: c})
			}
		}
	}
	return nil, false, nil
}

// dequantInit folds DequantizeLinear of an initializer (per tensor or per
// axis) into float32 values.
func dequantInit(g *graph.Graph, n *graph.Node) (*Var, error) {
	x := g.Initializer(n.Inputs[0])
	codes, err := codesOf(x)
	if err != nil {
		return nil, err
	}
	st := g.Initializer(n.Inputs[1])
	if st == nil {
		return nil, fmt.Errorf("scale %s is not an initializer", n.Inputs[1])
	}
	scale, err := st.Float32()
	if err != nil {
		return nil, err
	}
	zp := make([]float32, len(scale))
	if len(n.Inputs) > 2 && n.Inputs[2] != "" {
		zt := g.Initializer(n.Inputs[2])
		if zt == nil {
			return nil, fmt.Errorf("zero point %s is not an initializer", n.Inputs[2])
		}
		z, err := codesOf(zt)
		if err != nil {
			return nil, err
		}
		if len(z) != len(scale) {
			return nil, fmt.Errorf("%d zero points for %d scales", len(z), len(scale))
		}
		zp = z
	}
	shape := intDims(x.Dims)
	inner := len(codes)
	if len(scale) > 1 {
		ax := int(n.AttrInt("axis", 1))
		if ax < 0 {
			ax += len(shape)
		}
		if ax < 0 || ax >= len(shape) || shape[ax] != len(scale) {
			return nil, fmt.Errorf("%d scales along axis %d of %v", len(scale), ax, shape)
		}
		_, inner = outerInner(shape, ax)
	}
	v := make([]float32, len(codes))
	for i, c := range codes {
		k := (i / inner) % len(scale)
		v[i] = (c - zp[k]) * scale[k]
	}
	return newVar(shape, v)
}

// codesOf reads an integer initializer as float32 codes.
func codesOf(t *graph.Tensor) ([]float32, error) {
	switch t.DType {
	case onnx.TensorProto_INT8:
		return floats(t.Int8())
	case onnx.TensorProto_UINT8:
		return floats(t.Uint8())
	case onnx.TensorProto_INT32:
		return floats(t.Int32())
	case onnx.TensorProto_INT4:
		return floats(t.Int4())
	case onnx.TensorProto_UINT4:
		return floats(t.Uint4())
	}
	return nil, fmt.Errorf("%s codes of type %s", t.Name, t.DType)
}

func floats[T int8 | uint8 | int32](v []T, err error) ([]float32, error) {
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out, nil
}

// Const returns the folded or float constant named name (nil if none): a
// tuner reads a weight's starting value from it.
func (nt *Net) Const(name string) *Var { return nt.consts[name] }

// Forward runs the graph on t from feeds (graph input name → value) and
// returns every value computed, by name. subst replaces values — a folded
// weight by a Param-derived Var, say — and the nodes that would compute
// only substituted values are skipped.
func (nt *Net) Forward(t *Tape, feeds, subst map[string]*Var) (map[string]*Var, error) {
	env := map[string]*Var{}
	ints := map[string][]int64{}
	ishape := map[string][]int{}
	get := func(name string) (*Var, error) {
		if v, ok := subst[name]; ok {
			return v, nil
		}
		if v, ok := env[name]; ok {
			return v, nil
		}
		if v, ok := nt.consts[name]; ok {
			return v, nil
		}
		if v, ok := feeds[name]; ok {
			return v, nil
		}
		return nil, fmt.Errorf("value %q is not a float tensor computed here", name)
	}
	for i := range nt.steps {
		s := &nt.steps[i]
		if s.chain != nil {
			if _, ok := subst[s.out]; ok {
				continue
			}
			x, err := get(s.in)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.n.Name, err)
			}
			var y *Var
			if f, ok := nt.Replace[s.out]; ok {
				y, err = f(t, x)
			} else {
				y, err = t.Pointwise(x, s.chain)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.n.Name, err)
			}
			env[s.out] = y
			continue
		}
		n := s.n
		all := true
		for _, o := range n.Outputs {
			if _, ok := subst[o]; !ok && o != "" {
				all = false
			}
		}
		if all {
			continue
		}
		if err := nt.run(t, n, get, env, ints, ishape); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", n.Name, n.OpType, err)
		}
	}
	return env, nil
}

// intsOf returns an integer value: computed, an initializer, or a
// Constant's.
func (nt *Net) intsOf(ints map[string][]int64, name string) ([]int64, bool) {
	if v, ok := ints[name]; ok {
		return v, true
	}
	v, ok := nt.ints[name]
	return v, ok
}

// run computes node n. Integer values (shapes, pads) live in ints, flat,
// with their shape in ishape when it is not one axis (a pad list PyTorch
// reshapes to pairs and reverses).
func (nt *Net) run(t *Tape, n *graph.Node, get func(string) (*Var, error), env map[string]*Var, ints map[string][]int64, ishape map[string][]int) error {
	in := func(i int) (*Var, error) { return get(n.Inputs[i]) }
	set := func(v *Var, err error) error {
		if err != nil {
			return err
		}
		env[n.Outputs[0]] = v
		return nil
	}
	isInt := func(i int) bool {
		if i >= len(n.Inputs) {
			return false
		}
		_, ok := nt.intsOf(ints, n.Inputs[i])
		return ok
	}
	intIn := func(i int) ([]int64, error) {
		if i >= len(n.Inputs) || n.Inputs[i] == "" {
			return nil, fmt.Errorf("missing input %d", i)
		}
		v, ok := nt.intsOf(ints, n.Inputs[i])
		if !ok {
			return nil, fmt.Errorf("input %s is not an integer constant or shape", n.Inputs[i])
		}
		return v, nil
	}
	switch n.OpType {
	case "Constant":
		if v := n.Attr("value"); v != nil {
			tt, err := graph.TensorFromProto(v.GetT())
			if err != nil {
				return err
			}
			switch tt.DType {
			case onnx.TensorProto_INT64:
				iv, err := tt.Int64()
				if err != nil {
					return err
				}
				ints[n.Outputs[0]] = iv
			case onnx.TensorProto_FLOAT:
				fv, err := tt.Float32()
				if err != nil {
					return err
				}
				return set(newVar(intDims(tt.Dims), fv))
			}
			return nil
		}
		return fmt.Errorf("a Constant without a tensor value")
	case "Identity":
		if isInt(0) {
			v, _ := intIn(0)
			ints[n.Outputs[0]] = v
			return nil
		}
		x, err := in(0)
		if err != nil {
			return err
		}
		env[n.Outputs[0]] = x // ops never write their inputs: sharing is safe
		return nil
	case "Shape":
		var shape []int
		if isInt(0) {
			// Integer values are shapes and pads: one axis.
			v, _ := intIn(0)
			shape = []int{len(v)}
		} else {
			x, err := in(0)
			if err != nil {
				return err
			}
			shape = x.Shape
		}
		r := int64(len(shape))
		start, end := n.AttrInt("start", 0), n.AttrInt("end", r)
		start, end = clampAxis(start, r), clampAxis(end, r)
		var out []int64
		for i := start; i < end; i++ {
			out = append(out, int64(shape[i]))
		}
		ints[n.Outputs[0]] = out
		return nil
	case "Cast", "Unsqueeze", "Squeeze":
		v, err := intIn(0)
		if err != nil {
			return fmt.Errorf("on a float tensor: %w", err)
		}
		ints[n.Outputs[0]] = v
		if sh, ok := ishape[n.Inputs[0]]; ok && n.OpType == "Cast" {
			ishape[n.Outputs[0]] = sh
		}
		return nil
	case "Gather":
		data, err := intIn(0)
		if err != nil {
			return fmt.Errorf("on a float tensor: %w", err)
		}
		idx, err := intIn(1)
		if err != nil {
			return err
		}
		var out []int64
		for _, i := range idx {
			if i < 0 {
				i += int64(len(data))
			}
			if i < 0 || i >= int64(len(data)) {
				return fmt.Errorf("index %d out of %d", i, len(data))
			}
			out = append(out, data[i])
		}
		ints[n.Outputs[0]] = out
		return nil
	case "Add", "Sub", "Mul", "Div", "Mod":
		if isInt(0) && isInt(1) {
			a, _ := intIn(0)
			b, _ := intIn(1)
			op := n.OpType
			if op == "Mod" && n.AttrInt("fmod", 0) != 0 {
				op = "Fmod"
			}
			out, err := intArith(op, a, b)
			if err != nil {
				return err
			}
			ints[n.Outputs[0]] = out
			return nil
		}
		if n.OpType == "Mod" {
			return fmt.Errorf("on a float tensor: only integer Mod (shape arithmetic) is modelled")
		}
		a, err := in(0)
		if err != nil {
			return err
		}
		b, err := in(1)
		if err != nil {
			return err
		}
		switch n.OpType {
		case "Add":
			return set(t.Add(a, b))
		case "Sub":
			return set(t.Sub(a, b))
		case "Mul":
			return set(t.Mul(a, b))
		}
		return set(t.Div(a, b))
	case "ConstantOfShape":
		sh, err := intIn(0)
		if err != nil {
			return err
		}
		count := int64(1)
		for _, d := range sh {
			count *= d
		}
		if count < 0 || count > 1<<20 {
			return fmt.Errorf("a constant of shape %v", sh)
		}
		val := float32(0) // no value: a float zero
		if v := n.Attr("value"); v != nil {
			tt, err := graph.TensorFromProto(v.GetT())
			if err != nil {
				return err
			}
			if tt.DType == onnx.TensorProto_INT64 {
				iv, err := tt.Int64()
				if err != nil || len(iv) != 1 {
					return fmt.Errorf("value of %d integers", len(iv))
				}
				out := make([]int64, count)
				for i := range out {
					out[i] = iv[0]
				}
				ints[n.Outputs[0]] = out
				return nil
			}
			fv, err := tt.Float32()
			if err != nil || len(fv) != 1 {
				return fmt.Errorf("value of type %s", tt.DType)
			}
			val = fv[0]
		}
		data := make([]float32, count)
		for i := range data {
			data[i] = val
		}
		return set(newVar(intDims(sh), data))
	case "Concat":
		axis := int(n.AttrInt("axis", 0))
		if isInt(0) {
			var out []int64
			for i := range n.Inputs {
				v, err := intIn(i)
				if err != nil {
					return err
				}
				if sh := ishapeOf(ishape, n.Inputs[i], v); len(sh) != 1 {
					return fmt.Errorf("a Concat of integer tensors of shape %v", sh)
				}
				out = append(out, v...)
			}
			ints[n.Outputs[0]] = out
			return nil
		}
		xs := make([]*Var, len(n.Inputs))
		for i := range n.Inputs {
			x, err := in(i)
			if err != nil {
				return err
			}
			xs[i] = x
		}
		return set(t.Concat(axis, xs...))
	case "Slice":
		starts, err := intIn(1)
		if err != nil {
			return err
		}
		ends, err := intIn(2)
		if err != nil {
			return err
		}
		var axes, steps []int64
		if len(n.Inputs) > 3 && n.Inputs[3] != "" {
			if axes, err = intIn(3); err != nil {
				return err
			}
		}
		if len(n.Inputs) > 4 && n.Inputs[4] != "" {
			if steps, err = intIn(4); err != nil {
				return err
			}
		}
		if isInt(0) {
			data, _ := intIn(0)
			out, shape, err := intSlice(data, ishapeOf(ishape, n.Inputs[0], data), starts, ends, axes, steps)
			if err != nil {
				return err
			}
			ints[n.Outputs[0]], ishape[n.Outputs[0]] = out, shape
			return nil
		}
		x, err := in(0)
		if err != nil {
			return err
		}
		st, en, sp, err := resolveSlice(x.Shape, starts, ends, axes, steps)
		if err != nil {
			return err
		}
		return set(t.Slice(x, st, en, sp))
	}
	if (n.OpType == "Reshape" || n.OpType == "Transpose") && isInt(0) {
		data, _ := intIn(0)
		shape := ishapeOf(ishape, n.Inputs[0], data)
		var out []int64
		if n.OpType == "Reshape" {
			sh, err := intIn(1)
			if err != nil {
				return err
			}
			if shape, err = resolveReshape(shape, sh, n.AttrInt("allowzero", 0) != 0); err != nil {
				return err
			}
			out = data
		} else {
			var err error
			if out, shape, err = intTranspose(data, shape, intDims(n.AttrInts("perm"))); err != nil {
				return err
			}
		}
		ints[n.Outputs[0]], ishape[n.Outputs[0]] = out, shape
		return nil
	}
	// Every other op reads a float tensor first.
	x, err := in(0)
	if err != nil {
		return err
	}
	switch n.OpType {
	case "Reshape":
		sh, err := intIn(1)
		if err != nil {
			return err
		}
		shape, err := resolveReshape(x.Shape, sh, n.AttrInt("allowzero", 0) != 0)
		if err != nil {
			return err
		}
		return set(t.Reshape(x, shape))
	case "Transpose":
		perm := intDims(n.AttrInts("perm"))
		if len(perm) == 0 {
			for i := len(x.Shape) - 1; i >= 0; i-- {
				perm = append(perm, i)
			}
		}
		return set(t.Transpose(x, perm))
	case "Conv":
		w, err := in(1)
		if err != nil {
			return err
		}
		var b *Var
		if len(n.Inputs) > 2 && n.Inputs[2] != "" {
			if b, err = in(2); err != nil {
				return err
			}
		}
		if ap := n.AttrString("auto_pad", "NOTSET"); ap != "NOTSET" {
			return fmt.Errorf("auto_pad %s is not modelled", ap)
		}
		var o ConvOpts
		copy(o.Strides[:], intDims(n.AttrInts("strides")))
		copy(o.Dilations[:], intDims(n.AttrInts("dilations")))
		copy(o.Pads[:], intDims(n.AttrInts("pads")))
		o.Group = int(n.AttrInt("group", 1))
		return set(t.Conv(x, w, b, o))
	case "Split":
		axis := int(n.AttrInt("axis", 0))
		ax, err := normAxis("Split", axis, len(x.Shape))
		if err != nil {
			return err
		}
		var sizes []int
		if len(n.Inputs) > 1 && n.Inputs[1] != "" {
			s, err := intIn(1)
			if err != nil {
				return err
			}
			sizes = intDims(s)
		} else if s := n.AttrInts("split"); len(s) > 0 {
			sizes = intDims(s)
		} else {
			k := len(n.Outputs)
			if x.Shape[ax]%k != 0 {
				return fmt.Errorf("%d channels do not split in %d", x.Shape[ax], k)
			}
			for range k {
				sizes = append(sizes, x.Shape[ax]/k)
			}
		}
		ys, err := t.Split(x, ax, sizes...)
		if err != nil {
			return err
		}
		for i, o := range n.Outputs {
			env[o] = ys[i]
		}
		return nil
	case "Pad":
		pads, err := intIn(1)
		if err != nil {
			return err
		}
		var val float32
		if len(n.Inputs) > 2 && n.Inputs[2] != "" {
			c, err := in(2)
			if err != nil || len(c.Data) != 1 {
				return fmt.Errorf("pad value is not a float scalar")
			}
			val = c.Data[0]
		}
		if len(n.Inputs) > 3 && n.Inputs[3] != "" {
			return fmt.Errorf("Pad with axes is not modelled")
		}
		return set(t.Pad(x, PadOpts{Pads: intDims(pads), Mode: n.AttrString("mode", "constant"), Value: val}))
	case "DepthToSpace":
		return set(t.DepthToSpace(x, int(n.AttrInt("blocksize", 0)), n.AttrString("mode", "DCR")))
	case "PRelu":
		s, err := in(1)
		if err != nil {
			return err
		}
		return set(t.PRelu(x, s))
	case "GlobalAveragePool":
		return set(t.GlobalAveragePool(x))
	case "ReduceMean", "ReduceSum":
		axes := intDims(n.AttrInts("axes"))
		if len(n.Inputs) > 1 && n.Inputs[1] != "" {
			a, err := intIn(1)
			if err != nil {
				return err
			}
			axes = intDims(a)
		}
		if len(axes) == 0 && n.AttrInt("noop_with_empty_axes", 0) != 0 {
			env[n.Outputs[0]] = x
			return nil
		}
		if n.OpType == "ReduceSum" {
			return set(t.ReduceSum(x, axes, n.AttrInt("keepdims", 1) != 0))
		}
		return set(t.ReduceMean(x, axes, n.AttrInt("keepdims", 1) != 0))
	case "Erf":
		return set(t.Erf(x), nil)
	case "Pow":
		p, err := in(1)
		if err != nil {
			return err
		}
		if len(p.Data) != 1 {
			return fmt.Errorf("an exponent of shape %v: want one value", p.Shape)
		}
		return set(t.Pow(x, p.Data[0]), nil)
	case "MatMul":
		b, err := in(1)
		if err != nil {
			return err
		}
		return set(t.MatMul(x, b))
	case "Softmax":
		return set(t.Softmax(x, int(n.AttrInt("axis", -1))))
	case "LayerNormalization":
		sc, err := in(1)
		if err != nil {
			return err
		}
		var b *Var
		if len(n.Inputs) > 2 && n.Inputs[2] != "" {
			if b, err = in(2); err != nil {
				return err
			}
		}
		return set(t.LayerNorm(x, sc, b, int(n.AttrInt("axis", -1)), n.AttrFloat("epsilon", 1e-5)))
	case "MaxPool":
		var o PoolOpts
		copy(o.Kernel[:], intDims(n.AttrInts("kernel_shape")))
		copy(o.Strides[:], intDims(n.AttrInts("strides")))
		copy(o.Pads[:], intDims(n.AttrInts("pads")))
		return set(t.MaxPool(x, o))
	case "Resize":
		if n.AttrInt("antialias", 0) != 0 {
			return fmt.Errorf("antialiased Resize is not modelled")
		}
		h, w, err := resizeTarget(nt, ints, n, x.Shape, get)
		if err != nil {
			return err
		}
		return set(t.Resize(x, ResizeOpts{Height: h, Width: w, Mode: n.AttrString("mode", "nearest"),
			CoordMode:   n.AttrString("coordinate_transformation_mode", "half_pixel"),
			NearestMode: n.AttrString("nearest_mode", "round_prefer_floor")}))
	}
	return fmt.Errorf("not differentiable here")
}

// resizeTarget reads Resize's output height and width from its sizes or
// scales input.
func resizeTarget(nt *Net, ints map[string][]int64, n *graph.Node, shape []int, get func(string) (*Var, error)) (int, int, error) {
	if len(shape) != 4 {
		return 0, 0, fmt.Errorf("resize of %v", shape)
	}
	if len(n.Inputs) > 3 && n.Inputs[3] != "" {
		s, ok := nt.intsOf(ints, n.Inputs[3])
		if !ok || len(s) != 4 {
			return 0, 0, fmt.Errorf("sizes %s is not a known 4-vector", n.Inputs[3])
		}
		return int(s[2]), int(s[3]), nil
	}
	if len(n.Inputs) > 2 && n.Inputs[2] != "" {
		sc, err := get(n.Inputs[2])
		if err != nil || len(sc.Data) != 4 {
			return 0, 0, fmt.Errorf("scales %s is not a known 4-vector", n.Inputs[2])
		}
		return int(math.Floor(float64(shape[2]) * float64(sc.Data[2]))), int(math.Floor(float64(shape[3]) * float64(sc.Data[3]))), nil
	}
	return 0, 0, fmt.Errorf("neither scales nor sizes")
}

func clampAxis(a, r int64) int64 {
	if a < 0 {
		a += r
	}
	return min(max(a, 0), r)
}

// intArith is element-wise integer arithmetic with scalar broadcasting.
func intArith(op string, a, b []int64) ([]int64, error) {
	n := max(len(a), len(b))
	if (len(a) != n && len(a) != 1) || (len(b) != n && len(b) != 1) {
		return nil, fmt.Errorf("integer %s of %d and %d values", op, len(a), len(b))
	}
	out := make([]int64, n)
	for i := range out {
		x, y := a[i%len(a)], b[i%len(b)]
		switch op {
		case "Add":
			out[i] = x + y
		case "Sub":
			out[i] = x - y
		case "Mul":
			out[i] = x * y
		case "Div", "Mod", "Fmod":
			if y == 0 {
				return nil, fmt.Errorf("integer division by zero")
			}
			switch op {
			case "Div":
				out[i] = x / y
			case "Fmod":
				out[i] = x % y // the sign of the dividend, as C's fmod
			default:
				// The sign of the divisor, as Python's %.
				if out[i] = x % y; out[i] != 0 && (out[i] < 0) != (y < 0) {
					out[i] += y
				}
			}
		}
	}
	return out, nil
}

// resolveSlice turns ONNX Slice's starts, ends, axes and steps into per-axis
// ranges of a tensor of shape (positive steps only: the tape's Slice).
func resolveSlice(shape []int, starts, ends, axes, steps []int64) (st, en, sp []int, err error) {
	for _, step := range steps {
		if step < 1 {
			return nil, nil, nil, fmt.Errorf("slice step %d (only positive steps are modelled)", step)
		}
	}
	return sliceRanges(shape, starts, ends, axes, steps)
}

// sliceRanges turns ONNX Slice's starts, ends, axes and steps into per-axis
// ranges of a tensor of shape: axis a keeps st[a], st[a]+sp[a], ... up to
// en[a], excluded, from above for a negative step (en[a] = −1: to the
// first element).
func sliceRanges(shape []int, starts, ends, axes, steps []int64) (st, en, sp []int, err error) {
	r := len(shape)
	st, en, sp = make([]int, r), slices.Clone(shape), make([]int, r)
	for a := range sp {
		sp[a] = 1
	}
	if len(axes) == 0 {
		for i := range starts {
			axes = append(axes, int64(i))
		}
	}
	if len(starts) != len(axes) || len(ends) != len(axes) || (len(steps) != 0 && len(steps) != len(axes)) {
		return nil, nil, nil, fmt.Errorf("slice with %d starts, %d ends, %d axes, %d steps", len(starts), len(ends), len(axes), len(steps))
	}
	for i, a64 := range axes {
		a := int(a64)
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r {
			return nil, nil, nil, fmt.Errorf("slice axis %d of rank %d", a64, r)
		}
		step := int64(1)
		if len(steps) > 0 {
			step = steps[i]
		}
		if step == 0 {
			return nil, nil, nil, fmt.Errorf("slice step 0")
		}
		d := int64(shape[a])
		s, e := starts[i], ends[i]
		if s < 0 {
			s += d
		}
		if e < 0 {
			e += d
		}
		if step > 0 {
			s, e = min(max(s, 0), d), min(max(e, 0), d)
			e = max(e, s)
		} else {
			s, e = min(max(s, 0), d-1), min(max(e, -1), d-1)
			e = min(e, s)
		}
		st[a], en[a], sp[a] = int(s), int(e), int(step)
	}
	return st, en, sp, nil
}

// resolveReshape applies ONNX Reshape's 0 (copy) and −1 (infer) rules.
func resolveReshape(in []int, sh []int64, allowZero bool) ([]int, error) {
	out := make([]int, len(sh))
	total, _ := numel(in)
	known, infer := 1, -1
	for i, d := range sh {
		switch {
		case d == 0 && !allowZero:
			if i >= len(in) {
				return nil, fmt.Errorf("reshape of %v to %v copies a missing axis", in, sh)
			}
			out[i] = in[i]
		case d == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("reshape to %v infers two axes", sh)
			}
			infer = i
			continue
		case d < 0:
			return nil, fmt.Errorf("reshape to %v", sh)
		default:
			out[i] = int(d)
		}
		known *= out[i]
	}
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("reshape of %v to %v", in, sh)
		}
		out[infer] = total / known
	}
	return out, nil
}

// ishapeOf is the shape of integer value name holding data: one axis
// unless an op gave it another.
func ishapeOf(ishape map[string][]int, name string, data []int64) []int {
	if sh, ok := ishape[name]; ok {
		return sh
	}
	return []int{len(data)}
}

// intSlice is ONNX Slice of an integer tensor, negative steps included
// (PyTorch reverses its pad pairs with one).
func intSlice(data []int64, shape []int, starts, ends, axes, steps []int64) ([]int64, []int, error) {
	r := len(shape)
	if n, _ := numel(shape); n != len(data) {
		return nil, nil, fmt.Errorf("%d integers in shape %v", len(data), shape)
	}
	st, en, sp, err := sliceRanges(shape, starts, ends, axes, steps)
	if err != nil {
		return nil, nil, err
	}
	idx := make([][]int, r) // the indices kept along each axis
	for a := range r {
		for i := st[a]; (sp[a] > 0 && i < en[a]) || (sp[a] < 0 && i > en[a]); i += sp[a] {
			idx[a] = append(idx[a], i)
		}
	}
	oshape := make([]int, r)
	for a := range r {
		oshape[a] = len(idx[a])
	}
	return intGather(data, oshape, func(pos []int) int {
		off := 0
		for a := range r {
			off = off*shape[a] + idx[a][pos[a]]
		}
		return off
	}), oshape, nil
}

// intGather returns the tensor of shape oshape whose element at index pos
// (row-major order) is data[at(pos)].
func intGather(data []int64, oshape []int, at func(pos []int) int) []int64 {
	total, _ := numel(oshape)
	out := make([]int64, 0, total)
	pos := make([]int, len(oshape))
	for range total {
		out = append(out, data[at(pos)])
		for a := len(pos) - 1; a >= 0; a-- {
			if pos[a]++; pos[a] < oshape[a] {
				break
			}
			pos[a] = 0
		}
	}
	return out
}

// intTranspose is ONNX Transpose of an integer tensor (empty perm:
// reversed axes).
func intTranspose(data []int64, shape, perm []int) ([]int64, []int, error) {
	r := len(shape)
	if len(perm) == 0 {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, i)
		}
	}
	if len(perm) != r {
		return nil, nil, fmt.Errorf("perm %v of %d axes", perm, r)
	}
	oshape := make([]int, r)
	for i, p := range perm {
		if p < 0 || p >= r {
			return nil, nil, fmt.Errorf("perm %v of %d axes", perm, r)
		}
		oshape[i] = shape[p]
	}
	strides := make([]int, r)
	st := 1
	for a := r - 1; a >= 0; a-- {
		strides[a], st = st, st*shape[a]
	}
	return intGather(data, oshape, func(pos []int) int {
		off := 0
		for i, p := range perm {
			off += pos[i] * strides[p]
		}
		return off
	}), oshape, nil
}
