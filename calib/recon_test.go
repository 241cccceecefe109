package calib

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/qdq"
)

func randWindows(r *rand.Rand, k, d int, corr float64) *Windows {
	w := &Windows{K: k, D: d, X: make([]float32, k*d)}
	for i := range k {
		base := r.NormFloat64()
		for j := range d {
			w.X[i*d+j] = float32(corr*base + (1-corr)*r.NormFloat64())
		}
	}
	return w
}

// outErr is Σ_k Σ_o ((W_o − Ŵ_o)·x_k)² computed directly from the grouped
// layout: row o of a G-group Conv reads columns [g·D/G, (g+1)·D/G) with
// g = o/(out/G). The reference for OutputError, ReconError and GPTQ.
func outErr(w, wq []float32, out, groups int, x *Windows) float64 {
	dg := x.D / groups
	var s float64
	for k := range x.K {
		row := x.Row(k)
		for o := range out {
			g := o / (out / groups)
			var a float64
			for j := range dg {
				a += float64(w[o*dg+j]-wq[o*dg+j]) * float64(row[g*dg+j])
			}
			s += a * a
		}
	}
	return s
}

func randWeights(r *rand.Rand, n int, scale float64) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64() * scale)
	}
	return w
}

func TestOutputError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct {
		name           string
		out, groups, d int
	}{
		{"dense 3x3", 4, 1, 18},
		{"grouped", 8, 4, 36},
		{"depthwise 3x3", 6, 6, 54},
		{"1x1 50→25", 25, 1, 50},
		{"1x1 25→50", 50, 1, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := randWindows(r, 300, tc.d, 0.3)
			w := randWeights(r, tc.out*tc.d/tc.groups, 1)
			got, err := OutputError(ConvWeights{W: w, Out: tc.out, Groups: tc.groups}, x)
			require.NoError(t, err)
			assert.InEpsilon(t, outErr(w, make([]float32, len(w)), tc.out, tc.groups, x), got, 1e-5)
		})
	}
}

// TestReconMismatch: weights that do not fit the windows are an error, not
// a panic (a 1x1 50→25 Conv handed a 3x3 sibling's windows of 450 values
// once read past its 1250 weights in OutputError).
func TestReconMismatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randWindows(r, 10, 450, 0)
	for _, w := range []ConvWeights{
		{W: randWeights(r, 1250, 1), Out: 25, Groups: 1},
		{W: randWeights(r, 2304, 1), Out: 16, Groups: 1},
		{W: randWeights(r, 450, 1), Out: 3, Groups: 2},
		{W: randWeights(r, 450, 1), Out: 0, Groups: 1},
	} {
		_, err := OutputError(w, x)
		assert.ErrorContains(t, err, "do not fit windows of 450 values")
		_, err = ReconError(w, w.W, x, x)
		assert.ErrorContains(t, err, "do not fit windows of 450 values")
		_, err = MeanOutputShift(w, w.W, x, x)
		assert.ErrorContains(t, err, "do not fit windows of 450 values")
		_, err = GPTQ(w, []qdq.Params{qdq.Symmetric(1, 4, true)}, x, 0.01)
		assert.ErrorContains(t, err, "calib: gptq:")
	}
	w := ConvWeights{W: randWeights(r, 50*450, 1), Out: 50, Groups: 1}
	_, err := ReconError(w, w.W[:10], x, x)
	assert.ErrorContains(t, err, "quantized weights")
}

func TestGPTQ(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	const out, d = 8, 36
	w := randWeights(r, out*d, 0.1)
	cw := ConvWeights{W: w, Out: out, Groups: 1}
	ps, err := qdq.WeightParams(w, out, 4, true, qdq.MSE)
	require.NoError(t, err)
	rtn := make([]float32, len(w))
	require.NoError(t, qdq.FakeQuantPerChannel(rtn, w, ps))

	// Uncorrelated unit inputs: H is (close to) a multiple of I, and GPTQ
	// is round-to-nearest.
	eye := &Windows{K: d, D: d, X: make([]float32, d*d)}
	for j := range d {
		eye.X[j*d+j] = 1
	}
	g, err := GPTQ(cw, ps, eye, 0.01)
	require.NoError(t, err)
	assert.Equal(t, rtn, g)

	// Correlated inputs: the output error falls well below rounding's, and
	// every weight stays on its channel's grid.
	x := randWindows(r, 2000, d, 0.7)
	g, err = GPTQ(cw, ps, x, 0.01)
	require.NoError(t, err)
	eg, er := outErr(w, g, out, 1, x), outErr(w, rtn, out, 1, x)
	t.Logf("output error: GPTQ %.4g, round-to-nearest %.4g", eg, er)
	assert.Less(t, eg, er/2)
	for o := range out {
		for j := range d {
			v := g[o*d+j]
			assert.Equal(t, v, ps[o].FakeQuant(v), "on the grid")
		}
	}
	_, err = GPTQ(ConvWeights{W: w[:10], Out: out, Groups: 1}, ps, x, 0.01)
	assert.ErrorContains(t, err, "weights")
}

// TestGPTQGrouped: a grouped Conv is G independent problems. GPTQ on the
// grouped layout equals GPTQ of each group alone on its own columns, beats
// rounding, and a column that is always zero (a dead channel of a
// depthwise Conv) leaves its group at round-to-nearest instead of failing.
func TestGPTQGrouped(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	for _, tc := range []struct {
		name           string
		out, groups, d int
	}{
		{"group 4, 3x3 16→8", 8, 4, 16 * 9},
		{"depthwise 3x3, 12 channels", 12, 12, 12 * 9},
		{"depthwise x2 multiplier", 12, 6, 6 * 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dg, per := tc.d/tc.groups, tc.out/tc.groups
			w := randWeights(r, tc.out*dg, 0.1)
			ps, err := qdq.WeightParams(w, tc.out, 4, true, qdq.MSE)
			require.NoError(t, err)
			x := randWindows(r, 1500, tc.d, 0.7)
			for k := range x.K { // the first group's first column is dead
				x.X[k*x.D] = 0
			}
			g, err := GPTQ(ConvWeights{W: w, Out: tc.out, Groups: tc.groups}, ps, x, 0.01)
			require.NoError(t, err)
			for gi := range tc.groups {
				alone, err := GPTQ(ConvWeights{W: w[gi*per*dg : (gi+1)*per*dg], Out: per, Groups: 1}, ps[gi*per:(gi+1)*per], x.columns(gi*dg, dg), 0.01)
				require.NoError(t, err)
				assert.Equal(t, alone, g[gi*per*dg:(gi+1)*per*dg], "group %d", gi)
			}
			rtn := make([]float32, len(w))
			require.NoError(t, qdq.FakeQuantPerChannel(rtn, w, ps))
			eg, er := outErr(w, g, tc.out, tc.groups, x), outErr(w, rtn, tc.out, tc.groups, x)
			t.Logf("output error: GPTQ %.4g, round-to-nearest %.4g", eg, er)
			assert.Less(t, eg, er)
			got, err := ReconError(ConvWeights{W: w, Out: tc.out, Groups: tc.groups}, g, x, x)
			require.NoError(t, err)
			assert.InEpsilon(t, eg, got, 1e-4)
		})
	}
}

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

func TestMeanOutputShift(t *testing.T) {
	x := &Windows{K: 2, D: 2, X: []float32{1, 2, 3, 4}}
	xq := &Windows{K: 2, D: 2, X: []float32{1, 2, 3, 3}}
	w := ConvWeights{W: []float32{1, 1}, Out: 1, Groups: 1}
	wq := []float32{1, 0.5}
	// Window 1: 3 − 2 = 1; window 2: 7 − 4.5 = 2.5; mean 1.75.
	s, err := MeanOutputShift(w, wq, x, xq)
	require.NoError(t, err)
	assert.InDelta(t, 1.75, s[0], 1e-9)
	s, err = MeanOutputShift(w, wq, &Windows{D: 2}, &Windows{D: 2})
	require.NoError(t, err)
	assert.False(t, math.IsNaN(s[0]))
	// Depthwise, 2 channels of 1x1: each output reads its own column.
	dw := ConvWeights{W: []float32{2, 3}, Out: 2, Groups: 2}
	s, err = MeanOutputShift(dw, []float32{1, 3}, x, xq)
	require.NoError(t, err)
	assert.InDelta(t, (1+3)/2.0, s[0], 1e-9, "channel 0: (2−1)·x₀")
	assert.InDelta(t, (0+3)/2.0, s[1], 1e-9, "channel 1: 3·(x₁ − x̂₁)")
}

// BenchmarkGPTQ is one 3x3 64→64 Conv layer: 2048 windows of 576 values.
func BenchmarkGPTQ(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 5))
	const out, d = 64, 576
	w := make([]float32, out*d)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.05)
	}
	ps, err := qdq.WeightParams(w, out, 4, true, qdq.MSE)
	require.NoError(b, err)
	x := randWindows(r, 2048, d, 0.5)
	b.ResetTimer()
	for range b.N {
		if _, err := GPTQ(ConvWeights{W: w, Out: out, Groups: 1}, ps, x, 0.01); err != nil {
			b.Fatal(err)
		}
	}
}

// TestInputErrors: q(x) and x − q(x) per value, the same whether the
// windows are few (one worker) or many (spread over the cores).
func TestInputErrors(t *testing.T) {
	q, err := qdq.NewDual(qdq.DualSpec{Lo: -3, Hi: 4, BP: 1, Bits: 4, Accounting: qdq.Reference})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(5, 6))
	for _, k := range []int{3, 1000} {
		x := randWindows(r, k, 27, 0.3)
		qx, e := Quantized(x, q), InputErrors(x, q)
		require.Equal(t, [2]int{k, 27}, [2]int{qx.K, qx.D})
		require.Equal(t, [2]int{k, 27}, [2]int{e.K, e.D})
		for i, v := range x.X {
			require.Equal(t, q.FakeQuant(v), qx.X[i], "value %d of %d windows", i, k)
			require.Equal(t, v-q.FakeQuant(v), e.X[i], "value %d of %d windows", i, k)
		}
	}
}
