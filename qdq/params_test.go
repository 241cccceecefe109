package qdq

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refQuantize is an independent float64 reference for ONNX QuantizeLinear as
// ORT computes it: the float32 quotient (a float64 quotient rounded once to
// float32 is the correctly rounded float32 quotient, since 53 >= 2·24+2),
// round half to even written out with Floor, then saturation.
func refQuantize(x, scale float32, zp, qmin, qmax int32) int32 {
	v := float64(float32(float64(x) / float64(scale)))
	if math.IsNaN(v) {
		return qmin // ORT's SSE2/NEON kernels
	}
	if math.IsInf(v, 0) {
		if v > 0 {
			return qmax
		}
		return qmin
	}
	f := math.Floor(v)
	r := f
	switch d := v - f; {
	case d > 0.5:
		r = f + 1
	case d == 0.5 && math.Mod(f, 2) != 0:
		r = f + 1
	}
	r += float64(zp)
	return int32(math.Max(float64(qmin), math.Min(float64(qmax), r)))
}

// refDequantize computes (q - zp)·scale exactly in float64, rounded once.
func refDequantize(q int32, scale float32, zp int32) float32 {
	return float32(float64(q-zp) * float64(scale))
}

// randomParams draws a valid grid of 2..16 bits, signed or unsigned, with a
// log-uniform scale in [1e-6, 1e3] and a zero point anywhere on the grid.
func randomParams(r *rand.Rand) Params {
	bits := MinBits + r.IntN(MaxBits-MinBits+1)
	var qmin, qmax int32
	if r.IntN(2) == 0 {
		qmin, qmax = UnsignedRange(bits)
	} else {
		qmin, qmax = SignedRange(bits, r.IntN(2) == 0)
	}
	scale := float32(math.Pow(10, -6+9*r.Float64()))
	zp := qmin + int32(r.Int64N(int64(qmax-qmin)+1))
	return Params{Scale: scale, ZeroPoint: zp, QMin: qmin, QMax: qmax}
}

// randomInput draws x around the grid of p: uniform inside and past the
// range, exact ties (k+0.5)·scale, grid points and their float32
// neighbours, and huge values.
func randomInput(r *rand.Rand, p Params) float32 {
	lo, hi := float64(p.QMin-p.ZeroPoint), float64(p.QMax-p.ZeroPoint)
	k := math.Round(lo + (hi-lo)*r.Float64())
	s := float64(p.Scale)
	switch r.IntN(6) {
	case 0:
		return float32((k + 0.5) * s)
	case 1:
		return float32(k * s)
	case 2:
		x := float32((k + 0.5) * s)
		return math.Nextafter32(x, float32(math.Inf(2*r.IntN(2)-1)))
	case 3:
		return float32((lo - 3 + (hi-lo+6)*r.Float64()) * s)
	case 4:
		return float32(r.NormFloat64() * 1e30)
	}
	return float32((lo + (hi-lo)*r.Float64()) * s)
}

func TestQuantizeMatchesFloat64Reference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ties := 0
	for range 2000 {
		p := randomParams(r)
		require.NoError(t, p.Validate())
		for range 100 {
			x := randomInput(r, p)
			q := p.Quantize(x)
			require.Equal(t, refQuantize(x, p.Scale, p.ZeroPoint, p.QMin, p.QMax), q, "x=%g p=%+v", x, p)
			require.Equal(t, refDequantize(q, p.Scale, p.ZeroPoint), p.Dequantize(q), "q=%d p=%+v", q, p)
			require.Equal(t, p.Dequantize(q), p.FakeQuant(x))
			if v := x / p.Scale; v-float32(math.Floor(float64(v))) == 0.5 {
				ties++
			}
			// Inside the representable range the error is at most half a step,
			// plus the float32 roundings of the quotient and of the product.
			if lo, hi := p.Range(); x >= lo && x <= hi {
				require.LessOrEqual(t, math.Abs(float64(x)-float64(p.FakeQuant(x))), float64(p.Scale)*(0.5+1e-6)+math.Abs(float64(x))*3e-7, "x=%g p=%+v q=%d", x, p, p.Quantize(x))
			}
		}
	}
	assert.Greater(t, ties, 10000, "the generator must exercise exact ties")
}

func TestQuantizeEdgeCases(t *testing.T) {
	u8 := Params{Scale: 2, ZeroPoint: 128, QMin: 0, QMax: 255}
	s8 := Params{Scale: 0.5, ZeroPoint: 0, QMin: -127, QMax: 127}
	i32 := Params{Scale: 1, ZeroPoint: 5, QMin: math.MinInt32, QMax: math.MaxInt32}
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	negZero := float32(math.Copysign(0, -1))
	tests := []struct {
		name string
		p    Params
		x    float32
		want int32
	}{
		{"tie 0.5 to even 0", u8, 1, 128},
		{"tie 1.5 to even 2", u8, 3, 130},
		{"tie 2.5 to even 2", u8, 5, 130},
		{"tie -0.5 to even 0", u8, -1, 128},
		{"tie -1.5 to even -2", u8, -3, 126},
		{"tie -2.5 to even -2", u8, -5, 126},
		{"just above a tie", u8, math.Nextafter32(5, 6), 131},
		{"saturate high", u8, 1000, 255},
		{"saturate low", u8, -1000, 0},
		{"last code", u8, 254, 255},
		{"first code", u8, -256, 0},
		{"+Inf", u8, inf, 255},
		{"-Inf", u8, -inf, 0},
		{"NaN maps to QMin like ORT", u8, nan, 0},
		{"NaN on a narrow grid", s8, nan, -127},
		{"negative zero", u8, negZero, 128},
		{"narrow s8 saturates at -127", s8, -1000, -127},
		{"narrow s8 tie -63.5 to -64", s8, -31.75, -64},
		{"max float32", s8, math.MaxFloat32, 127},
		{"smallest subnormal", s8, math.SmallestNonzeroFloat32, 0},
		{"int32 grid with a zero point", i32, -1 << 31, -1<<31 + 5},
		{"int32 grid saturates", i32, 1 << 31, math.MaxInt32},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.p.Quantize(tc.x))
			assert.Equal(t, refQuantize(tc.x, tc.p.Scale, tc.p.ZeroPoint, tc.p.QMin, tc.p.QMax), tc.p.Quantize(tc.x))
		})
	}
	// The zero point dequantizes to +0, never -0.
	assert.False(t, math.Signbit(float64(u8.FakeQuant(negZero))))
	assert.Equal(t, float32(-256), u8.FakeQuant(nan))
}

// TestQuantizeDividesInFloat32 pins ORT's rule x/scale in float32: it finds
// inputs where the float32 quotient is an exact tie k+0.5 but the exact
// (float64) quotient or x·(1/scale) lies on one side of it, so rounding
// differs, and requires Quantize to follow the float32 quotient.
func TestQuantizeDividesInFloat32(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var viaRecip, viaExact int
	for range 200000 {
		scale := float32(math.Pow(10, -4+5*r.Float64()))
		k := float64(r.IntN(200) - 100)
		x := float32((k + 0.5) * float64(scale))
		for _, x := range []float32{x, math.Nextafter32(x, 0), math.Nextafter32(x, 1e9)} {
			q32 := x / scale
			if float64(q32)-math.Floor(float64(q32)) != 0.5 {
				continue
			}
			p := Params{Scale: scale, ZeroPoint: 0, QMin: -1000, QMax: 1000}
			want := int32(math.RoundToEven(float64(q32)))
			require.Equal(t, want, p.Quantize(x), "x=%g scale=%g", x, scale)
			if int32(math.RoundToEven(float64(x*(1/scale)))) != want {
				viaRecip++
			}
			if int32(math.RoundToEven(float64(x)/float64(scale))) != want {
				viaExact++
			}
		}
	}
	// Without such cases the test above could not tell the rules apart.
	assert.Positive(t, viaRecip, "x·(1/scale) never differed")
	assert.Positive(t, viaExact, "float64 division never differed")
	t.Logf("float32-tie cases where x*(1/s) rounds differently: %d, where float64 x/s does: %d", viaRecip, viaExact)
}

func TestRanges(t *testing.T) {
	for _, tc := range []struct {
		bits                 int
		umax, smin, smax     int32
		narrowMin, narrowMax int32
	}{
		{bits: 2, umax: 3, smin: -2, smax: 1, narrowMin: -1, narrowMax: 1},
		{bits: 4, umax: 15, smin: -8, smax: 7, narrowMin: -7, narrowMax: 7},
		{bits: 8, umax: 255, smin: -128, smax: 127, narrowMin: -127, narrowMax: 127},
		{bits: 16, umax: 65535, smin: -32768, smax: 32767, narrowMin: -32767, narrowMax: 32767},
		{bits: 1, umax: 3, smin: -2, smax: 1, narrowMin: -1, narrowMax: 1},                      // clamped up
		{bits: 40, umax: 65535, smin: -32768, smax: 32767, narrowMin: -32767, narrowMax: 32767}, // clamped down
	} {
		lo, hi := UnsignedRange(tc.bits)
		assert.Equal(t, [2]int32{0, tc.umax}, [2]int32{lo, hi}, "bits %d", tc.bits)
		lo, hi = SignedRange(tc.bits, false)
		assert.Equal(t, [2]int32{tc.smin, tc.smax}, [2]int32{lo, hi}, "bits %d", tc.bits)
		lo, hi = SignedRange(tc.bits, true)
		assert.Equal(t, [2]int32{tc.narrowMin, tc.narrowMax}, [2]int32{lo, hi}, "bits %d", tc.bits)
		assert.Equal(t, tc.bits >= MinBits && tc.bits <= MaxBits, CheckBits(tc.bits) == nil)
	}
}

func TestAsymmetric(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	tests := []struct {
		name   string
		lo, hi float32
		bits   int
		want   Params
	}{
		{"both sides", -1, 3, 8, Params{Scale: 4.0 / 255, ZeroPoint: 64, QMin: 0, QMax: 255}},
		{"positive only: lo extended to 0", 2, 5, 8, Params{Scale: float32(5.0 / 255), ZeroPoint: 0, QMin: 0, QMax: 255}},
		{"negative only: hi extended to 0", -4, -1, 8, Params{Scale: 4.0 / 255, ZeroPoint: 255, QMin: 0, QMax: 255}},
		{"4 bits", -1, 2, 4, Params{Scale: 0.2, ZeroPoint: 5, QMin: 0, QMax: 15}},
		{"zero range", 0, 0, 8, Params{Scale: DegenerateScale, ZeroPoint: 0, QMin: 0, QMax: 255}},
		{"negative zero", float32(math.Copysign(0, -1)), 0, 8, Params{Scale: DegenerateScale, ZeroPoint: 0, QMin: 0, QMax: 255}},
		{"subnormal range", 0, 1e-40, 8, Params{Scale: DegenerateScale, ZeroPoint: 0, QMin: 0, QMax: 255}},
		{"NaN endpoints count as 0", nan, nan, 8, Params{Scale: DegenerateScale, ZeroPoint: 0, QMin: 0, QMax: 255}},
		{"NaN hi", -2, nan, 8, Params{Scale: 2.0 / 255, ZeroPoint: 255, QMin: 0, QMax: 255}},
		{"infinite range", -inf, inf, 8, Params{Scale: float32(2 * math.MaxFloat32 / 255), ZeroPoint: 128, QMin: 0, QMax: 255}},
		{"zero point tie 2.5 rounds to even", -1.25, 0.25, 2, Params{Scale: 0.5, ZeroPoint: 2, QMin: 0, QMax: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Asymmetric(tc.lo, tc.hi, tc.bits)
			assert.Equal(t, tc.want, p)
			require.NoError(t, p.Validate())
			// 0 is exactly representable.
			assert.Equal(t, float32(0), p.FakeQuant(0))
		})
	}
}

func TestAsymmetricCoversRange(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		bits := MinBits + r.IntN(7)
		lo := float32(-math.Abs(r.NormFloat64()) * math.Pow(10, 4*r.Float64()-2))
		hi := float32(math.Abs(r.NormFloat64()) * math.Pow(10, 4*r.Float64()-2))
		p := Asymmetric(lo, hi, bits)
		require.NoError(t, p.Validate())
		// The ends of [lo, hi] land within half a step of a grid end plus the
		// zero point's rounding (another half step): no more than a step off.
		rlo, rhi := p.Range()
		s := float64(p.Scale) * (1 + 1e-5)
		require.LessOrEqual(t, math.Abs(float64(rlo-lo)), s, "lo=%g hi=%g %+v", lo, hi, p)
		require.LessOrEqual(t, math.Abs(float64(rhi-hi)), s, "lo=%g hi=%g %+v", lo, hi, p)
	}
}

func TestSymmetric(t *testing.T) {
	tests := []struct {
		name   string
		absmax float32
		bits   int
		narrow bool
		want   Params
	}{
		{"s8 narrow", 1.27, 8, true, Params{Scale: float32(1.27) / 127, ZeroPoint: 0, QMin: -127, QMax: 127}},
		{"s8 full", 1.27, 8, false, Params{Scale: float32(1.27) / 127, ZeroPoint: 0, QMin: -128, QMax: 127}},
		{"s4 narrow", 7, 4, true, Params{Scale: 1, ZeroPoint: 0, QMin: -7, QMax: 7}},
		{"negative absmax uses |absmax|", -7, 4, true, Params{Scale: 1, ZeroPoint: 0, QMin: -7, QMax: 7}},
		{"zero", 0, 8, true, Params{Scale: DegenerateScale, ZeroPoint: 0, QMin: -127, QMax: 127}},
		{"NaN", float32(math.NaN()), 8, true, Params{Scale: DegenerateScale, ZeroPoint: 0, QMin: -127, QMax: 127}},
		{"Inf", float32(math.Inf(1)), 2, true, Params{Scale: math.MaxFloat32, ZeroPoint: 0, QMin: -1, QMax: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Symmetric(tc.absmax, tc.bits, tc.narrow)
			assert.Equal(t, tc.want, p)
			require.NoError(t, p.Validate())
		})
	}
	// ±absmax are exactly on the narrow grid's ends.
	p := Symmetric(3, 8, true)
	assert.Equal(t, int32(127), p.Quantize(3))
	assert.Equal(t, int32(-127), p.Quantize(-3))
	assert.InDelta(t, 3, p.FakeQuant(3), 1e-6)
}

func TestValidate(t *testing.T) {
	for _, p := range []Params{
		{Scale: 0, QMin: 0, QMax: 255},
		{Scale: -1, QMin: 0, QMax: 255},
		{Scale: float32(math.NaN()), QMin: 0, QMax: 255},
		{Scale: float32(math.Inf(1)), QMin: 0, QMax: 255},
		{Scale: 1, QMin: 3, QMax: 3},
		{Scale: 1, ZeroPoint: 300, QMin: 0, QMax: 255},
	} {
		assert.Error(t, p.Validate(), "%+v", p)
	}
}
