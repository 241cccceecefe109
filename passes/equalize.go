package passes

import (
	"fmt"
	"math"

	"github.com/srquant/srq/graph"
)

// Equalize rescales the channels of each space so that the members'
// per-channel ranges are closer to each other, which shrinks the step of a
// per-tensor quantizer for all but the widest channels. For a space with
// per-channel ranges r_c (the largest over its members of the member's
// range in channel c, relative to that member's widest channel), channel c
// is scaled by d_c = r_c^(-Alpha), normalised to geometric mean 1 and
// limited to [1/MaxScale, MaxScale]. Alpha = 1 equalizes fully; 0.5 splits
// the range between activations and the next Conv's weights (the DFQ /
// SmoothQuant trade-off).
type Equalize struct {
	Spaces []ChannelSpace
	// Ranges holds per-channel ranges (e.g. max |x|) of space members from
	// calibration of the float graph; members without an entry are ignored.
	Ranges   map[string][]float32
	Alpha    float64
	MaxScale float64
}

func (Equalize) Name() string { return "equalize" }
func (Equalize) Doc() string {
	return "rescale channel spaces so per-tensor activation quantizers waste fewer levels"
}

func (e Equalize) Run(g *graph.Graph) error {
	for _, s := range e.Spaces {
		d := e.scales(s)
		if d == nil {
			continue
		}
		for _, n := range s.Producers {
			if err := scaleConv(g, n, d, true); err != nil {
				return err
			}
		}
		for _, n := range s.Consumers {
			if err := scaleConv(g, n, d, false); err != nil {
				return err
			}
		}
	}
	g.RemoveDead()
	return nil
}

// scales returns the per-channel factors of a space, or nil without data.
func (e Equalize) scales(s ChannelSpace) []float64 {
	prof := make([]float64, s.Channels)
	seen := 0
	for _, v := range s.Values {
		r := e.Ranges[v]
		if len(r) != s.Channels {
			continue
		}
		var top float64
		for _, x := range r {
			top = max(top, float64(x))
		}
		if top <= 0 {
			continue
		}
		seen++
		for c, x := range r {
			prof[c] += math.Log(max(float64(x)/top, 1e-6))
		}
	}
	if seen == 0 {
		return nil
	}
	for c := range prof {
		prof[c] = math.Exp(prof[c] / float64(seen))
	}
	alpha := e.Alpha
	if alpha <= 0 {
		alpha = 1
	}
	limit := e.MaxScale
	if limit <= 1 {
		limit = 16
	}
	d := make([]float64, s.Channels)
	var logSum float64
	for c, p := range prof {
		p = max(p, 1e-6)
		d[c] = math.Pow(p, -alpha)
		logSum += math.Log(d[c])
	}
	mean := math.Exp(logSum / float64(len(d)))
	for c := range d {
		d[c] = min(max(d[c]/mean, 1/limit), limit)
	}
	return d
}

// scaleConv multiplies a Conv's output channel o by d[o] (weight rows and
// bias) when out, else divides its input channel c's weight columns by d[c].
// New initializers are written, since weights may be shared.
func scaleConv(g *graph.Graph, n *graph.Node, d []float64, out bool) error {
	wt, _ := g.Const(n.Inputs[1])
	w, err := wt.Float32()
	if err != nil {
		return fmt.Errorf("node %q: weight: %w", n.Name, err)
	}
	oc, icg := int(wt.Dims[0]), int(wt.Dims[1])
	k := len(w) / (oc * icg)
	group := int(n.AttrInt("group", 1))
	if out {
		if len(d) != oc {
			return fmt.Errorf("node %q: %d output channels, %d scales", n.Name, oc, len(d))
		}
		for o := 0; o < oc; o++ {
			row := w[o*icg*k : (o+1)*icg*k]
			for i := range row {
				row[i] = float32(float64(row[i]) * d[o])
			}
		}
		if b := input(n, 2); b != "" {
			bt, _ := g.Const(b)
			bv, err := bt.Float32()
			if err != nil {
				return fmt.Errorf("node %q: bias: %w", n.Name, err)
			}
			for o := range bv {
				bv[o] = float32(float64(bv[o]) * d[o])
			}
			name := g.UniqueName(n.Name + ".eq_bias")
			g.SetInitializer(graph.NewFloat32(name, bt.Dims, bv))
			n.Inputs[2] = name
		}
	} else {
		if len(d) != icg*group {
			return fmt.Errorf("node %q: %d input channels, %d scales", n.Name, icg*group, len(d))
		}
		opg := oc / group
		for o := 0; o < oc; o++ {
			gi := o / opg
			for ci := 0; ci < icg; ci++ {
				f := 1 / d[gi*icg+ci]
				seg := w[(o*icg+ci)*k : (o*icg+ci+1)*k]
				for i := range seg {
					seg[i] = float32(float64(seg[i]) * f)
				}
			}
		}
	}
	name := g.UniqueName(n.Name + ".eq_weight")
	g.SetInitializer(graph.NewFloat32(name, wt.Dims, w))
	n.Inputs[1] = name
	g.Invalidate()
	return nil
}
