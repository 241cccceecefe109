package calib

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
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
//
// A grouped Conv (depthwise included) is G independent Convs side by side:
// a window holds all C input channels, channel-major, so group g's
// (C/G)·kh·kw columns are one contiguous run of it, and output channel o
// (group o/(O/G)) reads only that run. Windows are therefore cut the same
// way for every group count, and ConvWeights says which run each row of
// the weight reads.

// ConvGeom is what the window of a 2-D Conv needs: input channels (all
// groups), groups, kernel, padding, strides and dilations. Pads are
// explicit (top, left, bottom, right) unless AutoPad is SAME_UPPER or
// SAME_LOWER, whose pads depend on the input's size.
type ConvGeom struct {
	C, Groups              int
	KH, KW                 int
	PadT, PadL, PadB, PadR int
	AutoPad                string
	StrideH, StrideW       int
	DilH, DilW             int
}

// ConvGeomOf reads the geometry of a 2-D Conv node n with a constant OIHW
// weight of dims w (w[1] is the input channels of one group). It says why
// when reconstruction cannot model the Conv (not 2-D, attributes that do
// not match the weight or the ONNX rules); the tuner then leaves it alone.
func ConvGeomOf(n *graph.Node, w []int64) (ConvGeom, error) {
	if len(w) != 4 {
		return ConvGeom{}, fmt.Errorf("a %d-D weight %v: only 2-D Convs (OIHW weights) are modelled", len(w), w)
	}
	for _, d := range w {
		if d <= 0 {
			return ConvGeom{}, fmt.Errorf("weight dims %v: not all positive", w)
		}
	}
	groups := n.AttrInt("group", 1)
	if groups <= 0 || w[0]%groups != 0 {
		return ConvGeom{}, fmt.Errorf("group %d does not divide the %d output channels", groups, w[0])
	}
	g := ConvGeom{C: int(w[1] * groups), Groups: int(groups), KH: int(w[2]), KW: int(w[3]), StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}
	if k := n.AttrInts("kernel_shape"); len(k) != 0 && !slices.Equal(k, w[2:]) {
		return ConvGeom{}, fmt.Errorf("kernel_shape %v does not match the weight's %v", k, w[2:])
	}
	switch a := n.AttrString("auto_pad", "NOTSET"); a {
	case "NOTSET", "VALID":
		if p := n.AttrInts("pads"); len(p) == 4 && a == "NOTSET" {
			g.PadT, g.PadL, g.PadB, g.PadR = int(p[0]), int(p[1]), int(p[2]), int(p[3])
		} else if len(p) != 0 && a == "NOTSET" {
			return ConvGeom{}, fmt.Errorf("pads %v: want 4 values", p)
		}
	case "SAME_UPPER", "SAME_LOWER":
		g.AutoPad = a
	default:
		return ConvGeom{}, fmt.Errorf("auto_pad %q: not an ONNX value", a)
	}
	if min(g.PadT, g.PadL, g.PadB, g.PadR) < 0 {
		return ConvGeom{}, fmt.Errorf("negative pads %d %d %d %d", g.PadT, g.PadL, g.PadB, g.PadR)
	}
	if s := n.AttrInts("strides"); len(s) == 2 {
		g.StrideH, g.StrideW = int(s[0]), int(s[1])
	} else if len(s) != 0 {
		return ConvGeom{}, fmt.Errorf("strides %v: want 2 values", s)
	}
	if d := n.AttrInts("dilations"); len(d) == 2 {
		g.DilH, g.DilW = int(d[0]), int(d[1])
	} else if len(d) != 0 {
		return ConvGeom{}, fmt.Errorf("dilations %v: want 2 values", d)
	}
	if min(g.StrideH, g.StrideW, g.DilH, g.DilW) <= 0 {
		return ConvGeom{}, fmt.Errorf("strides %d×%d, dilations %d×%d: want positive values", g.StrideH, g.StrideW, g.DilH, g.DilW)
	}
	return g, nil
}

// D is the window length C·KH·KW (all groups).
func (g ConvGeom) D() int { return g.C * g.KH * g.KW }

// reach is the extent k·d − d + 1 of a kernel of k taps dilated by d.
func reach(k, d int) int { return d*(k-1) + 1 }

// outSize returns the output length along one axis of input length n and
// the padding before it: explicit pads, or the SAME_UPPER/SAME_LOWER rule
// (output ⌈n/s⌉, total padding split evenly, the odd one after for UPPER
// and before for LOWER). out is 0 when the kernel does not fit.
func (g ConvGeom) outSize(n, k, s, d, before, after int) (out, pad int) {
	if g.AutoPad != "" {
		out = (n + s - 1) / s
		total := max(0, (out-1)*s+reach(k, d)-n)
		pad = total / 2
		if g.AutoPad == "SAME_LOWER" {
			pad = total - total/2
		}
		return out, pad
	}
	num := n + before + after - reach(k, d)
	if num < 0 {
		return 0, before
	}
	return num/s + 1, before
}

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

// windowSampler draws positions and cuts windows out of captured tensors.
type windowSampler struct {
	value string
	geom  ConvGeom
	per   int // windows per patch
	rng   *rand.Rand
	out   *Windows
	why   string // why a batch gave no windows
}

// add cuts per windows out of each patch of the NCHW batch x (dims
// [N, C, H, W]) at output positions drawn uniformly, zero outside the
// image (the Conv's zero padding), stepping by the strides and dilations.
func (s *windowSampler) add(x []float32, dims []int64) {
	g := s.geom
	if len(dims) != 4 || int(dims[1]) != g.C {
		s.why = fmt.Sprintf("its input %q has shape %v, the Conv reads %d channels", s.value, dims, g.C)
		return
	}
	n, c, h, w := int(dims[0]), int(dims[1]), int(dims[2]), int(dims[3])
	oh, padT := g.outSize(h, g.KH, g.StrideH, g.DilH, g.PadT, g.PadB)
	ow, padL := g.outSize(w, g.KW, g.StrideW, g.DilW, g.PadL, g.PadR)
	if oh <= 0 || ow <= 0 {
		s.why = fmt.Sprintf("its %dx%d input is smaller than the kernel's reach", w, h)
		return
	}
	if len(x) < n*c*h*w {
		s.why = fmt.Sprintf("its input %q holds %d values, its shape %v says %d", s.value, len(x), dims, n*c*h*w)
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
					y := oy*g.StrideH - padT + ky*g.DilH
					for kx := range g.KW {
						xx := ox*g.StrideW - padL + kx*g.DilW
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

// WindowSpec asks for the windows of one Conv: the value it reads and its
// geometry.
type WindowSpec struct {
	Value string
	Geom  ConvGeom
}

// SampleWindows runs the float graph g on the patches and samples, for
// each Conv of specs (keyed by the caller, e.g. by node name), perPatch
// windows from every patch. Windows are per Conv, not per value: Convs
// that read one value with different kernels, strides or groups (ESA's
// strided 3x3 beside its 1x1, a 1x1 distillation beside a 3x3) each get
// windows of their own geometry. Positions are drawn from a PCG seeded
// with seed and the value's name: the same inputs give the same windows,
// and Convs of one value and one output size see the same positions.
//
// A Conv whose input gave no windows (its shape does not match the
// geometry, or is smaller than the kernel) is absent from ws and present
// in missing with the reason. It stops with ctx's error when ctx ends.
func SampleWindows(ctx context.Context, g *graph.Graph, specs map[string]WindowSpec, patches [][]float32, shape [3]int, perPatch int, seed int64, o CaptureOptions) (ws map[string]*Windows, missing map[string]string, err error) {
	samplers := map[string]*windowSampler{}
	byValue := map[string][]*windowSampler{}
	var values []string
	for _, key := range slices.Sorted(maps.Keys(specs)) {
		sp := specs[key]
		var h uint64
		for _, c := range sp.Value {
			h = h*131 + uint64(c)
		}
		s := &windowSampler{value: sp.Value, geom: sp.Geom, per: perPatch, rng: rand.New(rand.NewPCG(uint64(seed), h)),
			out: &Windows{D: sp.Geom.D()}}
		samplers[key] = s
		if len(byValue[sp.Value]) == 0 {
			values = append(values, sp.Value)
		}
		byValue[sp.Value] = append(byValue[sp.Value], s)
	}
	err = capture(ctx, g, values, patches, shape, o, func(v string, dims []int64, data []float32) {
		for _, s := range byValue[v] {
			s.add(data, dims)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	ws, missing = make(map[string]*Windows, len(samplers)), map[string]string{}
	for key, s := range samplers {
		if s.out.K == 0 {
			why := s.why
			if why == "" {
				why = fmt.Sprintf("no windows of %q", s.value)
			}
			missing[key] = why
			continue
		}
		ws[key] = s.out
	}
	return ws, missing, nil
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
