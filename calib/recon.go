package calib

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/srquant/srq/qdq"
)

// This file holds the numerics of layer-wise reconstruction: what a Conv's
// quantization does to the Conv's own output, measured on windows of its
// real input. A Conv computes, at each output position, W·x with x the
// im2col window (C·kh·kw values, in the weight's order); so the error its
// input quantizer q causes there is W·(x − q(x)), and the one its weights
// cause is (W − Ŵ)·x̂. Both are measured on a few thousand windows sampled
// from the calibration patches, not on whole tensors: enough to rank
// candidate quantizers, small enough to search in seconds on a CPU.
//
// A grouped Conv (depthwise included) is G independent Convs side by side:
// a window holds all C input channels, channel-major, so group g's
// (C/G)·kh·kw columns are one contiguous run of it, and output channel o
// (group o/(O/G)) reads only that run. Windows are therefore cut the same
// way for every group count, and ConvWeights says which run each row of
// the weight reads.

// ConvWeights is a Conv's float weight as reconstruction reads it: Out
// rows, one per output channel, of D/Groups values each (OIHW order), D
// being the window length. Row o belongs to group g = o/(Out/Groups) and
// reads columns [g·D/Groups, (g+1)·D/Groups) of a window.
type ConvWeights struct {
	W           []float32
	Out, Groups int
}

// rowLen checks w against windows of length d and returns the length of
// one row (the columns of one group).
func (w ConvWeights) rowLen(d int) (int, error) {
	g := max(w.Groups, 1)
	if w.Out <= 0 || w.Out%g != 0 || d <= 0 || d%g != 0 || len(w.W) != w.Out*(d/g) {
		return 0, fmt.Errorf("%d weights in %d output channels and %d groups do not fit windows of %d values (want %d×%d/%d)", len(w.W), w.Out, g, d, w.Out, d, g)
	}
	return d / g, nil
}

// col returns the first window column row o reads, for rows of length dg.
func (w ConvWeights) col(o, dg int) int { return o / (w.Out / max(w.Groups, 1)) * dg }

// Windows is a sample of a Conv's input windows: K rows of D values.
type Windows struct {
	K, D int
	X    []float32
}

// Row returns window k.
func (w *Windows) Row(k int) []float32 { return w.X[k*w.D : (k+1)*w.D] }

// columns returns the windows' columns [lo, lo+n) as windows of n values.
func (w *Windows) columns(lo, n int) *Windows {
	if lo == 0 && n == w.D {
		return w
	}
	out := &Windows{K: w.K, D: n, X: make([]float32, w.K*n)}
	for k := range w.K {
		copy(out.X[k*n:(k+1)*n], w.X[k*w.D+lo:k*w.D+lo+n])
	}
	return out
}

// parallelSum spreads k rows over the cores and sums f over them.
func parallelSum(k int, f func(row int) float64) float64 {
	workers := min(runtime.GOMAXPROCS(0), max(1, k/64))
	parts := make([]float64, workers)
	var wg sync.WaitGroup
	for p := range workers {
		wg.Go(func() {
			var s float64
			for i := p; i < k; i += workers {
				s += f(i)
			}
			parts[p] = s
		})
	}
	wg.Wait()
	var s float64
	for _, v := range parts {
		s += v
	}
	return s
}

// OutputError returns Σ_k Σ_o (W_o · e_k)², the squared error the input
// errors e (one window per row) cause at the Conv's outputs, each row of
// w reading its group's columns. Rows are spread over the cores. It fails
// when w does not fit windows of e's length.
func OutputError(w ConvWeights, e *Windows) (float64, error) {
	dg, err := w.rowLen(e.D)
	if err != nil {
		return 0, fmt.Errorf("calib: output error: %w", err)
	}
	return parallelSum(e.K, func(k int) float64 {
		row := e.Row(k)
		var s float64
		for o := range w.Out {
			c := w.col(o, dg)
			v := float64(Dot(w.W[o*dg:(o+1)*dg], row[c:c+dg]))
			s += v * v
		}
		return s
	}), nil
}

// ReconError returns Σ_k Σ_o (W_o·x_k − Ŵ_o·x̂_k)²: the output error of
// weights wq (w's layout) on inputs xq against the float weights on x.
func ReconError(w ConvWeights, wq []float32, x, xq *Windows) (float64, error) {
	dg, err := w.rowLen(x.D)
	if err != nil {
		return 0, fmt.Errorf("calib: reconstruction error: %w", err)
	}
	if len(wq) != len(w.W) || xq.D != x.D || xq.K != x.K {
		return 0, fmt.Errorf("calib: %d quantized weights on %d×%d windows, want %d on %d×%d", len(wq), xq.K, xq.D, len(w.W), x.K, x.D)
	}
	return parallelSum(x.K, func(k int) float64 {
		a, b := x.Row(k), xq.Row(k)
		var s float64
		for o := range w.Out {
			c := w.col(o, dg)
			v := float64(Dot(w.W[o*dg:(o+1)*dg], a[c:c+dg]) - Dot(wq[o*dg:(o+1)*dg], b[c:c+dg]))
			s += v * v
		}
		return s
	}), nil
}

// Dot is a float32 dot product with four accumulators.
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// InputErrors returns x − q(x) for every window of x (q applied per value).
func InputErrors(x *Windows, q qdq.Quantizer) *Windows {
	return mapWindows(x, func(v float32) float32 { return v - q.FakeQuant(v) })
}

// Quantized returns q(x) for every window of x.
func Quantized(x *Windows, q qdq.Quantizer) *Windows {
	return mapWindows(x, q.FakeQuant)
}

// mapWindows returns f applied to every value of x, windows spread over
// the cores (the tuner calls it for every candidate quantizer of every
// layer: a million values each).
func mapWindows(x *Windows, f func(float32) float32) *Windows {
	e := &Windows{K: x.K, D: x.D, X: make([]float32, len(x.X))}
	workers := min(runtime.GOMAXPROCS(0), max(1, x.K/64))
	var wg sync.WaitGroup
	for p := range workers {
		wg.Go(func() {
			for k := p; k < x.K; k += workers {
				for i := k * x.D; i < (k+1)*x.D; i++ {
					e.X[i] = f(x.X[i])
				}
			}
		})
	}
	wg.Wait()
	return e
}

// GPTQ quantizes the weight w on the symmetric grids ps (one per output
// channel, or one for all) so that the Conv's output on the windows x
// stays close to the float one: column by column, each rounding error is
// pushed onto the columns not yet quantized in proportion to the inverse
// Hessian H⁻¹, H = XᵀX/K + λI (Frantar et al., GPTQ, 2023; the layer-wise
// objective of OBQ). λ is damp times the mean of H's diagonal. A grouped
// Conv is one such problem per group, over the group's rows and its
// (C/G)·kh·kw columns of the windows (a depthwise 3×3 Conv: C problems of
// 9 columns). It returns the weights on the grid (float, exactly
// ps[o].Dequantize of their codes). With H = I it is round-to-nearest.
func GPTQ(w ConvWeights, ps []qdq.Params, x *Windows, damp float64) ([]float32, error) {
	dg, err := w.rowLen(x.D)
	if err != nil {
		return nil, fmt.Errorf("calib: gptq: %w", err)
	}
	if len(ps) != w.Out && len(ps) != 1 {
		return nil, fmt.Errorf("calib: gptq: %d weight quantizers for %d output channels", len(ps), w.Out)
	}
	groups := max(w.Groups, 1)
	per := w.Out / groups
	res := make([]float32, len(w.W))
	for g := range groups {
		pg := ps
		if len(ps) != 1 {
			pg = ps[g*per : (g+1)*per]
		}
		q, err := gptq(w.W[g*per*dg:(g+1)*per*dg], per, pg, x.columns(g*dg, dg), damp)
		if err != nil {
			if groups > 1 {
				return nil, fmt.Errorf("calib: gptq: group %d of %d: %w", g, groups, err)
			}
			return nil, fmt.Errorf("calib: gptq: %w", err)
		}
		copy(res[g*per*dg:], q)
	}
	return res, nil
}

// gptq is GPTQ for one group: out rows of x.D weights.
func gptq(w []float32, out int, ps []qdq.Params, x *Windows, damp float64) ([]float32, error) {
	d := x.D
	h := hessian(x)
	var mean float64
	for i := range d {
		mean += h[i*d+i] / float64(d)
	}
	lambda := damp * mean
	if lambda <= 0 {
		lambda = 1e-8
	}
	for i := range d {
		h[i*d+i] += lambda
	}
	u, err := invCholeskyUpper(h, d)
	if err != nil {
		return nil, err
	}
	wq := make([]float64, len(w))
	for i, v := range w {
		wq[i] = float64(v)
	}
	res := make([]float32, len(w))
	for j := range d {
		ujj := u[j*d+j]
		for o := range out {
			p := ps[min(o, len(ps)-1)]
			v := wq[o*d+j]
			q := p.FakeQuant(float32(v))
			res[o*d+j] = q
			errj := (v - float64(q)) / ujj
			row := wq[o*d : (o+1)*d]
			urow := u[j*d : (j+1)*d]
			for k := j + 1; k < d; k++ {
				row[k] -= errj * urow[k]
			}
		}
	}
	return res, nil
}

// hessian returns XᵀX/K (D×D, float64) over the windows.
func hessian(x *Windows) []float64 {
	d := x.D
	h := make([]float64, d*d)
	workers := min(runtime.GOMAXPROCS(0), max(1, d/32))
	var wg sync.WaitGroup
	for p := range workers {
		wg.Go(func() {
			for i := p; i < d; i += workers {
				hi := h[i*d : (i+1)*d]
				for k := range x.K {
					row := x.X[k*d : (k+1)*d]
					xi := float64(row[i])
					if xi == 0 {
						continue
					}
					for j := i; j < d; j++ {
						hi[j] += xi * float64(row[j])
					}
				}
			}
		})
	}
	wg.Wait()
	inv := 1 / float64(max(x.K, 1))
	for i := range d {
		for j := i; j < d; j++ {
			h[i*d+j] *= inv
			h[j*d+i] = h[i*d+j]
		}
	}
	return h
}

// invCholeskyUpper returns the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU),
// as GPTQ uses it: row j holds how the error of column j spreads onto the
// later columns, U[j][j] its scale.
func invCholeskyUpper(h []float64, d int) ([]float64, error) {
	l, err := cholesky(h, d) // H = L Lᵀ
	if err != nil {
		return nil, err
	}
	// H⁻¹ = L⁻ᵀ L⁻¹: invert L (lower triangular) row by row, form H⁻¹ as a
	// sum of outer products of L⁻¹'s rows, factor it again. Every inner
	// loop runs along a row.
	li := make([]float64, d*d)
	for i := range d {
		row := li[i*d : (i+1)*d]
		row[i] = 1
		for k := 0; k < i; k++ {
			if lik := l[i*d+k]; lik != 0 {
				for j, v := range li[k*d : k*d+k+1] {
					row[j] -= lik * v
				}
			}
		}
		inv := 1 / l[i*d+i]
		for j := 0; j <= i; j++ {
			row[j] *= inv
		}
	}
	hinv := make([]float64, d*d)
	for k := range d {
		rk := li[k*d : k*d+k+1]
		for i, a := range rk {
			if a == 0 {
				continue
			}
			hi := hinv[i*d : i*d+k+1]
			for j, v := range rk {
				hi[j] += a * v
			}
		}
	}
	c, err := cholesky(hinv, d) // H⁻¹ = C Cᵀ, so U = Cᵀ
	if err != nil {
		return nil, err
	}
	u := make([]float64, d*d)
	for i := range d {
		for j := 0; j <= i; j++ {
			u[j*d+i] = c[i*d+j]
		}
	}
	return u, nil
}

// cholesky returns L with H = L Lᵀ (lower triangular, row-major).
func cholesky(h []float64, d int) ([]float64, error) {
	l := make([]float64, d*d)
	for i := range d {
		for j := 0; j <= i; j++ {
			s := h[i*d+j]
			for k := 0; k < j; k++ {
				s -= l[i*d+k] * l[j*d+k]
			}
			if i == j {
				if !(s > 0) || math.IsInf(s, 0) {
					return nil, fmt.Errorf("calib: gptq: Hessian not positive definite at column %d", i)
				}
				l[i*d+i] = math.Sqrt(s)
			} else {
				l[i*d+j] = s / l[j*d+j]
			}
		}
	}
	return l, nil
}

// MeanOutputShift returns, per output channel, the mean over the windows of
// W·x − Ŵ·x̂: what bias correction adds to the bias so that the quantized
// Conv's output has the float one's mean.
func MeanOutputShift(w ConvWeights, wq []float32, x, xq *Windows) ([]float64, error) {
	dg, err := w.rowLen(x.D)
	if err != nil {
		return nil, fmt.Errorf("calib: mean output shift: %w", err)
	}
	if len(wq) != len(w.W) || xq.D != x.D || xq.K != x.K {
		return nil, fmt.Errorf("calib: %d quantized weights on %d×%d windows, want %d on %d×%d", len(wq), xq.K, xq.D, len(w.W), x.K, x.D)
	}
	shift := make([]float64, w.Out)
	for k := range x.K {
		a, b := x.Row(k), xq.Row(k)
		for o := range w.Out {
			c := w.col(o, dg)
			shift[o] += float64(Dot(w.W[o*dg:(o+1)*dg], a[c:c+dg]) - Dot(wq[o*dg:(o+1)*dg], b[c:c+dg]))
		}
	}
	for o := range shift {
		shift[o] /= float64(max(x.K, 1))
	}
	return shift, nil
}
