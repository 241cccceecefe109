package qdq

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// WeightMethod chooses the clip of a symmetric weight quantizer.
type WeightMethod int

const (
	// MinMax clips at absmax = max|w|: no weight saturates.
	MinMax WeightMethod = iota
	// MSE clips at the c in (0, absmax] that minimises Σ (w - fq_c(w))²,
	// trading saturation of the few largest weights for a finer step.
	MSE
)

// String returns the method's flag spelling.
func (m WeightMethod) String() string {
	switch m {
	case MinMax:
		return "minmax"
	case MSE:
		return "mse"
	}
	return fmt.Sprintf("WeightMethod(%d)", int(m))
}

// MSE search grid: mseCoarse clips c_i = absmax·(1 - mseSpan·i/mseCoarse),
// i = 0..mseCoarse-1 (absmax down to 5% of it: low-bit grids on heavy-tailed
// channels want deep clips), then mseFine uniform steps between the two
// neighbours of the best coarse clip.
const (
	mseCoarse = 100
	mseSpan   = 0.95
	mseFine   = 20
)

// WeightParams returns narrow-range symmetric quantizers (Symmetric(c, bits,
// true): ZeroPoint 0, grid [-(2^(bits-1)-1), 2^(bits-1)-1], Scale = c/qmax)
// for a weight tensor laid out [outCh, ...] (Conv: OIHW): one per output
// channel when perChannel, else one for the whole tensor (a slice of length
// 1). The clip c is absmax = max|w| of the group (MinMax) or, for MSE, the
// minimiser of the squared error Σ (w - FakeQuant_c(w))² over the group,
// found by a grid search: 100 clips c_i = absmax·(1 - 0.95·i/100), then 20
// uniform steps between the neighbours of the best one; ties keep the larger
// clip. Errors are summed in float64 from the exact float32 FakeQuant.
//
// It fails on an empty tensor, an outCh that does not divide len(w), a bit
// width outside [MinBits, MaxBits], a non-finite weight or an unknown method.
// Channels are searched in parallel when the work is large.
func WeightParams(w []float32, outCh, bits int, perChannel bool, m WeightMethod) ([]Params, error) {
	if len(w) == 0 || outCh <= 0 || len(w)%outCh != 0 {
		return nil, fmt.Errorf("qdq: %d weights do not split into %d output channels", len(w), outCh)
	}
	if err := CheckBits(bits); err != nil {
		return nil, err
	}
	if m != MinMax && m != MSE {
		return nil, fmt.Errorf("qdq: unknown weight method %d", int(m))
	}
	for i, x := range w {
		if x-x != 0 {
			return nil, fmt.Errorf("qdq: weight %d (output channel %d) is %g", i, i/(len(w)/outCh), x)
		}
	}
	groups := 1
	if perChannel {
		groups = outCh
	}
	block := len(w) / groups
	ps := make([]Params, groups)
	one := func(g int) {
		ps[g] = weightParams(w[g*block:(g+1)*block], bits, m)
	}
	work := len(w)
	if m == MSE {
		work *= mseCoarse + mseFine
	}
	workers := min(runtime.GOMAXPROCS(0), groups)
	if workers < 2 || work < 1<<22 {
		for g := range groups {
			one(g)
		}
		return ps, nil
	}
	var wg sync.WaitGroup
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := k; g < groups; g += workers {
				one(g)
			}
		}()
	}
	wg.Wait()
	return ps, nil
}

// weightParams chooses the quantizer of one group of finite weights.
func weightParams(w []float32, bits int, m WeightMethod) Params {
	var absmax float32
	for _, x := range w {
		absmax = max(absmax, float32(math.Abs(float64(x))))
	}
	best := Symmetric(absmax, bits, true)
	if m == MinMax || absmax == 0 {
		return best
	}
	bestErr := symErr(w, best)
	bestI := 0
	for i := 1; i < mseCoarse; i++ {
		p := Symmetric(absmax*float32(1-mseSpan*float64(i)/mseCoarse), bits, true)
		if e := symErr(w, p); e < bestErr {
			best, bestErr, bestI = p, e, i
		}
	}
	// Fine search between the coarse neighbours of the best clip.
	step := float64(absmax) * mseSpan / mseCoarse
	hi := float64(absmax) * (1 - mseSpan*float64(bestI)/mseCoarse)
	hi = min(hi+step, float64(absmax))
	lo := max(hi-2*step, float64(absmax)*(1-mseSpan)*0.5)
	for j := 0; j <= mseFine; j++ {
		p := Symmetric(float32(hi-(hi-lo)*float64(j)/mseFine), bits, true)
		if e := symErr(w, p); e < bestErr {
			best, bestErr = p, e
		}
	}
	return best
}

// symErr returns Σ (x - p.FakeQuant(x))² in float64.
func symErr(w []float32, p Params) float64 {
	z := newQuantizer(p)
	var s float64
	for _, x := range w {
		d := float64(x) - float64(float32(z.q(x)-p.ZeroPoint)*p.Scale)
		s += d * d
	}
	return s
}

// BiasScales returns the int32 bias scales of a Conv/Gemm: scale_b[o] =
// inScale × wScales[o] in float32, the scale ONNX Runtime's fused int8 kernels
// assume for the int32 bias (so it must be exactly this product). A single
// weight scale (per-tensor weights) broadcasts over n outputs.
func BiasScales(n int, inScale float32, wScales []float32) ([]float32, error) {
	if len(wScales) != n && len(wScales) != 1 {
		return nil, fmt.Errorf("qdq: %d bias values but %d weight scales", n, len(wScales))
	}
	s := make([]float32, n)
	for o := range s {
		s[o] = inScale * wScales[min(o, len(wScales)-1)]
	}
	return s, nil
}

// QuantizeBias returns the int32 bias q[o] = round_half_even(b[o] /
// scale_b[o]) (float32 division, as ORT's quantizer) and its scales
// scale_b[o] = inScale × wScales[o] (see BiasScales). It fails, naming the
// output channel, when a bias is not finite, when a bias scale is not a
// positive finite float32 (a zero input or weight scale, or an underflowing
// product), or when b[o]/scale_b[o] does not fit in int32; for the last,
// AdjustWeightScalesForBias raises the weight scales so that it does, as
// ORT's quantizer does.
func QuantizeBias(b []float32, inScale float32, wScales []float32) ([]int32, []float32, error) {
	scales, err := BiasScales(len(b), inScale, wScales)
	if err != nil {
		return nil, nil, err
	}
	q := make([]int32, len(b))
	for o, x := range b {
		s := scales[o]
		if x-x != 0 {
			return nil, nil, fmt.Errorf("qdq: bias of output channel %d is %g", o, x)
		}
		if !(s > 0) || s > math.MaxFloat32 {
			return nil, nil, fmt.Errorf("qdq: bias scale of output channel %d is %g (input scale %g × weight scale %g)", o, s, inScale, wScales[min(o, len(wScales)-1)])
		}
		v := math.RoundToEven(float64(x / s))
		if v > math.MaxInt32 || v < math.MinInt32 {
			return nil, nil, fmt.Errorf("qdq: bias of output channel %d (%g) overflows int32 at scale %g; raise the weight scale", o, x, s)
		}
		q[o] = int32(v)
	}
	return q, scales, nil
}

// biasHeadroom keeps adjusted bias codes a little inside int32, so that the
// float32 rounding of the adjusted scales cannot push them over.
const biasHeadroom = 1 << 30

// AdjustWeightScalesForBias raises ps[o].Scale (in place) where the int32
// bias would overflow: it sets Scale = max(Scale, |b[o]| / (inScale · 2^30))
// so that |b[o] / (inScale·Scale)| <= 2^30. A weight channel this affects has
// a range far below its bias's, so the coarser grid costs little. len(ps)
// must be len(b) (per channel) or 1 (per tensor, raised for the largest
// bias); it reports how many scales changed. Non-positive inScale is an
// error.
func AdjustWeightScalesForBias(b []float32, inScale float32, ps []Params) (int, error) {
	if len(ps) != len(b) && len(ps) != 1 {
		return 0, fmt.Errorf("qdq: %d bias values but %d weight quantizers", len(b), len(ps))
	}
	if !(inScale > 0) || inScale > math.MaxFloat32 {
		return 0, fmt.Errorf("qdq: input scale %g is not a positive finite float32", inScale)
	}
	need := make([]float32, len(ps))
	for o, x := range b {
		k := min(o, len(ps)-1)
		need[k] = max(need[k], float32(math.Abs(float64(x))/(float64(inScale)*biasHeadroom)))
	}
	changed := 0
	for k := range ps {
		if need[k] > ps[k].Scale && need[k] <= math.MaxFloat32 {
			ps[k].Scale = need[k]
			changed++
		}
	}
	return changed, nil
}
