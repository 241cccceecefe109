package grad

import (
	"fmt"
	"math"
	"slices"
)

// gather returns y with y[i] = x[src[i]], or fill where src[i] < 0, and
// records the adjoint: the gradient of y scattered back onto x (summing
// where several outputs read one input, as nearest Resize and reflect
// padding do). DepthToSpace, Pad and Resize are index maps of this kind.
func (t *Tape) gather(x *Var, shape []int, src []int32, fill float32) *Var {
	y := out(shape, x)
	for i, s := range src {
		if s < 0 {
			y.Data[i] = fill
		} else {
			y.Data[i] = x.Data[s]
		}
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			dx := x.grad()
			for i, s := range src {
				if s >= 0 {
					dx[s] += y.Grad[i]
				}
			}
		})
	}
	return y
}

func normAxis(op string, axis, rank int) (int, error) {
	if axis < 0 {
		axis += rank
	}
	if axis < 0 || axis >= rank {
		return 0, fmt.Errorf("grad: %s axis out of range for rank %d", op, rank)
	}
	return axis, nil
}

// outerInner splits shape around axis: the product of the dims before it
// and of those after it.
func outerInner(shape []int, axis int) (outer, inner int) {
	outer, inner = 1, 1
	for _, d := range shape[:axis] {
		outer *= d
	}
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	return outer, inner
}

// Concat joins xs along axis (ONNX Concat); the backward pass hands each
// input its slice of the gradient.
func (t *Tape) Concat(axis int, xs ...*Var) (*Var, error) {
	if err := checkVars("Concat", xs...); err != nil {
		return nil, err
	}
	if len(xs) == 0 {
		return nil, fmt.Errorf("grad: Concat of nothing")
	}
	r := len(xs[0].Shape)
	ax, err := normAxis("Concat", axis, r)
	if err != nil {
		return nil, err
	}
	shape := slices.Clone(xs[0].Shape)
	shape[ax] = 0
	for _, x := range xs {
		s := slices.Clone(x.Shape)
		if len(s) != r {
			return nil, fmt.Errorf("grad: Concat of ranks %d and %d", r, len(s))
		}
		shape[ax] += s[ax]
		s[ax] = shape[ax]
		if !slices.Equal(s, shape) {
			return nil, fmt.Errorf("grad: Concat on axis %d of %v and %v", axis, xs[0].Shape, x.Shape)
		}
	}
	y := out(shape, xs...)
	outer, inner := outerInner(shape, ax)
	row := shape[ax] * inner
	off := 0
	for _, x := range xs {
		w := x.Shape[ax] * inner
		for o := range outer {
			copy(y.Data[o*row+off:o*row+off+w], x.Data[o*w:(o+1)*w])
		}
		off += w
	}
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			off := 0
			for _, x := range xs {
				w := x.Shape[ax] * inner
				if x.needsGrad {
					dx := x.grad()
					for o := range outer {
						d := dx[o*w : (o+1)*w]
						for j, g := range y.Grad[o*row+off : o*row+off+w] {
							d[j] += g
						}
					}
				}
				off += w
			}
		})
	}
	return y, nil
}

// Split cuts x along axis into pieces of the given sizes (ONNX Split with
// its split input); the backward pass writes each piece's gradient back
// into its slice.
func (t *Tape) Split(x *Var, axis int, sizes ...int) ([]*Var, error) {
	if err := checkVars("Split", x); err != nil {
		return nil, err
	}
	ax, err := normAxis("Split", axis, len(x.Shape))
	if err != nil {
		return nil, err
	}
	total := 0
	for _, s := range sizes {
		if s < 0 {
			return nil, fmt.Errorf("grad: Split size %d", s)
		}
		total += s
	}
	if total != x.Shape[ax] {
		return nil, fmt.Errorf("grad: Split sizes %v do not add up to dimension %d of %v", sizes, ax, x.Shape)
	}
	outer, inner := outerInner(x.Shape, ax)
	row := x.Shape[ax] * inner
	ys := make([]*Var, len(sizes))
	off := 0
	for k, s := range sizes {
		shape := slices.Clone(x.Shape)
		shape[ax] = s
		y := out(shape, x)
		w := s * inner
		for o := range outer {
			copy(y.Data[o*w:(o+1)*w], x.Data[o*row+off:o*row+off+w])
		}
		ys[k] = y
		if y.needsGrad {
			off := off
			t.record(func() {
				if y.Grad == nil {
					return
				}
				dx := x.grad()
				for o := range outer {
					d := dx[o*row+off : o*row+off+w]
					for j, g := range y.Grad[o*w : (o+1)*w] {
						d[j] += g
					}
				}
			})
		}
		off += w
	}
	return ys, nil
}

// DepthToSpace is ONNX DepthToSpace (the sub-pixel upsampler of ESPCN-style
// SR heads) in mode "DCR" (ONNX's default) or "CRD" (PyTorch's
// PixelShuffle export).
func (t *Tape) DepthToSpace(x *Var, block int, mode string) (*Var, error) {
	if err := checkVars("DepthToSpace", x); err != nil {
		return nil, err
	}
	if len(x.Shape) != 4 || block < 1 || x.Shape[1]%(block*block) != 0 {
		return nil, fmt.Errorf("grad: DepthToSpace of %v with block %d", x.Shape, block)
	}
	if mode == "" {
		mode = "DCR"
	}
	if mode != "DCR" && mode != "CRD" {
		return nil, fmt.Errorf("grad: DepthToSpace mode %q: want DCR or CRD", mode)
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	co := c / (block * block)
	shape := []int{n, co, h * block, w * block}
	src := make([]int32, n*c*h*w)
	i := 0
	for b := range n {
		for oc := range co {
			for oy := range h * block {
				for ox := range w * block {
					by, bx := oy%block, ox%block
					var ic int
					if mode == "DCR" {
						ic = (by*block+bx)*co + oc
					} else {
						ic = oc*block*block + by*block + bx
					}
					src[i] = int32(((b*c+ic)*h+oy/block)*w + ox/block)
					i++
				}
			}
		}
	}
	return t.gather(x, shape, src, 0), nil
}

// PadOpts is ONNX Pad: Pads holds the begin pads of every axis then the end
// pads (negative pads crop); Mode is "constant" (or ""), "reflect" or
// "edge".
type PadOpts struct {
	Pads  []int
	Mode  string
	Value float32 // constant mode's fill
}

// Pad is ONNX Pad. In reflect and edge modes one input pixel feeds several
// output pixels and the backward pass sums their gradients.
func (t *Tape) Pad(x *Var, o PadOpts) (*Var, error) {
	if err := checkVars("Pad", x); err != nil {
		return nil, err
	}
	r := len(x.Shape)
	if len(o.Pads) != 2*r {
		return nil, fmt.Errorf("grad: Pad of rank %d wants %d pads, got %v", r, 2*r, o.Pads)
	}
	mode := o.Mode
	if mode == "" {
		mode = "constant"
	}
	shape := make([]int, r)
	for i := range r {
		shape[i] = x.Shape[i] + o.Pads[i] + o.Pads[r+i]
		if shape[i] < 0 {
			return nil, fmt.Errorf("grad: Pad %v crops more than axis %d of %v", o.Pads, i, x.Shape)
		}
		switch mode {
		case "constant":
		case "reflect":
			if (o.Pads[i] > 0 || o.Pads[r+i] > 0) && (o.Pads[i] >= x.Shape[i] || o.Pads[r+i] >= x.Shape[i]) {
				return nil, fmt.Errorf("grad: reflect Pad %v needs pads smaller than axis %d of %v", o.Pads, i, x.Shape)
			}
		case "edge":
			if (o.Pads[i] > 0 || o.Pads[r+i] > 0) && x.Shape[i] == 0 {
				return nil, fmt.Errorf("grad: edge Pad of an empty axis %d of %v", i, x.Shape)
			}
		default:
			return nil, fmt.Errorf("grad: Pad mode %q: want constant, reflect or edge", mode)
		}
	}
	// coord maps an output coordinate on axis d to the input's, or -1.
	coord := func(d, c int) int {
		c -= o.Pads[d]
		n := x.Shape[d]
		if c >= 0 && c < n {
			return c
		}
		switch mode {
		case "reflect":
			if c < 0 {
				return -c
			}
			return 2*(n-1) - c
		case "edge":
			return min(max(c, 0), n-1)
		}
		return -1
	}
	maps := make([][]int, r)
	for d := range r {
		maps[d] = make([]int, shape[d])
		for c := range shape[d] {
			maps[d][c] = coord(d, c)
		}
	}
	return t.gather(x, shape, gatherIndex(x.Shape, shape, maps), o.Value), nil
}

// gatherIndex composes per-axis coordinate maps (maps[d][c]: the input
// coordinate output coordinate c of axis d reads, -1 for none) into flat
// indices.
func gatherIndex(in, shape []int, maps [][]int) []int32 {
	n := 1
	for _, d := range shape {
		n *= d
	}
	src := make([]int32, n)
	if n == 0 {
		return src
	}
	strides := make([]int, len(in))
	s := 1
	for d := len(in) - 1; d >= 0; d-- {
		strides[d] = s
		s *= in[d]
	}
	idx := make([]int, len(shape))
	for i := range src {
		off := 0
		for d, c := range idx {
			m := maps[d][c]
			if m < 0 {
				off = -1
				break
			}
			off += m * strides[d]
		}
		src[i] = int32(off)
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return src
}

// ResizeOpts is ONNX Resize in mode "nearest" on the last two axes: the
// output size, and how an output pixel finds its source:
// CoordMode "half_pixel" (ONNX's default) or "asymmetric" (PyTorch's nearest
// Upsample export), NearestMode "round_prefer_floor" (default) or "floor".
type ResizeOpts struct {
	Height, Width int
	// Mode is nearest (the default) or linear (bilinear on NCHW).
	Mode        string
	CoordMode   string
	NearestMode string
}

// Resize is ONNX Resize of an NCHW tensor over its height and width,
// nearest-neighbour or bilinear; an input pixel that feeds several outputs
// gets the sum of their gradients, each times its weight.
func (t *Tape) Resize(x *Var, o ResizeOpts) (*Var, error) {
	if err := checkVars("Resize", x); err != nil {
		return nil, err
	}
	if len(x.Shape) != 4 || o.Height < 1 || o.Width < 1 {
		return nil, fmt.Errorf("grad: Resize of %v to %dx%d", x.Shape, o.Height, o.Width)
	}
	switch o.Mode {
	case "", "nearest":
	case "linear":
		return t.resizeLinear(x, o)
	default:
		return nil, fmt.Errorf("grad: Resize mode %q: want nearest or linear", o.Mode)
	}
	cm, nm := o.CoordMode, o.NearestMode
	if cm == "" {
		cm = "half_pixel"
	}
	if nm == "" {
		nm = "round_prefer_floor"
	}
	if cm != "half_pixel" && cm != "asymmetric" {
		return nil, fmt.Errorf("grad: Resize coordinate_transformation_mode %q: want half_pixel or asymmetric", cm)
	}
	if nm != "round_prefer_floor" && nm != "floor" {
		return nil, fmt.Errorf("grad: Resize nearest_mode %q: want round_prefer_floor or floor", nm)
	}
	axis := func(in, outN int) []int {
		scale := float64(outN) / float64(in)
		m := make([]int, outN)
		for c := range m {
			v := float64(c) / scale
			if cm == "half_pixel" {
				v = (float64(c)+0.5)/scale - 0.5
			}
			var s int
			if nm == "floor" {
				s = int(math.Floor(v))
			} else if v == math.Floor(v)+0.5 {
				s = int(math.Floor(v))
			} else {
				s = int(math.Round(v))
			}
			m[c] = min(max(s, 0), in-1)
		}
		return m
	}
	n, c := x.Shape[0], x.Shape[1]
	ident := func(k int) []int {
		m := make([]int, k)
		for i := range m {
			m[i] = i
		}
		return m
	}
	shape := []int{n, c, o.Height, o.Width}
	maps := [][]int{ident(n), ident(c), axis(x.Shape[2], o.Height), axis(x.Shape[3], o.Width)}
	return t.gather(x, shape, gatherIndex(x.Shape, shape, maps), 0), nil
}

// linearTaps is one axis of a bilinear Resize: output coordinate i reads
// input i0[i] with weight w0[i] and i1[i] with 1 − w0[i], as ONNX Runtime
// computes it (the source coordinate clamped to the input, the scale
// out/in).
func linearTaps(in, out int, mode string) (i0, i1 []int, w0 []float32, err error) {
	scale := float64(out) / float64(in)
	i0, i1, w0 = make([]int, out), make([]int, out), make([]float32, out)
	for i := range out {
		var v float64
		switch mode {
		case "", "half_pixel":
			v = (float64(i)+0.5)/scale - 0.5
		case "pytorch_half_pixel":
			if out > 1 {
				v = (float64(i)+0.5)/scale - 0.5
			}
		case "align_corners":
			if out > 1 {
				v = float64(i) * float64(in-1) / float64(out-1)
			}
		case "asymmetric":
			v = float64(i) / scale
		default:
			return nil, nil, nil, fmt.Errorf("grad: linear Resize coordinate_transformation_mode %q: want half_pixel, pytorch_half_pixel, align_corners or asymmetric", mode)
		}
		v = min(max(v, 0), float64(in-1))
		a := min(int(v), in-1)
		b := min(a+1, in-1)
		i0[i], i1[i] = a, b
		if a == b {
			w0[i] = 1
		} else {
			w0[i] = float32(float64(b) - v)
		}
	}
	return i0, i1, w0, nil
}

// resizeLinear is Resize in linear mode: each output is the bilinear mix
// of four input pixels.
func (t *Tape) resizeLinear(x *Var, o ResizeOpts) (*Var, error) {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	r0, r1, rw, err := linearTaps(h, o.Height, o.CoordMode)
	if err != nil {
		return nil, err
	}
	c0, c1, cw, err := linearTaps(w, o.Width, o.CoordMode)
	if err != nil {
		return nil, err
	}
	y := out([]int{n, c, o.Height, o.Width}, x)
	each := func(f func(yi, p00, p01, p10, p11 int, w00, w01, w10, w11 float32)) {
		for p := range n * c {
			src, dst := p*h*w, p*o.Height*o.Width
			for i := range o.Height {
				a, b, wa := src+r0[i]*w, src+r1[i]*w, rw[i]
				for j := range o.Width {
					wl := cw[j]
					f(dst+i*o.Width+j, a+c0[j], a+c1[j], b+c0[j], b+c1[j], wa*wl, wa*(1-wl), (1-wa)*wl, (1-wa)*(1-wl))
				}
			}
		}
	}
	each(func(yi, p00, p01, p10, p11 int, w00, w01, w10, w11 float32) {
		y.Data[yi] = w00*x.Data[p00] + w01*x.Data[p01] + w10*x.Data[p10] + w11*x.Data[p11]
	})
	if y.needsGrad {
		t.record(func() {
			if y.Grad == nil {
				return
			}
			dx := x.grad()
			each(func(yi, p00, p01, p10, p11 int, w00, w01, w10, w11 float32) {
				g := y.Grad[yi]
				dx[p00] += w00 * g
				dx[p01] += w01 * g
				dx[p10] += w10 * g
				dx[p11] += w11 * g
			})
		})
	}
	return y, nil
}
