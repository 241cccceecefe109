package onnx

import (
	"errors"
	"fmt"
)

// Validate checks the structure of m and returns the first problem as a
// one-line error that names the graph element at fault, e.g.
// `node "conv1" (Conv): input "x" is not a graph input, initializer or node output`.
// Errors carry no file name; callers that have one prefix it
// (fmt.Errorf("%s: %w", path, err)).
//
// It checks: ir_version, opset_import (present, no duplicate domains, every
// node's domain imported), graph present, every tensor's declared size
// against its data (see checkTensor), known data types in tensors and value
// types, unique non-empty names for graph inputs and initializers, single
// assignment of values (no name produced twice), and that every node input
// and graph output names a graph input, initializer, node output or (in
// If/Loop/Scan bodies) a value of an enclosing graph. Nodes need not be in
// topological order (package graph sorts), but a cycle is an error.
func Validate(m *ModelProto) error {
	if m == nil {
		return errors.New("model is nil")
	}
	if m.GetIrVersion() <= 0 {
		return fmt.Errorf("ir_version is %d; a model needs ir_version 1 or later (current is %d)", m.GetIrVersion(), Version_IR_VERSION)
	}
	opsets, err := checkOpsets(m.GetOpsetImport(), "model")
	if err != nil {
		return err
	}
	if m.GetGraph() == nil {
		return errors.New("model has no graph")
	}
	err = visitModelTensors(m, func(where string, t *TensorProto) error {
		if _, err := checkTensor(t); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, f := range m.GetFunctions() {
		d := f.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		opsets[d] = true // calls of model-local functions need no import
	}
	v := validator{opsets: opsets}
	if _, err := v.graph(m.GetGraph(), nil, "", 0); err != nil {
		return err
	}
	return v.functions(m.GetFunctions())
}

// checkOpsets checks an opset_import list and returns the imported domains
// ("ai.onnx" folded into "", its canonical spelling).
func checkOpsets(list []*OperatorSetIdProto, owner string) (map[string]bool, error) {
	if len(list) == 0 {
		return nil, fmt.Errorf("%s has no opset_import, so its operators have no version", owner)
	}
	seen := map[string]bool{}
	for _, o := range list {
		d := o.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		if seen[d] {
			return nil, fmt.Errorf("%s imports domain %q twice in opset_import", owner, o.GetDomain())
		}
		seen[d] = true
		if o.GetVersion() <= 0 {
			return nil, fmt.Errorf("%s imports domain %q at version %d; versions start at 1", owner, o.GetDomain(), o.GetVersion())
		}
	}
	return seen, nil
}

// validator carries what the whole model shares: the imported domains.
type validator struct {
	opsets map[string]bool
}

// scope is the set of value names visible in one graph, chained to the
// graphs that enclose it. producer is the index of the node that produces
// the value, or -1 for graph inputs and initializers.
type scope struct {
	producer map[string]int
	outer    *scope
}

func (s *scope) lookup(name string) bool {
	for ; s != nil; s = s.outer {
		if _, ok := s.producer[name]; ok {
			return true
		}
	}
	return false
}

// graph checks g and returns the names it reads from enclosing graphs (its
// free names), which are implicit inputs of the node that owns g.
func (v *validator) graph(g *GraphProto, outer *scope, prefix string, depth int) (map[string]bool, error) {
	if depth > maxGraphDepth {
		return nil, fmt.Errorf("subgraphs nest more than %d levels deep", maxGraphDepth)
	}
	sc := &scope{producer: map[string]int{}, outer: outer}
	free := map[string]bool{}
	inputs := map[string]bool{}
	for i, vi := range g.GetInput() {
		name := vi.GetName()
		if name == "" {
			return nil, fmt.Errorf("%sgraph input #%d has no name", prefix, i)
		}
		if inputs[name] {
			return nil, fmt.Errorf("%sgraph input %q is listed twice", prefix, name)
		}
		inputs[name] = true
		sc.producer[name] = -1
		if err := checkType(vi.GetType(), 0); err != nil {
			return nil, fmt.Errorf("%sgraph input %q: %w", prefix, name, err)
		}
	}
	consts := map[string]bool{}
	addConst := func(kind string, i int, name string) error {
		if name == "" {
			return fmt.Errorf("%s%s #%d has no name", prefix, kind, i)
		}
		if consts[name] {
			return fmt.Errorf("%s%s %q is defined twice", prefix, kind, name)
		}
		consts[name] = true
		sc.producer[name] = -1 // may repeat a graph input: its default value
		return nil
	}
	for i, t := range g.GetInitializer() {
		if err := addConst("initializer", i, t.GetName()); err != nil {
			return nil, err
		}
	}
	for i, s := range g.GetSparseInitializer() {
		if err := addConst("sparse initializer", i, s.GetValues().GetName()); err != nil {
			return nil, err
		}
	}

	nodes := g.GetNode()
	// All outputs first: nodes may come in any order.
	for i, n := range nodes {
		if n.GetOpType() == "" {
			return nil, fmt.Errorf("%s%s has no op_type", prefix, nodeLabel(n, i))
		}
		d := n.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		if !v.opsets[d] {
			return nil, fmt.Errorf("%s%s: domain %q is not in the model's opset_import", prefix, nodeLabel(n, i), n.GetDomain())
		}
		for _, out := range n.GetOutput() {
			if out == "" {
				continue // omitted optional output
			}
			if p, ok := sc.producer[out]; ok {
				if p < 0 {
					return nil, fmt.Errorf("%s%s: output %q redefines a graph input or initializer", prefix, nodeLabel(n, i), out)
				}
				return nil, fmt.Errorf("%s%s: output %q is also produced by %s (duplicate output name)", prefix, nodeLabel(n, i), out, nodeLabel(nodes[p], p))
			}
			sc.producer[out] = i
		}
	}

	preds := make([][]int, len(nodes)) // producer node indices, per node
	use := func(i int, name string) {
		if p, ok := sc.producer[name]; ok {
			if p >= 0 {
				preds[i] = append(preds[i], p)
			}
			return
		}
		free[name] = true
	}
	for i, n := range nodes {
		for _, in := range n.GetInput() {
			if in == "" {
				continue // omitted optional input
			}
			if !sc.lookup(in) {
				return nil, fmt.Errorf("%s%s: input %q is not a graph input, initializer or node output", prefix, nodeLabel(n, i), in)
			}
			use(i, in)
		}
		seenAttr := map[string]bool{}
		for _, a := range n.GetAttribute() {
			where := fmt.Sprintf("%s%s attribute %q", prefix, nodeLabel(n, i), a.GetName())
			if err := checkAttribute(a, seenAttr, where); err != nil {
				return nil, err
			}
			subs := a.GetGraphs()
			if a.GetG() != nil {
				subs = append([]*GraphProto{a.GetG()}, subs...)
			}
			for _, sg := range subs {
				subFree, err := v.graph(sg, sc, where+": ", depth+1)
				if err != nil {
					return nil, err
				}
				for name := range subFree {
					use(i, name)
				}
			}
		}
	}

	outputs := map[string]bool{}
	for i, vi := range g.GetOutput() {
		name := vi.GetName()
		switch {
		case name == "":
			return nil, fmt.Errorf("%sgraph output #%d has no name", prefix, i)
		case outputs[name]:
			return nil, fmt.Errorf("%sgraph output %q is listed twice", prefix, name)
		case !sc.lookup(name):
			return nil, fmt.Errorf("%sgraph output %q is not produced by any node, graph input or initializer", prefix, name)
		}
		outputs[name] = true
		if _, ok := sc.producer[name]; !ok {
			free[name] = true
		}
		if err := checkType(vi.GetType(), 0); err != nil {
			return nil, fmt.Errorf("%sgraph output %q: %w", prefix, name, err)
		}
	}
	for _, vi := range g.GetValueInfo() {
		if err := checkType(vi.GetType(), 0); err != nil {
			return nil, fmt.Errorf("%svalue_info %q: %w", prefix, vi.GetName(), err)
		}
	}
	if c := findCycle(preds); c >= 0 {
		return nil, fmt.Errorf("%s%s is on a cycle: its inputs depend on its own outputs", prefix, nodeLabel(nodes[c], c))
	}
	return free, nil
}

// checkAttribute checks one node attribute: a unique name, a known type,
// and that GRAPH and TENSOR attributes carry their value.
func checkAttribute(a *AttributeProto, seen map[string]bool, where string) error {
	if a.GetName() == "" {
		return fmt.Errorf("%s: attribute has no name", where)
	}
	if seen[a.GetName()] {
		return fmt.Errorf("%s: attribute is given twice", where)
	}
	seen[a.GetName()] = true
	if _, ok := AttributeProto_AttributeType_name[int32(a.GetType())]; !ok {
		return fmt.Errorf("%s: unknown attribute type %d", where, a.GetType())
	}
	if a.GetRefAttrName() != "" {
		return nil // refers to an attribute of the enclosing function
	}
	switch {
	case a.GetType() == AttributeProto_GRAPH && a.GetG() == nil:
		return fmt.Errorf("%s: has type GRAPH but no graph", where)
	case a.GetType() == AttributeProto_TENSOR && a.GetT() == nil:
		return fmt.Errorf("%s: has type TENSOR but no tensor", where)
	}
	return nil
}

// checkType checks the element types inside a value's TypeProto; 0
// (UNDEFINED) is allowed because types may be left unspecified.
func checkType(tp *TypeProto, depth int) error {
	if tp == nil {
		return nil
	}
	if depth > 64 {
		return errors.New("type nests more than 64 levels")
	}
	elem := func(v int32) error {
		if v != 0 && !knownDataType(v) {
			return fmt.Errorf("unknown element type %d", v)
		}
		return nil
	}
	switch {
	case tp.GetTensorType() != nil:
		return elem(tp.GetTensorType().GetElemType())
	case tp.GetSparseTensorType() != nil:
		return elem(tp.GetSparseTensorType().GetElemType())
	case tp.GetSequenceType() != nil:
		return checkType(tp.GetSequenceType().GetElemType(), depth+1)
	case tp.GetOptionalType() != nil:
		return checkType(tp.GetOptionalType().GetElemType(), depth+1)
	case tp.GetMapType() != nil:
		if err := elem(tp.GetMapType().GetKeyType()); err != nil {
			return fmt.Errorf("map key: %w", err)
		}
		return checkType(tp.GetMapType().GetValueType(), depth+1)
	}
	return nil
}

// findCycle returns a node on a cycle of the dependency lists preds (node
// → nodes it reads from), or -1. Kahn's algorithm removes every node not on
// or behind a cycle; walking back along remaining predecessors from any
// survivor must then revisit a node, which lies on a cycle.
func findCycle(preds [][]int) int {
	n := len(preds)
	succs := make([][]int, n)
	indeg := make([]int, n)
	for i, ps := range preds {
		indeg[i] = len(ps)
		for _, p := range ps {
			succs[p] = append(succs[p], i)
		}
	}
	queue := make([]int, 0, n)
	for i := range indeg {
		if indeg[i] == 0 {
			queue = append(queue, i)
		}
	}
	for k := 0; k < len(queue); k++ {
		for _, s := range succs[queue[k]] {
			if indeg[s]--; indeg[s] == 0 {
				queue = append(queue, s)
			}
		}
	}
	if len(queue) == n {
		return -1
	}
	start := -1
	for i := range indeg {
		if indeg[i] > 0 {
			start = i
			break
		}
	}
	visited := make([]bool, n)
	for c := start; ; {
		if visited[c] {
			return c
		}
		visited[c] = true
		for _, p := range preds[c] {
			if indeg[p] > 0 {
				c = p
				break
			}
		}
	}
}

// functions checks model-local functions: their own opset imports, and
// that node inputs and function outputs name function inputs or node
// outputs of the body.
func (v *validator) functions(fs []*FunctionProto) error {
	seen := map[string]bool{}
	for _, f := range fs {
		id := f.GetDomain() + ":" + f.GetName() + ":" + f.GetOverload()
		where := fmt.Sprintf("function %q", f.GetName())
		if f.GetName() == "" {
			return errors.New("a model-local function has no name")
		}
		if seen[id] {
			return fmt.Errorf("%s (domain %q) is defined twice", where, f.GetDomain())
		}
		seen[id] = true
		opsets, err := checkOpsets(f.GetOpsetImport(), where)
		if err != nil {
			return err
		}
		// A function body is a graph without initializers: its inputs
		// are the function's formal inputs.
		g := &GraphProto{Node: f.GetNode()}
		for _, in := range f.GetInput() {
			g.Input = append(g.Input, &ValueInfoProto{Name: in})
		}
		for _, out := range f.GetOutput() {
			g.Output = append(g.Output, &ValueInfoProto{Name: out})
		}
		fv := validator{opsets: mergeOpsets(opsets, v.opsets)}
		if _, err := fv.graph(g, nil, where+": ", 0); err != nil {
			return err
		}
	}
	return nil
}

// mergeOpsets returns the union of a function's own imports and the
// model's domains (imports and model-local functions). ONNX wants functions
// to import what they use; accepting the model's imports too is lenient on
// purpose: srq passes functions through untouched and leaves the last word
// on them to ONNX Runtime.
func mergeOpsets(own, model map[string]bool) map[string]bool {
	out := make(map[string]bool, len(own)+len(model))
	for d := range model {
		out[d] = true
	}
	for d := range own {
		out[d] = true
	}
	return out
}
