package grad

import (
	"fmt"
	"math"
	"slices"
)

// GlobalAveragePool is the mean over the spatial axes of an NCHW tensor,
// output [N, C, 1, 1] (the squeeze of channel attention in RCAN).
func (t *Tape) GlobalAveragePool(x *Var) (*Var, error) {
	if err := checkVars("GlobalAveragePool", x); err != nil {
		return nil, err
	}
	if len(x.Shape) != 4 {
		return nil, fmt.Errorf("grad: GlobalAveragePool of %v, want NCHW", x.Shape)
	}
	return t.ReduceMean(x, []int{2, 3}, true)
}

// ReduceMean is ONNX ReduceMean over axes (negative counts from the end;
// empty: all axes), keeping the reduced axes as 1 when keepdims. Sums are
// accumulated in float64.
func (t *Tape) ReduceMean(x *Var, axes []int, keepdims bool) (*Var, error) {
	return t.reduce("ReduceMean", x, axes, keepdims, true)
}

// ReduceSum is ONNX ReduceSum, as ReduceMean without the division (an L2
// norm's sum of squares).
func (t *Tape) ReduceSum(x *Var, axes []int, keepdims bool) (*Var, error) {
	return t.reduce("ReduceSum", x, axes, keepdims, false)
}

func (t *Tape) reduce(op string, x *Var, axes []int, keepdims, mean bool) (*Var, error) {
	if err := checkVars(op, x); err != nil {
		return nil, err
	}
	r := len(x.Shape)
	red := make([]bool, r)
	if len(axes) == 0 {
		for i := range red {
			red[i] = true
		}
	}
	for _, a := range axes {
		ax, err := normAxis(op, a, r)
		if err != nil {
			return nil, err
		}
		red[ax] = true
	}
	kept := make([]int, r) // the output shape with reduced axes as 1
	count := 1
	var shape []int
	for i, d := range x.Shape {
		kept[i] = d
		if red[i] {
			kept[i] = 1
			count *= d
			if keepdims {
				shape = append(shape, 1)
			}
		} else {
			shape = append(shape, d)
		}
	}
	if count == 0 {
		return nil, fmt.Errorf("grad: %s over an empty axis of %v", op, x.Shape)
	}
	if shape == nil {
		shape = []int{}
	}
	m := indexMap(x.Shape, kept) // input element -> output element
	y := out(shape, x)
	sums := make([]float64, len(y.Data))
	for i, v := range x.Data {
		sums[at(m, i)] += float64(v)
	}
	div := float64(count)
	if !mean {
		div = 1
	}
	for i, s := range sums {
		y.Data[i] = float32(s / div)
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			dx := x.grad()
			inv := float32(1 / div)
			for i := range dx {
				dx[i] += y.Grad[at(m, i)] * inv
			}
		})
	}
	return y, nil
}

// PoolOpts are ONNX MaxPool's attributes on NCHW: kernel, strides (0: 1)
// and pads (top, left, bottom, right). Padding never wins the max.
type PoolOpts struct {
	Kernel  [2]int
	Strides [2]int
	Pads    [4]int
}

// MaxPool is ONNX MaxPool (no dilation, floor rounding). The gradient goes
// to the first maximal element of each window, as PyTorch and ORT's
// training kernels route it.
func (t *Tape) MaxPool(x *Var, o PoolOpts) (*Var, error) {
	if err := checkVars("MaxPool", x); err != nil {
		return nil, err
	}
	if len(x.Shape) != 4 {
		return nil, fmt.Errorf("grad: MaxPool of %v, want NCHW", x.Shape)
	}
	for i := range 2 {
		if o.Strides[i] == 0 {
			o.Strides[i] = 1
		}
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	kh, kw, sy, sx := o.Kernel[0], o.Kernel[1], o.Strides[0], o.Strides[1]
	if kh < 1 || kw < 1 || sy < 1 || sx < 1 || slices.Min(o.Pads[:]) < 0 ||
		o.Pads[0] >= kh || o.Pads[2] >= kh || o.Pads[1] >= kw || o.Pads[3] >= kw {
		return nil, fmt.Errorf("grad: MaxPool kernel %v strides %v pads %v", o.Kernel, o.Strides, o.Pads)
	}
	hp, wp := h+o.Pads[0]+o.Pads[2], w+o.Pads[1]+o.Pads[3]
	if hp < kh || wp < kw {
		return nil, fmt.Errorf("grad: MaxPool kernel %v larger than the padded input %dx%d", o.Kernel, hp, wp)
	}
	ho, wo := (hp-kh)/sy+1, (wp-kw)/sx+1
	y := out([]int{n, c, ho, wo}, x)
	arg := make([]int32, len(y.Data))
	i := 0
	for p := range n * c {
		base := p * h * w
		for oy := range ho {
			for ox := range wo {
				best, bi := float32(math.Inf(-1)), int32(-1)
				for ky := range kh {
					iy := oy*sy - o.Pads[0] + ky
					if iy < 0 || iy >= h {
						continue
					}
					for kx := range kw {
						ix := ox*sx - o.Pads[1] + kx
						if ix < 0 || ix >= w {
							continue
						}
						if v := x.Data[base+iy*w+ix]; bi < 0 || v > best {
							best, bi = v, int32(base+iy*w+ix)
						}
					}
				}
				y.Data[i], arg[i] = best, bi
				i++
			}
		}
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			dx := x.grad()
			for i, g := range y.Grad {
				dx[arg[i]] += g
			}
		})
	}
	return y, nil
}
