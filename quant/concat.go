package quant

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
)

// concatProbePatches is how many calibration patches measure the parts of
// each Concat a Conv reads before deciding to split it: ranges, not tails,
// decide, and a few patches show a tenfold difference.
const concatProbePatches = 8

// concatRatio is the range ratio from which a Concat part is read through
// a Conv of its own: a part that spans a quarter of the Concat's range or
// less would get 64 or fewer of its 256 levels.
const concatRatio = 4

// splitConcats rewrites every quantized Conv that reads a channel Concat of
// parts whose ranges differ by concatRatio or more as one Conv per part
// and a sum (passes.SplitConcatConv): the Conv sees each part on its own
// 8-bit grid instead of the widest part's. On SPAN's conv_cat (the head's
// features, ±20, beside attention outputs of ±2) that took the W8A8 model
// from 36.8 to 38.8 dB against FP32 on Set5. Parts of similar ranges
// (IMDN's and CARN-M's Concats) are left alone: a split costs an 8-bit Add
// per part.
func splitConcats(ctx context.Context, pr *prepared, cal *calibration, cfg Config, log func(string)) error {
	g := pr.g
	first, last := passes.Edges(g)
	var convs []string
	parts, cat := map[string][]string{}, map[string]string{}
	var values []string
	for _, n := range g.Nodes {
		ps, ok := passes.ConcatParts(g, n)
		if !ok || pr.pol.KeepsFloat(n, slices.Contains(first, n) || slices.Contains(last, n)) {
			continue
		}
		convs = append(convs, n.Name)
		for _, p := range ps {
			parts[n.Name] = append(parts[n.Name], p.Value())
			values = append(values, p.Value())
		}
		cat[n.Name] = n.Inputs[0]
		values = append(values, n.Inputs[0])
	}
	if len(convs) == 0 {
		return nil
	}
	values = slices.Compact(slices.Sorted(slices.Values(values)))
	stats, err := calib.Capture(ctx, g, values, cal.batches[:min(concatProbePatches, len(cal.batches))], cal.shape,
		calib.CaptureOptions{Batch: cfg.Batch, Session: ort.Options{Threads: cfg.Threads}})
	if err != nil {
		return fmt.Errorf("concat probe: %w", err)
	}
	width := func(v string) float64 {
		lo, hi := calib.RangePercentile(stats[v], cfg.Percentile)
		return float64(hi - lo)
	}
	var split []string
	for _, c := range convs {
		whole := width(cat[c])
		for _, p := range parts[c] {
			if w := width(p); w > 0 && whole/w >= concatRatio {
				split = append(split, c)
				break
			}
		}
	}
	if len(split) == 0 {
		return nil
	}
	if err := passes.Run(g, passes.SplitConcatConv{Nodes: split}); err != nil {
		return err
	}
	log(fmt.Sprintf("read the parts of the Concat before %s on grids of their own (ranges %g× apart or more)", strings.Join(split, ", "), float64(concatRatio)))
	return nil
}
