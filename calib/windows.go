package calib

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/srquant/srq/graph"
)

// This file cuts the windows layer-wise reconstruction works on (recon.go):
// the im2col windows of one Conv's input, at output positions drawn from
// the calibration patches, by the Conv's own geometry.

// ConvGeom is what the window of a 2-D Conv needs: input channels (all
// groups), groups, kernel, padding, strides and dilations. Pads are
// explicit (top, left, bottom, right) unless AutoPad is SAME_UPPER or
// SAME_LOWER, whose pads depend on the input's size.
type ConvGeom struct {
	C, Groups              int
	KH, KW                 int
	PadT, PadL, PadB, PadR int
	AutoPad                string
	StrideH, StrideW       int
	DilH, DilW             int
}

// ConvGeomOf reads the geometry of a 2-D Conv node n with a constant OIHW
// weight of dims w (w[1] is the input channels of one group). It says why
// when reconstruction cannot model the Conv (not 2-D, attributes that do
// not match the weight or the ONNX rules); the tuner then leaves it alone.
func ConvGeomOf(n *graph.Node, w []int64) (ConvGeom, error) {
	if len(w) != 4 {
		return ConvGeom{}, fmt.Errorf("a %d-D weight %v: only 2-D Convs (OIHW weights) are modelled", len(w), w)
	}
	for _, d := range w {
		if d <= 0 {
			return ConvGeom{}, fmt.Errorf("weight dims %v: not all positive", w)
		}
	}
	groups := n.AttrInt("group", 1)
	if groups <= 0 || w[0]%groups != 0 {
		return ConvGeom{}, fmt.Errorf("group %d does not divide the %d output channels", groups, w[0])
	}
	g := ConvGeom{C: int(w[1] * groups), Groups: int(groups), KH: int(w[2]), KW: int(w[3]), StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}
	if k := n.AttrInts("kernel_shape"); len(k) != 0 && !slices.Equal(k, w[2:]) {
		return ConvGeom{}, fmt.Errorf("kernel_shape %v does not match the weight's %v", k, w[2:])
	}
	switch a := n.AttrString("auto_pad", "NOTSET"); a {
	case "NOTSET", "VALID":
		if p := n.AttrInts("pads"); len(p) == 4 && a == "NOTSET" {
			g.PadT, g.PadL, g.PadB, g.PadR = int(p[0]), int(p[1]), int(p[2]), int(p[3])
		} else if len(p) != 0 && a == "NOTSET" {
			return ConvGeom{}, fmt.Errorf("pads %v: want 4 values", p)
		}
	case "SAME_UPPER", "SAME_LOWER":
		g.AutoPad = a
	default:
		return ConvGeom{}, fmt.Errorf("auto_pad %q: not an ONNX value", a)
	}
	if min(g.PadT, g.PadL, g.PadB, g.PadR) < 0 {
		return ConvGeom{}, fmt.Errorf("negative pads %d %d %d %d", g.PadT, g.PadL, g.PadB, g.PadR)
	}
	if s := n.AttrInts("strides"); len(s) == 2 {
		g.StrideH, g.StrideW = int(s[0]), int(s[1])
	} else if len(s) != 0 {
		return ConvGeom{}, fmt.Errorf("strides %v: want 2 values", s)
	}
	if d := n.AttrInts("dilations"); len(d) == 2 {
		g.DilH, g.DilW = int(d[0]), int(d[1])
	} else if len(d) != 0 {
		return ConvGeom{}, fmt.Errorf("dilations %v: want 2 values", d)
	}
	if min(g.StrideH, g.StrideW, g.DilH, g.DilW) <= 0 {
		return ConvGeom{}, fmt.Errorf("strides %d×%d, dilations %d×%d: want positive values", g.StrideH, g.StrideW, g.DilH, g.DilW)
	}
	return g, nil
}

// D is the window length C·KH·KW (all groups).
func (g ConvGeom) D() int { return g.C * g.KH * g.KW }

// reach is the extent k·d − d + 1 of a kernel of k taps dilated by d.
func reach(k, d int) int { return d*(k-1) + 1 }

// outSize returns the output length along one axis of input length n and
// the padding before it: explicit pads, or the SAME_UPPER/SAME_LOWER rule
// (output ⌈n/s⌉, total padding split evenly, the odd one after for UPPER
// and before for LOWER). out is 0 when the kernel does not fit.
func (g ConvGeom) outSize(n, k, s, d, before, after int) (out, pad int) {
	if g.AutoPad != "" {
		out = (n + s - 1) / s
		total := max(0, (out-1)*s+reach(k, d)-n)
		pad = total / 2
		if g.AutoPad == "SAME_LOWER" {
			pad = total - total/2
		}
		return out, pad
	}
	num := n + before + after - reach(k, d)
	if num < 0 {
		return 0, before
	}
	return num/s + 1, before
}

// windowSampler draws positions and cuts windows out of captured tensors.
type windowSampler struct {
	value string
	geom  ConvGeom
	per   int // windows per patch
	rng   *rand.Rand
	out   *Windows
	why   string // why a batch gave no windows
}

// add cuts per windows out of each patch of the NCHW batch x (dims
// [N, C, H, W]) at output positions drawn uniformly, zero outside the
// image (the Conv's zero padding), stepping by the strides and dilations.
func (s *windowSampler) add(x []float32, dims []int64) {
	g := s.geom
	if len(dims) != 4 || int(dims[1]) != g.C {
		s.why = fmt.Sprintf("its input %q has shape %v, the Conv reads %d channels", s.value, dims, g.C)
		return
	}
	n, c, h, w := int(dims[0]), int(dims[1]), int(dims[2]), int(dims[3])
	oh, padT := g.outSize(h, g.KH, g.StrideH, g.DilH, g.PadT, g.PadB)
	ow, padL := g.outSize(w, g.KW, g.StrideW, g.DilW, g.PadL, g.PadR)
	if oh <= 0 || ow <= 0 {
		s.why = fmt.Sprintf("its %dx%d input is smaller than the kernel's reach", w, h)
		return
	}
	if len(x) < n*c*h*w {
		s.why = fmt.Sprintf("its input %q holds %d values, its shape %v says %d", s.value, len(x), dims, n*c*h*w)
		return
	}
	d := g.D()
	for i := range n {
		img := x[i*c*h*w : (i+1)*c*h*w]
		for range s.per {
			oy, ox := s.rng.IntN(oh), s.rng.IntN(ow)
			row := make([]float32, d)
			k := 0
			for ch := range c {
				plane := img[ch*h*w : (ch+1)*h*w]
				for ky := range g.KH {
					y := oy*g.StrideH - padT + ky*g.DilH
					for kx := range g.KW {
						xx := ox*g.StrideW - padL + kx*g.DilW
						if y >= 0 && y < h && xx >= 0 && xx < w {
							row[k] = plane[y*w+xx]
						}
						k++
					}
				}
			}
			s.out.X = append(s.out.X, row...)
			s.out.K++
		}
	}
}

// WindowSpec asks for the windows of one Conv: the value it reads and its
// geometry.
type WindowSpec struct {
	Value string
	Geom  ConvGeom
}

// SampleWindows runs the float graph g on the patches and samples, for
// each Conv of specs (keyed by the caller, e.g. by node name), perPatch
// windows from every patch. Windows are per Conv, not per value: Convs
// that read one value with different kernels, strides or groups (ESA's
// strided 3x3 beside its 1x1, a 1x1 distillation beside a 3x3) each get
// windows of their own geometry. Positions are drawn from a PCG seeded
// with seed and the value's name: the same inputs give the same windows,
// and Convs of one value and one output size see the same positions.
//
// A Conv whose input gave no windows (its shape does not match the
// geometry, or is smaller than the kernel) is absent from ws and present
// in missing with the reason. It stops with ctx's error when ctx ends.
func SampleWindows(ctx context.Context, g *graph.Graph, specs map[string]WindowSpec, patches [][]float32, shape [3]int, perPatch int, seed int64, o CaptureOptions) (ws map[string]*Windows, missing map[string]string, err error) {
	samplers := map[string]*windowSampler{}
	byValue := map[string][]*windowSampler{}
	var values []string
	for _, key := range slices.Sorted(maps.Keys(specs)) {
		sp := specs[key]
		var h uint64
		for _, c := range sp.Value {
			h = h*131 + uint64(c)
		}
		s := &windowSampler{value: sp.Value, geom: sp.Geom, per: perPatch, rng: rand.New(rand.NewPCG(uint64(seed), h)),
			out: &Windows{D: sp.Geom.D()}}
		samplers[key] = s
		if len(byValue[sp.Value]) == 0 {
			values = append(values, sp.Value)
		}
		byValue[sp.Value] = append(byValue[sp.Value], s)
	}
	err = capture(ctx, g, values, patches, shape, o, func(v string, dims []int64, data []float32) {
		for _, s := range byValue[v] {
			s.add(data, dims)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	ws, missing = make(map[string]*Windows, len(samplers)), map[string]string{}
	for key, s := range samplers {
		if s.out.K == 0 {
			why := s.why
			if why == "" {
				why = fmt.Sprintf("no windows of %q", s.value)
			}
			missing[key] = why
			continue
		}
		ws[key] = s.out
	}
	return ws, missing, nil
}
