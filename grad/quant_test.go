package grad

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/qdq"
)

// The quantizers are piecewise constant, so their gradients are checked
// against central differences of the straight-through surrogate: the same
// function with every rounding error and every saturation region frozen
// at the point, computed here in float64 from the quantizer's structure
// (grid from the bounds, zero point, breakpoints, tails) rather than from
// the formulas in quant.go.

// region of one input under a frozen surrogate.
type region int

const (
	inside region = iota
	below
	above
)

func TestFakeQuantStep(t *testing.T) {
	cases := []struct {
		name           string
		shape          []int
		steps          []float32
		zp, qmin, qmax int32
		axis           int
	}{
		{"per tensor u4", []int{2, 3, 4}, []float32{0.2}, 5, 0, 15, 0},
		{"per channel s4 weights", []int{3, 2, 3, 3}, []float32{0.15, 0.3, 0.08}, 0, -7, 7, 0},
		{"per channel axis 1", []int{2, 3, 5}, []float32{0.005, 0.01, 0.02}, 128, 0, 255, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(4, 5))
			tp := NewTape()
			x, _ := tp.Param(c.shape, randn(rng, size(c.shape), 1.5))
			s, _ := tp.Param([]int{len(c.steps)}, append([]float32(nil), c.steps...))
			chans, inner := 1, len(x.Data)
			if len(c.steps) > 1 {
				chans = c.shape[c.axis]
				_, inner = outerInner(c.shape, c.axis)
			}
			ch := func(i int) int { return (i / inner) % chans }
			y, err := tp.FakeQuantStep(x, s, c.zp, c.qmin, c.qmax, c.axis)
			require.NoError(t, err)
			reg := make([]region, len(x.Data))
			delta := make([]float64, len(x.Data))
			var sat int
			for i, v := range x.Data {
				p := qdq.Params{Scale: s.Data[ch(i)], ZeroPoint: c.zp, QMin: c.qmin, QMax: c.qmax}
				require.Equal(t, p.FakeQuant(v), y.Data[i], "forward is qdq's")
				q := p.Quantize(v)
				u := float64(v / p.Scale)
				switch {
				case math.RoundToEven(u)+float64(c.zp) < float64(c.qmin):
					reg[i] = below
				case math.RoundToEven(u)+float64(c.zp) > float64(c.qmax):
					reg[i] = above
				default:
					delta[i] = float64(q-c.zp) - u
				}
				if reg[i] != inside {
					sat++
				}
			}
			require.Positive(t, sat, "the case must saturate somewhere")
			tp.Reset()
			eval := func() ([]float32, error) {
				out := make([]float32, len(x.Data))
				for i, v := range x.Data {
					sc := float64(s.Data[ch(i)])
					switch reg[i] {
					case below:
						out[i] = float32(sc * float64(c.qmin-c.zp))
					case above:
						out[i] = float32(sc * float64(c.qmax-c.zp))
					default:
						out[i] = float32(float64(v) + sc*delta[i])
					}
				}
				return out, nil
			}
			fdCheck(t, []*Var{x, s}, func(tp *Tape) (*Var, error) {
				return tp.FakeQuantStep(x, s, c.zp, c.qmin, c.qmax, c.axis)
			}, eval, 1e-4, 1e-3, 1e-3)
		})
	}
}

func TestFakeQuantRange(t *testing.T) {
	cases := []struct {
		name       string
		lo, hi     float32
		qmin, qmax int32
	}{
		{"asymmetric 4-bit", -0.7, 2.3, 0, 15},
		{"relu range 8-bit", 0, 1.9, 0, 255},
		{"positive lo moved to 0", 0.3, 1.7, 0, 15},
		{"mostly negative 3-bit", -2.2, 0.6, 0, 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(6, 7))
			tp := NewTape()
			x, _ := tp.Param([]int{4, 25}, randn(rng, 100, 1.4))
			lo, _ := tp.Param([]int{1}, []float32{c.lo})
			hi, _ := tp.Param([]int{1}, []float32{c.hi})
			y, err := tp.FakeQuantRange(x, lo, hi, c.qmin, c.qmax)
			require.NoError(t, err)
			p := qdq.Affine(c.lo, c.hi, c.qmin, c.qmax)
			n1 := float64(c.qmax - c.qmin)
			loGate := c.lo < 0
			lo0 := math.Min(float64(c.lo), 0)
			dz := float64(p.ZeroPoint) - (float64(c.qmin) - lo0/float64(p.Scale))
			reg := make([]region, len(x.Data))
			delta := make([]float64, len(x.Data))
			for i, v := range x.Data {
				require.Equal(t, p.FakeQuant(v), y.Data[i], "forward is qdq.Affine's")
				u := float64(v / p.Scale)
				q := math.RoundToEven(u) + float64(p.ZeroPoint)
				switch {
				case q < float64(c.qmin):
					reg[i] = below
				case q > float64(c.qmax):
					reg[i] = above
				default:
					delta[i] = math.RoundToEven(u) - u
				}
			}
			tp.Reset()
			eval := func() ([]float32, error) {
				l := 0.0
				if loGate {
					l = float64(lo.Data[0])
				}
				s := (float64(hi.Data[0]) - l) / n1
				zr := float64(c.qmin) - l/s + dz // the zero point, rounding frozen
				out := make([]float32, len(x.Data))
				for i, v := range x.Data {
					switch reg[i] {
					case below:
						out[i] = float32(s * (float64(c.qmin) - zr))
					case above:
						out[i] = float32(s * (float64(c.qmax) - zr))
					default:
						out[i] = float32(float64(v) + s*delta[i])
					}
				}
				return out, nil
			}
			fdCheck(t, []*Var{x, lo, hi}, func(tp *Tape) (*Var, error) {
				return tp.FakeQuantRange(x, lo, hi, c.qmin, c.qmax)
			}, eval, 1e-4, 1e-3, 1e-3)
			if !loGate {
				assert.Zero(t, lo.Grad[0], "a bound Affine moves to 0 gets no gradient")
			}
		})
	}
}

// TestFakeQuantRangeDescends: the bound gradients point somewhere useful:
// plain gradient steps on the quantization MSE of Gaussian data, from a
// range far too wide, lower the real (not surrogate) error.
func TestFakeQuantRangeDescends(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	tp := NewTape()
	data := randn(rng, 4000, 1)
	x, _ := tp.Const([]int{4000}, data)
	lo, _ := tp.Param([]int{1}, []float32{-8})
	hi, _ := tp.Param([]int{1}, []float32{8})
	mse := func() float64 {
		y, err := tp.FakeQuantRange(x, lo, hi, 0, 15)
		require.NoError(t, err)
		l, err := tp.MSE(y, x)
		require.NoError(t, err)
		tp.Reset()
		return float64(l.Data[0])
	}
	start := mse()
	for range 60 {
		y, err := tp.FakeQuantRange(x, lo, hi, 0, 15)
		require.NoError(t, err)
		l, err := tp.MSE(y, x)
		require.NoError(t, err)
		lo.ZeroGrad()
		hi.ZeroGrad()
		require.NoError(t, tp.Backward(l, nil))
		lo.Data[0] -= 20 * lo.Grad[0]
		hi.Data[0] -= 20 * hi.Grad[0]
	}
	end := mse()
	assert.Less(t, end, start/3, "MSE %g -> %g, range [%g, %g]", start, end, lo.Data[0], hi.Data[0])
}

func TestFakeQuantDual(t *testing.T) {
	cases := []struct {
		name string
		spec qdq.DualSpec
	}{
		{"reference 4-bit both tails", qdq.DualSpec{Lo: -3, Hi: 4, BP: 1.1, Bits: 4, Accounting: qdq.Reference}},
		{"strict 4-bit both tails", qdq.DualSpec{Lo: -2.5, Hi: 3.5, BP: 0.9, Bits: 4, Accounting: qdq.Strict}},
		{"reference 3-bit upper tail only", qdq.DualSpec{Lo: -0.8, Hi: 5, BP: 1.2, Bits: 3, Accounting: qdq.Reference}},
		{"strict 4-bit no tail", qdq.DualSpec{Lo: -1, Hi: 1.5, BP: 2, Bits: 4, Accounting: qdq.Strict}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(10, 11))
			tp := NewTape()
			x, _ := tp.Param([]int{300}, randn(rng, 300, 1.8))
			bp, _ := tp.Param([]int{1}, []float32{c.spec.BP})
			y, err := tp.FakeQuantDual(x, bp, c.spec)
			require.NoError(t, err)
			d, err := qdq.NewDual(c.spec)
			require.NoError(t, err)
			for i, v := range x.Data {
				require.Equal(t, d.FakeQuant(v), y.Data[i], "forward is qdq.Dual's")
			}
			tp.Reset()

			// Frozen structure: K, tail levels, zero point rounding, and per
			// input its grid (dense, lower or upper tail) and rounding error
			// or saturation.
			s := float64(d.Dense.Scale)
			n1 := float64(d.Dense.QMax - d.Dense.QMin)
			lo, hi := float64(c.spec.Lo), float64(c.spec.Hi)
			dl := math.Max(lo, -float64(c.spec.BP))
			dz := float64(d.Dense.ZeroPoint) - (float64(d.Dense.QMin) - dl/s)
			type frozen struct {
				grid  int // 0 dense, +1 upper tail side, −1 lower
				reg   region
				delta float64
			}
			fz := make([]frozen, len(x.Data))
			bl, bh := d.BPLo(), d.BPHi()
			var tails, sats int
			for i, v := range x.Data {
				var f frozen
				switch {
				case v >= bl && v <= bh:
					u := float64(v / d.Dense.Scale)
					f.delta = math.RoundToEven(u) - u
				default:
					f.grid = 1
					if v < bl {
						f.grid = -1
					}
					if !d.HasTail() {
						f.reg = above
						if f.grid < 0 {
							f.reg = below
						}
						break
					}
					r := v - min(max(v, bl), bh)
					u := float64(r / d.Tail.Scale)
					qt := math.RoundToEven(u) + float64(d.Tail.ZeroPoint)
					switch {
					case qt > float64(d.Tail.QMax):
						f.reg = above
					case qt < float64(d.Tail.QMin):
						f.reg = below
					default:
						f.delta = math.RoundToEven(u) - u
						tails++
					}
				}
				if f.reg != inside {
					sats++
				}
				fz[i] = f
			}
			if d.HasTail() {
				require.Positive(t, tails, "some inputs on a tail grid")
			}
			require.Positive(t, sats, "some inputs saturated")
			k := float64(d.K)
			eval := func() ([]float32, error) {
				b := float64(bp.Data[0])
				dl, du := math.Max(lo, -b), math.Min(hi, b)
				s := (du - dl) / n1
				zr := float64(d.Dense.QMin) - dl/s + dz
				bpLo, bpHi := s*(float64(d.Dense.QMin)-zr), s*(float64(d.Dense.QMax)-zr)
				tstep := k * s
				out := make([]float32, len(x.Data))
				for i, v := range x.Data {
					f := fz[i]
					var yv float64
					switch {
					case f.grid == 0:
						yv = float64(v) + s*f.delta
					case f.reg == above:
						yv = bpHi + tstep*float64(d.NHi)
					case f.reg == below:
						yv = bpLo - tstep*float64(d.NLo)
					default: // on a tail grid: breakpoint + rounded residual
						bpv := bpHi
						if f.grid < 0 {
							bpv = bpLo
						}
						yv = bpv + (float64(v) - bpv) + tstep*f.delta
					}
					out[i] = float32(yv)
				}
				return out, nil
			}
			fdCheck(t, []*Var{x, bp}, func(tp *Tape) (*Var, error) {
				return tp.FakeQuantDual(x, bp, c.spec)
			}, eval, 1e-4, 2e-3, 2e-3)
		})
	}
}

func TestSoftRound(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	tp := NewTape()
	shape := []int{3, 2, 3, 3}
	wd := randn(rng, size(shape), 0.5)
	wd[0], wd[1] = 3, -3 // clamped at the grid's ends
	w, _ := tp.Const(shape, wd)
	v, _ := tp.Param(shape, randn(rng, size(shape), 1))
	scale := []float32{0.1, 0.07, 0.2}
	analytic := func(tp *Tape) (*Var, error) { return tp.SoftRound(w, v, scale, -7, 7) }
	eval := func() ([]float32, error) {
		y, err := NewTape().SoftRound(w, v, scale, -7, 7)
		if err != nil {
			return nil, err
		}
		return y.Data, nil
	}
	fdCheck(t, []*Var{v}, analytic, eval, 1e-3, 1e-4, 1e-2)
	assert.Zero(t, v.Grad[0], "clamped weight")

	// V pushed far out: soft = hard, each weight rounded down or up.
	far := make([]float32, len(v.Data))
	for i, x := range v.Data {
		far[i] = float32(math.Copysign(20, float64(x)))
	}
	vf, _ := tp.Param(shape, far)
	soft, err := tp.SoftRound(w, vf, scale, -7, 7)
	require.NoError(t, err)
	hard, err := HardRound(w, vf, scale, -7, 7)
	require.NoError(t, err)
	assert.Equal(t, hard, soft.Data)
	for i, h := range hard {
		s := scale[i/18]
		c := math.Floor(float64(wd[i] / s))
		assert.Contains(t, []float32{float32(float64(s) * min(max(c, -7), 7)), float32(float64(s) * min(max(c+1, -7), 7))}, h)
	}
}

func TestRoundingReg(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 15))
	tp := NewTape()
	v, _ := tp.Param([]int{20}, randn(rng, 20, 1.5))
	for _, beta := range []float32{2, 8} {
		fdCheck(t, []*Var{v}, func(tp *Tape) (*Var, error) { return tp.RoundingReg(v, beta) },
			func() ([]float32, error) {
				y, err := NewTape().RoundingReg(v, beta)
				if err != nil {
					return nil, err
				}
				return y.Data, nil
			}, 1e-3, 1e-3, 1e-2)
	}
}
