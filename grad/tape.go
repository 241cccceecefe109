package grad

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// Var is a float32 tensor in row-major (NCHW) order on a Tape, with the
// gradient of the loss with respect to it once Backward has run.
//
// Data is owned by the Var: ops read it, never write it, and Backward only
// writes Grad. Grad is nil until a gradient reaches the Var; on a parameter
// it accumulates over Backward calls (ZeroGrad clears it), as an optimizer
// that sums the gradients of several batches wants.
type Var struct {
	Shape []int
	Data  []float32
	Grad  []float32
	// needsGrad: a parameter, or computed from one. Ops record no backward
	// step for outputs that do not need a gradient, so frozen parts of a
	// network cost only their forward pass.
	needsGrad bool
}

// NeedsGrad reports whether gradients flow to v.
func (v *Var) NeedsGrad() bool { return v.needsGrad }

// ZeroGrad sets v's gradient to zero (keeping its buffer).
func (v *Var) ZeroGrad() { clear(v.Grad) }

// Len is the number of elements.
func (v *Var) Len() int { return len(v.Data) }

// grad returns v's gradient buffer, allocating it on first use.
func (v *Var) grad() []float32 {
	if v.Grad == nil {
		v.Grad = make([]float32, len(v.Data))
	}
	return v.Grad
}

// Tape records the backward step of every op applied to Vars that need a
// gradient, in order; Backward runs them in reverse. One tape serves one
// forward pass: Backward consumes it, and the next forward pass records on
// the emptied tape.
//
// A Tape is not safe for concurrent use: ops on one tape run one at a time
// (each op may use Workers goroutines inside).
type Tape struct {
	steps []func()
	// Workers is the number of goroutines an op's hot loop may use (Conv
	// over the batch, GEMM-shaped work over rows); NewTape sets it to
	// GOMAXPROCS.
	Workers int
	// Kernels, when set, computes Conv's products (package grad/ortconv
	// runs them in ONNX Runtime); nil runs them in Go.
	Kernels ConvKernels
	// err is the first error of a backward step (a Conv kernel's), which
	// Backward returns.
	err error
}

// NewTape returns an empty tape whose ops use GOMAXPROCS goroutines.
func NewTape() *Tape { return &Tape{Workers: runtime.GOMAXPROCS(0)} }

// record adds a backward step.
func (t *Tape) record(f func()) { t.steps = append(t.steps, f) }

// Len is the number of backward steps recorded.
func (t *Tape) Len() int { return len(t.steps) }

// Reset drops the recorded steps without running them (a forward pass
// whose gradient is not wanted).
func (t *Tape) Reset() {
	clear(t.steps)
	t.steps = t.steps[:0]
}

// Backward adds dy to y's gradient (dy nil: ones, the seed of a scalar
// loss) and runs the recorded steps in reverse, accumulating gradients into
// every Var that needs one. The tape is empty afterwards.
func (t *Tape) Backward(y *Var, dy []float32) error {
	if y == nil {
		return fmt.Errorf("grad: backward from a nil Var")
	}
	if !y.needsGrad {
		t.Reset()
		return fmt.Errorf("grad: backward from a value that depends on no parameter")
	}
	g := y.grad()
	switch {
	case dy == nil:
		for i := range g {
			g[i]++
		}
	case len(dy) != len(g):
		t.Reset()
		return fmt.Errorf("grad: backward seed of %d values for a %v output", len(dy), y.Shape)
	default:
		for i, v := range dy {
			g[i] += v
		}
	}
	for i := len(t.steps) - 1; i >= 0; i-- {
		t.steps[i]()
	}
	t.Reset()
	err := t.err
	t.err = nil
	return err
}

// Param returns a Var that gradients flow to: a weight, a quantizer's step
// or bound, an AdaRound V. data is used, not copied.
func (t *Tape) Param(shape []int, data []float32) (*Var, error) {
	v, err := newVar(shape, data)
	if err != nil {
		return nil, err
	}
	v.needsGrad = true
	return v, nil
}

// Const returns a Var no gradient flows to (an input image, a frozen
// weight). data is used, not copied.
func (t *Tape) Const(shape []int, data []float32) (*Var, error) {
	return newVar(shape, data)
}

func newVar(shape []int, data []float32) (*Var, error) {
	n, err := numel(shape)
	if err != nil {
		return nil, err
	}
	if n != len(data) {
		return nil, fmt.Errorf("grad: shape %v holds %d values, data has %d", shape, n, len(data))
	}
	return &Var{Shape: slices.Clone(shape), Data: data}, nil
}

// out returns a zeroed output Var of shape that needs a gradient when any
// of ins does.
func out(shape []int, ins ...*Var) *Var {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := &Var{Shape: shape, Data: make([]float32, n)}
	for _, in := range ins {
		if in != nil && in.needsGrad {
			v.needsGrad = true
		}
	}
	return v
}

func numel(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("grad: negative dimension in shape %v", shape)
		}
		n *= d
	}
	return n, nil
}

// needs reports whether v is a Var gradients flow to.
func needs(v *Var) bool { return v != nil && v.needsGrad }

// parallel runs f over [0, n) split into at most workers contiguous chunks,
// one goroutine each; chunk w is [lo, hi). With one worker or n < 2 it runs
// inline.
func parallel(n, workers int, f func(w, lo, hi int)) {
	workers = min(max(workers, 1), n)
	if workers <= 1 {
		if n > 0 {
			f(0, 0, n)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*n/workers, (w+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(w, lo, hi)
		}()
	}
	wg.Wait()
}

// checkVars reports a nil Var, or one whose Data does not fill its Shape,
// among an op's inputs: ops index Data by Shape, and a Var built by hand
// (its fields are exported) could otherwise make them panic.
func checkVars(op string, vs ...*Var) error {
	for i, v := range vs {
		if v == nil {
			return fmt.Errorf("grad: %s input %d is nil", op, i)
		}
		if err := checkOptional(op, v); err != nil {
			return err
		}
	}
	return nil
}

// checkOptional is checkVars for an input that may be nil (a bias).
func checkOptional(op string, v *Var) error {
	if v == nil {
		return nil
	}
	n, err := numel(v.Shape)
	if err != nil {
		return fmt.Errorf("grad: %s: %w", op, err)
	}
	if n != len(v.Data) {
		return fmt.Errorf("grad: %s input of shape %v holds %d values, not %d", op, v.Shape, len(v.Data), n)
	}
	return nil
}
