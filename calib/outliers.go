package calib

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
)

// BreakpointPercentile is the percentile of |x| at which the outlier analysis
// puts the breakpoint bp: where the dual-region quantizer of the method srq
// implements starts its breakpoint before learning it, so the analysis
// measures what that quantizer's tail region would hold.
const BreakpointPercentile = 99

// OutlierStats is the outlier analysis of one activation tensor (an NCHW
// value) over calibration patches: how narrow its dense band is, how rare
// and large its tails are, in which channels and at which pixels the tails
// sit, and whether those pixels are colourful. JSON keys are a stable
// contract of `srq inspect --activations --json`.
//
// An outlier is a sample with |x| > bp, bp = AbsP99 (BreakpointPercentile).
// bp comes from the histogram (within one bin of the true percentile);
// every count against it is exact, from a second pass over the data.
type OutlierStats struct {
	Value string `json:"name"`
	// Channels, Height and Width are the tensor's C, H, W (the last batch's).
	Channels int `json:"channels"`
	Height   int `json:"height"`
	Width    int `json:"width"`

	Count     int64   `json:"count"`      // finite samples
	NonFinite int64   `json:"non_finite"` // NaN and ±Inf samples, ignored otherwise
	Min       float32 `json:"min"`
	Max       float32 `json:"max"`
	Mean      float64 `json:"mean"`
	Std       float64 `json:"std"` // population, from central moments
	// ExcessKurtosis is E[(x−μ)⁴]/σ⁴ − 3 (0 for a Gaussian; 0 when σ = 0).
	ExcessKurtosis float64 `json:"excess_kurtosis"`

	// Percentiles of |x| from the histogram (calib.Stats.AbsPercentile).
	AbsP99   float32 `json:"abs_p99"`
	AbsP999  float32 `json:"abs_p99_9"`
	AbsP9999 float32 `json:"abs_p99_99"`

	Breakpoint float32 `json:"bp"` // = AbsP99
	// BreakpointRatio is bp / max|x| (0 when max|x| is 0): the share of the
	// range the dense region covers.
	BreakpointRatio float64 `json:"bp_over_max"`
	Outliers        int64   `json:"outliers"`         // samples with |x| > bp
	OutlierFraction float64 `json:"outlier_fraction"` // Outliers / Count

	// ChannelOutliers[c] counts the outliers of channel c; Channels90 is the
	// smallest number of channels that together hold at least 90% of all
	// outliers (0 when there are none).
	ChannelOutliers []int64 `json:"channel_outliers"`
	Channels90      int     `json:"channels_90"`

	// Colour. A pixel is a spatial position (patch, y, x) of the tensor;
	// its outlier count is the number of channels with |x| > bp there, and
	// its chroma max(R,G,B) − min(R,G,B) (0..1) that of the LR input pixel
	// (y·H/H', x·W/W') (integer division), H×W the input's size and H'×W'
	// the tensor's. A tensor smaller than the input (a strided conv, a
	// global pool such as RCAN's channel attention) takes instead the mean
	// chroma of the block of input pixels its pixel summarises, rows
	// [y·H/H', (y+1)·H/H'), columns likewise: the whole patch for a 1×1
	// tensor, rather than its top-left pixel.
	Pixels        int64 `json:"pixels"`
	OutlierPixels int64 `json:"outlier_pixels"` // pixels with at least one outlier
	// ChromaCorrelation is Pearson's r between a pixel's outlier count and
	// its chroma over all pixels (0 when either is constant, e.g. no
	// outliers or grey inputs).
	ChromaCorrelation float64 `json:"chroma_correlation"`
	// Mean chroma at pixels with at least one outlier (0 when none), and at
	// all pixels.
	ChromaMeanOutlierPixels float64 `json:"chroma_mean_outlier_pixels"`
	ChromaMeanAllPixels     float64 `json:"chroma_mean_all_pixels"`

	// Stats is the first pass's histogram and extremes, for range methods
	// and plots.
	Stats *Stats `json:"-"`
}

// OutlierOptions configures AnalyzeOutliers; Capture's options apply to both
// passes (Progress sees the two passes as 2·patches steps).
type OutlierOptions struct {
	CaptureOptions
}

// AnalyzeOutliers runs the float graph g in ONNX Runtime on the patches and
// returns the outlier analysis of each value (NCHW tensors, in the order
// given): two capture passes, the first for a Stats per value (extremes,
// histogram, mean, hence bp), the second for exact counts against bp,
// central moments about the first pass's mean (the two-pass algorithm, so
// the kurtosis does not suffer the cancellation of raw moments), and pixel
// outlier counts against the input's chroma.
//
// patches are the LR patches as cut by Patches, all of one size (0..1
// pixels, for the chroma); the model sees them times rng, its input range,
// as `srq quantize` feeds them.
func AnalyzeOutliers(ctx context.Context, g *graph.Graph, values []string, patches []*img.Image, rng float32, o OutlierOptions) ([]OutlierStats, error) {
	if len(patches) == 0 {
		return nil, fmt.Errorf("outlier analysis: no patches")
	}
	shape := [3]int{patches[0].C, patches[0].H, patches[0].W}
	data := make([][]float32, len(patches))
	chroma := make([][]float32, len(patches))
	for i, p := range patches {
		if [3]int{p.C, p.H, p.W} != shape || len(p.Pix) != p.C*p.H*p.W {
			return nil, fmt.Errorf("outlier analysis: patch %d is %dx%dx%d, patch 0 is %dx%dx%d; all patches must have one size", i, p.C, p.H, p.W, shape[0], shape[1], shape[2])
		}
		d := make([]float32, len(p.Pix))
		for j, v := range p.Pix {
			d[j] = v * rng
		}
		data[i], chroma[i] = d, Chroma(p)
	}
	if o.Bins <= 0 {
		o.Bins = DefaultBins
	}
	accs := make(map[string]*outlierAcc, len(values))
	for _, v := range values {
		if accs[v] == nil {
			accs[v] = newOutlierAcc(o.Bins)
		}
	}
	co := o.CaptureOptions
	if o.Progress != nil {
		co.Progress = func(done, total int) { o.Progress(done, 2*total) }
	}
	err := capture(ctx, g, values, data, shape, co, func(v string, _ []int64, x []float32) {
		accs[v].addPass1(x)
	})
	if err != nil {
		return nil, err
	}
	for _, a := range accs {
		a.endPass1()
	}
	if o.Progress != nil {
		co.Progress = func(done, total int) { o.Progress(total+done, 2*total) }
	}
	err = capture(ctx, g, values, data, shape, co, func(v string, dims []int64, x []float32) {
		accs[v].addPass2(dims, x, chroma, shape[1], shape[2])
	})
	if err != nil {
		return nil, err
	}
	out := make([]OutlierStats, 0, len(values))
	seen := map[string]bool{}
	for _, v := range values {
		if seen[v] {
			continue
		}
		seen[v] = true
		s, err := accs[v].result()
		if err != nil {
			return nil, fmt.Errorf("outlier analysis of %s: %w", v, err)
		}
		s.Value = v
		out = append(out, s)
	}
	return out, nil
}

// Chroma returns max(R,G,B) − min(R,G,B) of every pixel of a planar RGB
// image (row-major H×W; 0..1 for 0..1 pixels): how far a pixel is from grey.
// Images with other than 3 channels have no colour: all zeros.
func Chroma(im *img.Image) []float32 {
	hw := im.H * im.W
	out := make([]float32, hw)
	if im.C != 3 || len(im.Pix) != 3*hw {
		return out
	}
	r, g, b := im.Pix[:hw], im.Pix[hw:2*hw], im.Pix[2*hw:]
	for i := range out {
		out[i] = max(r[i], g[i], b[i]) - min(r[i], g[i], b[i])
	}
	return out
}

// outlierAcc accumulates one tensor's OutlierStats over the two passes:
// addPass1 for every batch, endPass1, addPass2 for the same batches in the
// same order, result. It needs no ORT, so tests feed it tensors directly.
// After the first batch of a given size it allocates nothing per batch
// except O(cores) goroutine bookkeeping.
type outlierAcc struct {
	stats *Stats

	// Fixed by endPass1.
	bp   float32
	mean float64

	// Pass 2.
	c, h, w   int     // tensor shape, fixed by the first batch
	seen      int     // patches seen so far: the index of the next one
	chanCount []int64 // outliers per channel
	sums      patchSums
	err       error // first shape error; later batches are ignored

	// Scratch: per-patch sums of the current batch (merged in patch order,
	// so results do not depend on the number of cores) and per-worker
	// channel counts and pixel outlier counts.
	parts   []patchSums
	workers []outlierWork
}

// patchSums are the pass-2 sums of one patch, or of all patches so far.
type patchSums struct {
	n, outliers    int64
	m2, m4         float64 // Σ (x−μ)², Σ (x−μ)⁴
	pixels, outPix int64
	// Over pixels, k = outlier count, c = chroma: Σ k, Σ k², Σ c, Σ c², Σ kc,
	// and Σ c over pixels with k > 0. k ≤ channels and c ∈ [0, 1], so raw
	// float64 sums lose nothing that matters for a correlation.
	sk, skk, sc, scc, skc, scOut float64
}

func (s *patchSums) add(o *patchSums) {
	s.n += o.n
	s.outliers += o.outliers
	s.m2 += o.m2
	s.m4 += o.m4
	s.pixels += o.pixels
	s.outPix += o.outPix
	s.sk += o.sk
	s.skk += o.skk
	s.sc += o.sc
	s.scc += o.scc
	s.skc += o.skc
	s.scOut += o.scOut
}

// outlierWork is one worker's scratch for addPass2.
type outlierWork struct {
	chanCount []int64
	pix       []int32 // outlier count per pixel of the current patch
}

func newOutlierAcc(bins int) *outlierAcc {
	return &outlierAcc{stats: NewStats(bins)}
}

// addPass1 adds one batch to the first pass (any layout: only values count).
func (a *outlierAcc) addPass1(x []float32) { a.stats.Add(x) }

// endPass1 fixes the breakpoint and the mean the second pass measures from.
func (a *outlierAcc) endPass1() {
	a.bp = a.stats.AbsPercentile(BreakpointPercentile)
	a.mean = a.stats.Mean()
}

// addPass2 adds one NCHW batch (dims [N, C, H', W']) to the second pass.
// chroma holds the chroma of every patch of the run (row-major inH×inW
// each); the batch's patches are the next N after those already seen.
func (a *outlierAcc) addPass2(dims []int64, x []float32, chroma [][]float32, inH, inW int) {
	if a.err != nil {
		return
	}
	if len(dims) != 4 {
		a.err = fmt.Errorf("tensor of shape %v, want NCHW", dims)
		return
	}
	n, c, h, w := int(dims[0]), int(dims[1]), int(dims[2]), int(dims[3])
	switch {
	case n*c*h*w != len(x) || n < 0 || c < 0 || h < 0 || w < 0:
		a.err = fmt.Errorf("tensor of shape %v holds %d values", dims, len(x))
		return
	case a.seen+n > len(chroma):
		a.err = fmt.Errorf("%d patches captured, only %d given", a.seen+n, len(chroma))
		return
	case a.chanCount == nil:
		a.c, a.h, a.w = c, h, w
		a.chanCount = make([]int64, c)
	case c != a.c:
		a.err = fmt.Errorf("tensor has %d channels in one batch and %d in another", a.c, c)
		return
	}
	a.h, a.w = h, w
	workers := 1
	if len(x) >= parallelMin {
		workers = min(runtime.GOMAXPROCS(0), n)
	}
	for len(a.workers) < workers {
		a.workers = append(a.workers, outlierWork{})
	}
	for k := range workers {
		wk := &a.workers[k]
		if len(wk.chanCount) != c {
			wk.chanCount = make([]int64, c)
		}
		if cap(wk.pix) < h*w {
			wk.pix = make([]int32, h*w)
		}
		wk.pix = wk.pix[:h*w]
	}
	if cap(a.parts) < n {
		a.parts = make([]patchSums, n)
	}
	parts := a.parts[:n]
	per := c * h * w
	if workers == 1 { // no closure: it would escape to the heap
		for i := range parts {
			parts[i] = a.patch(x[i*per:(i+1)*per], chroma[a.seen+i], inH, inW, &a.workers[0])
		}
	} else {
		forChunks(workers, n, func(k, i int) {
			parts[i] = a.patch(x[i*per:(i+1)*per], chroma[a.seen+i], inH, inW, &a.workers[k])
		})
	}
	for i := range parts {
		a.sums.add(&parts[i])
	}
	for k := range workers {
		for ch, v := range a.workers[k].chanCount {
			a.chanCount[ch] += v
		}
		clear(a.workers[k].chanCount)
	}
	a.seen += n
}

// patch measures one patch x (C×H'×W' planar, a.c, a.h, a.w) against bp and
// the mean, adding its channel counts to wk.chanCount. Non-finite samples
// are skipped, as Stats skips them.
func (a *outlierAcc) patch(x []float32, chroma []float32, inH, inW int, wk *outlierWork) patchSums {
	var s patchSums
	hw := a.h * a.w
	pix := wk.pix[:hw]
	clear(pix)
	bp, mean := a.bp, a.mean
	for ch := range a.c {
		row := x[ch*hw : (ch+1)*hw]
		var m2a, m2b, m4a, m4b float64
		var out int64
		n := int64(len(row))
		// Two interleaved accumulators per sum halve the floating-point
		// dependency chain (as in scanChunk). A non-finite sample makes
		// the sums non-finite; only then is the row measured again,
		// skipping those samples.
		j := 0
		for ; j+1 < len(row); j += 2 {
			v, u := row[j], row[j+1]
			d, e := float64(v)-mean, float64(u)-mean
			d, e = d*d, e*e
			m2a += d
			m2b += e
			m4a += d * d
			m4b += e * e
			if v > bp || v < -bp {
				pix[j]++
				out++
			}
			if u > bp || u < -bp {
				pix[j+1]++
				out++
			}
		}
		if j < len(row) {
			v := row[j]
			d := float64(v) - mean
			d *= d
			m2a += d
			m4a += d * d
			if v > bp || v < -bp {
				pix[j]++
				out++
			}
		}
		m2, m4 := m2a+m2b, m4a+m4b
		if math.IsNaN(m4) || math.IsInf(m4, 0) {
			m2, m4, n = 0, 0, 0
			for j, v := range row {
				if v-v != 0 { // NaN or ±Inf: ±Inf was counted above, NaN not
					if v > bp || v < -bp {
						pix[j]--
						out--
					}
					continue
				}
				n++
				d := float64(v) - mean
				d *= d
				m2 += d
				m4 += d * d
			}
		}
		s.n += n
		s.m2 += m2
		s.m4 += m4
		s.outliers += out
		wk.chanCount[ch] += out
	}
	for y := range a.h {
		y0, y1 := span(y, a.h, inH)
		for xx, k := range pix[y*a.w : (y+1)*a.w] {
			x0, x1 := span(xx, a.w, inW)
			var c float64
			if y1 == y0+1 && x1 == x0+1 { // same or higher resolution
				c = float64(chroma[y0*inW+x0])
			} else {
				for yy := y0; yy < y1; yy++ {
					for _, v := range chroma[yy*inW+x0 : yy*inW+x1] {
						c += float64(v)
					}
				}
				c /= float64((y1 - y0) * (x1 - x0))
			}
			kf := float64(k)
			s.sk += kf
			s.skk += kf * kf
			s.sc += c
			s.scc += c * c
			s.skc += kf * c
			if k > 0 {
				s.outPix++
				s.scOut += c
			}
		}
	}
	s.pixels = int64(hw)
	return s
}

// span returns the input rows [lo, hi) that row i of a tensor with n rows
// covers, for an input of in rows: lo = i·in/n (integer, rounded down) and
// hi = max((i+1)·in/n, lo+1). At the input's resolution or above (after a
// PixelShuffle) that is the one row i·in/n; below it (a strided conv, a
// global pool) the block of rows the tensor row summarises.
func span(i, n, in int) (lo, hi int) {
	lo = i * in / n
	return lo, max((i+1)*in/n, lo+1)
}

// result assembles the statistics; Value is left to the caller.
func (a *outlierAcc) result() (OutlierStats, error) {
	if a.err != nil {
		return OutlierStats{}, a.err
	}
	st := a.stats
	r := OutlierStats{
		Channels: a.c, Height: a.h, Width: a.w,
		Count: st.Count, NonFinite: st.NonFinite, Min: st.Min, Max: st.Max, Mean: a.mean,
		AbsP99: a.bp, AbsP999: st.AbsPercentile(99.9), AbsP9999: st.AbsPercentile(99.99),
		Breakpoint: a.bp, Outliers: a.sums.outliers,
		ChannelOutliers: slices.Clone(a.chanCount), Channels90: channelsHolding(a.chanCount, 90),
		Pixels: a.sums.pixels, OutlierPixels: a.sums.outPix,
		Stats: st,
	}
	if r.ChannelOutliers == nil {
		r.ChannelOutliers = []int64{}
	}
	if amax := max(math.Abs(float64(st.Min)), math.Abs(float64(st.Max))); amax > 0 {
		r.BreakpointRatio = float64(a.bp) / amax
	}
	if s := a.sums; s.n > 0 {
		r.OutlierFraction = float64(s.outliers) / float64(s.n)
		r.Std = math.Sqrt(s.m2 / float64(s.n))
		if s.m2 > 0 {
			r.ExcessKurtosis = float64(s.n)*s.m4/(s.m2*s.m2) - 3
		}
	}
	if s := a.sums; s.pixels > 0 {
		n := float64(s.pixels)
		r.ChromaMeanAllPixels = s.sc / n
		if s.outPix > 0 {
			r.ChromaMeanOutlierPixels = s.scOut / float64(s.outPix)
		}
		r.ChromaCorrelation = pearson(n, s.sk, s.skk, s.sc, s.scc, s.skc)
	}
	return r, nil
}

// pearson returns Pearson's r from the sums of n pairs (a, b): Σa, Σa², Σb,
// Σb², Σab, clamped to [−1, 1]; 0 when either variance is 0 (r undefined).
func pearson(n, sa, saa, sb, sbb, sab float64) float64 {
	va := n*saa - sa*sa
	vb := n*sbb - sb*sb
	if !(va > 0 && vb > 0) {
		return 0
	}
	return min(max((n*sab-sa*sb)/math.Sqrt(va*vb), -1), 1)
}

// channelsHolding returns the smallest number of channels whose counts sum
// to at least pct percent of the total (0 for a zero total): the largest
// counts first. Integer arithmetic, so 90% of 10 is exactly 9.
func channelsHolding(counts []int64, pct int64) int {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	sorted := slices.Clone(counts)
	slices.SortFunc(sorted, func(a, b int64) int { return int(min(max(b-a, -1), 1)) })
	var cum int64
	for i, c := range sorted {
		cum += c
		if 100*cum >= pct*total {
			return i + 1
		}
	}
	return len(sorted)
}
