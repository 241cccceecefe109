package calib

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/srquant/srq/graph"
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

// ConvGeom is what the window of a 2-D Conv needs: input channels, kernel,
// padding (top, left), strides and dilations. Groups are not supported
// (group = 1).
type ConvGeom struct {
	C, KH, KW        int
	PadT, PadL       int
	StrideH, StrideW int
	DilH, DilW       int
}

// ConvGeomOf reads the geometry of a group-1 2-D Conv node with a constant
// OIHW weight of dims w; ok is false for anything else (grouped, 1-D,
// auto_pad), which reconstruction then leaves alone.
func ConvGeomOf(n *graph.Node, w []int64) (ConvGeom, bool) {
	if len(w) != 4 || n.AttrInt("group", 1) != 1 || n.AttrString("auto_pad", "NOTSET") != "NOTSET" {
		return ConvGeom{}, false
	}
	g := ConvGeom{C: int(w[1]), KH: int(w[2]), KW: int(w[3]), StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}
	if p := n.AttrInts("pads"); len(p) == 4 {
		g.PadT, g.PadL = int(p[0]), int(p[1])
	} else if len(p) != 0 {
		return ConvGeom{}, false
	}
	if s := n.AttrInts("strides"); len(s) == 2 {
		g.StrideH, g.StrideW = int(s[0]), int(s[1])
	}
	if d := n.AttrInts("dilations"); len(d) == 2 {
		g.DilH, g.DilW = int(d[0]), int(d[1])
	}
	return g, true
}

// D is the window length C·KH·KW.
func (g ConvGeom) D() int { return g.C * g.KH * g.KW }

// Windows is a sample of a Conv's input windows: K rows of D values.
type Windows struct {
	K, D int
	X    []float32
}

// Row returns window k.
func (w *Windows) Row(k int) []float32 { return w.X[k*w.D : (k+1)*w.D] }

// windowSampler draws positions and cuts windows out of captured tensors.
type windowSampler struct {
	geom ConvGeom
	per  int // windows per patch
	rng  *rand.Rand
	out  *Windows
}

// add cuts per windows out of each patch of the NCHW batch x (dims
// [N, C, H, W]) at output positions drawn uniformly, zero outside the
// image (the Conv's zero padding).
func (s *windowSampler) add(x []float32, dims []int64) {
	g := s.geom
	if len(dims) != 4 || int(dims[1]) != g.C {
		return
	}
	n, c, h, w := int(dims[0]), int(dims[1]), int(dims[2]), int(dims[3])
	oh := (h+2*g.PadT-g.DilH*(g.KH-1)-1)/g.StrideH + 1
	ow := (w+2*g.PadL-g.DilW*(g.KW-1)-1)/g.StrideW + 1
	if oh <= 0 || ow <= 0 {
		return
	}
	d := g.D()
	for i := range n {
		img := x[i*c*h*w : (i+1)*c*h*w]
		for range s.per {
			oy, ox := s.rng.IntN(oh), s.rng.IntN(ow)
			row := make([]float32, d)
			k := 0
			for ch := range c {
				plane := img[ch*h*w : (ch+1)*h*w]
				for ky := range g.KH {
					y := oy*g.StrideH - g.PadT + ky*g.DilH
					for kx := range g.KW {
						xx := ox*g.StrideW - g.PadL + kx*g.DilW
						if y >= 0 && y < h && xx >= 0 && xx < w {
							row[k] = plane[y*w+xx]
						}
						k++
					}
				}
			}
			s.out.X = append(s.out.X, row...)
			s.out.K++
		}
	}
}

// SampleWindows runs the float graph g on the patches and samples, for each
// Conv input value named in geoms, perPatch windows from every patch
// (positions drawn from a PCG seeded with seed: the same inputs give the
// same windows). It stops with ctx's error when ctx ends.
func SampleWindows(ctx context.Context, g *graph.Graph, geoms map[string]ConvGeom, patches [][]float32, shape [3]int, perPatch int, seed int64, o CaptureOptions) (map[string]*Windows, error) {
	samplers := map[string]*windowSampler{}
	var values []string
	for v, geom := range geoms {
		values = append(values, v)
		var h uint64
		for _, c := range v {
			h = h*131 + uint64(c)
		}
		samplers[v] = &windowSampler{geom: geom, per: perPatch, rng: rand.New(rand.NewPCG(uint64(seed), h)),
			out: &Windows{D: geom.D()}}
	}
	sortStrings(values)
	err := capture(ctx, g, values, patches, shape, o, func(v string, dims []int64, data []float32) {
		if s, ok := samplers[v]; ok {
			s.add(data, dims)
		}
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Windows, len(samplers))
	for v, s := range samplers {
		if s.out.K == 0 {
			return nil, fmt.Errorf("no windows of %q: its shape does not match the Conv's %d input channels", v, s.geom.C)
		}
		out[v] = s.out
	}
	return out, nil
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// OutputError returns Σ_k Σ_o (W_o · e_k)², the squared error the input
// errors e (one window per row) cause at the Conv's outputs, with W the
// O×D weight (row o, output channel o). Rows are spread over the cores.
func OutputError(w []float32, out int, e *Windows) float64 {
	d := e.D
	workers := min(runtime.GOMAXPROCS(0), max(1, e.K/64))
	parts := make([]float64, workers)
	var wg sync.WaitGroup
	for p := range workers {
		wg.Go(func() {
			var s float64
			for k := p; k < e.K; k += workers {
				row := e.X[k*d : (k+1)*d]
				for o := range out {
					v := float64(Dot(w[o*d:(o+1)*d], row))
					s += v * v
				}
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

// GPTQ quantizes the O×D weight w (row o: output channel o) on the
// symmetric grids ps (one per row, or one for all) so that the Conv's output
// on the windows x stays close to the float one: column by column, each
// rounding error is pushed onto the columns not yet quantized in proportion
// to the inverse Hessian H⁻¹, H = XᵀX/K + λI (Frantar et al., GPTQ,
// 2023; the layer-wise objective of OBQ). λ is damp times the mean of H's
// diagonal. It returns the weights on the grid (float, exactly
// ps[o].Dequantize of their codes). With H = I it is round-to-nearest.
func GPTQ(w []float32, out int, ps []qdq.Params, x *Windows, damp float64) ([]float32, error) {
	d := x.D
	if len(w) != out*d {
		return nil, fmt.Errorf("calib: gptq: %d weights, want %d×%d", len(w), out, d)
	}
	if len(ps) != out && len(ps) != 1 {
		return nil, fmt.Errorf("calib: gptq: %d weight quantizers for %d output channels", len(ps), out)
	}
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
func MeanOutputShift(w, wq []float32, out int, x, xq *Windows) []float64 {
	d := x.D
	shift := make([]float64, out)
	for k := range x.K {
		a, b := x.X[k*d:(k+1)*d], xq.X[k*d:(k+1)*d]
		for o := range out {
			shift[o] += float64(Dot(w[o*d:(o+1)*d], a) - Dot(wq[o*d:(o+1)*d], b))
		}
	}
	for o := range shift {
		shift[o] /= float64(max(x.K, 1))
	}
	return shift
}
