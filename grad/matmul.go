package grad

import (
	"fmt"
	"math"
	"slices"
)

// MatMul is ONNX MatMul for operands of rank >= 2: the last two axes
// multiply, the leading (batch) axes broadcast, as in a window attention's
// [B, heads, N, d]·[B, heads, d, N] or a token projection [B, N, C]·[C, D].
// Backward: dA = dY·Bᵀ, dB = Aᵀ·dY, summed over broadcast batch axes.
func (t *Tape) MatMul(a, b *Var) (*Var, error) {
	if err := checkVars("MatMul", a, b); err != nil {
		return nil, err
	}
	ra, rb := len(a.Shape), len(b.Shape)
	if ra < 2 || rb < 2 {
		return nil, fmt.Errorf("grad: MatMul of %v and %v: rank-1 operands are not supported", a.Shape, b.Shape)
	}
	m, k, k2, n := a.Shape[ra-2], a.Shape[ra-1], b.Shape[rb-2], b.Shape[rb-1]
	if k != k2 {
		return nil, fmt.Errorf("grad: MatMul of %v and %v: inner dimensions %d and %d", a.Shape, b.Shape, k, k2)
	}
	bc, err := newBroadcast("MatMul", a.Shape[:ra-2], b.Shape[:rb-2])
	if err != nil {
		return nil, err
	}
	batch := 1
	for _, d := range bc.shape {
		batch *= d
	}
	y := out(append(slices.Clone(bc.shape), m, n), a, b)
	parallel(batch, t.Workers, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			ja, jb := at(bc.ia, i), at(bc.ib, i)
			gemmNN(m, n, k, a.Data[ja*m*k:(ja+1)*m*k], b.Data[jb*k*n:(jb+1)*k*n], y.Data[i*m*n:(i+1)*m*n])
		}
	})
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			// Serial over the batch: broadcast operands share gradient rows.
			for i := range batch {
				ja, jb := at(bc.ia, i), at(bc.ib, i)
				dy := y.Grad[i*m*n : (i+1)*m*n]
				if a.needsGrad {
					gemmNT(m, k, n, dy, b.Data[jb*k*n:(jb+1)*k*n], a.grad()[ja*m*k:(ja+1)*m*k])
				}
				if b.needsGrad {
					gemmTN(k, n, m, a.Data[ja*m*k:(ja+1)*m*k], dy, b.grad()[jb*k*n:(jb+1)*k*n])
				}
			}
		})
	}
	return y, nil
}

// Softmax is ONNX Softmax (opset 13) along one axis:
// y = e^(x−max) / Σ e^(x−max). Backward: dx = y·(dy − Σ dy·y).
func (t *Tape) Softmax(x *Var, axis int) (*Var, error) {
	if err := checkVars("Softmax", x); err != nil {
		return nil, err
	}
	ax, err := normAxis("Softmax", axis, len(x.Shape))
	if err != nil {
		return nil, err
	}
	outer, inner := outerInner(x.Shape, ax)
	d := x.Shape[ax]
	y := out(slices.Clone(x.Shape), x)
	for o := range outer {
		for in := range inner {
			base := o*d*inner + in
			mx := float32(math.Inf(-1))
			for j := range d {
				mx = max(mx, x.Data[base+j*inner])
			}
			var s float64
			for j := range d {
				e := math.Exp(float64(x.Data[base+j*inner] - mx))
				y.Data[base+j*inner] = float32(e)
				s += e
			}
			for j := range d {
				y.Data[base+j*inner] = float32(float64(y.Data[base+j*inner]) / s)
			}
		}
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			dx := x.grad()
			for o := range outer {
				for in := range inner {
					base := o*d*inner + in
					var s float64
					for j := range d {
						s += float64(y.Grad[base+j*inner]) * float64(y.Data[base+j*inner])
					}
					for j := range d {
						p := base + j*inner
						dx[p] += y.Data[p] * (y.Grad[p] - float32(s))
					}
				}
			}
		})
	}
	return y, nil
}

// LayerNorm is ONNX LayerNormalization: each slice over axes [axis, rank)
// is normalised to zero mean and unit variance (biased variance, eps added),
// then scaled and shifted by scale and bias (bias may be nil), both of the
// normalised shape. Statistics are accumulated in float64.
func (t *Tape) LayerNorm(x, scale, bias *Var, axis int, eps float32) (*Var, error) {
	if err := checkVars("LayerNormalization", x, scale); err != nil {
		return nil, err
	}
	if err := checkOptional("LayerNormalization", bias); err != nil {
		return nil, err
	}
	ax, err := normAxis("LayerNormalization", axis, len(x.Shape))
	if err != nil {
		return nil, err
	}
	norm := x.Shape[ax:]
	if !slices.Equal(scale.Shape, norm) || (bias != nil && !slices.Equal(bias.Shape, norm)) {
		return nil, fmt.Errorf("grad: LayerNormalization of %v on axis %d wants scale and bias %v", x.Shape, axis, norm)
	}
	d := 1
	for _, v := range norm {
		d *= v
	}
	rows := len(x.Data) / max(d, 1)
	y := out(slices.Clone(x.Shape), x, scale, bias)
	xhat := make([]float32, len(x.Data))
	rstd := make([]float64, rows)
	for r := range rows {
		xs := x.Data[r*d : (r+1)*d]
		var mean, v float64
		for _, e := range xs {
			mean += float64(e)
		}
		mean /= float64(d)
		for _, e := range xs {
			v += (float64(e) - mean) * (float64(e) - mean)
		}
		rs := 1 / math.Sqrt(v/float64(d)+float64(eps))
		rstd[r] = rs
		for j, e := range xs {
			h := float32((float64(e) - mean) * rs)
			xhat[r*d+j] = h
			yv := h * scale.Data[j]
			if bias != nil {
				yv += bias.Data[j]
			}
			y.Data[r*d+j] = yv
		}
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			for r := range rows {
				g := y.Grad[r*d : (r+1)*d]
				h := xhat[r*d : (r+1)*d]
				if scale.needsGrad {
					ds := scale.grad()
					for j := range g {
						ds[j] += g[j] * h[j]
					}
				}
				if needs(bias) {
					db := bias.grad()
					for j := range g {
						db[j] += g[j]
					}
				}
				if x.needsGrad {
					// dx = rstd·(gh − mean(gh) − x̂·mean(gh·x̂)), gh = g·scale
					var m1, m2 float64
					for j := range g {
						gh := float64(g[j] * scale.Data[j])
						m1 += gh
						m2 += gh * float64(h[j])
					}
					m1 /= float64(d)
					m2 /= float64(d)
					dx := x.grad()[r*d : (r+1)*d]
					for j := range g {
						gh := float64(g[j] * scale.Data[j])
						dx[j] += float32(rstd[r] * (gh - m1 - float64(h[j])*m2))
					}
				}
			}
		})
	}
	return y, nil
}

// MSE is the mean squared difference of a and b (same shape), a scalar
// Var: the usual distillation loss between a quantized network's output and
// the float one's. Accumulated in float64.
func (t *Tape) MSE(a, b *Var) (*Var, error) {
	return t.meanLoss("MSE", a, b, func(d float64) float64 { return d * d }, func(d float32) float32 { return 2 * d })
}

// L1 is the mean absolute difference of a and b, a scalar; its gradient
// is the sign of the difference over the count (0 where they agree).
func (t *Tape) L1(a, b *Var) (*Var, error) {
	return t.meanLoss("L1", a, b, math.Abs, func(d float32) float32 {
		switch {
		case d > 0:
			return 1
		case d < 0:
			return -1
		}
		return 0
	})
}

// meanLoss is the mean of f(a − b) over the elements (a and b of one
// shape), accumulated in float64, a scalar Var; its gradient is
// df(a − b) over the count.
func (t *Tape) meanLoss(op string, a, b *Var, f func(float64) float64, df func(float32) float32) (*Var, error) {
	if err := checkLoss(op, a, b); err != nil {
		return nil, err
	}
	y := out([]int{}, a, b)
	var s float64
	for i, v := range a.Data {
		s += f(float64(v) - float64(b.Data[i]))
	}
	inv := 1 / float64(len(a.Data))
	y.Data[0] = float32(s * inv)
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			k := float32(inv * float64(y.Grad[0]))
			for i, v := range a.Data {
				d := k * df(v-b.Data[i])
				if a.needsGrad {
					a.grad()[i] += d
				}
				if b.needsGrad {
					b.grad()[i] -= d
				}
			}
		})
	}
	return y, nil
}

// checkLoss checks the operands of a loss: tape values of one non-empty
// shape.
func checkLoss(op string, a, b *Var) error {
	if err := checkVars(op, a, b); err != nil {
		return err
	}
	if !slices.Equal(a.Shape, b.Shape) {
		return fmt.Errorf("grad: %s of %v and %v", op, a.Shape, b.Shape)
	}
	if len(a.Data) == 0 {
		return fmt.Errorf("grad: %s of empty tensors", op)
	}
	return nil
}
