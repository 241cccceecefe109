package calib

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// DefaultBins is the histogram size for activation statistics: fine enough
// that an 8-bit step spans several bins over the occupied part of the range.
const DefaultBins = 2048

// Bin-count limits for NewStats.
const (
	minBins = 16
	maxBins = 1 << 20
)

// Stats accumulates per-tensor statistics of activation values over
// calibration batches, in one streaming pass per batch: exact extremes,
// counts, moments, and a fixed-size histogram that the range methods
// (RangeMinMax, RangePercentile, RangeMSE) work on.
//
// The histogram's bins are anchored at 0: bin g covers [g·w, (g+1)·w) with
// w = 2^e, and the Stats keeps the `bins` consecutive bins [base, base+bins)
// that contain [Min, Max]. w is the smallest power of two for which
// [Min, Max] fits (and at least max(|Min|,|Max|)·2^-32, so that constant
// tensors get a finite grid). When a batch extends the range, w doubles as
// often as needed and old bins are merged into the wider ones: because w
// only ever grows by powers of two and every grid contains 0 as an edge, each
// old bin lies inside exactly one new bin, so the merge is exact. The state
// therefore depends only on the multiset of samples: adding batches in any
// order, or merging Stats of parts, gives the same histogram, Min, Max and
// counts as one pass over all the data (Sum and SumSq differ only by float64
// rounding). The one approximation is resolution: [Min, Max] spans at least
// (bins-1)/2 bins (else w/2 would fit), at most bins. (ORT's
// HistogramCalibrater instead keeps the first batch's bin width and appends
// bins as the range grows: also exact, but its size is unbounded and its
// resolution, and so its result, depend on which batch came first.)
//
// Exact zeros (ReLU outputs, padding) are also counted separately, so the
// percentile and MSE code treats them as a point mass at 0, which every
// quantizer here represents exactly. NaN and ±Inf samples are counted in
// NonFinite and otherwise ignored.
//
// A Stats is not safe for concurrent use; Add parallelises internally.
type Stats struct {
	Min, Max  float32 // extremes of the finite samples (0, 0 when Count is 0)
	Count     int64   // finite samples
	Zeros     int64   // samples equal to ±0 (included in Count)
	NonFinite int64   // NaN and ±Inf samples (not in Count)
	Sum       float64 // Σ x over finite samples
	SumSq     float64 // Σ x² over finite samples

	bins   int
	exp    int     // bin width w = 2^exp
	base   int64   // global index of counts[0]
	counts []int64 // len bins once Count > 0

	// Scratch reused across calls, so that Add does not allocate after the
	// first call of a given size.
	tmp    []int64    // re-binning target
	chunks []chunkSum // per-chunk results of the scan pass
	local  [][]uint32 // per-worker pairs of histograms of the binning pass
}

// NewStats returns empty statistics with a histogram of bins bins (clamped
// to [16, 2^20]; DefaultBins is a good choice).
func NewStats(bins int) *Stats {
	return &Stats{bins: min(max(bins, minBins), maxBins)}
}

// Bins returns the number of histogram bins.
func (s *Stats) Bins() int { return s.bins }

// Reset empties s, keeping its bin count and scratch buffers.
func (s *Stats) Reset() {
	*s = Stats{bins: s.bins, counts: s.counts[:0], tmp: s.tmp, chunks: s.chunks, local: s.local}
}

// Mean returns Sum/Count (0 when empty).
func (s *Stats) Mean() float64 {
	if s.Count == 0 {
		return 0
	}
	return s.Sum / float64(s.Count)
}

// Std returns the population standard deviation sqrt(SumSq/Count - Mean²),
// clamped at 0 (0 when empty). Being computed from raw moments, it loses
// relative precision when |Mean| ≫ Std (about 1e-16·Mean²/Std²).
func (s *Stats) Std() float64 {
	if s.Count == 0 {
		return 0
	}
	m := s.Mean()
	return math.Sqrt(max(s.SumSq/float64(s.Count)-m*m, 0))
}

// Histogram returns the histogram: counts[i] samples lie in
// [lo + i·width, lo + (i+1)·width) (the Zeros included in the bin starting
// at 0). counts is s's own storage: read it, do not keep or modify it. It is
// empty when Count is 0.
func (s *Stats) Histogram() (lo, width float64, counts []int64) {
	if s.Count == 0 {
		return 0, 0, nil
	}
	w := math.Ldexp(1, s.exp)
	return float64(s.base) * w, w, s.counts
}

// chunkSize is the unit of work of Add: big enough to amortise scheduling,
// small enough to balance cores. Chunk boundaries do not depend on the
// number of cores, so neither do Sum and SumSq.
const chunkSize = 1 << 16

// parallelMin is the batch size from which Add uses several cores.
const parallelMin = 4 * chunkSize

// chunkSum is the scan-pass result of one chunk.
type chunkSum struct {
	min, max         float32
	count, zeros     int64
	nonFinite        int64
	sum, sumSq       float64
	hasNonFiniteData bool
}

// scanChunk computes the extremes, counts and moments of the finite values
// of x. The fast loop assumes finite data (NaN fails every comparison, so it
// cannot corrupt the extremes, and it or an Inf shows in the sums); the slow
// loop runs only when the sums are not finite. Two interleaved accumulators
// per sum halve the floating-point dependency chain; comparisons, not the
// min/max builtins, keep the extremes cheap, and zeros are counted without a
// branch (ReLU data is half zeros in random order).
func scanChunk(x []float32) chunkSum {
	c := chunkSum{min: float32(math.Inf(1)), max: float32(math.Inf(-1))}
	mn, mx := c.min, c.max
	var s0, s1, q0, q1 float64
	var nonZero int64
	i := 0
	for ; i+1 < len(x); i += 2 {
		v, u := x[i], x[i+1]
		if v < mn {
			mn = v
		}
		if v > mx {
			mx = v
		}
		if u < mn {
			mn = u
		}
		if u > mx {
			mx = u
		}
		nonZero += isNonZero(v) + isNonZero(u)
		f, g := float64(v), float64(u)
		s0 += f
		s1 += g
		q0 += f * f
		q1 += g * g
	}
	for ; i < len(x); i++ {
		v := x[i]
		if v < mn {
			mn = v
		}
		if v > mx {
			mx = v
		}
		nonZero += isNonZero(v)
		f := float64(v)
		s0 += f
		q0 += f * f
	}
	sum, sumSq := s0+s1, q0+q1
	if !math.IsNaN(sumSq) && !math.IsInf(sumSq, 0) && !math.IsInf(sum, 0) {
		n := int64(len(x))
		c.min, c.max, c.zeros, c.count, c.sum, c.sumSq = mn, mx, n-nonZero, n, sum, sumSq
		return c
	}
	c.hasNonFiniteData = true
	for _, v := range x {
		if v-v != 0 { // NaN or ±Inf
			c.nonFinite++
			continue
		}
		c.min, c.max = min(c.min, v), max(c.max, v)
		c.zeros += 1 - isNonZero(v)
		c.count++
		f := float64(v)
		c.sum += f
		c.sumSq += f * f
	}
	return c
}

// isNonZero returns 0 for ±0 and 1 otherwise, without a branch: the bits
// without the sign are 0 only for ±0, and z | -z has its top bit set for any
// other z.
func isNonZero(v float32) int64 {
	z := math.Float32bits(v) << 1
	return int64((z | -z) >> 31)
}

// forChunks runs fn(worker, chunk) over the nChunks chunks on `workers`
// goroutines, worker k taking chunks k, k+workers…
func forChunks(workers, nChunks int, fn func(worker, chunk int)) {
	var wg sync.WaitGroup
	for k := range workers {
		wg.Go(func() {
			for c := k; c < nChunks; c += workers {
				fn(k, c)
			}
		})
	}
	wg.Wait()
}

// maxAddBatch bounds one internal batch so per-worker uint32 counts cannot
// overflow; Add splits larger slices (the result is the same, see Stats).
const maxAddBatch = 1 << 31

// Add accumulates the samples of x (one calibration batch of a tensor). The
// histogram is extended and exactly re-binned first when x widens [Min, Max]
// (see Stats). Large slices are scanned on all cores; after the first call
// at a given size it allocates nothing per element (only O(cores) goroutine
// bookkeeping when it runs in parallel, none when serial).
func (s *Stats) Add(x []float32) {
	for len(x) > maxAddBatch {
		s.Add(x[:maxAddBatch])
		x = x[maxAddBatch:]
	}
	if len(x) == 0 {
		return
	}
	if s.bins == 0 { // zero value Stats
		s.bins = DefaultBins
	}
	nChunks := (len(x) + chunkSize - 1) / chunkSize
	workers := 1
	if len(x) >= parallelMin {
		workers = min(runtime.GOMAXPROCS(0), nChunks)
	}
	if cap(s.chunks) < nChunks {
		s.chunks = make([]chunkSum, nChunks)
	}
	chunks := s.chunks[:nChunks]
	if workers == 1 { // no closures: they would escape to the heap
		for c := range chunks {
			chunks[c] = scanChunk(x[c*chunkSize : min((c+1)*chunkSize, len(x))])
		}
	} else {
		forChunks(workers, nChunks, func(_, c int) {
			chunks[c] = scanChunk(x[c*chunkSize : min((c+1)*chunkSize, len(x))])
		})
	}
	b := chunkSum{min: float32(math.Inf(1)), max: float32(math.Inf(-1))}
	for _, c := range chunks { // in chunk order: deterministic sums
		b.min, b.max = min(b.min, c.min), max(b.max, c.max)
		b.count += c.count
		b.zeros += c.zeros
		b.nonFinite += c.nonFinite
		b.sum += c.sum
		b.sumSq += c.sumSq
		b.hasNonFiniteData = b.hasNonFiniteData || c.hasNonFiniteData
	}
	s.NonFinite += b.nonFinite
	if b.count == 0 {
		return
	}
	s.extend(b.min, b.max)
	s.Count += b.count
	s.Zeros += b.zeros
	s.Sum += b.sum
	s.SumSq += b.sumSq

	inv := math.Ldexp(1, -s.exp)
	for len(s.local) < workers {
		s.local = append(s.local, nil)
	}
	for k := range workers {
		if cap(s.local[k]) < 2*s.bins {
			s.local[k] = make([]uint32, 2*s.bins)
		}
		s.local[k] = s.local[k][:2*s.bins]
		clear(s.local[k])
	}
	if workers == 1 {
		binInto(s.local[0], x, inv, s.base, b.hasNonFiniteData)
	} else {
		forChunks(workers, nChunks, func(k, c int) {
			cx := x[c*chunkSize : min((c+1)*chunkSize, len(x))]
			binInto(s.local[k], cx, inv, s.base, chunks[c].hasNonFiniteData)
		})
	}
	for k := range workers {
		l := s.local[k]
		for i := range s.counts {
			s.counts[i] += int64(l[i]) + int64(l[s.bins+i])
		}
	}
}

// binInto adds x's finite samples to the two histograms local[:bins] and
// local[bins:] (bins = len(local)/2; elements alternate between them so that
// runs of equal values, such as ReLU zeros, do not serialise on one
// counter). Bin i is global bin base+i of width 1/inv: index
// floor(v·inv) - base, exact because inv is a power of two. Out-of-window
// indices (impossible unless x changed since the scan) are dropped rather
// than panicking.
func binInto(local []uint32, x []float32, inv float64, base int64, skipNonFinite bool) {
	n := uint64(len(local) / 2)
	c0, c1 := local[:n], local[n:2*n]
	if skipNonFinite {
		for _, v := range x {
			if v-v != 0 {
				continue
			}
			if j := uint64(int64(math.Floor(float64(v)*inv)) - base); j < n {
				c0[j]++
			}
		}
		return
	}
	i := 0
	for ; i+1 < len(x); i += 2 {
		j0 := uint64(int64(math.Floor(float64(x[i])*inv)) - base)
		j1 := uint64(int64(math.Floor(float64(x[i+1])*inv)) - base)
		if j0 < n {
			c0[j0]++
		}
		if j1 < n {
			c1[j1]++
		}
	}
	if i < len(x) {
		if j := uint64(int64(math.Floor(float64(x[i])*inv)) - base); j < n {
			c0[j]++
		}
	}
}

// layout returns the canonical (exp, base) for samples in [lo, hi]: the
// smallest exp >= max(minExp, floorExp(max(|lo|,|hi|))) whose 2^exp-wide
// bins, anchored at 0, cover [lo, hi] with at most bins bins. Every bound
// grows with the range, so the layout of a union is at least as coarse as
// the layout of each part, and re-binning only ever merges bins.
func layout(lo, hi float64, bins, minExp int) (exp int, base int64) {
	absmax := max(-lo, hi)
	exp = max(minExp, -160) // all zeros: any width works; keep indices small
	if absmax > 0 {
		_, e := math.Frexp(absmax) // 2^(e-1) <= absmax < 2^e
		exp = max(exp, e-32)       // |index| < 2^32
	}
	if span := hi - lo; span > 0 {
		_, e := math.Frexp(span / float64(bins))
		exp = max(exp, e-2)
	}
	for ; ; exp++ {
		w := math.Ldexp(1, exp)
		b, t := math.Floor(lo/w), math.Floor(hi/w)
		if t-b < float64(bins) {
			return exp, int64(b)
		}
	}
}

// extend widens [Min, Max] to include [lo, hi] and re-bins the histogram
// onto the layout of the new range.
func (s *Stats) extend(lo, hi float32) {
	if s.Count == 0 {
		s.Min, s.Max = lo, hi
		s.exp, s.base = layout(float64(lo), float64(hi), s.bins, math.MinInt32)
		if cap(s.counts) < s.bins {
			s.counts = make([]int64, s.bins)
		}
		s.counts = s.counts[:s.bins]
		clear(s.counts)
		return
	}
	if lo >= s.Min && hi <= s.Max {
		return
	}
	s.Min, s.Max = min(s.Min, lo), max(s.Max, hi)
	s.rebin(layout(float64(s.Min), float64(s.Max), s.bins, s.exp))
}

// rebin moves the counts onto the layout (exp, base), exp >= s.exp: old
// global bin g falls in new bin g >> (exp - s.exp) (floor division, as both
// grids are anchored at 0).
func (s *Stats) rebin(exp int, base int64) {
	if exp == s.exp && base == s.base {
		return
	}
	if cap(s.tmp) < s.bins {
		s.tmp = make([]int64, s.bins)
	}
	tmp := s.tmp[:s.bins]
	clear(tmp)
	shiftInto(tmp, base, s.counts, s.base, uint(exp-s.exp))
	s.counts, s.tmp = tmp, s.counts
	s.exp, s.base = exp, base
}

// shiftInto adds counts src (global base srcBase) into dst (global base
// dstBase) whose bins are 2^shift times wider.
func shiftInto(dst []int64, dstBase int64, src []int64, srcBase int64, shift uint) {
	for i, c := range src {
		if c == 0 {
			continue
		}
		if j := uint64(((srcBase + int64(i)) >> shift) - dstBase); j < uint64(len(dst)) {
			dst[j] += c
		}
	}
}

// Merge adds o's samples to s, as if every batch given to o had been given
// to s (exactly so for the histogram, extremes and counts; see Stats). o is
// unchanged. Both must have the same number of bins.
func (s *Stats) Merge(o *Stats) error {
	if o == nil || o == s {
		return fmt.Errorf("calib: cannot merge statistics with nil or themselves")
	}
	if s.bins == 0 && s.Count == 0 { // zero value Stats
		s.bins = o.bins
	}
	if o.Count > 0 && s.bins != o.bins {
		return fmt.Errorf("calib: cannot merge statistics with %d and %d histogram bins", s.bins, o.bins)
	}
	s.NonFinite += o.NonFinite
	if o.Count == 0 {
		return nil
	}
	s.extend(o.Min, o.Max)
	if o.exp > s.exp { // impossible for canonical layouts; never drop samples
		s.rebin(layout(float64(s.Min), float64(s.Max), s.bins, o.exp))
	}
	shiftInto(s.counts, s.base, o.counts, o.base, uint(s.exp-o.exp))
	s.Count += o.Count
	s.Zeros += o.Zeros
	s.Sum += o.Sum
	s.SumSq += o.SumSq
	return nil
}

// Percentile returns the value below which p percent of the finite samples
// fall (p clamped to [0, 100]; NaN counts as 100): the rank r = p/100·Count
// is located in the histogram and interpolated linearly inside its bin, the
// bin's samples taken as uniformly spread over the part of it inside
// [Min, Max], except the Zeros, a point mass at 0. Percentile(0) is Min,
// Percentile(100) is Max; an empty Stats gives 0. The error is at most one
// bin width.
func (s *Stats) Percentile(p float64) float32 {
	if s.Count == 0 {
		return 0
	}
	if !(p < 100) {
		return s.Max
	}
	if !(p > 0) {
		return s.Min
	}
	rank := p / 100 * float64(s.Count)
	w := math.Ldexp(1, s.exp)
	lo, hi := float64(s.Min), float64(s.Max)
	var cum float64
	for i, c := range s.counts {
		if c == 0 {
			continue
		}
		g := s.base + int64(i)
		n := float64(c)
		a, b := max(float64(g)*w, lo), min(float64(g+1)*w, hi)
		if g == 0 && s.Zeros > 0 { // point mass at a = 0, then the rest
			z := float64(s.Zeros)
			if rank <= cum+z {
				return 0
			}
			cum, n = cum+z, n-z
		}
		if n > 0 && rank <= cum+n {
			return float32(min(max(a+(rank-cum)/n*(b-a), lo), hi))
		}
		cum += n
	}
	return s.Max
}

// AbsPercentile returns the value below which p percent of the finite
// samples' magnitudes |x| fall (p clamped to [0, 100]; NaN counts as 100),
// interpolated as in Percentile. The histogram folds exactly onto |x| since
// 0 is a bin edge. This is the statistic the dual-region quantizer starts its
// breakpoint from (the 99th percentile of |x|).
func (s *Stats) AbsPercentile(p float64) float32 {
	if s.Count == 0 {
		return 0
	}
	amax := max(math.Abs(float64(s.Min)), math.Abs(float64(s.Max)))
	if !(p < 100) {
		return float32(amax)
	}
	// Folded bin m covers [m·w, (m+1)·w): positive bin g = m, negative bin
	// g = -m-1. Merge the two ascending sequences of m over occupied bins.
	w := math.Ldexp(1, s.exp)
	rank := max(p, 0) / 100 * float64(s.Count)
	lo, hi := s.base, s.base+int64(len(s.counts)) // global bins [lo, hi)
	pos, neg := max(lo, 0), min(hi, 0)-1          // next positive g (up), negative g (down)
	var cum float64
	for pos < hi || neg >= lo {
		var m int64
		switch {
		case neg < lo:
			m = pos
		case pos >= hi:
			m = -neg - 1
		default:
			m = min(pos, -neg-1)
		}
		var n float64
		if pos < hi && pos == m {
			n += float64(s.counts[pos-lo])
			pos++
		}
		if neg >= lo && -neg-1 == m {
			n += float64(s.counts[neg-lo])
			neg--
		}
		if n == 0 {
			continue
		}
		if m == 0 && s.Zeros > 0 {
			z := float64(s.Zeros)
			if rank <= cum+z {
				return 0
			}
			cum, n = cum+z, n-z
		}
		if n > 0 && rank <= cum+n {
			a, b := float64(m)*w, min(float64(m+1)*w, amax)
			return float32(min(a+(rank-cum)/n*(b-a), amax))
		}
		cum += n
	}
	return float32(amax)
}
