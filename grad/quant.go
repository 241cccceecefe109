package grad

import (
	"fmt"
	"math"
	"slices"

	"github.com/srquant/srq/qdq"
)

// Fake quantizers. The forward value of each is exactly what srq deploys
// (qdq's float32 ONNX arithmetic: x/scale in float32, round half to even,
// saturate), so a tuned network is scored on the numbers ORT will compute.
// The backward pass is the straight-through estimator (STE): every rounding
// is differentiated as if round(v) were v plus a constant, and every
// saturation as the constant it is. With that rule:
//
//   - inside the grid, y = x + s·δ (δ = the rounding error in codes, frozen):
//     dy/dx = 1 and dy/ds = δ = (q − zp) − x/s, LSQ's step gradient;
//   - saturated, y is the end level: dy/dx = 0, and the level's own
//     derivative goes to the step (LSQ: qmin − zp or qmax − zp) or to the
//     bound it is made of.
//
// Tests check each gradient against central differences of this
// straight-through surrogate (roundings and saturation regions frozen at the
// point), since the quantizer itself is piecewise constant.

// codeOf returns x/s as ORT computes it (float32 quotient) and its rounded
// value, in float64.
func codeOf(x, s float32) (u, r float64) {
	u = float64(x / s)
	return u, math.RoundToEven(u)
}

// FakeQuantStep is LSQ: the affine quantizer of step s (a Param), zero
// point zp and codes [qmin, qmax], y = s·(clamp(round(x/s) + zp) − zp).
// step has one value (per tensor) or x.Shape[axis] values (per channel
// along axis, e.g. axis 0 of a Conv weight). Gradients: x straight through
// inside the grid, 0 outside; s as in the package's STE rule. LSQ's
// gradient scale 1/√(N·qmax) is left to the optimizer.
func (t *Tape) FakeQuantStep(x, step *Var, zp, qmin, qmax int32, axis int) (*Var, error) {
	if err := checkVars("FakeQuantStep", x, step); err != nil {
		return nil, err
	}
	if qmin >= qmax || zp < qmin || zp > qmax {
		return nil, fmt.Errorf("grad: FakeQuantStep grid [%d, %d] with zero point %d", qmin, qmax, zp)
	}
	chans, inner := 1, len(x.Data)
	if len(step.Data) != 1 {
		ax, err := normAxis("FakeQuantStep", axis, len(x.Shape))
		if err != nil {
			return nil, err
		}
		if x.Shape[ax] != len(step.Data) {
			return nil, fmt.Errorf("grad: FakeQuantStep of %v with %d steps on axis %d", x.Shape, len(step.Data), axis)
		}
		chans = x.Shape[ax]
		_, inner = outerInner(x.Shape, ax)
	}
	for _, s := range step.Data {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return nil, fmt.Errorf("grad: FakeQuantStep step %g is not a finite positive number", s)
		}
	}
	// ch returns the step index of element i.
	ch := func(i int) int { return (i / inner) % chans }
	y := out(slices.Clone(x.Shape), x, step)
	for i, v := range x.Data {
		p := qdq.Params{Scale: step.Data[ch(i)], ZeroPoint: zp, QMin: qmin, QMax: qmax}
		y.Data[i] = p.FakeQuant(v)
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			for i, g := range y.Grad {
				c := ch(i)
				s := step.Data[c]
				u, r := codeOf(x.Data[i], s)
				q := r + float64(zp)
				var ds float64
				switch {
				case q < float64(qmin):
					ds = float64(qmin - zp)
				case q > float64(qmax):
					ds = float64(qmax - zp)
				default:
					ds = r - u
					if x.needsGrad {
						x.grad()[i] += g
					}
				}
				if step.needsGrad {
					step.grad()[c] += g * float32(ds)
				}
			}
		})
	}
	return y, nil
}

// FakeQuantRange is the activation quantizer srq calibrates, learnt by its
// range: lo and hi are one-value Vars and the forward pass is
// qdq.Affine(lo, hi, qmin, qmax).FakeQuant(x) (zero exactly representable:
// the zero point is rounded). With s = (hi − lo)/(qmax − qmin) and the
// zero point's rounding straight-through too (δz = zp − (qmin − lo/s)):
//
//	inside:  y = x + s·δ           dy/dx = 1, dy/ds = δ
//	below:   y = lo − s·δz         dy/dlo = 1, dy/ds = −δz
//	above:   y = hi − s·δz         dy/dhi = 1, dy/ds = −δz
//
// and ds/dlo = −1/(qmax − qmin), ds/dhi = 1/(qmax − qmin). A bound on the
// wrong side of 0 (which Affine moves to 0) gets no gradient.
func (t *Tape) FakeQuantRange(x, lo, hi *Var, qmin, qmax int32) (*Var, error) {
	if err := checkVars("FakeQuantRange", x, lo, hi); err != nil {
		return nil, err
	}
	if len(lo.Data) != 1 || len(hi.Data) != 1 {
		return nil, fmt.Errorf("grad: FakeQuantRange wants one-value bounds, got %v and %v", lo.Shape, hi.Shape)
	}
	if qmin >= qmax {
		return nil, fmt.Errorf("grad: FakeQuantRange grid [%d, %d]", qmin, qmax)
	}
	l, h := lo.Data[0], hi.Data[0]
	if !(h > l) || math.IsInf(float64(l), 0) || math.IsInf(float64(h), 0) {
		return nil, fmt.Errorf("grad: FakeQuantRange range [%g, %g] must be finite with lo < hi", l, h)
	}
	p := qdq.Affine(l, h, qmin, qmax)
	y := out(slices.Clone(x.Shape), x, lo, hi)
	for i, v := range x.Data {
		y.Data[i] = p.FakeQuant(v)
	}
	if !y.needsGrad {
		return y, nil
	}
	t.record(func() {
		if y.Grad == nil {
			return
		}
		n1 := float64(qmax - qmin)
		lo0 := min(float64(l), 0)
		dz := float64(p.ZeroPoint) - (float64(qmin) - lo0/float64(p.Scale))
		var dlo, dhi, ds float64
		for i, g := range y.Grad {
			u, r := codeOf(x.Data[i], p.Scale)
			q := r + float64(p.ZeroPoint)
			gg := float64(g)
			switch {
			case q < float64(qmin):
				dlo += gg
				ds -= gg * dz
			case q > float64(qmax):
				dhi += gg
				ds -= gg * dz
			default:
				ds += gg * (r - u)
				if x.needsGrad {
					x.grad()[i] += g
				}
			}
		}
		if lo.needsGrad && l < 0 {
			lo.grad()[0] += float32(dlo - ds/n1)
		} else if lo.needsGrad {
			lo.grad() // a zero gradient, not a missing one
		}
		if hi.needsGrad && h > 0 {
			hi.grad()[0] += float32(dhi + ds/n1)
		} else if hi.needsGrad {
			hi.grad()
		}
	})
	return y, nil
}

// FakeQuantDual is srq's dual-region quantizer (qdq.Dual) with a learnt
// breakpoint: the forward pass is qdq.NewDual(spec with BP = bp).FakeQuant,
// bit for bit. The range, width and accounting of spec are fixed, and so,
// under differentiation, are the whole-number choices NewDual makes from
// the breakpoint (tail step K in dense steps, tail level counts NLo, NHi).
// With the dense region [dl, du] = [max(lo, −bp), min(hi, bp)], dense step
// s = (du − dl)/(n − 1), tail step T = K·s and every rounding
// straight-through (package doc), x is on the dense grid when it lies
// between the breakpoints BPLo and BPHi (the clip of the residual), on a
// tail grid beyond them up to half a tail step past its outermost level:
//
//	dense grid:             y = x + s·δ                 dy/dbp = δ·ds/dbp
//	tail grid:              y = x + T·δt                dy/dbp = K·δt·ds/dbp
//	beyond the upper tail:  y = BPHi + NHi·T            dy/dbp = dBPHi/dbp + K·NHi·ds/dbp
//	beyond the lower tail:  y = BPLo − NLo·T            dy/dbp = dBPLo/dbp − K·NLo·ds/dbp
//
// where BPHi = du − s·δz, BPLo = dl − s·δz (δz the zero point's rounding),
// ds/dbp = ([bp < hi] + [bp < −lo])/(n − 1). x gets 1 on the grids and 0
// beyond the outermost levels.
func (t *Tape) FakeQuantDual(x, bp *Var, spec qdq.DualSpec) (*Var, error) {
	if err := checkVars("FakeQuantDual", x, bp); err != nil {
		return nil, err
	}
	if len(bp.Data) != 1 {
		return nil, fmt.Errorf("grad: FakeQuantDual wants a one-value breakpoint, got %v", bp.Shape)
	}
	spec.BP = bp.Data[0]
	d, err := qdq.NewDual(spec)
	if err != nil {
		return nil, fmt.Errorf("grad: FakeQuantDual: %w", err)
	}
	y := out(slices.Clone(x.Shape), x, bp)
	for i, v := range x.Data {
		y.Data[i] = d.FakeQuant(v)
	}
	if y.needsGrad {
		t.record(func() { dualBackward(d, x, bp, y) })
	}
	return y, nil
}

func dualBackward(d qdq.Dual, x, bp, y *Var) {
	if y.Grad == nil {
		return
	}
	dense, tail := d.Dense, d.Tail
	lo, hi, b := float64(d.Spec.Lo), float64(d.Spec.Hi), float64(d.Spec.BP)
	dl := max(lo, -b)
	s := float64(dense.Scale)
	n1 := float64(dense.QMax - dense.QMin)
	var gl, gh float64 // d(dl)/dbp = −gl, d(du)/dbp = gh
	if -b > lo {
		gl = 1
	}
	if b < hi {
		gh = 1
	}
	ds := (gh + gl) / n1
	dz := float64(dense.ZeroPoint) - (float64(dense.QMin) - dl/s)
	dBPLo, dBPHi := -gl-dz*ds, gh-dz*ds
	k := float64(d.K)
	bpLo, bpHi := d.BPLo(), d.BPHi()
	var dbp float64
	for i, g := range y.Grad {
		v := x.Data[i]
		gg := float64(g)
		pass := false // dy/dx = 1
		switch {
		case v >= bpLo && v <= bpHi:
			u, r := codeOf(v, dense.Scale)
			dbp += gg * (r - u) * ds
			pass = true
		case !d.HasTail() && v > bpHi:
			dbp += gg * dBPHi
		case !d.HasTail():
			dbp += gg * dBPLo
		default:
			res := v - min(max(v, bpLo), bpHi)
			ut, rt := codeOf(res, tail.Scale)
			qt := rt + float64(tail.ZeroPoint)
			switch {
			case qt > float64(tail.QMax):
				dbp += gg * (dBPHi + k*float64(d.NHi)*ds)
			case qt < float64(tail.QMin):
				dbp += gg * (dBPLo - k*float64(d.NLo)*ds)
			default:
				dbp += gg * k * (rt - ut) * ds
				pass = true
			}
		}
		if pass && x.needsGrad {
			x.grad()[i] += g
		}
	}
	if bp.needsGrad {
		bp.grad()[0] += float32(dbp)
	}
}

// AdaRound's rectified sigmoid h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1) with
// the stretch of the paper (Nagel et al. 2020): ζ = 1.1, γ = −0.1, so that
// h reaches 0 and 1 exactly for finite V.
const (
	adaZeta  = 1.1
	adaGamma = -0.1
)

// rectSigmoid returns h(V) and dh/dV.
func rectSigmoid(v float32) (h, dh float64) {
	sg := 1 / (1 + math.Exp(-float64(v)))
	h = sg*(adaZeta-adaGamma) + adaGamma
	switch {
	case h <= 0:
		return 0, 0
	case h >= 1:
		return 1, 0
	}
	return h, sg * (1 - sg) * (adaZeta - adaGamma)
}

// SoftRound is AdaRound's soft-rounded weight:
//
//	w̃ = s·clamp(floor(w/s) + h(V), qmin, qmax)
//
// with w a constant (the float weight) and V a Param of w's shape; scale
// has one value or one per output channel (axis 0). The gradient goes to V
// only: s·dh/dV where the clamp does not bind. floor(w/s) uses the float32
// quotient, as the deployed quantizer does.
func (t *Tape) SoftRound(w, v *Var, scale []float32, qmin, qmax int32) (*Var, error) {
	if err := checkVars("SoftRound", w, v); err != nil {
		return nil, err
	}
	inner, err := softRoundCheck(w, v, scale, qmin, qmax)
	if err != nil {
		return nil, err
	}
	y := out(slices.Clone(w.Shape), v)
	dh := make([]float32, len(w.Data)) // dy/dV, kept for backward
	for i, wv := range w.Data {
		s := scale[(i/inner)%len(scale)]
		h, d := rectSigmoid(v.Data[i])
		c := math.Floor(float64(wv/s)) + h
		if c < float64(qmin) || c > float64(qmax) {
			c, d = min(max(c, float64(qmin)), float64(qmax)), 0
		}
		y.Data[i] = float32(float64(s) * c)
		dh[i] = float32(float64(s) * d)
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			dv := v.grad()
			for i, g := range y.Grad {
				dv[i] += g * dh[i]
			}
		})
	}
	return y, nil
}

func softRoundCheck(w, v *Var, scale []float32, qmin, qmax int32) (inner int, err error) {
	switch {
	case !slices.Equal(w.Shape, v.Shape):
		return 0, fmt.Errorf("grad: SoftRound weight %v and V %v differ in shape", w.Shape, v.Shape)
	case qmin >= qmax:
		return 0, fmt.Errorf("grad: SoftRound grid [%d, %d]", qmin, qmax)
	case len(scale) == 0 || (len(scale) > 1 && (len(w.Shape) == 0 || w.Shape[0] != len(scale))):
		return 0, fmt.Errorf("grad: SoftRound of %v with %d scales (want 1 or one per output channel)", w.Shape, len(scale))
	}
	for _, s := range scale {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return 0, fmt.Errorf("grad: SoftRound scale %g is not a finite positive number", s)
		}
	}
	inner = len(w.Data)
	if len(scale) > 1 {
		inner /= len(scale)
	}
	return max(inner, 1), nil
}

// HardRound is the weight AdaRound ends with: floor(w/s) plus 1 where
// h(V) >= 1/2, clamped, times s. It is what SoftRound tends to as the
// regulariser drives h to 0 or 1.
func HardRound(w, v *Var, scale []float32, qmin, qmax int32) ([]float32, error) {
	if err := checkVars("HardRound", w, v); err != nil {
		return nil, err
	}
	inner, err := softRoundCheck(w, v, scale, qmin, qmax)
	if err != nil {
		return nil, err
	}
	y := make([]float32, len(w.Data))
	for i, wv := range w.Data {
		s := scale[(i/inner)%len(scale)]
		h, _ := rectSigmoid(v.Data[i])
		c := math.Floor(float64(wv / s))
		if h >= 0.5 {
			c++
		}
		y[i] = float32(float64(s) * min(max(c, float64(qmin)), float64(qmax)))
	}
	return y, nil
}

// RoundingReg is AdaRound's regulariser Σ 1 − |2h(V) − 1|^β, a scalar that
// pushes every h(V) to 0 or 1 (β is annealed from large to small).
func (t *Tape) RoundingReg(v *Var, beta float32) (*Var, error) {
	if err := checkVars("RoundingReg", v); err != nil {
		return nil, err
	}
	if !(beta > 0) {
		return nil, fmt.Errorf("grad: RoundingReg beta %g must be positive", beta)
	}
	b := float64(beta)
	y := out([]int{}, v)
	var sum float64
	for _, vv := range v.Data {
		h, _ := rectSigmoid(vv)
		sum += 1 - math.Pow(math.Abs(2*h-1), b)
	}
	y.Data[0] = float32(sum)
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			dv := v.grad()
			for i, vv := range v.Data {
				h, dh := rectSigmoid(vv)
				a := 2*h - 1
				if a == 0 || dh == 0 {
					continue
				}
				d := -b * math.Pow(math.Abs(a), b-1) * math.Copysign(1, a) * 2 * dh
				dv[i] += y.Grad[0] * float32(d)
			}
		})
	}
	return y, nil
}
