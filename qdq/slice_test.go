package qdq

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// randomSlice returns n samples of a Gaussian with a few large outliers,
// NaN and ±Inf included.
func randomSlice(r *rand.Rand, n int, sigma float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sigma)
		if r.IntN(100) == 0 {
			x[i] *= 50
		}
	}
	if n > 3 {
		x[0], x[1], x[2] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
	}
	return x
}

type code8 int8 // a named container type

func TestQuantizeSliceMatchesScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	src := randomSlice(r, 1000, 3)
	u8 := Asymmetric(-4, 9, 8)
	s8 := Symmetric(6, 8, true)
	u4 := Asymmetric(-1, 3, 4)
	s16 := Symmetric(6, 16, false)
	u16 := Asymmetric(-4, 9, 16)

	check := func(name string, p Params, got func(i int) int32) {
		for i, x := range src {
			require.Equal(t, p.Quantize(x), got(i), "%s element %d x=%g", name, i, x)
		}
	}
	du8 := make([]uint8, len(src))
	require.NoError(t, QuantizeUint8(du8, src, u8))
	check("uint8", u8, func(i int) int32 { return int32(du8[i]) })
	du4 := make([]uint8, len(src))
	require.NoError(t, QuantizeUint8(du4, src, u4))
	check("uint4 in uint8", u4, func(i int) int32 { return int32(du4[i]) })
	ds8 := make([]int8, len(src))
	require.NoError(t, QuantizeInt8(ds8, src, s8))
	check("int8", s8, func(i int) int32 { return int32(ds8[i]) })
	dn8 := make([]code8, len(src))
	require.NoError(t, QuantizeSlice(dn8, src, s8))
	check("named int8", s8, func(i int) int32 { return int32(dn8[i]) })
	ds16 := make([]int16, len(src))
	require.NoError(t, QuantizeSlice(ds16, src, s16))
	check("int16", s16, func(i int) int32 { return int32(ds16[i]) })
	du16 := make([]uint16, len(src))
	require.NoError(t, QuantizeSlice(du16, src, u16))
	check("uint16", u16, func(i int) int32 { return int32(du16[i]) })
	d32 := make([]int32, len(src))
	require.NoError(t, QuantizeSlice(d32, src, u16))
	check("int32", u16, func(i int) int32 { return d32[i] })

	// Dequantize and fake-quant agree with the scalar forms.
	deq := make([]float32, len(src))
	require.NoError(t, DequantizeSlice(deq, du8, u8))
	fq := make([]float32, len(src))
	require.NoError(t, FakeQuantSlice(fq, src, u8))
	for i, x := range src {
		require.Equal(t, u8.FakeQuant(x), deq[i])
		require.Equal(t, u8.FakeQuant(x), fq[i])
	}
	// In place.
	inPlace := append([]float32(nil), src...)
	require.NoError(t, FakeQuantSlice(inPlace, inPlace, u8))
	assert.Equal(t, fq, inPlace)
}

func TestQuantizeSliceErrors(t *testing.T) {
	src := []float32{1, 2, 3}
	assert.ErrorContains(t, QuantizeInt8(make([]int8, 3), src, Asymmetric(0, 1, 8)), "does not fit")
	assert.ErrorContains(t, QuantizeUint8(make([]uint8, 3), src, Symmetric(1, 8, true)), "does not fit")
	assert.ErrorContains(t, QuantizeSlice(make([]int8, 3), src, Symmetric(1, 16, true)), "does not fit")
	assert.ErrorContains(t, QuantizeUint8(make([]uint8, 2), src, Asymmetric(0, 1, 8)), "2 elements")
	assert.Error(t, FakeQuantSlice(make([]float32, 4), src, Asymmetric(0, 1, 8)))
	assert.Error(t, DequantizeSlice(make([]float32, 4), []uint8{1, 2, 3}, Asymmetric(0, 1, 8)))
	assert.NoError(t, QuantizeInt8(nil, nil, Symmetric(1, 8, true)))
}

func TestPerChannel(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const outCh, block = 4, 18
	w := randomSlice(r, outCh*block, 0.1)
	w[0], w[1], w[2] = 0.3, -0.2, 0.01
	ps := []Params{Symmetric(0.3, 8, true), Symmetric(0.2, 8, true), Symmetric(0.1, 4, true), Symmetric(1, 8, true)}
	q := make([]int8, len(w))
	require.NoError(t, QuantizePerChannel(q, w, ps))
	fq := make([]float32, len(w))
	require.NoError(t, FakeQuantPerChannel(fq, w, ps))
	for i, x := range w {
		p := ps[i/block]
		require.Equal(t, p.Quantize(x), int32(q[i]), "element %d", i)
		require.Equal(t, p.FakeQuant(x), fq[i], "element %d", i)
	}
	assert.Error(t, QuantizePerChannel(q, w[:len(w)-1], ps))
	assert.Error(t, QuantizePerChannel(q[:5], w[:5], ps), "5 elements do not split in 4 channels")
	assert.Error(t, FakeQuantPerChannel(fq, w, nil))
	assert.ErrorContains(t, QuantizePerChannel(make([]int8, 4), []float32{1, 2, 3, 4}, []Params{Asymmetric(0, 1, 8)}), "channel 0")
}

func TestSliceLoopsDoNotAllocate(t *testing.T) {
	src := randomSlice(rand.New(rand.NewPCG(1, 1)), 4096, 1)
	u8 := make([]uint8, len(src))
	fq := make([]float32, len(src))
	ps := []Params{Asymmetric(-1, 1, 8), Asymmetric(-2, 2, 8)}
	allocs := testing.AllocsPerRun(10, func() {
		_ = QuantizeUint8(u8, src, ps[0])
		_ = FakeQuantSlice(fq, src, ps[0])
		_ = FakeQuantPerChannel(fq, src, ps)
		_ = QuantizePerChannel(u8, src, ps)
	})
	assert.Zero(t, allocs)
}

func BenchmarkQuantizeUint8(b *testing.B) {
	src := randomSlice(rand.New(rand.NewPCG(1, 1)), 1<<16, 1)
	dst := make([]uint8, len(src))
	p := Asymmetric(-3, 3, 8)
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		_ = QuantizeUint8(dst, src, p)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(src)), "ns/element")
}

func BenchmarkFakeQuantSlice(b *testing.B) {
	src := randomSlice(rand.New(rand.NewPCG(1, 1)), 1<<16, 1)
	dst := make([]float32, len(src))
	p := Asymmetric(-3, 3, 8)
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		_ = FakeQuantSlice(dst, src, p)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(src)), "ns/element")
}
