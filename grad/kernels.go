package grad

import "fmt"

// ConvKernels computes Conv's three products on raw NCHW float32 slices, so
// that a Tape's Conv, nearly all of an SR network's work, can run on a
// faster executor than Go (package grad/ortconv runs them in ONNX Runtime).
// A Tape with nil Kernels uses GoConv.
//
// xShape is the input's [N, C, H, W], wShape the weight's [M, C/group, kh,
// kw]; o has ONNX's defaults filled in (WithDefaults) and the shapes are
// checked against it before a Tape calls a kernel. The output's shape is
// ConvOutputShape(xShape, wShape, o). A kernel reads its inputs and never
// writes them.
//
// Each method returns ok=false, with no error and its output untouched,
// for a Conv it does not handle (a group count, say); the Tape then
// computes that product in Go. An error means the product failed: Tape.Conv
// returns it from the forward pass, Backward from the backward pass.
type ConvKernels interface {
	// Forward sets y, of the output's shape, to conv(x, w) without bias
	// (overwriting what y held).
	Forward(x, w []float32, xShape, wShape []int, o ConvOpts, y []float32) (ok bool, err error)
	// BackwardData adds the gradient of the input, the output's gradient dy
	// pulled back through the Conv with weight w, into dx (accumulating:
	// dx already holds the gradient other ops sent).
	BackwardData(dy, w []float32, xShape, wShape []int, o ConvOpts, dx []float32) (ok bool, err error)
	// BackwardWeight adds the gradient of the weight, dy pulled back
	// through the Conv of input x, into dw (accumulating).
	BackwardWeight(x, dy []float32, xShape, wShape []int, o ConvOpts, dw []float32) (ok bool, err error)
}

// WithDefaults returns o with ONNX's defaults for its zero fields: stride 1,
// dilation 1, one group.
func (o ConvOpts) WithDefaults() ConvOpts { return o.norm() }

// ConvOutputShape is the [N, M, Ho, Wo] output of a Conv of an input of
// xShape by a weight of wShape, or the error Tape.Conv would return for
// those shapes.
func ConvOutputShape(xShape, wShape []int, o ConvOpts) ([]int, error) {
	g, err := shapeGeom(xShape, wShape, o)
	if err != nil {
		return nil, err
	}
	return []int{g.n, g.m, g.ho, g.wo}, nil
}

func shapeGeom(xShape, wShape []int, o ConvOpts) (convGeom, error) {
	return newConvGeom(&Var{Shape: xShape}, &Var{Shape: wShape}, o.norm())
}

// GoConv is ConvKernels in Go: im2col and a scalar GEMM, over Workers
// goroutines (0: one). It handles every Conv, and is what a Tape with nil
// Kernels runs (with the Tape's Workers).
type GoConv struct {
	Workers int
}

var _ ConvKernels = GoConv{}

// kernelGeom checks a kernel call's shapes, and the lengths of its slices
// shaped like the input, the weight and the output.
func kernelGeom(xShape, wShape []int, o ConvOpts, xLen, wLen, yLen int) (convGeom, error) {
	g, err := shapeGeom(xShape, wShape, o)
	if err != nil {
		return g, err
	}
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"input", xLen, g.n * g.c * g.h * g.w},
		{"weight", wLen, g.m * g.kg()},
		{"output", yLen, g.n * g.m * g.p()},
	} {
		if c.got != c.want {
			return g, fmt.Errorf("grad: Conv kernel: %d values for the %s, want %d", c.got, c.what, c.want)
		}
	}
	return g, nil
}

func (k GoConv) workers() int { return max(k.Workers, 1) }

// Forward implements ConvKernels.
func (k GoConv) Forward(x, w []float32, xShape, wShape []int, o ConvOpts, y []float32) (bool, error) {
	g, err := kernelGeom(xShape, wShape, o, len(x), len(w), len(y))
	if err != nil {
		return false, err
	}
	clear(y)
	convForward(g, x, w, y, k.workers())
	return true, nil
}

// BackwardData implements ConvKernels.
func (k GoConv) BackwardData(dy, w []float32, xShape, wShape []int, o ConvOpts, dx []float32) (bool, error) {
	g, err := kernelGeom(xShape, wShape, o, len(dx), len(w), len(dy))
	if err != nil {
		return false, err
	}
	xv := &Var{Shape: xShape, Grad: dx}
	convBackward(g, xv, &Var{Shape: wShape, Data: w}, nil, &Var{Grad: dy}, k.workers(), true, false)
	return true, nil
}

// BackwardWeight implements ConvKernels.
func (k GoConv) BackwardWeight(x, dy []float32, xShape, wShape []int, o ConvOpts, dw []float32) (bool, error) {
	g, err := kernelGeom(xShape, wShape, o, len(x), len(dw), len(dy))
	if err != nil {
		return false, err
	}
	wv := &Var{Shape: wShape, Grad: dw}
	convBackward(g, &Var{Shape: xShape, Data: x}, wv, nil, &Var{Grad: dy}, k.workers(), false, true)
	return true, nil
}

// fail records the first error of a backward step; Backward returns it.
func (t *Tape) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}
