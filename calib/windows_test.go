package calib

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
)

// refWindows is the im2col of every output position of a 1-image NCHW
// input by the ONNX Conv rules (explicit pads, or SAME_UPPER/SAME_LOWER:
// output ⌈n/s⌉, the odd pad after for UPPER, before for LOWER): the
// reference the sampler's windows must come from.
func refWindows(x []float32, c, h, w int, g ConvGeom) [][]float32 {
	axis := func(n, k, s, d, before, after int) (int, int) {
		if g.AutoPad != "" {
			out := (n + s - 1) / s
			total := max(0, (out-1)*s+d*(k-1)+1-n)
			if g.AutoPad == "SAME_UPPER" {
				return out, total / 2
			}
			return out, (total + 1) / 2
		}
		return int(math.Floor(float64(n+before+after-d*(k-1)-1)/float64(s))) + 1, before
	}
	oh, pt := axis(h, g.KH, g.StrideH, g.DilH, g.PadT, g.PadB)
	ow, pl := axis(w, g.KW, g.StrideW, g.DilW, g.PadL, g.PadR)
	var out [][]float32
	for oy := range max(oh, 0) {
		for ox := range max(ow, 0) {
			var row []float32
			for ch := range c {
				for ky := range g.KH {
					for kx := range g.KW {
						y, xx := oy*g.StrideH-pt+ky*g.DilH, ox*g.StrideW-pl+kx*g.DilW
						v := float32(0)
						if y >= 0 && y < h && xx >= 0 && xx < w {
							v = x[(ch*h+y)*w+xx]
						}
						row = append(row, v)
					}
				}
			}
			out = append(out, row)
		}
	}
	return out
}

// TestWindowSampler: every window is the im2col window of an output
// position under the Conv's padding, strides and dilations, and with
// enough draws every position is drawn (so the sampler's output size is
// the Conv's).
func TestWindowSampler(t *testing.T) {
	c, h, w := 2, 7, 6
	x := make([]float32, c*h*w)
	for i := range x {
		x[i] = float32(i + 1)
	}
	base := ConvGeom{C: c, Groups: 1, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}
	for _, tc := range []struct {
		name string
		edit func(g *ConvGeom)
	}{
		{"3x3 pad 1", func(g *ConvGeom) { g.PadT, g.PadL, g.PadB, g.PadR = 1, 1, 1, 1 }},
		{"3x3 stride 2 no pad", func(g *ConvGeom) { g.StrideH, g.StrideW = 2, 2 }},
		{"3x3 stride 2 pad 1", func(g *ConvGeom) { g.StrideH, g.StrideW, g.PadT, g.PadL, g.PadB, g.PadR = 2, 2, 1, 1, 1, 1 }},
		{"3x3 stride 2 pads 0,0,1,1", func(g *ConvGeom) { g.StrideH, g.StrideW, g.PadB, g.PadR = 2, 2, 1, 1 }},
		{"3x3 dilation 2 pad 2", func(g *ConvGeom) { g.DilH, g.DilW, g.PadT, g.PadL, g.PadB, g.PadR = 2, 2, 2, 2, 2, 2 }},
		{"1x1", func(g *ConvGeom) { g.KH, g.KW = 1, 1 }},
		{"1x3 stride 1x2", func(g *ConvGeom) { g.KH, g.StrideW, g.PadL, g.PadR = 1, 2, 1, 1 }},
		{"SAME_UPPER stride 2", func(g *ConvGeom) { g.AutoPad, g.StrideH, g.StrideW = "SAME_UPPER", 2, 2 }},
		{"SAME_LOWER stride 2", func(g *ConvGeom) { g.AutoPad, g.StrideH, g.StrideW = "SAME_LOWER", 2, 2 }},
		{"grouped 3x3 pad 1", func(g *ConvGeom) { g.Groups, g.PadT, g.PadL, g.PadB, g.PadR = 2, 1, 1, 1, 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			geom := base
			tc.edit(&geom)
			ref := refWindows(x, c, h, w, geom)
			require.NotEmpty(t, ref)
			s := &windowSampler{geom: geom, per: 40 * len(ref), rng: rand.New(rand.NewPCG(3, 3)), out: &Windows{D: geom.D()}}
			s.add(x, []int64{1, int64(c), int64(h), int64(w)})
			require.Equal(t, 40*len(ref), s.out.K)
			hit := make([]bool, len(ref))
			for k := range s.out.K {
				i := slices.IndexFunc(ref, func(r []float32) bool { return slices.Equal(r, s.out.Row(k)) })
				require.GreaterOrEqual(t, i, 0, "window %d is no output position's: %v", k, s.out.Row(k))
				hit[i] = true
			}
			assert.NotContains(t, hit, false, "every one of the %d output positions drawn", len(ref))
		})
	}
	t.Run("too small or wrong channels", func(t *testing.T) {
		geom := base
		geom.KH, geom.KW = 9, 9
		s := &windowSampler{value: "v", geom: geom, per: 3, rng: rand.New(rand.NewPCG(3, 3)), out: &Windows{D: geom.D()}}
		s.add(x, []int64{1, int64(c), int64(h), int64(w)})
		assert.Zero(t, s.out.K)
		assert.Contains(t, s.why, "smaller than the kernel")
		s = &windowSampler{value: "v", geom: base, per: 3, rng: rand.New(rand.NewPCG(3, 3)), out: &Windows{D: base.D()}}
		s.add(x, []int64{1, 3, int64(h), int64(w) * 2 / 3})
		assert.Zero(t, s.out.K)
		assert.Contains(t, s.why, "reads 2 channels")
	})
}

func TestConvGeomOf(t *testing.T) {
	conv := func(attrs ...func(n *graph.Node)) *graph.Node {
		n := &graph.Node{Name: "c", OpType: "Conv"}
		for _, a := range attrs {
			a(n)
		}
		return n
	}
	ints := func(name string, v ...int64) func(n *graph.Node) {
		return func(n *graph.Node) { n.SetAttrInts(name, v) }
	}
	one := func(name string, v int64) func(n *graph.Node) { return func(n *graph.Node) { n.SetAttrInt(name, v) } }
	str := func(name, v string) func(n *graph.Node) { return func(n *graph.Node) { n.SetAttrString(name, v) } }
	for _, tc := range []struct {
		name string
		n    *graph.Node
		w    []int64
		want ConvGeom
		err  string
	}{
		{"3x3 pad 1", conv(ints("pads", 1, 1, 1, 1)), []int64{16, 16, 3, 3},
			ConvGeom{C: 16, Groups: 1, KH: 3, KW: 3, PadT: 1, PadL: 1, PadB: 1, PadR: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}, ""},
		{"strided, asymmetric pads", conv(ints("strides", 2, 2), ints("pads", 0, 0, 1, 1)), []int64{16, 16, 3, 3},
			ConvGeom{C: 16, Groups: 1, KH: 3, KW: 3, PadB: 1, PadR: 1, StrideH: 2, StrideW: 2, DilH: 1, DilW: 1}, ""},
		{"group 4", conv(one("group", 4), ints("kernel_shape", 3, 3)), []int64{64, 16, 3, 3},
			ConvGeom{C: 64, Groups: 4, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}, ""},
		{"depthwise, dilated", conv(one("group", 48), ints("dilations", 2, 2)), []int64{48, 1, 3, 3},
			ConvGeom{C: 48, Groups: 48, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 2, DilW: 2}, ""},
		{"SAME_UPPER", conv(str("auto_pad", "SAME_UPPER")), []int64{8, 8, 3, 3},
			ConvGeom{C: 8, Groups: 1, KH: 3, KW: 3, AutoPad: "SAME_UPPER", StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}, ""},
		{"VALID ignores pads", conv(str("auto_pad", "VALID")), []int64{8, 8, 3, 3},
			ConvGeom{C: 8, Groups: 1, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}, ""},
		{"1-D", conv(), []int64{8, 8, 3}, ConvGeom{}, "only 2-D Convs"},
		{"group does not divide", conv(one("group", 3)), []int64{8, 8, 3, 3}, ConvGeom{}, "group 3 does not divide"},
		{"kernel_shape disagrees", conv(ints("kernel_shape", 5, 5)), []int64{8, 8, 3, 3}, ConvGeom{}, "kernel_shape"},
		{"bad pads", conv(ints("pads", 1, 1)), []int64{8, 8, 3, 3}, ConvGeom{}, "pads"},
		{"zero stride", conv(ints("strides", 0, 1)), []int64{8, 8, 3, 3}, ConvGeom{}, "want positive"},
		{"unknown auto_pad", conv(str("auto_pad", "SAME")), []int64{8, 8, 3, 3}, ConvGeom{}, "auto_pad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := ConvGeomOf(tc.n, tc.w)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, g)
		})
	}
}
