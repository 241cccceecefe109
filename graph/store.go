package graph

import "slices"

// Initializer returns the initializer called name, or nil.
func (g *Graph) Initializer(name string) *Tensor {
	if i, ok := g.initPos[name]; ok {
		return g.inits[i]
	}
	return nil
}

// SetInitializer adds t, or replaces the initializer of the same name in
// place (keeping its position in the model).
func (g *Graph) SetInitializer(t *Tensor) {
	if i, ok := g.initPos[t.Name]; ok {
		g.inits[i] = t
		return
	}
	if g.initPos == nil {
		g.initPos = map[string]int{}
	}
	g.initPos[t.Name] = len(g.inits)
	g.inits = append(g.inits, t)
	if g.idx != nil {
		g.idx.names[t.Name] = struct{}{}
	}
}

// RemoveInitializer deletes the initializer called name, if any. Nodes that
// still read it make ToModel fail.
func (g *Graph) RemoveInitializer(name string) {
	if _, ok := g.initPos[name]; !ok {
		return
	}
	g.removeInitializers(map[string]bool{name: true})
}

// removeInitializers deletes a set of initializers in one pass.
func (g *Graph) removeInitializers(names map[string]bool) {
	g.inits = slices.DeleteFunc(g.inits, func(t *Tensor) bool { return names[t.Name] })
	clear(g.initPos)
	for i, t := range g.inits {
		g.initPos[t.Name] = i
	}
}

// Initializers returns the initializers in model order (new ones last). The
// slice is a copy; the tensors are not.
func (g *Graph) Initializers() []*Tensor {
	return slices.Clone(g.inits)
}

// ValueInfo returns a copy of what is known about the value name, from (in
// this order) the graph inputs, graph outputs, initializers and value_info;
// nil if nothing is. Change it with SetValueInfo.
func (g *Graph) ValueInfo(name string) *Value {
	for _, vs := range [][]*Value{g.Inputs, g.Outputs} {
		for _, v := range vs {
			if v.Name == name {
				return v.clone()
			}
		}
	}
	if t := g.Initializer(name); t != nil {
		return &Value{Name: name, DType: t.DType, Shape: ShapeOf(t.Dims...)}
	}
	if i, ok := g.viPos[name]; ok {
		return g.valueInfo[i].clone()
	}
	return nil
}

// SetValueInfo records type and shape facts for an intermediate value (the
// model's value_info), replacing any earlier entry for v.Name. Facts about
// graph inputs and outputs belong in Inputs and Outputs instead.
func (g *Graph) SetValueInfo(v *Value) {
	if i, ok := g.viPos[v.Name]; ok {
		g.valueInfo[i] = v
		return
	}
	if g.viPos == nil {
		g.viPos = map[string]int{}
	}
	g.viPos[v.Name] = len(g.valueInfo)
	g.valueInfo = append(g.valueInfo, v)
	if g.idx != nil {
		g.idx.names[v.Name] = struct{}{}
	}
}

// RemoveValueInfo drops the value_info entries for the given names.
func (g *Graph) RemoveValueInfo(names ...string) {
	drop := map[string]bool{}
	for _, n := range names {
		if _, ok := g.viPos[n]; ok {
			drop[n] = true
		}
	}
	if len(drop) == 0 {
		return
	}
	g.valueInfo = slices.DeleteFunc(g.valueInfo, func(v *Value) bool { return drop[v.Name] })
	clear(g.viPos)
	for i, v := range g.valueInfo {
		g.viPos[v.Name] = i
	}
}

// sparseNames lists the names the sparse initializers define.
func (g *Graph) sparseNames() []string {
	out := make([]string, len(g.sparse))
	for i, s := range g.sparse {
		out[i] = s.GetValues().GetName()
	}
	return out
}
