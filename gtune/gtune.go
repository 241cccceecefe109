// Package gtune fine-tunes a quantized network end to end with gradients,
// by Adam on the error (mean absolute, as the method's) of the whole
// network's output against the FP32 network's on the same crops of
// calibration patches, flipped and transposed at random: the biases and
// the weights' per-channel steps, and optionally the
// weights' rounding (AdaRound's soft rounding, annealed to hard) and the
// Conv input quantizers' breakpoints or ranges. The network is the QDQ
// graph srq writes, run on a grad.Tape by grad.Net, so what is optimised
// is exactly the graph ORT runs, every quantizer of it differentiated
// straight through.
//
// Why end to end: the layer-wise tuner (package quant) rounds each Conv so
// that its own output error is least, which cannot see error that adds up
// through the network (issue #17: strict 4-bit EDSR stopped at −1.17 dB
// with every layer locally optimal).
//
// The caller decides what ships: Tune returns what it learnt, and the
// quant package compares the deploy models on the patches of calibration
// images Tune never saw (DefaultOptions says what was measured).
package gtune

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/srquant/srq/grad"
	"github.com/srquant/srq/qdq"
)

// Weight is one quantized weight tensor the tuner rounds.
type Weight struct {
	// Value is the folded DequantizeLinear output the Conv reads (a key of
	// grad.Net.Folded), Bias its bias's ("" without one).
	Value, Bias string
	// Float is the weight before quantization, Scale the grid's step per
	// output channel (axis 0) or one for the tensor, [QMin, QMax] its
	// codes (zero point 0).
	Float      []float32
	Shape      []int
	Scale      []float32
	QMin, QMax int32
	// Start, if set, is the codes to start from (another tuner's rounding,
	// GPTQ's): each weight may then end one code above or below it rather
	// than at either neighbour of its float value.
	Start []float32
}

// Act is an activation quantizer the tuner learns: the element-wise chain
// of the network that ends in Value (grad.Net.Chain) is replaced by Prefix
// (the steps before the quantizer: the 8-bit carrier it reads) and then
// the quantizer, a dual-region one with a learnable breakpoint (Dual set)
// or a uniform one with a learnable range [Lo, Hi] on codes [QMin, QMax].
// The caller checks that the replacement computes the chain's numbers at
// the start (CheckAct).
type Act struct {
	Value      string
	Prefix     []grad.Point
	Dual       *qdq.DualSpec
	Lo, Hi     float32
	QMin, QMax int32
}

// vars returns the act's learnable values at the start as Params: the
// breakpoint, or lo and hi.
func (a Act) vars(t *grad.Tape) ([]*grad.Var, error) {
	vals := [][]float32{{a.Lo}, {a.Hi}}
	if a.Dual != nil {
		vals = [][]float32{{a.Dual.BP}}
	}
	var vs []*grad.Var
	for _, v := range vals {
		p, err := t.Param([]int{1}, v)
		if err != nil {
			return nil, err
		}
		vs = append(vs, p)
	}
	return vs, nil
}

// replacement returns the function that computes the act's output from
// the chain's input with the parameters ps (from vars).
func (a Act) replacement(ps []*grad.Var) func(t *grad.Tape, in *grad.Var) (*grad.Var, error) {
	return func(t *grad.Tape, in *grad.Var) (*grad.Var, error) {
		x := in
		if len(a.Prefix) > 0 {
			var err error
			if x, err = t.Pointwise(in, a.Prefix); err != nil {
				return nil, err
			}
		}
		if a.Dual != nil {
			return t.FakeQuantDual(x, ps[0], *a.Dual)
		}
		return t.FakeQuantRange(x, ps[0], ps[1], a.QMin, a.QMax)
	}
}

// clamp keeps learnt parameters where the quantizer is defined: a
// breakpoint inside (0, max(−Lo, Hi)], a range with lo <= 0 < hi.
func (a Act) clamp(ps []*grad.Var) {
	if a.Dual != nil {
		top := max(-a.Dual.Lo, a.Dual.Hi)
		ps[0].Data[0] = min(max(ps[0].Data[0], top*1e-3), top)
		return
	}
	lo := min(ps[0].Data[0], 0)
	ps[0].Data[0] = lo
	ps[1].Data[0] = max(ps[1].Data[0], max(-lo, 1e-6)*1e-3)
}

// CheckAct reports whether the act's replacement computes the chain's
// steps on every input in xs, to float32 rounding, (for an 8-bit carrier: its 256 codes
// or levels), so that tuning starts from the model as it is.
func CheckAct(a Act, chain []grad.Point, xs []float32) error {
	t := grad.NewTape()
	ps, err := a.vars(t)
	if err != nil {
		return err
	}
	x, err := t.Const([]int{len(xs)}, xs)
	if err != nil {
		return err
	}
	y, err := a.replacement(ps)(t, x)
	if err != nil {
		return err
	}
	for i, v := range xs {
		// Within float32 rounding: the graph's one-grid forms compute a
		// level as code × fine step, the quantizer as its own sum.
		w, got := grad.ApplyPoints(chain, v), y.Data[i]
		if d := math.Abs(float64(w - got)); d > 1e-6*max(math.Abs(float64(w)), math.Abs(float64(got)))+1e-12 {
			return fmt.Errorf("gtune: %s: the quantizer gives %g at %g, the graph %g", a.Value, got, v, w)
		}
	}
	return nil
}

// Options are the tuner's settings.
type Options struct {
	Steps int     // Adam steps
	Batch int     // patches per step
	Crop  int     // side of the random LR crop of each patch (0: whole)
	LR    float64 // Adam's step for the rounding variables
	// BiasLR is Adam's step for the biases, relative to each bias
	// tensor's initial root mean square (0: biases frozen): the model's
	// units vary (0..1 or 0..255 images), a bias's own size does not lie.
	BiasLR float64
	// Reg weighs AdaRound's rounding regulariser (per weight) against the
	// output loss normalised to 1 at the start; Warmup is the fraction of
	// steps before it starts, while β anneals from 20 to 2.
	Reg    float64
	Warmup float64
	// ScaleLR is Adam's step for each weight's per-channel steps
	// (LSQ-style, the codes as the graph holds them), relative to each
	// step (0: frozen). It applies while the rounding is frozen (LR 0):
	// a new step multiplies a channel's output, which the rounding would
	// otherwise move under it.
	ScaleLR float64
	// ActLR is Adam's step for the activation quantizers' breakpoints and
	// bounds, relative to each one's starting size (0: frozen).
	ActLR float64
	Seed  uint64
	// MSE makes the output loss the mean squared error instead of the
	// mean absolute error (the method's loss, which carried more to
	// images the tuner never saw: BENCHMARKS.md, "Exact targets").
	MSE bool
	// TapeBytes bounds the memory of a step (0: none): when one crop's
	// values, their gradients and what the backward pass keeps (about
	// tapeFactor times the values) would make a batch larger, the batch
	// runs in parts whose gradients add up, the same step in more time.
	TapeBytes int64
	// Budget stops the loop when spent (0: none); the rounding is then
	// made hard where it stands.
	Budget  time.Duration
	Kernels grad.ConvKernels
	// Progress hears of every step, with the output loss relative to the
	// first step's, smoothed over the last ten or so (batches differ).
	Progress func(step, steps int, loss float64)
}

// DefaultOptions are the settings measured on IMDN x4 W8A8 and EDSR x4
// W4A4 (BENCHMARKS.md, "Gradient tuning"): biases and the weights'
// per-channel steps, a few thousand values. Learning the
// rounding too (LR 0.05–0.3 from GPTQ's codes, or from the float weights)
// won up to 0.9 dB on held-out calibration patches and lost up to 1.6 dB
// on Set14: 1.3 million binary choices fitted to 48 patches of 8 photos
// (held-out photos refuse it: 47.70 → 46.37 dB on IMDN). The biases, a few
// thousand values, carried a small gain to Set5, Set14 and B100 on IMDN
// (NOTES.md); the steps, as many, gained up to 0.3 dB more at W4A4. Their
// rate is the one measured at 4-bit weights: callers scale it to the
// model's width (quant: by 7/QMax). The mean absolute error beat the
// squared one on images the tuner never saw (IMDN x4 W4A4, B100: 37.27 →
// 37.55 dB against FP32).
func DefaultOptions() Options {
	return Options{Steps: 60, Batch: 4, Crop: 32, LR: 0, BiasLR: 3e-3, ScaleLR: 0.005, Reg: 0.01, Warmup: 0.2, Seed: 1, TapeBytes: 2 << 30}
}

// Data are the tuning patches (CHW, one shape) and the network the tuned
// one is brought closer to.
type Data struct {
	Inputs [][]float32
	In     [3]int // C, H, W of an input
	Scale  int    // output side / input side
	// Reference computes the targets of a batch of crops (of shape NCHW)
	// from the crops themselves: the FP32 network run on each crop, as
	// the tuned network is. A crop of the target of a whole patch is not
	// what the network computes on the crop: zero padding at the crop's
	// edges and pooling over the whole image differ, by 42–44 dB PSNR on
	// 32² crops of 64² patches of EDSR, RCAN, CARN-M and IMDN x4 FP32, as
	// large as the error being tuned away.
	Reference func(x []float32, shape []int) ([]float32, error)
}

// Result is what Tune learned.
type Result struct {
	// Weights holds each tuned weight (by Value) on its grid, hard-rounded
	// (none when the rounding was frozen); Biases the tuned biases (by
	// Bias value).
	Weights map[string][]float32
	Biases  map[string][]float32
	// Scales holds each weight's learnt steps (by Value), one per channel
	// as Weight.Scale; the weight is its codes times them.
	Scales map[string][]float32
	// Acts holds each learnt activation quantizer's parameters (by Value):
	// [bp] or [lo, hi].
	Acts  map[string][]float32
	Steps int
	// Micro is the crops a part of a batch held when TapeBytes split it
	// (0: not measured).
	Micro int
	// Loss is the output loss relative to the first step's, smoothed over
	// about the last ten steps (each batch is different).
	Loss float64
	Time time.Duration
}

// Tune learns the rounding of ws (and their biases) in the network nt,
// whose input is in and output out, on d.
func Tune(ctx context.Context, nt *grad.Net, in, out string, ws []Weight, acts []Act, d Data, o Options) (*Result, error) {
	start := time.Now()
	if len(d.Inputs) == 0 || d.Reference == nil {
		return nil, fmt.Errorf("gtune: %d inputs, reference network set: %t", len(d.Inputs), d.Reference != nil)
	}
	if o.Steps < 1 || o.Batch < 1 {
		return nil, fmt.Errorf("gtune: %d steps of %d patches", o.Steps, o.Batch)
	}
	crop := o.Crop
	if crop <= 0 || crop > d.In[1] || crop > d.In[2] {
		crop = min(d.In[1], d.In[2])
	}
	tp := grad.NewTape()
	tp.Kernels = o.Kernels
	type param struct {
		w  Weight
		wv *grad.Var // float weight (constant)
		v  *grad.Var // rounding variable
		b  *grad.Var // bias (nil: frozen or none)
		m  *grad.Var // per-channel step multiplier (nil: frozen)
	}
	// LR 0 freezes the rounding: the graph's own weights are used as they
	// are (no soft rounding around them), and only the biases move.
	round := o.LR > 0
	ps := make([]param, len(ws))
	var vs, bs, ms []*grad.Var
	for i, w := range ws {
		ps[i].w = w
		if !round && o.ScaleLR > 0 {
			// The weight as the graph holds it (codes × steps) times a
			// multiplier per step: Adam's step is then relative to each.
			c := nt.Const(w.Value)
			if c == nil || len(c.Data)%len(w.Scale) != 0 || len(w.Shape) == 0 || (len(w.Scale) != 1 && len(w.Scale) != w.Shape[0]) {
				return nil, fmt.Errorf("gtune: weight %s is not a constant with one step per output channel", w.Value)
			}
			wv, err := tp.Const(c.Shape, c.Data)
			if err != nil {
				return nil, err
			}
			shape := make([]int, len(w.Shape))
			for k := range shape {
				shape[k] = 1
			}
			shape[0] = len(w.Scale)
			one := make([]float32, len(w.Scale))
			for k := range one {
				one[k] = 1
			}
			mv, err := tp.Param(shape, one)
			if err != nil {
				return nil, err
			}
			ps[i].wv, ps[i].m = wv, mv
			ms = append(ms, mv)
		}
		if round {
			f, v := startRounding(w)
			wv, err := tp.Const(w.Shape, f)
			if err != nil {
				return nil, fmt.Errorf("gtune: %s: %w", w.Value, err)
			}
			vv, err := tp.Param(w.Shape, v)
			if err != nil {
				return nil, err
			}
			ps[i].wv, ps[i].v = wv, vv
			vs = append(vs, vv)
		}
		if w.Bias != "" && o.BiasLR > 0 {
			c := nt.Const(w.Bias)
			if c == nil {
				return nil, fmt.Errorf("gtune: bias %s is not a constant of the network", w.Bias)
			}
			bv, err := tp.Param(c.Shape, append([]float32(nil), c.Data...))
			if err != nil {
				return nil, err
			}
			ps[i].b = bv
			bs = append(bs, bv)
		}
	}
	optV := newAdam(vs, o.LR, nil)
	bscale := make([]float64, len(bs))
	for i, b := range bs {
		var ss float64
		for _, x := range b.Data {
			ss += float64(x) * float64(x)
		}
		bscale[i] = math.Sqrt(ss/float64(max(len(b.Data), 1))) + 1e-12
	}
	optB := newAdam(bs, o.BiasLR, bscale)
	optM := newAdam(ms, o.ScaleLR, nil)
	var as [][]*grad.Var // per act
	var avs []*grad.Var
	var ascale []float64
	if o.ActLR > 0 {
		if nt.Replace == nil {
			nt.Replace = map[string]func(*grad.Tape, *grad.Var) (*grad.Var, error){}
		}
		for _, a := range acts {
			ps, err := a.vars(tp)
			if err != nil {
				return nil, err
			}
			as = append(as, ps)
			var m float64
			for _, p := range ps {
				m = max(m, math.Abs(float64(p.Data[0])))
			}
			for _, p := range ps {
				avs, ascale = append(avs, p), append(ascale, m)
			}
			nt.Replace[a.Value] = a.replacement(ps)
			defer delete(nt.Replace, a.Value)
		}
	}
	optA := newAdam(avs, o.ActLR, ascale)
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	res := &Result{Weights: map[string][]float32{}, Biases: map[string][]float32{}, Scales: map[string][]float32{}, Acts: map[string][]float32{}}
	var norm float64 // the first loss: the output term is divided by it
	var ema float64
	nW := 0
	for _, w := range ws {
		nW += len(w.Float)
	}
	warm := int(o.Warmup * float64(o.Steps))
	// forward runs the network on crops x and returns the loss against y
	// and every value computed.
	forward := func(x, y tensor) (*grad.Var, map[string]*grad.Var, error) {
		xv, err := tp.Const(x.shape, x.data)
		if err != nil {
			return nil, nil, err
		}
		yv, err := tp.Const(y.shape, y.data)
		if err != nil {
			return nil, nil, err
		}
		subst := map[string]*grad.Var{}
		for _, p := range ps {
			if round {
				sw, err := tp.SoftRound(p.wv, p.v, p.w.Scale, p.w.QMin, p.w.QMax)
				if err != nil {
					return nil, nil, fmt.Errorf("gtune: %s: %w", p.w.Value, err)
				}
				subst[p.w.Value] = sw
			}
			if p.m != nil {
				sw, err := tp.Mul(p.wv, p.m)
				if err != nil {
					return nil, nil, fmt.Errorf("gtune: %s: %w", p.w.Value, err)
				}
				subst[p.w.Value] = sw
			}
			if p.b != nil {
				subst[p.w.Bias] = p.b
			}
		}
		env, err := nt.Forward(tp, map[string]*grad.Var{in: xv}, subst)
		if err != nil {
			return nil, nil, err
		}
		got := env[out]
		if got == nil {
			return nil, nil, fmt.Errorf("gtune: the network computed no %s", out)
		}
		lossOf := tp.L1
		if o.MSE {
			lossOf = tp.MSE
		}
		loss, err := lossOf(got, yv)
		return loss, env, err
	}
	micro := o.Batch
	if o.TapeBytes > 0 && o.Batch > 1 {
		// One crop's forward pass (its own draw: the batches stay as
		// they are) measures what a crop holds on the tape.
		x, y, err := batch(d, 1, crop, rand.New(rand.NewPCG(o.Seed, 0x9be)))
		if err != nil {
			return nil, err
		}
		_, env, err := forward(x, y)
		if err != nil {
			return nil, err
		}
		tp.Reset()
		var tapeBytes int64 // the float values one crop's forward pass computes
		for _, v := range env {
			tapeBytes += int64(len(v.Data)) * 4
		}
		// The probe's values are garbage now: collecting them here keeps
		// the collector's next target at what the steps hold, not at the
		// probe's heap plus theirs (RCAN x4 W4A4 --tune peak RSS 5.06 → 4.78 GB).
		runtime.GC()
		micro = int(min(max(o.TapeBytes/max(tapeBytes*tapeFactor, 1), 1), int64(o.Batch)))
		res.Micro = micro
	}
	for step := 0; step < o.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if o.Budget > 0 && time.Since(start) > o.Budget {
			break
		}
		x, y, err := batch(d, o.Batch, crop, rng)
		if err != nil {
			return nil, err
		}
		// The batch in parts of micro crops, each forward and backward on
		// its own, their gradients summed: the same step in less memory.
		var l float64
		for lo := 0; lo < o.Batch; lo += micro {
			hi := min(lo+micro, o.Batch)
			loss, _, err := forward(x.crops(lo, hi), y.crops(lo, hi))
			if err != nil {
				return nil, err
			}
			w := float64(hi-lo) / float64(o.Batch)
			if step == 0 && lo == 0 {
				norm = max(float64(loss.Data[0]), 1e-12)
			}
			l += w * float64(loss.Data[0])
			if err := tp.Backward(loss, []float32{float32(w / norm)}); err != nil {
				return nil, err
			}
		}
		if round && step >= warm {
			// AdaRound's regulariser, β from 20 down to 2.
			frac := float64(step-warm) / float64(max(o.Steps-warm, 1))
			beta := 20 - 18*frac
			k := float32(o.Reg / float64(nW))
			for _, p := range ps {
				r, err := tp.RoundingReg(p.v, float32(beta))
				if err != nil {
					return nil, err
				}
				if err := tp.Backward(r, []float32{k}); err != nil {
					return nil, err
				}
			}
		}
		optV.step()
		optB.step()
		optM.step()
		optA.step()
		for i, a := range acts[:len(as)] {
			a.clamp(as[i])
		}
		res.Steps = step + 1
		if step == 0 {
			ema = 1
		} else {
			ema = 0.9*ema + 0.1*l/norm
		}
		res.Loss = ema
		if o.Progress != nil {
			o.Progress(step+1, o.Steps, ema)
		}
	}
	for _, p := range ps {
		if round {
			hw, err := grad.HardRound(p.wv, p.v, p.w.Scale, p.w.QMin, p.w.QMax)
			if err != nil {
				return nil, err
			}
			res.Weights[p.w.Value] = hw
		}
		if p.b != nil {
			res.Biases[p.w.Bias] = p.b.Data
		}
		if p.m != nil {
			sc := make([]float32, len(p.w.Scale))
			for c, s := range p.w.Scale {
				sc[c] = s * p.m.Data[c]
			}
			res.Scales[p.w.Value] = sc
		}
	}
	for i, a := range acts[:len(as)] {
		for _, p := range as[i] {
			res.Acts[a.Value] = append(res.Acts[a.Value], p.Data[0])
		}
	}
	res.Time = time.Since(start)
	return res, nil
}

// startH is where a rounding variable starting at a given code is put: h
// near 0 (the code below the float weight) or 1 (above), inside the
// rectified sigmoid's open interval, where its gradient is not zero.
const startH = 0.1

// startRounding returns the float weights AdaRound rounds (floor(w/s) is
// the lower choice) and the rounding variables that start the soft weight
// at the float weight, or, with w.Start, next to its code: a float weight
// more than a code away from its start code is moved to within one, so
// that the start code is one of its two choices.
func startRounding(w Weight) (f, v []float32) {
	f = make([]float32, len(w.Float))
	v = make([]float32, len(w.Float))
	inner := len(w.Float) / len(w.Scale)
	for j, x := range w.Float {
		s := w.Scale[j/inner]
		u := float64(x / s)
		if w.Start == nil {
			f[j], v[j] = x, invRectSigmoid(u-math.Floor(u))
			continue
		}
		c := float64(w.Start[j])
		u = min(max(u, c-0.5), c+0.5)
		f[j] = float32(u) * s
		if math.Floor(float64(f[j]/s)) == c {
			v[j] = invRectSigmoid(startH)
		} else {
			v[j] = invRectSigmoid(1 - startH)
		}
	}
	return f, v
}

// invRectSigmoid returns V with AdaRound's h(V) = h (h in [0, 1)): the
// rounding variable that starts the soft weight at the float weight.
func invRectSigmoid(h float64) float32 {
	const zeta, gamma = 1.1, -0.1
	s := (h - gamma) / (zeta - gamma)
	return float32(-math.Log(1/s - 1))
}

type tensor struct {
	shape []int
	data  []float32
}

// crops returns crops [lo, hi) of a batch (a view).
func (t tensor) crops(lo, hi int) tensor {
	per := len(t.data) / t.shape[0]
	shape := append([]int{hi - lo}, t.shape[1:]...)
	return tensor{shape: shape, data: t.data[lo*per : hi*per]}
}

// tapeFactor is what a step holds per float value a forward pass computes:
// the value, its gradient and the derivative a fused chain keeps.
const tapeFactor = 3

// batch draws n patches (with replacement), a random crop of each in one
// of its 8 views (flips and transposes: the reference computes the
// targets of whatever is drawn), and the reference network's outputs on
// them.
func batch(d Data, n, crop int, rng *rand.Rand) (x, y tensor, err error) {
	c := d.In[0]
	x = tensor{shape: []int{n, c, crop, crop}, data: make([]float32, n*c*crop*crop)}
	for i := range n {
		k := rng.IntN(len(d.Inputs))
		r0, c0 := rng.IntN(d.In[1]-crop+1), rng.IntN(d.In[2]-crop+1)
		dihedralCrop(x.data[i*c*crop*crop:(i+1)*c*crop*crop], d.Inputs[k], c, d.In[1], d.In[2], r0, c0, crop, rng.IntN(8))
	}
	if y.data, err = d.Reference(x.data, x.shape); err != nil {
		return x, y, fmt.Errorf("gtune: the reference network on %d crops: %w", n, err)
	}
	side := crop * d.Scale
	oc := len(y.data) / max(n*side*side, 1)
	if oc == 0 || len(y.data) != n*oc*side*side {
		return x, y, fmt.Errorf("gtune: the reference network gave %d values for %d crops of %dx%d", len(y.data), n, side, side)
	}
	y.shape = []int{n, oc, side, side}
	return x, y, nil
}

// dihedralCrop writes into dst (C×n×n) the n×n crop at (r0, c0) of src
// (C×h×w) under the view v of the 8 flips and transposes: bit 0 flips the
// rows, bit 1 the columns, bit 2 transposes.
func dihedralCrop(dst, src []float32, c, h, w, r0, c0, n, v int) {
	for ch := range c {
		for r := range n {
			for q := range n {
				sr, sq := r, q
				if v&4 != 0 {
					sr, sq = q, r
				}
				if v&1 != 0 {
					sr = n - 1 - sr
				}
				if v&2 != 0 {
					sq = n - 1 - sq
				}
				dst[(ch*n+r)*n+q] = src[(ch*h+r0+sr)*w+c0+sq]
			}
		}
	}
}

// adam is Adam over a set of Vars (gradients cleared after each step).
type adam struct {
	vs     []*grad.Var
	scale  []float64 // per Var, multiplies lr (nil: 1)
	m, v   [][]float32
	lr     float64
	b1, b2 float64
	t      int
}

func newAdam(vs []*grad.Var, lr float64, scale []float64) *adam {
	a := &adam{vs: vs, lr: lr, b1: 0.9, b2: 0.999, scale: scale}
	for _, v := range vs {
		a.m = append(a.m, make([]float32, len(v.Data)))
		a.v = append(a.v, make([]float32, len(v.Data)))
	}
	return a
}

func (a *adam) step() {
	if len(a.vs) == 0 {
		return
	}
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	b1, b2 := float32(a.b1), float32(a.b2)
	for i, p := range a.vs {
		if p.Grad == nil {
			continue
		}
		lr := float32(a.lr * math.Sqrt(c2) / c1)
		if a.scale != nil {
			lr *= float32(a.scale[i])
		}
		m, v := a.m[i], a.v[i]
		for j, g := range p.Grad {
			m[j] = b1*m[j] + (1-b1)*g
			v[j] = b2*v[j] + (1-b2)*g*g
			p.Data[j] -= lr * m[j] / (float32(math.Sqrt(float64(v[j]))) + 1e-8)
		}
		p.ZeroGrad()
	}
}
