package graph

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/srquant/srq/onnx"
)

// Graph is an editable ONNX model: the main graph plus whatever of the model
// it must carry to write the model back.
//
// The zero Graph is usable; New and FromModel return initialized ones.
type Graph struct {
	Name    string
	Inputs  []*Value
	Outputs []*Value
	// Nodes is kept in topological order by TopoSort (FromModel sorts).
	Nodes []*Node
	// Opsets maps operator-set domain to version; "" is ai.onnx.
	Opsets map[string]int64
	// IRVersion is the model's ONNX IR version (0: write the newest this
	// module's onnx package knows).
	IRVersion int64

	inits     []*Tensor      // initializers in model order
	initPos   map[string]int // name -> index in inits
	valueInfo []*Value       // value_info in model order
	viPos     map[string]int // name -> index in valueInfo

	// sparse initializers are kept as protos: srq never edits them, but they
	// define values that nodes read.
	sparse []*onnx.SparseTensorProto

	// model and graph hold the ModelProto/GraphProto fields the IR does not
	// model (producer, metadata, functions, doc strings, annotations, unknown
	// fields); their modelled fields are left empty. Never edited.
	model *onnx.ModelProto
	graph *onnx.GraphProto

	opsetOrder []string // domains in model order, so ToModel keeps it

	idx       *index              // nil: rebuild on next query
	generated map[string]struct{} // every name UniqueName handed out
	genNext   map[string]int      // base -> next suffix to try
}

// New returns an empty graph importing the given operator sets (nil: none).
func New(name string, opsets map[string]int64) *Graph {
	g := &Graph{Name: name, Opsets: maps.Clone(opsets), IRVersion: int64(onnx.Version_IR_VERSION)}
	if g.Opsets == nil {
		g.Opsets = map[string]int64{}
	}
	return g
}

// FromModel builds a Graph from m. The graph aliases m's weight bytes and
// attribute protos (see the package doc), so m must not be modified while
// the graph is in use. It fails on a missing graph, duplicate or malformed
// initializers, values produced twice, inputs that nothing defines, and
// cycles; errors name the node, input or tensor at fault.
func FromModel(m *onnx.ModelProto) (*Graph, error) {
	if m == nil {
		return nil, errors.New("model is nil")
	}
	gp := m.GetGraph()
	if gp == nil {
		return nil, errors.New("model has no graph")
	}
	g := &Graph{
		Name:      gp.GetName(),
		IRVersion: m.GetIrVersion(),
		Opsets:    make(map[string]int64, len(m.GetOpsetImport())),
		Inputs:    make([]*Value, len(gp.GetInput())),
		Outputs:   make([]*Value, len(gp.GetOutput())),
		Nodes:     make([]*Node, len(gp.GetNode())),
		inits:     make([]*Tensor, 0, len(gp.GetInitializer())),
		initPos:   make(map[string]int, len(gp.GetInitializer())),
		sparse:    gp.GetSparseInitializer(),
	}
	for _, op := range m.GetOpsetImport() {
		if _, dup := g.Opsets[op.GetDomain()]; dup {
			return nil, fmt.Errorf("model imports opset domain %q twice", op.GetDomain())
		}
		g.Opsets[op.GetDomain()] = op.GetVersion()
		g.opsetOrder = append(g.opsetOrder, op.GetDomain())
	}
	for i, v := range gp.GetInput() {
		g.Inputs[i] = valueFromProto(v)
	}
	for i, v := range gp.GetOutput() {
		g.Outputs[i] = valueFromProto(v)
	}
	for _, v := range gp.GetValueInfo() {
		g.SetValueInfo(valueFromProto(v))
	}
	for _, tp := range gp.GetInitializer() {
		t, err := TensorFromProto(tp)
		if err != nil {
			return nil, fmt.Errorf("initializer: %w", err)
		}
		if _, dup := g.initPos[t.Name]; dup {
			return nil, fmt.Errorf("initializer %q is defined twice", t.Name)
		}
		g.initPos[t.Name] = len(g.inits)
		g.inits = append(g.inits, t)
	}
	for i, np := range gp.GetNode() {
		g.Nodes[i] = nodeFromProto(np)
	}
	g.model, g.graph = modelExtras(m)
	if err := g.check(); err != nil {
		return nil, err
	}
	if err := g.TopoSort(); err != nil {
		return nil, err
	}
	return g, nil
}

// modelExtras copies the references (not the contents) of every ModelProto
// and GraphProto field the IR does not model.
func modelExtras(m *onnx.ModelProto) (*onnx.ModelProto, *onnx.GraphProto) {
	gp := m.GetGraph()
	me := &onnx.ModelProto{
		ProducerName:    m.GetProducerName(),
		ProducerVersion: m.GetProducerVersion(),
		Domain:          m.GetDomain(),
		ModelVersion:    m.GetModelVersion(),
		DocString:       m.GetDocString(),
		MetadataProps:   m.GetMetadataProps(),
		TrainingInfo:    m.GetTrainingInfo(),
		Functions:       m.GetFunctions(),
	}
	me.ProtoReflect().SetUnknown(m.ProtoReflect().GetUnknown())
	ge := &onnx.GraphProto{
		DocString:              gp.GetDocString(),
		QuantizationAnnotation: gp.GetQuantizationAnnotation(),
		MetadataProps:          gp.GetMetadataProps(),
	}
	ge.ProtoReflect().SetUnknown(gp.ProtoReflect().GetUnknown())
	return me, ge
}

// ToModel writes g as a ModelProto with nodes in topological order (g itself
// is not reordered). It checks the graph first and fails, naming the node or
// value, on undefined inputs, duplicate producers, cycles, malformed
// initializers and node domains with no opset import. The result shares
// weight bytes, attributes and preserved protos with g.
func (g *Graph) ToModel() (*onnx.ModelProto, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	order, err := g.topoOrder()
	if err != nil {
		return nil, err
	}
	for _, t := range g.inits {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("initializer: %w", err)
		}
	}
	if err := g.checkDomains(); err != nil {
		return nil, err
	}
	m := &onnx.ModelProto{IrVersion: g.IRVersion}
	gp := &onnx.GraphProto{Name: g.Name}
	if e := g.model; e != nil {
		m.ProducerName = e.GetProducerName()
		m.ProducerVersion = e.GetProducerVersion()
		m.Domain = e.GetDomain()
		m.ModelVersion = e.GetModelVersion()
		m.DocString = e.GetDocString()
		m.MetadataProps = e.GetMetadataProps()
		m.TrainingInfo = e.GetTrainingInfo()
		m.Functions = e.GetFunctions()
		m.ProtoReflect().SetUnknown(e.ProtoReflect().GetUnknown())
	}
	if e := g.graph; e != nil {
		gp.DocString = e.GetDocString()
		gp.QuantizationAnnotation = e.GetQuantizationAnnotation()
		gp.MetadataProps = e.GetMetadataProps()
		gp.ProtoReflect().SetUnknown(e.ProtoReflect().GetUnknown())
	}
	if m.IrVersion == 0 {
		m.IrVersion = int64(onnx.Version_IR_VERSION)
	}
	m.OpsetImport = g.opsetProtos()
	gp.Node = make([]*onnx.NodeProto, len(order))
	for i, n := range order {
		gp.Node[i] = n.proto()
	}
	gp.Input = valueProtos(g.Inputs)
	gp.Output = valueProtos(g.Outputs)
	gp.ValueInfo = valueProtos(g.valueInfo)
	gp.Initializer = make([]*onnx.TensorProto, len(g.inits))
	for i, t := range g.inits {
		gp.Initializer[i] = t.Proto()
	}
	gp.SparseInitializer = g.sparse
	m.Graph = gp
	return m, nil
}

func valueProtos(vs []*Value) []*onnx.ValueInfoProto {
	out := make([]*onnx.ValueInfoProto, len(vs))
	for i, v := range vs {
		out[i] = v.proto()
	}
	return out
}

// opsetProtos lists Opsets in the model's original domain order, then any
// domains added since, sorted.
func (g *Graph) opsetProtos() []*onnx.OperatorSetIdProto {
	out := make([]*onnx.OperatorSetIdProto, 0, len(g.Opsets))
	done := make(map[string]bool, len(g.Opsets))
	for _, d := range g.opsetOrder {
		if v, ok := g.Opsets[d]; ok && !done[d] {
			out = append(out, &onnx.OperatorSetIdProto{Domain: d, Version: v})
			done[d] = true
		}
	}
	for _, d := range slices.Sorted(maps.Keys(g.Opsets)) {
		if !done[d] {
			out = append(out, &onnx.OperatorSetIdProto{Domain: d, Version: g.Opsets[d]})
		}
	}
	return out
}

// checkDomains fails when a node's domain has no opset import, which ORT
// rejects at load time with a less specific message. "ai.onnx" and "" name
// the same default domain.
func (g *Graph) checkDomains() error {
	for _, n := range g.Nodes {
		d := n.Domain
		if _, ok := g.Opsets[d]; ok {
			continue
		}
		if d == "" || d == "ai.onnx" {
			_, a := g.Opsets[""]
			_, b := g.Opsets["ai.onnx"]
			if a || b {
				continue
			}
		}
		return fmt.Errorf("node %s: domain %q has no opset import", n, d)
	}
	return nil
}
