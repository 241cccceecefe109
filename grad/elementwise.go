package grad

import (
	"fmt"
	"math"
	"slices"
)

// broadcast is the ONNX (numpy) broadcast of two shapes: the output shape
// and, when the shapes differ, for every output element the index of the
// element of a and of b it reads. Backward sums the gradient over the
// repeated elements through the same maps.
type broadcast struct {
	shape  []int
	ia, ib []int32 // nil: same shape as the output, element i reads i
}

func newBroadcast(op string, a, b []int) (broadcast, error) {
	if slices.Equal(a, b) {
		return broadcast{shape: slices.Clone(a)}, nil
	}
	r := max(len(a), len(b))
	shape := make([]int, r)
	pad := func(s []int) []int { return append(slices.Repeat([]int{1}, r-len(s)), s...) }
	pa, pb := pad(a), pad(b)
	for i := range r {
		switch {
		case pa[i] == pb[i], pb[i] == 1:
			shape[i] = pa[i]
		case pa[i] == 1:
			shape[i] = pb[i]
		default:
			return broadcast{}, fmt.Errorf("grad: %s cannot broadcast %v with %v", op, a, b)
		}
	}
	bc := broadcast{shape: shape}
	bc.ia = indexMap(shape, pa)
	bc.ib = indexMap(shape, pb)
	return bc, nil
}

// indexMap returns, for each element of shape, the index of the element of
// the (rank-padded) shape src that broadcasting reads; nil when src is shape.
func indexMap(shape, src []int) []int32 {
	if slices.Equal(shape, src) {
		return nil
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	strides := make([]int, len(src))
	s := 1
	for i := len(src) - 1; i >= 0; i-- {
		if src[i] != 1 {
			strides[i] = s
		}
		s *= src[i]
	}
	m := make([]int32, n)
	idx := make([]int, len(shape))
	off := 0
	for i := range m {
		m[i] = int32(off)
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d]++
			off += strides[d]
			if idx[d] < shape[d] {
				break
			}
			off -= strides[d] * idx[d]
			idx[d] = 0
		}
	}
	return m
}

func at(m []int32, i int) int {
	if m == nil {
		return i
	}
	return int(m[i])
}

// Add, Sub and Mul are the ONNX element-wise ops with numpy broadcasting
// (a per-channel [C,1,1] scale, a [1,C,1,1] bias).
func (t *Tape) Add(a, b *Var) (*Var, error) { return t.binary(opAdd, a, b) }
func (t *Tape) Sub(a, b *Var) (*Var, error) { return t.binary(opSub, a, b) }
func (t *Tape) Mul(a, b *Var) (*Var, error) { return t.binary(opMul, a, b) }

// Div is ONNX Div with broadcasting: a normalization divides by a computed
// spread (CRAFT's channel norms).
func (t *Tape) Div(a, b *Var) (*Var, error) { return t.binary(opDiv, a, b) }

type binOp int

const (
	opAdd binOp = iota
	opSub
	opMul
	opDiv
)

func (op binOp) String() string { return [...]string{"Add", "Sub", "Mul", "Div"}[op] }

func (t *Tape) binary(op binOp, a, b *Var) (*Var, error) {
	if err := checkVars(op.String(), a, b); err != nil {
		return nil, err
	}
	bc, err := newBroadcast(op.String(), a.Shape, b.Shape)
	if err != nil {
		return nil, err
	}
	y := out(bc.shape, a, b)
	for i := range y.Data {
		av, bv := a.Data[at(bc.ia, i)], b.Data[at(bc.ib, i)]
		switch op {
		case opAdd:
			y.Data[i] = av + bv
		case opSub:
			y.Data[i] = av - bv
		case opMul:
			y.Data[i] = av * bv
		default:
			y.Data[i] = av / bv
		}
	}
	if !y.needsGrad {
		return y, nil
	}
	t.record(func() {
		if y.Grad == nil {
			return
		}
		var da, db []float32
		if a.needsGrad {
			da = a.grad()
		}
		if b.needsGrad {
			db = b.grad()
		}
		for i, g := range y.Grad {
			ja, jb := at(bc.ia, i), at(bc.ib, i)
			switch op {
			case opAdd:
				if da != nil {
					da[ja] += g
				}
				if db != nil {
					db[jb] += g
				}
			case opSub:
				if da != nil {
					da[ja] += g
				}
				if db != nil {
					db[jb] -= g
				}
			case opMul:
				if da != nil {
					da[ja] += g * b.Data[jb]
				}
				if db != nil {
					db[jb] += g * a.Data[ja]
				}
			default:
				bv := b.Data[jb]
				if da != nil {
					da[ja] += g / bv
				}
				if db != nil {
					db[jb] -= g * a.Data[ja] / (bv * bv)
				}
			}
		}
	})
	return y, nil
}

// unary applies f element-wise; df(x, y) is the derivative at x whose
// output was y.
func (t *Tape) unary(x *Var, f func(float32) float32, df func(x, y float32) float32) *Var {
	y := out(slices.Clone(x.Shape), x)
	for i, v := range x.Data {
		y.Data[i] = f(v)
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			dx := x.grad()
			for i, g := range y.Grad {
				dx[i] += g * df(x.Data[i], y.Data[i])
			}
		})
	}
	return y
}

// Relu is max(x, 0); its derivative at 0 is taken as 0.
func (t *Tape) Relu(x *Var) *Var {
	return t.unary(x, func(v float32) float32 { return max(v, 0) },
		func(v, _ float32) float32 { return step(v > 0) })
}

// LeakyRelu is x for x >= 0, alpha·x below (ONNX's default alpha is 0.01).
func (t *Tape) LeakyRelu(x *Var, alpha float32) *Var {
	return t.unary(x,
		func(v float32) float32 {
			if v < 0 {
				return alpha * v
			}
			return v
		},
		func(v, _ float32) float32 {
			if v < 0 {
				return alpha
			}
			return 1
		})
}

// Sigmoid is 1/(1+e^−x); its derivative y(1−y) is read from the output.
func (t *Tape) Sigmoid(x *Var) *Var {
	return t.unary(x, sigmoid, func(_, y float32) float32 { return y * (1 - y) })
}

func sigmoid(v float32) float32 { return float32(1 / (1 + math.Exp(-float64(v)))) }

// Erf is the error function (exact GELU writes x·(1 + erf(x/√2))/2).
func (t *Tape) Erf(x *Var) *Var {
	return t.unary(x, func(v float32) float32 { return float32(math.Erf(float64(v))) },
		func(x, _ float32) float32 { return float32(2 / math.SqrtPi * math.Exp(-float64(x)*float64(x))) })
}

// Pow raises x to a constant power p (a variance's square).
func (t *Tape) Pow(x *Var, p float32) *Var {
	pp := float64(p)
	return t.unary(x, func(v float32) float32 { return float32(math.Pow(float64(v), pp)) },
		func(x, _ float32) float32 { return float32(pp * math.Pow(float64(x), pp-1)) })
}

func step(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// PRelu is x for x >= 0, slope·x below, slope broadcast onto x as ONNX
// does (the usual [C,1,1] per-channel slope). Gradients flow to x and to
// the slope.
func (t *Tape) PRelu(x, slope *Var) (*Var, error) {
	if err := checkVars("PRelu", x, slope); err != nil {
		return nil, err
	}
	bc, err := newBroadcast("PRelu", x.Shape, slope.Shape)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(bc.shape, x.Shape) {
		return nil, fmt.Errorf("grad: PRelu slope %v would broadcast the input %v to %v", slope.Shape, x.Shape, bc.shape)
	}
	y := out(bc.shape, x, slope)
	for i, v := range x.Data {
		if v < 0 {
			v *= slope.Data[at(bc.ib, i)]
		}
		y.Data[i] = v
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			for i, g := range y.Grad {
				v, j := x.Data[i], at(bc.ib, i)
				if x.needsGrad {
					if v < 0 {
						x.grad()[i] += g * slope.Data[j]
					} else {
						x.grad()[i] += g
					}
				}
				if slope.needsGrad && v < 0 {
					slope.grad()[j] += g * v
				}
			}
		})
	}
	return y, nil
}
