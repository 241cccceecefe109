package calib

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
