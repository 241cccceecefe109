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

func outErr(w, wq []float32, out int, x *Windows) float64 {
	var s float64
	for k := range x.K {
		row := x.Row(k)
		for o := range out {
			var a float64
			for j, v := range row {
				a += float64(w[o*x.D+j]-wq[o*x.D+j]) * float64(v)
			}
			s += a * a
		}
	}
	return s
}

func TestOutputError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randWindows(r, 300, 18, 0.3)
	w := make([]float32, 4*18)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	zero := make([]float32, len(w))
	assert.InEpsilon(t, outErr(w, zero, 4, x), OutputError(w, 4, x), 1e-5)
}

func TestGPTQ(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	const out, d = 8, 36
	w := make([]float32, out*d)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.1)
	}
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
	g, err := GPTQ(w, out, ps, eye, 0.01)
	require.NoError(t, err)
	assert.Equal(t, rtn, g)

	// Correlated inputs: the output error falls well below rounding's, and
	// every weight stays on its channel's grid.
	x := randWindows(r, 2000, d, 0.7)
	g, err = GPTQ(w, out, ps, x, 0.01)
	require.NoError(t, err)
	eg, er := outErr(w, g, out, x), outErr(w, rtn, out, x)
	t.Logf("output error: GPTQ %.4g, round-to-nearest %.4g", eg, er)
	assert.Less(t, eg, er/2)
	for o := range out {
		for j := range d {
			v := g[o*d+j]
			assert.Equal(t, v, ps[o].FakeQuant(v), "on the grid")
		}
	}
	_, err = GPTQ(w[:10], out, ps, x, 0.01)
	assert.ErrorContains(t, err, "weights")
}

func TestWindowSampler(t *testing.T) {
	// One 2-channel 4x5 image; 3x3 windows with padding 1.
	c, h, w := 2, 4, 5
	x := make([]float32, c*h*w)
	for i := range x {
		x[i] = float32(i + 1)
	}
	geom := ConvGeom{C: c, KH: 3, KW: 3, PadT: 1, PadL: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}
	s := &windowSampler{geom: geom, per: 50, rng: rand.New(rand.NewPCG(3, 3)), out: &Windows{D: geom.D()}}
	s.add(x, []int64{1, int64(c), int64(h), int64(w)})
	require.Equal(t, 50, s.out.K)
	// Every window is the 3x3 neighbourhood of some position, zero outside.
	for k := range s.out.K {
		row := s.out.Row(k)
		found := false
		for oy := range h {
			for ox := range w {
				ok := true
				for ch := range c {
					for ky := range 3 {
						for kx := range 3 {
							y, xx := oy-1+ky, ox-1+kx
							want := float32(0)
							if y >= 0 && y < h && xx >= 0 && xx < w {
								want = x[(ch*h+y)*w+xx]
							}
							if row[(ch*3+ky)*3+kx] != want {
								ok = false
							}
						}
					}
				}
				found = found || ok
			}
		}
		require.True(t, found, "window %d: %v", k, row)
	}
}

func TestMeanOutputShift(t *testing.T) {
	x := &Windows{K: 2, D: 2, X: []float32{1, 2, 3, 4}}
	xq := &Windows{K: 2, D: 2, X: []float32{1, 2, 3, 3}}
	w := []float32{1, 1}
	wq := []float32{1, 0.5}
	// Window 1: 3 − 2 = 1; window 2: 7 − 4.5 = 2.5; mean 1.75.
	assert.InDelta(t, 1.75, MeanOutputShift(w, wq, 1, x, xq)[0], 1e-9)
	assert.False(t, math.IsNaN(MeanOutputShift(w, wq, 1, &Windows{D: 2}, &Windows{D: 2})[0]))
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
		if _, err := GPTQ(w, out, ps, x, 0.01); err != nil {
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
