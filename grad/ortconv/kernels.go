package ortconv

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/srquant/srq/grad"
	"github.com/srquant/srq/ort"
)

// Options configures Kernels.
type Options struct {
	// Threads is each session's intra-op thread count; 0 means 1. One
	// thread beat two on a loaded 2-core machine (grad's doc.go, and
	// BenchmarkTapeConv here); measure where the tuner runs.
	Threads int
	// EP is the execution provider ("" or "cpu", "cuda"; see ort.Options).
	EP string
}

// Kernels is grad.ConvKernels in ONNX Runtime: one session per distinct
// Conv (shapes and attributes) and product (forward, dX, dW), built the
// first time that Conv runs and kept until Close. An SR network has a few
// distinct Convs, so a training loop over same-sized batches builds its
// sessions in the first step and reuses them after.
//
// ort.Init must have succeeded before the first call. Kernels is safe for
// concurrent use (runs of one session are serialised, they share an output
// buffer). Every Conv with positive dimensions is handled, groups
// included.
type Kernels struct {
	opts ort.Options

	mu       sync.Mutex
	sessions map[key]*entry
	closed   bool
}

var _ grad.ConvKernels = (*Kernels)(nil)

// New returns Kernels whose sessions are built with o.
func New(o Options) *Kernels {
	return &Kernels{
		opts:     ort.Options{Threads: max(o.Threads, 1), EP: o.EP},
		sessions: map[key]*entry{},
	}
}

type product int

const (
	forward product = iota
	backwardData
	backwardWeight
)

func (p product) String() string {
	return [...]string{"forward", "input gradient", "weight gradient"}[p]
}

type key struct {
	x, w [4]int
	o    grad.ConvOpts
	p    product
}

// entry is one cached session; mu guards its build and its runs.
type entry struct {
	mu   sync.Mutex
	sess *ort.Session
	err  error // the build's, kept: a failed build is not retried
	out  []*ort.Tensor
}

// Len is the number of sessions built (or failed to build).
func (k *Kernels) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.sessions)
}

// Close frees every session. Calls after Close return an error.
func (k *Kernels) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for _, e := range k.sessions {
		e.mu.Lock()
		if e.sess != nil {
			errs = append(errs, e.sess.Close())
			e.sess = nil
		}
		e.mu.Unlock()
	}
	clear(k.sessions)
	k.closed = true
	return errors.Join(errs...)
}

// session returns the locked entry for (xShape, wShape, o, p), building its
// session on first use; the caller unlocks it. ok is false for shapes ORT
// cannot take (a zero dimension).
func (k *Kernels) session(xShape, wShape []int, o grad.ConvOpts, p product) (e *entry, ok bool, err error) {
	if len(xShape) != 4 || len(wShape) != 4 {
		return nil, false, nil
	}
	kk := key{x: [4]int(xShape), w: [4]int(wShape), o: o.WithDefaults(), p: p}
	for _, d := range append(kk.x[:], kk.w[:]...) {
		if d <= 0 {
			return nil, false, nil
		}
	}
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil, false, errors.New("ortconv: Kernels used after Close")
	}
	e = k.sessions[kk]
	if e == nil {
		e = &entry{}
		k.sessions[kk] = e
	}
	e.mu.Lock() // before k.mu is released: Close cannot free it under us
	k.mu.Unlock()
	if e.sess == nil && e.err == nil {
		e.sess, e.err = k.build(kk)
	}
	if e.err != nil {
		e.mu.Unlock()
		return nil, false, e.err
	}
	return e, true, nil
}

func (k *Kernels) build(kk key) (*ort.Session, error) {
	var model []byte
	var err error
	switch kk.p {
	case forward:
		model, err = ForwardModel(kk.x[:], kk.w[:], kk.o)
	case backwardData:
		model, err = BackwardModel(kk.x[:], kk.w[:], kk.o, true, DWNone)
	default:
		model, err = BackwardModel(kk.x[:], kk.w[:], kk.o, false, DWTaps)
	}
	if err != nil {
		return nil, fmt.Errorf("ortconv: %s graph of Conv %v by %v: %w", kk.p, kk.x, kk.w, err)
	}
	name := fmt.Sprintf("ortconv %s %v*%v %+v", kk.p, kk.x, kk.w, kk.o)
	return ort.NewSession(model, name, k.opts)
}

func tensor(shape []int, data []float32) *ort.Tensor {
	return &ort.Tensor{Shape: dims(shape...), Data: data}
}

// Forward implements grad.ConvKernels: ORT writes y in place.
func (k *Kernels) Forward(x, w []float32, xShape, wShape []int, o grad.ConvOpts, y []float32) (bool, error) {
	e, ok, err := k.session(xShape, wShape, o, forward)
	if !ok {
		return false, err
	}
	defer e.mu.Unlock()
	yShape, err := grad.ConvOutputShape(xShape, wShape, o)
	if err != nil {
		return false, err
	}
	_, err = e.sess.RunReuse(context.Background(), []*ort.Tensor{tensor(yShape, y)}, tensor(xShape, x), tensor(wShape, w))
	return err == nil, err
}

// accumulate runs e's session into its output buffer and adds the result
// into dst.
func (e *entry) accumulate(dst []float32, outShape []int, in ...*ort.Tensor) (bool, error) {
	if e.out == nil {
		e.out = []*ort.Tensor{tensor(outShape, make([]float32, len(dst)))}
	}
	if len(e.out[0].Data) != len(dst) {
		return false, fmt.Errorf("ortconv: %d values to accumulate into, want %d", len(dst), len(e.out[0].Data))
	}
	res, err := e.sess.RunReuse(context.Background(), e.out, in...)
	if err != nil {
		return false, err
	}
	for i, v := range res[0].Data {
		dst[i] += v
	}
	return true, nil
}

// BackwardData implements grad.ConvKernels (ConvTranspose).
func (k *Kernels) BackwardData(dy, w []float32, xShape, wShape []int, o grad.ConvOpts, dx []float32) (bool, error) {
	return k.backward(backwardData, xShape, wShape, o, dy, tensor(wShape, w), dx, xShape)
}

// BackwardWeight implements grad.ConvKernels (a Gemm per kernel tap).
func (k *Kernels) BackwardWeight(x, dy []float32, xShape, wShape []int, o grad.ConvOpts, dw []float32) (bool, error) {
	return k.backward(backwardWeight, xShape, wShape, o, dy, tensor(xShape, x), dw, wShape)
}

// backward runs product p on the forward operand it needs (W for dX, X
// for dW) and dY, adding the result into dst.
func (k *Kernels) backward(p product, xShape, wShape []int, o grad.ConvOpts, dy []float32, operand *ort.Tensor, dst []float32, dstShape []int) (bool, error) {
	e, ok, err := k.session(xShape, wShape, o, p)
	if !ok {
		return false, err
	}
	defer e.mu.Unlock()
	yShape, err := grad.ConvOutputShape(xShape, wShape, o)
	if err != nil {
		return false, err
	}
	return e.accumulate(dst, dstShape, operand, tensor(yShape, dy))
}
