package passes

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
)

// Rotate changes the channel basis of each linear space (LinearSpaces: the
// residual stream of EDSR, RCAN...) by the normalised Hadamard matrix H
// (n×n, entries ±1/√n, n a power of two; H = Hᵀ = H⁻¹): every member x
// becomes H·x. A few outlier channels, which force a per-tensor quantizer
// to spread its levels thin, are spread over all n channels, so the
// rotated stream has a narrower, more even range (QuaRot does this for
// language models, CompSRT for SR transformers). It is exact:
//
//   - a Conv writing the space gets weights H·W (over output channels) and
//     bias H·b, so it writes H·x;
//   - a Conv reading it gets weights W·H (over input channels): W·H·(H·x) =
//     W·x; zero padding stays zero;
//   - Adds and Subs of two members add rotated values.
//
// Spaces whose size is not a power of two, or that a grouped Conv writes or
// reads (it cannot absorb a dense change of basis), are left alone. It
// returns through Rotated how many spaces it turned.
type Rotate struct {
	Spaces  []ChannelSpace
	Rotated *int
}

func (Rotate) Name() string { return "rotate" }
func (Rotate) Doc() string {
	return "turn residual-stream channel spaces by a Hadamard matrix, folded into the Convs that write and read them"
}

func (p Rotate) Run(g *graph.Graph) error {
	n := 0
	for _, s := range p.Spaces {
		c := s.Channels
		if c < 2 || bits.OnesCount(uint(c)) != 1 || !ungrouped(s) {
			continue
		}
		h := hadamard(c)
		for _, conv := range s.Producers {
			if err := rotateConv(g, conv, h, c, true); err != nil {
				return fmt.Errorf("node %q: %w", conv.Name, err)
			}
		}
		for _, conv := range s.Consumers {
			if err := rotateConv(g, conv, h, c, false); err != nil {
				return fmt.Errorf("node %q: %w", conv.Name, err)
			}
		}
		n++
	}
	if p.Rotated != nil {
		*p.Rotated = n
	}
	return nil
}

func ungrouped(s ChannelSpace) bool {
	for _, n := range append(append([]*graph.Node(nil), s.Producers...), s.Consumers...) {
		if n.AttrInt("group", 1) != 1 {
			return false
		}
	}
	return true
}

// hadamard returns the normalised Sylvester Hadamard matrix of order c (a
// power of two), row-major: H[i][j] = (−1)^popcount(i&j) / √c.
func hadamard(c int) []float64 {
	h := make([]float64, c*c)
	v := 1 / math.Sqrt(float64(c))
	for i := range c {
		for j := range c {
			if bits.OnesCount(uint(i&j))%2 == 0 {
				h[i*c+j] = v
			} else {
				h[i*c+j] = -v
			}
		}
	}
	return h
}

// rotateConv writes H·W and H·b (output side) or W·H (input side) as new
// initializers of conv, c being the rotated channel count.
func rotateConv(g *graph.Graph, conv *graph.Node, h []float64, c int, output bool) error {
	wt, ok := g.Const(input(conv, 1))
	if !ok || wt.DType != onnx.TensorProto_FLOAT || len(wt.Dims) < 3 {
		return fmt.Errorf("weight is not a constant float tensor")
	}
	w, err := wt.Float32()
	if err != nil {
		return err
	}
	o, i := int(wt.Dims[0]), int(wt.Dims[1])
	taps := len(w) / (o * i)
	nw := make([]float32, len(w))
	switch {
	case output && o == c:
		row := i * taps
		for a := range c {
			for b := range c {
				f := h[a*c+b]
				src, dst := w[b*row:(b+1)*row], nw[a*row:(a+1)*row]
				for k, v := range src {
					dst[k] += float32(f * float64(v))
				}
			}
		}
	case !output && i == c:
		for oc := range o {
			for a := range c { // new input channel a = Σ_b W[:, b]·H[b][a]
				dst := nw[(oc*i+a)*taps : (oc*i+a+1)*taps]
				for b := range c {
					f := h[b*c+a]
					for k, v := range w[(oc*i+b)*taps : (oc*i+b+1)*taps] {
						dst[k] += float32(f * float64(v))
					}
				}
			}
		}
	default:
		return fmt.Errorf("weight %v does not have %d %s channels", wt.Dims, c, map[bool]string{true: "output", false: "input"}[output])
	}
	name := g.UniqueName(conv.Name + ".rotated_weight")
	g.SetInitializer(graph.NewFloat32(name, wt.Dims, nw))
	g.ReplaceInput(conv, 1, name)
	if !output || input(conv, 2) == "" {
		return nil
	}
	bt, ok := g.Const(input(conv, 2))
	if !ok {
		return fmt.Errorf("bias is not a constant")
	}
	b, err := bt.Float32()
	if err != nil {
		return err
	}
	nb := make([]float32, c)
	for a := range c {
		var s float64
		for k := range c {
			s += h[a*c+k] * float64(b[k])
		}
		nb[a] = float32(s)
	}
	bn := g.UniqueName(conv.Name + ".rotated_bias")
	g.SetInitializer(graph.NewFloat32(bn, []int64{int64(c)}, nb))
	g.ReplaceInput(conv, 2, bn)
	return nil
}
