package qdq

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// randomDualSpec draws a range (two-sided, one-sided or nearly one-sided),
// a breakpoint anywhere from deep inside it to past its end, a width and an
// accounting.
func randomDualSpec(r *rand.Rand) DualSpec {
	hi := float32(math.Pow(10, -2+5*r.Float64()))
	var lo float32
	switch r.IntN(3) {
	case 0: // two-sided, lower tail up to as long as the upper one
		lo = -hi * float32(r.Float64())
	case 1: // after ReLU
		lo = 0
	default: // after LeakyReLU: a short negative side
		lo = -hi * float32(0.05*r.Float64())
	}
	amax := max(-lo, hi)
	bp := amax * float32(math.Pow(2, -9*r.Float64())) // 2^-9..1 of max|x|
	if r.IntN(10) == 0 {
		bp = amax * 1.5 // no tail
	}
	spec := DualSpec{Lo: lo, Hi: hi, BP: bp, Bits: 2 + r.IntN(7), Accounting: Reference}
	if r.IntN(2) == 0 {
		spec.Accounting = Strict
		if r.IntN(2) == 0 {
			spec.TailLevels = 1 + r.IntN(max(1, 1<<(spec.Bits-1)-1))
		}
	}
	return spec
}

func mustDual(t *testing.T, spec DualSpec) Dual {
	t.Helper()
	d, err := NewDual(spec)
	require.NoError(t, err, "%+v", spec)
	return d
}

// roundHalfEven64 rounds to the nearest integer, ties to even, in float64.
func roundHalfEven64(v float64) float64 { return math.RoundToEven(v) }

// refDual is a direct float64 implementation of the dual-region quantizer
// from its definition (dense rounding inside the breakpoints, rounding of
// the overshoot in tail steps beyond them, saturation at the outermost
// levels), sharing only the built grids with the code under test.
func refDual(d Dual, x float64) float64 {
	s := float64(d.Dense.Scale)
	zp := float64(d.Dense.ZeroPoint)
	lo, hi := float64(d.BPLo()), float64(d.BPHi())
	ts := float64(d.K) * s
	switch {
	case d.HasTail() && x > hi:
		return hi + math.Min(roundHalfEven64((x-hi)/ts), float64(d.NHi))*ts
	case d.HasTail() && x < lo:
		return lo - math.Min(roundHalfEven64((lo-x)/ts), float64(d.NLo))*ts
	}
	q := math.Max(float64(d.Dense.QMin), math.Min(float64(d.Dense.QMax), roundHalfEven64(x/s)+zp))
	return (q - zp) * s
}

// nearBoundary reports whether x is within tol of a decision boundary (the
// midpoint of two adjacent levels) or of a breakpoint, where float32 and
// float64 arithmetic may legitimately pick different neighbours.
func nearBoundary(levels []float32, x, tol float64) bool {
	for i := 1; i < len(levels); i++ {
		m := (float64(levels[i-1]) + float64(levels[i])) / 2
		if math.Abs(x-m) <= tol {
			return true
		}
	}
	return false
}

func TestDualMatchesFloat64Reference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 400 {
		d := mustDual(t, randomDualSpec(r))
		levels := d.Levels()
		lo, hi := float64(d.Spec.Lo), float64(d.Spec.Hi)
		tol := 1e-5 * float64(d.Dense.Scale)
		for range 500 {
			x := lo - 0.1*(hi-lo) + 1.2*(hi-lo)*r.Float64()
			if r.IntN(4) == 0 { // exact ties of the dense grid
				x = (math.Round(x/float64(d.Dense.Scale)) + 0.5) * float64(d.Dense.Scale)
			}
			x32 := float32(x)
			got, want := d.FakeQuant(x32), refDual(d, float64(x32))
			if nearBoundary(levels, float64(x32), tol+1e-6*math.Abs(float64(x32))) {
				continue
			}
			require.InDelta(t, want, float64(got), 1e-6*math.Max(1, math.Abs(want)), "%s x=%g", d, x32)
		}
	}
}

func TestDualProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		spec := randomDualSpec(r)
		d := mustDual(t, spec)
		levels := d.Levels()
		require.True(t, slices.IsSorted(levels), "%s: levels not ascending", d)
		require.Equal(t, len(levels), len(slices.Compact(slices.Clone(levels))), "%s: repeated level", d)

		// Exact on its levels, and every output is a level.
		for _, l := range levels {
			require.Equal(t, l, d.FakeQuant(l), "%s: level %g", d, l)
		}
		// The levels cover the range (up to float32 rounding of the steps).
		// A side without a tail ends at its dense end level, which Affine's
		// zero-point rounding may leave up to half a dense step short.
		slack := 1e-5*float64(max(-spec.Lo, spec.Hi)) + float64(d.Dense.Scale)/2
		assert.LessOrEqual(t, float64(levels[0]), float64(spec.Lo)+slack, "%s", d)
		assert.GreaterOrEqual(t, float64(levels[len(levels)-1]), float64(spec.Hi)-slack, "%s", d)

		// Monotone, and at most half a step off inside each region.
		xs := make([]float32, 300)
		for i := range xs {
			xs[i] = spec.Lo + (spec.Hi-spec.Lo)*float32(r.Float64())
		}
		slices.Sort(xs)
		prev := float32(math.Inf(-1))
		s := float64(d.Dense.Scale)
		for _, x := range xs {
			y := d.FakeQuant(x)
			require.GreaterOrEqual(t, y, prev, "%s: not monotone at %g", d, x)
			prev = y
			require.Contains(t, levels, y)
			step := s
			if (x > d.BPHi() && d.NHi > 0) || (x < d.BPLo() && d.NLo > 0) {
				step = float64(d.K) * s
			}
			require.LessOrEqual(t, math.Abs(float64(x)-float64(y)), step/2*(1+1e-5)+1e-6*math.Abs(float64(x)), "%s: x=%g y=%g", d, x, y)
		}

		// Bit accounting.
		codes, _ := CodeCount(d)
		b := spec.Bits
		dense := int(d.Dense.QMax - d.Dense.QMin + 1)
		switch spec.Accounting {
		case Strict:
			require.LessOrEqual(t, codes, 1<<b, "%s: strict accounting over budget", d)
		case Reference:
			require.LessOrEqual(t, dense, 1<<b, "%s", d)
			require.LessOrEqual(t, d.NLo, 1<<(b-1)-1, "%s", d)
			require.LessOrEqual(t, d.NHi, 1<<(b-1)-1, "%s", d)
		}
		require.Equal(t, dense+d.NLo+d.NHi, codes)
	}
}

func TestDualFineGrid(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	fits, misses := 0, 0
	for range 400 {
		d := mustDual(t, randomDualSpec(r))
		fine, ok := d.Fine()
		if !ok {
			misses++
			assert.Greater(t, d.FineSpan(), 255)
			continue
		}
		fits++
		require.NoError(t, fine.Validate())
		// Every level is a code of the fine grid.
		for _, l := range d.Levels() {
			q := fine.Quantize(l)
			require.InDelta(t, float64(l), float64(fine.Dequantize(q)), 1e-5*float64(d.Dense.Scale)+1e-6*math.Abs(float64(l)), "%s: level %g", d, l)
		}
		// Rounding in float to the dual levels and then quantizing with the
		// fine grid is the dual quantizer: the int8 "shared grid" encoding.
		lo, hi := d.Spec.Lo, d.Spec.Hi
		for range 200 {
			x := lo - 0.1*(hi-lo) + 1.2*(hi-lo)*float32(r.Float64())
			prep := min(max(x, d.BPLo()), d.BPHi())
			if d.HasTail() {
				prep += d.Tail.FakeQuant(x - min(max(x, d.BPLo()), d.BPHi()))
			}
			require.InDelta(t, float64(d.FakeQuant(x)), float64(fine.FakeQuant(prep)), 1e-5*float64(d.Dense.Scale)+1e-6*math.Abs(float64(x)), "%s: x=%g", d, x)
		}
	}
	assert.Positive(t, fits)
	assert.Positive(t, misses)
}

func TestDualParts(t *testing.T) {
	d := mustDual(t, DualSpec{Lo: -300, Hi: 200, BP: 20, Bits: 4, Accounting: Reference})
	ps := d.Parts()
	require.Len(t, ps, 2)
	assert.False(t, ps[0].Residual)
	assert.True(t, ps[1].Residual)
	for _, x := range []float32{-1000, -300, -31, -20, -3.3, 0, 0.1, 19, 20, 25, 199, 1e6} {
		var sum float32
		for _, p := range ps {
			sum += p.FakeQuant(x)
		}
		assert.Equal(t, d.FakeQuant(x), sum, "x=%g", x)
	}
	// Reference, 4 bits, two-sided: 16 dense codes, at most 7 levels a tail;
	// the longer (lower) tail uses all 7.
	assert.Equal(t, int32(15), d.Dense.QMax-d.Dense.QMin)
	assert.Equal(t, 7, d.NLo)
	assert.LessOrEqual(t, d.NHi, 7)
	assert.InDelta(t, 20, float64(max(-d.BPLo(), d.BPHi())), float64(d.Dense.Scale))
}

func TestDualWithoutTailIsUniform(t *testing.T) {
	for _, bits := range []int{2, 4, 6, 8} {
		d := mustDual(t, DualSpec{Lo: -3, Hi: 5, BP: 5, Bits: bits, Accounting: Reference})
		u, err := NewUniform(-3, 5, bits)
		require.NoError(t, err)
		assert.False(t, d.HasTail())
		assert.Equal(t, u.Params, d.Dense)
		assert.Equal(t, u.Levels(), d.Levels())
		fine, ok := d.Fine()
		require.True(t, ok)
		assert.Equal(t, u.Params, fine)
	}
}

func TestDualOneSided(t *testing.T) {
	// After ReLU: no negative levels, zero exact, one tail.
	for _, acc := range []Accounting{Reference, Strict} {
		d := mustDual(t, DualSpec{Lo: 0, Hi: 80, BP: 4, Bits: 4, Accounting: acc})
		assert.Equal(t, float32(0), d.BPLo())
		assert.Equal(t, 0, d.NLo)
		assert.Positive(t, d.NHi)
		assert.Equal(t, float32(0), d.Levels()[0])
		assert.Equal(t, int32(0), d.Dense.ZeroPoint)
		if acc == Strict {
			codes, _ := CodeCount(d)
			assert.LessOrEqual(t, codes, 16)
			assert.Equal(t, int32(12), d.Dense.QMax, "16 codes − 3 tail levels")
		} else {
			assert.Equal(t, int32(15), d.Dense.QMax)
			assert.Equal(t, 7, d.NHi)
		}
	}
}

func TestNewDualErrors(t *testing.T) {
	tests := []struct {
		name string
		spec DualSpec
		want string
	}{
		{"bits 1", DualSpec{Lo: -1, Hi: 1, BP: 0.5, Bits: 1, Accounting: Reference}, "bit width 1"},
		{"bits 9", DualSpec{Lo: -1, Hi: 1, BP: 0.5, Bits: 9, Accounting: Reference}, "bit width 9"},
		{"zero bp", DualSpec{Lo: -1, Hi: 1, BP: 0, Bits: 4, Accounting: Reference}, "breakpoint 0"},
		{"negative bp", DualSpec{Lo: -1, Hi: 1, BP: -1, Bits: 4, Accounting: Reference}, "breakpoint -1"},
		{"NaN bp", DualSpec{Lo: -1, Hi: 1, BP: float32(math.NaN()), Bits: 4, Accounting: Reference}, "breakpoint NaN"},
		{"range without 0", DualSpec{Lo: 1, Hi: 2, BP: 0.5, Bits: 4, Accounting: Reference}, "lo <= 0 <= hi"},
		{"empty range", DualSpec{Lo: 0, Hi: 0, BP: 0.5, Bits: 4, Accounting: Reference}, "lo < hi"},
		{"infinite range", DualSpec{Lo: -1, Hi: float32(math.Inf(1)), BP: 0.5, Bits: 4, Accounting: Reference}, "finite"},
		{"unknown accounting", DualSpec{Lo: -1, Hi: 1, BP: 0.5, Bits: 4, Accounting: "loose"}, `"loose"`},
		{"reference tail levels", DualSpec{Lo: -1, Hi: 1, BP: 0.5, Bits: 4, Accounting: Reference, TailLevels: 3}, "for strict"},
		{"strict over budget", DualSpec{Lo: -1, Hi: 1, BP: 0.5, Bits: 2, Accounting: Strict, TailLevels: 2}, "leave 0 of the 4 codes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDual(tc.spec)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseAccounting(t *testing.T) {
	for _, s := range []string{"reference", "strict"} {
		a, err := ParseAccounting(s)
		require.NoError(t, err)
		assert.Equal(t, Accounting(s), a)
	}
	_, err := ParseAccounting("paper")
	assert.ErrorContains(t, err, `"paper"`)
}

func TestUniformQuantizer(t *testing.T) {
	u, err := NewUniform(-1, 3, 4)
	require.NoError(t, err)
	assert.Equal(t, KindUniform, u.Kind())
	assert.Len(t, u.Levels(), 16)
	fine, ok := u.Fine()
	require.True(t, ok)
	assert.Equal(t, u.Params, fine)
	require.Len(t, u.Parts(), 1)
	for _, x := range []float32{-5, -1, 0, 0.13, 2.9, 7} {
		assert.Equal(t, u.Params.FakeQuant(x), u.FakeQuant(x))
	}
	_, err = NewUniform(-1, 3, 9)
	assert.ErrorContains(t, err, "bit width 9")
}

func TestDualFineTails(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 300 {
		d := mustDual(t, randomDualSpec(r))
		fine, ok := d.Fine()
		if !ok {
			continue
		}
		lo, hi, k := d.FineTails()
		var want []float32
		for c := fine.QMin; c <= fine.QMax; c++ {
			if (c >= lo && c <= hi) || (c < lo && (lo-c)%int32(k) == 0) || (c > hi && (c-hi)%int32(k) == 0) {
				want = append(want, fine.Dequantize(c))
			}
		}
		got := d.Levels()
		require.Len(t, got, len(want), "%s", d)
		for i := range got {
			require.InDelta(t, want[i], got[i], 1e-5*float64(d.Dense.Scale)+1e-6*math.Abs(float64(got[i])), "%s", d)
		}
	}
}

// Neighbours stay in their kind and width and move only the parameter a
// search may move: a uniform grid's clip (never past its range, itself
// included), a dual-region quantizer's breakpoint (its range fixed, each
// neighbour a different breakpoint inside it).
func TestNeighbours(t *testing.T) {
	u, err := NewUniform(-2, 6, 4)
	require.NoError(t, err)
	ns := u.Neighbours()
	require.Len(t, ns, 9)
	self := false
	for _, n := range ns {
		assert.Equal(t, KindUniform, n.Kind())
		assert.Equal(t, 4, n.Bits())
		lo, hi := n.(Uniform).Range()
		step := n.(Uniform).Scale // the grid holds 0 exactly, so its ends move by up to a step
		assert.True(t, lo >= -2-step && hi <= 6+step, "clip [%g, %g] inside [-2, 6]", lo, hi)
		self = self || slices.Equal(n.Levels(), u.Levels())
	}
	assert.True(t, self, "the uniform grid itself is a neighbour")

	for _, spec := range []DualSpec{
		{Lo: -3, Hi: 10, BP: 2, Bits: 4, Accounting: Reference},
		{Lo: -1, Hi: 1, BP: 0.9, Bits: 4, Accounting: Strict},
	} {
		d, err := NewDual(spec)
		require.NoError(t, err)
		ns := d.Neighbours()
		require.NotEmpty(t, ns)
		prev := float32(0)
		for _, n := range ns {
			nd := n.(Dual)
			assert.Equal(t, KindDual, nd.Kind())
			assert.Equal(t, spec.Bits, nd.Bits())
			assert.Equal(t, spec.Accounting, nd.Spec.Accounting)
			assert.Equal(t, [2]float32{spec.Lo, spec.Hi}, [2]float32{nd.Spec.Lo, nd.Spec.Hi})
			assert.Greater(t, nd.Spec.BP, prev)
			assert.Less(t, nd.Spec.BP, max(-spec.Lo, spec.Hi))
			prev = nd.Spec.BP
		}
	}
}
