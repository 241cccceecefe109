package qdq

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// laplaceWeights returns outCh channels of block Laplacian weights whose
// spread differs per channel, like trained conv weights.
func laplaceWeights(r *rand.Rand, outCh, block int) []float32 {
	w := make([]float32, outCh*block)
	for c := range outCh {
		b := 0.01 * (1 + float64(c%7))
		for i := range block {
			u := r.Float64() - 0.5
			w[c*block+i] = float32(-b * math.Copysign(math.Log(1-2*math.Abs(u)), u))
		}
	}
	return w
}

// refSymErr is Σ (w - fq(w))² for a symmetric narrow quantizer with clip c,
// through the scalar API.
func refSymErr(w []float32, c float32, bits int) float64 {
	p := Symmetric(c, bits, true)
	var s float64
	for _, x := range w {
		d := float64(x) - float64(p.FakeQuant(x))
		s += d * d
	}
	return s
}

func TestWeightParamsMinMax(t *testing.T) {
	w := []float32{
		0.5, -1, 0.25, // channel 0: absmax 1
		0.1, 0.2, -0.05, // channel 1: absmax 0.2
		0, 0, 0, // channel 2: all zero
	}
	ps, err := WeightParams(w, 3, 8, true, MinMax)
	require.NoError(t, err)
	require.Len(t, ps, 3)
	assert.Equal(t, Symmetric(1, 8, true), ps[0])
	assert.Equal(t, Symmetric(0.2, 8, true), ps[1])
	assert.Equal(t, Params{Scale: DegenerateScale, QMin: -127, QMax: 127}, ps[2])
	pt, err := WeightParams(w, 3, 4, false, MinMax)
	require.NoError(t, err)
	assert.Equal(t, []Params{Symmetric(1, 4, true)}, pt)
}

func TestWeightParamsMSE(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const outCh, block = 8, 3 * 3 * 16
	w := laplaceWeights(r, outCh, block)
	for _, bits := range []int{2, 4, 8} {
		for _, perChannel := range []bool{true, false} {
			mse, err := WeightParams(w, outCh, bits, perChannel, MSE)
			require.NoError(t, err)
			mm, err := WeightParams(w, outCh, bits, perChannel, MinMax)
			require.NoError(t, err)
			var gainMSE, gainMM float64
			g := len(w) / len(mse)
			for k, p := range mse {
				grp := w[k*g : (k+1)*g]
				absmax := mm[k].Scale * float32(mm[k].QMax)
				clip := p.Scale * float32(p.QMax)
				require.LessOrEqual(t, clip, absmax*(1+1e-6))
				e := refSymErr(grp, clip, bits)
				gainMSE += e
				gainMM += refSymErr(grp, absmax, bits)
				// Within 1% (plus rounding noise) of a dense brute-force search.
				best := math.Inf(1)
				for i := 1; i <= 2000; i++ {
					best = min(best, refSymErr(grp, absmax*float32(i)/2000, bits))
				}
				require.LessOrEqual(t, e, best*1.01+1e-12, "bits %d group %d: clip %g", bits, k, clip)
			}
			t.Logf("bits %d per-channel %v: MSE/MinMax squared error %.3f", bits, perChannel, gainMSE/gainMM)
			require.LessOrEqual(t, gainMSE, gainMM, "bits %d: MSE never loses to MinMax", bits)
			if bits == 2 {
				require.Less(t, gainMSE, 0.6*gainMM, "a deep clip pays at 2 bits")
			}
		}
	}
}

// TestWeightParamsParallel checks that the parallel path (a large tensor)
// returns exactly what the per-group search returns.
func TestWeightParamsParallel(t *testing.T) {
	if testing.Short() {
		t.Skip("large MSE search")
	}
	r := rand.New(rand.NewPCG(13, 14))
	const outCh, block = 64, 64 * 9
	w := laplaceWeights(r, outCh, block)
	ps, err := WeightParams(w, outCh, 8, true, MSE)
	require.NoError(t, err)
	for c, p := range ps {
		require.Equal(t, weightParams(w[c*block:(c+1)*block], 8, MSE), p, "channel %d", c)
	}
}

func TestWeightParamsErrors(t *testing.T) {
	w := []float32{1, 2, 3, 4}
	for _, tc := range []struct {
		name  string
		w     []float32
		outCh int
		bits  int
		m     WeightMethod
		want  string
	}{
		{"empty", nil, 1, 8, MinMax, "do not split"},
		{"outCh does not divide", w, 3, 8, MinMax, "do not split"},
		{"zero channels", w, 0, 8, MinMax, "do not split"},
		{"bits", w, 2, 1, MinMax, "bit width"},
		{"method", w, 2, 8, WeightMethod(7), "unknown weight method"},
		{"NaN", []float32{1, float32(math.NaN()), 3, 4}, 2, 8, MSE, "weight 1 (output channel 0)"},
		{"Inf", []float32{1, 2, 3, float32(math.Inf(-1))}, 2, 8, MSE, "output channel 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := WeightParams(tc.w, tc.outCh, tc.bits, true, tc.m)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	assert.Equal(t, "mse", MSE.String())
	assert.Equal(t, "minmax", MinMax.String())
}

func TestQuantizeBias(t *testing.T) {
	q, s, err := QuantizeBias([]float32{1, -1, 0.75, 2.5}, 0.5, []float32{1, 2, 0.5, 1})
	require.NoError(t, err)
	assert.Equal(t, []float32{0.5, 1, 0.25, 0.5}, s)
	assert.Equal(t, []int32{2, -1, 3, 5}, q)

	// Ties round to even: 0.5/1 → 0, 1.5/1 → 2, -2.5/1 → -2.
	q, _, err = QuantizeBias([]float32{0.5, 1.5, -2.5}, 1, []float32{1})
	require.NoError(t, err)
	assert.Equal(t, []int32{0, 2, -2}, q)

	// The scale is the float32 product, the quotient a float32 division.
	r := rand.New(rand.NewPCG(15, 16))
	for range 10000 {
		b := float32(r.NormFloat64())
		in, ws := float32(r.Float64()*0.1+1e-4), float32(r.Float64()*1e-2+1e-5)
		q, s, err := QuantizeBias([]float32{b}, in, []float32{ws})
		require.NoError(t, err)
		require.Equal(t, in*ws, s[0])
		require.Equal(t, refQuantize(b, in*ws, 0, math.MinInt32, math.MaxInt32), q[0])
	}

	for _, tc := range []struct {
		name    string
		b       []float32
		in      float32
		ws      []float32
		wantErr string
	}{
		{"length", []float32{1, 2, 3}, 1, []float32{1, 2}, "3 bias values but 2 weight scales"},
		{"zero input scale", []float32{1}, 0, []float32{1}, "bias scale of output channel 0"},
		{"underflow", []float32{0, 1}, 1e-30, []float32{1, 1e-20}, "output channel 1"},
		{"NaN bias", []float32{float32(math.NaN())}, 1, []float32{1}, "bias of output channel 0"},
		{"overflow", []float32{1, 100}, 1e-4, []float32{1, 1e-6}, "output channel 1 (100) overflows int32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := QuantizeBias(tc.b, tc.in, tc.ws)
			assert.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestAdjustWeightScalesForBias(t *testing.T) {
	b := []float32{1, 100, -300}
	ps := []Params{Symmetric(1, 8, true), Symmetric(1e-4, 8, true), Symmetric(0.5, 8, true)}
	before := ps[0]
	n, err := AdjustWeightScalesForBias(b, 1e-4, ps)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, before, ps[0])
	scales := []float32{ps[0].Scale, ps[1].Scale, ps[2].Scale}
	q, _, err := QuantizeBias(b, 1e-4, scales)
	require.NoError(t, err)
	assert.LessOrEqual(t, math.Abs(float64(q[1])), float64(1<<30)*(1+1e-6))

	pt := []Params{Symmetric(1e-6, 8, true)}
	n, err = AdjustWeightScalesForBias(b, 1e-4, pt)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "one per-tensor scale raised once, for the largest bias")
	_, _, err = QuantizeBias(b, 1e-4, []float32{pt[0].Scale})
	require.NoError(t, err)

	_, err = AdjustWeightScalesForBias(b, 0, ps)
	assert.Error(t, err)
	_, err = AdjustWeightScalesForBias(b, 1, ps[:2])
	assert.Error(t, err)
}

func BenchmarkWeightParamsMSE(b *testing.B) {
	w := laplaceWeights(rand.New(rand.NewPCG(1, 1)), 64, 64*9)
	for b.Loop() {
		_, _ = WeightParams(w, 64, 8, true, MSE)
	}
}
