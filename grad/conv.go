package grad

import (
	"fmt"
	"sync"
)

// ConvOpts are ONNX Conv's attributes. Zero values mean ONNX's defaults:
// stride 1, no padding, dilation 1, one group.
type ConvOpts struct {
	Strides   [2]int // (y, x)
	Pads      [4]int // ONNX order: top, left, bottom, right
	Dilations [2]int // (y, x)
	Group     int
}

func (o ConvOpts) norm() ConvOpts {
	for i := range 2 {
		if o.Strides[i] == 0 {
			o.Strides[i] = 1
		}
		if o.Dilations[i] == 0 {
			o.Dilations[i] = 1
		}
	}
	if o.Group == 0 {
		o.Group = 1
	}
	return o
}

// convGeom is one Conv's shapes, checked.
type convGeom struct {
	n, c, h, w     int // input
	m, kh, kw      int // output channels, kernel
	ho, wo         int // output spatial
	g, cg, mg      int // groups, input and output channels per group
	sy, sx, dy, dx int
	pt, pl         int
}

// kg is the rows of a group's im2col matrix, p its columns.
func (g convGeom) kg() int { return g.cg * g.kh * g.kw }
func (g convGeom) p() int  { return g.ho * g.wo }

func newConvGeom(x, w *Var, o ConvOpts) (convGeom, error) {
	var g convGeom
	if len(x.Shape) != 4 || len(w.Shape) != 4 {
		return g, fmt.Errorf("grad: Conv wants a 4-D input and weight, got %v and %v", x.Shape, w.Shape)
	}
	g.n, g.c, g.h, g.w = x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	g.m, g.kh, g.kw = w.Shape[0], w.Shape[2], w.Shape[3]
	g.g = o.Group
	g.sy, g.sx, g.dy, g.dx = o.Strides[0], o.Strides[1], o.Dilations[0], o.Dilations[1]
	g.pt, g.pl = o.Pads[0], o.Pads[1]
	switch {
	case g.g < 1 || g.c%g.g != 0 || g.m%g.g != 0:
		return g, fmt.Errorf("grad: Conv group %d does not divide %d input and %d output channels", g.g, g.c, g.m)
	case w.Shape[1] != g.c/g.g:
		return g, fmt.Errorf("grad: Conv weight %v wants %d input channels per group, input %v has %d in %d groups", w.Shape, w.Shape[1], x.Shape, g.c/g.g, g.g)
	case g.sy < 1 || g.sx < 1 || g.dy < 1 || g.dx < 1:
		return g, fmt.Errorf("grad: Conv strides %v and dilations %v must be positive", o.Strides, o.Dilations)
	case o.Pads[0] < 0 || o.Pads[1] < 0 || o.Pads[2] < 0 || o.Pads[3] < 0:
		return g, fmt.Errorf("grad: Conv pads %v must not be negative", o.Pads)
	}
	g.cg, g.mg = g.c/g.g, g.m/g.g
	ey, ex := g.dy*(g.kh-1)+1, g.dx*(g.kw-1)+1
	hp, wp := g.h+o.Pads[0]+o.Pads[2], g.w+o.Pads[1]+o.Pads[3]
	if hp < ey || wp < ex || g.kh < 1 || g.kw < 1 {
		return g, fmt.Errorf("grad: Conv kernel %dx%d (dilated %dx%d) larger than the padded input %dx%d", g.kh, g.kw, ey, ex, hp, wp)
	}
	g.ho, g.wo = (hp-ey)/g.sy+1, (wp-ex)/g.sx+1
	return g, nil
}

// Conv is ONNX Conv (NCHW; weight [M, C/group, kh, kw]; b nil or [M]) with
// its backward pass. Each sample is an im2col matrix times the weights, one
// GEMM per group; the (sample, group) pairs are split over Workers
// goroutines, each with its own im2col buffer (and, backward, its own
// partial weight gradient), so the hot loops allocate nothing; with fewer
// pairs than workers (one image) the goroutines split each GEMM's output
// rows instead. The im2col matrix is rebuilt in the backward
// pass rather than kept: for an EDSR layer on 16 patches of 48² it would be
// 85 MB.
//
// With t.Kernels set, the forward product and, in the backward pass, dX and
// dW run on those kernels instead (each falling back to Go where the
// kernels return ok=false); the bias and its gradient stay in Go.
func (t *Tape) Conv(x, w, b *Var, o ConvOpts) (*Var, error) {
	if err := checkVars("Conv", x, w); err != nil {
		return nil, err
	}
	if err := checkOptional("Conv", b); err != nil {
		return nil, err
	}
	o = o.norm()
	g, err := newConvGeom(x, w, o)
	if err != nil {
		return nil, err
	}
	if b != nil && (len(b.Shape) != 1 || b.Shape[0] != g.m) {
		return nil, fmt.Errorf("grad: Conv bias %v, want [%d]", b.Shape, g.m)
	}
	y := out([]int{g.n, g.m, g.ho, g.wo}, x, w, b)
	k := t.Kernels
	done := false
	if k != nil {
		if done, err = k.Forward(x.Data, w.Data, x.Shape, w.Shape, o, y.Data); err != nil {
			return nil, fmt.Errorf("grad: Conv %v by %v: %w", x.Shape, w.Shape, err)
		}
	}
	if !done {
		convForward(g, x.Data, w.Data, y.Data, t.Workers)
	}
	p := g.p()
	if b != nil {
		for n := range g.n {
			for m := range g.m {
				row := y.Data[(n*g.m+m)*p : (n*g.m+m+1)*p]
				for i := range row {
					row[i] += b.Data[m]
				}
			}
		}
	}
	if y.needsGrad {
		t.record(func() { t.convBackward(k, g, o, x, w, b, y) })
	}
	return y, nil
}

// convForward adds conv(x, w), without bias, into y.
func convForward(g convGeom, x, w, y []float32, workers int) {
	kg, p := g.kg(), g.p()
	units := g.n * g.g
	if units >= workers || g.mg < 2 {
		// One (sample, group) per goroutine at a time.
		parallel(units, workers, func(_, lo, hi int) {
			col := make([]float32, kg*p)
			for u := lo; u < hi; u++ {
				n, gi := u/g.g, u%g.g
				im2col(g, x, n, gi, col)
				gemmNN(g.mg, p, kg, g.wRows(w, gi, 0, g.mg), col, g.yRows(y, n, gi, 0, g.mg))
			}
		})
		return
	}
	// Fewer (sample, group) pairs than workers (one image through a full
	// Conv): the goroutines split each GEMM's output channels.
	col := make([]float32, kg*p)
	for u := range units {
		n, gi := u/g.g, u%g.g
		im2col(g, x, n, gi, col)
		parallel(g.mg, workers, func(_, lo, hi int) {
			gemmNN(hi-lo, p, kg, g.wRows(w, gi, lo, hi), col, g.yRows(y, n, gi, lo, hi))
		})
	}
}

// convBackward is a Conv's backward step: dX and dW on the kernels k the
// forward pass ran on, when set and they handle the Conv, the rest in Go.
// A kernel's error is recorded for Backward, and its product skipped.
func (t *Tape) convBackward(k ConvKernels, g convGeom, o ConvOpts, x, w, b, y *Var) {
	if y.Grad == nil {
		return
	}
	doX, doW := needs(x), needs(w)
	if k != nil && (doX || doW) {
		// dX and dW are separate kernel calls on separate buffers: with
		// two workers they run at once (ORT's sessions here are
		// single-threaded, so one would otherwise leave a core idle).
		var errX, errW error
		okX, okW := false, false
		dataX := func() { okX, errX = k.BackwardData(y.Grad, w.Data, x.Shape, w.Shape, o, x.grad()) }
		dataW := func() { okW, errW = k.BackwardWeight(x.Data, y.Grad, x.Shape, w.Shape, o, w.grad()) }
		switch {
		case doX && doW && t.Workers > 1:
			x.grad()
			w.grad()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); dataW() }()
			dataX()
			wg.Wait()
		case doX:
			dataX()
		case doW:
			dataW()
		}
		if errX != nil {
			t.fail(fmt.Errorf("grad: Conv %v by %v, input gradient: %w", x.Shape, w.Shape, errX))
		}
		if errW != nil {
			t.fail(fmt.Errorf("grad: Conv %v by %v, weight gradient: %w", x.Shape, w.Shape, errW))
		}
		doX = doX && !okX && errX == nil
		doW = doW && !okW && errW == nil
	}
	convBackward(g, x, w, b, y, t.Workers, doX, doW)
}

// wRows is output channels [lo, hi) of group gi of a weight tensor (or its
// gradient): a [hi−lo, kg] matrix.
func (g convGeom) wRows(w []float32, gi, lo, hi int) []float32 {
	kg := g.kg()
	return w[(gi*g.mg+lo)*kg : (gi*g.mg+hi)*kg]
}

// yRows is output channels [lo, hi) of group gi of sample n of an output
// tensor (or its gradient): a [hi−lo, p] matrix.
func (g convGeom) yRows(y []float32, n, gi, lo, hi int) []float32 {
	p := g.p()
	return y[(n*g.m+gi*g.mg+lo)*p : (n*g.m+gi*g.mg+hi)*p]
}

// convBackward adds the Conv's gradients in Go: dW = Σ dY·colᵀ when needW,
// dcol = Wᵀ·dY folded back onto dX by col2im when needX, db = Σ dY when b
// needs it. Like the forward pass it runs (sample, group) pairs in
// parallel, each goroutine with its own partial dW, or, with fewer pairs
// than workers, splits each GEMM's rows. It reads x.Data only for dW and
// w.Data only for dX.
func convBackward(g convGeom, x, w, b, y *Var, workers int, needX, needW bool) {
	if y.Grad == nil {
		return
	}
	kg, p := g.kg(), g.p()
	var dx []float32
	if needX {
		dx = x.grad()
	}
	needB := needs(b)
	units := g.n * g.g
	if units >= workers || g.mg < 2 {
		workers = min(max(workers, 1), units)
		dws := make([][]float32, workers)
		parallel(units, workers, func(wk, lo, hi int) {
			col := make([]float32, kg*p)
			var dcol, dw []float32
			if dx != nil {
				dcol = make([]float32, kg*p)
			}
			if needW {
				dw = make([]float32, g.m*kg)
				dws[wk] = dw
			}
			for u := lo; u < hi; u++ {
				n, gi := u/g.g, u%g.g
				dyg := g.yRows(y.Grad, n, gi, 0, g.mg)
				if needW {
					im2col(g, x.Data, n, gi, col)
					gemmNT(g.mg, kg, p, dyg, col, g.wRows(dw, gi, 0, g.mg))
				}
				if dx != nil {
					clear(dcol)
					gemmTN(kg, p, g.mg, g.wRows(w.Data, gi, 0, g.mg), dyg, dcol)
					col2im(g, dcol, n, gi, dx) // pairs are disjoint in dX: no race
				}
			}
		})
		if needW {
			dw := w.grad()
			for _, part := range dws {
				for i, v := range part {
					dw[i] += v
				}
			}
		}
	} else {
		col := make([]float32, kg*p)
		var dcol, dw []float32
		if dx != nil {
			dcol = make([]float32, kg*p)
		}
		if needW {
			dw = w.grad()
		}
		for u := range units {
			n, gi := u/g.g, u%g.g
			dyg := g.yRows(y.Grad, n, gi, 0, g.mg)
			if needW {
				im2col(g, x.Data, n, gi, col)
				parallel(g.mg, workers, func(_, lo, hi int) {
					gemmNT(hi-lo, kg, p, dyg[lo*p:hi*p], col, g.wRows(dw, gi, lo, hi))
				})
			}
			if dx != nil {
				wg := g.wRows(w.Data, gi, 0, g.mg)
				clear(dcol)
				parallel(kg, workers, func(_, lo, hi int) {
					// rows [lo, hi) of Wᵀ·dY: columns [lo, hi) of W
					gemm4(hi-lo, p, g.mg, func(i, q int) float32 { return wg[q*kg+lo+i] }, dyg, dcol[lo*p:hi*p])
				})
				col2im(g, dcol, n, gi, dx)
			}
		}
	}
	if needB {
		db := b.grad()
		for n := range g.n {
			for m := range g.m {
				var s float32
				for _, v := range y.Grad[(n*g.m+m)*p : (n*g.m+m+1)*p] {
					s += v
				}
				db[m] += s
			}
		}
	}
}

// im2col writes group gi of sample n as the [cg·kh·kw, ho·wo] matrix whose
// row (c, ky, kx) holds the input pixels that kernel tap meets, 0 in the
// padding.
func im2col(g convGeom, x []float32, n, gi int, col []float32) {
	p := g.p()
	r := 0
	for c := range g.cg {
		plane := x[(n*g.c+gi*g.cg+c)*g.h*g.w : (n*g.c+gi*g.cg+c+1)*g.h*g.w]
		for ky := range g.kh {
			for kx := range g.kw {
				row := col[r*p : (r+1)*p]
				r++
				i := 0
				for oy := range g.ho {
					iy := oy*g.sy - g.pt + ky*g.dy
					dst := row[i : i+g.wo]
					i += g.wo
					if iy < 0 || iy >= g.h {
						clear(dst)
						continue
					}
					src := plane[iy*g.w : (iy+1)*g.w]
					ix := kx*g.dx - g.pl
					if g.sx == 1 && ix >= 0 && ix+g.wo <= g.w {
						copy(dst, src[ix:ix+g.wo])
						continue
					}
					for ox := range dst {
						if ix >= 0 && ix < g.w {
							dst[ox] = src[ix]
						} else {
							dst[ox] = 0
						}
						ix += g.sx
					}
				}
			}
		}
	}
}

// col2im adds the [cg·kh·kw, ho·wo] matrix dcol back onto the input pixels
// each entry came from: the adjoint of im2col.
func col2im(g convGeom, dcol []float32, n, gi int, dx []float32) {
	p := g.p()
	r := 0
	for c := range g.cg {
		plane := dx[(n*g.c+gi*g.cg+c)*g.h*g.w : (n*g.c+gi*g.cg+c+1)*g.h*g.w]
		for ky := range g.kh {
			for kx := range g.kw {
				row := dcol[r*p : (r+1)*p]
				r++
				i := 0
				for oy := range g.ho {
					iy := oy*g.sy - g.pt + ky*g.dy
					src := row[i : i+g.wo]
					i += g.wo
					if iy < 0 || iy >= g.h {
						continue
					}
					dst := plane[iy*g.w : (iy+1)*g.w]
					ix := kx*g.dx - g.pl
					if g.sx == 1 && ix >= 0 && ix+g.wo <= g.w {
						d := dst[ix : ix+g.wo]
						for j, v := range src {
							d[j] += v
						}
						continue
					}
					for _, v := range src {
						if ix >= 0 && ix < g.w {
							dst[ix] += v
						}
						ix += g.sx
					}
				}
			}
		}
	}
}
