package quant

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
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

// ownGrids gives the parts of a tensor whose ranges differ by concatRatio
// or more grids of their own, where one int8 tensor would hold them:
// the parts of a Concat a Conv reads (splitConcats), the runs of output
// channels of a Conv that only float ops read on the way into a norm
// (splitWideOutputs). srq quantize
// and srq sensitivity run it, so that both measure the same graph.
func ownGrids(ctx context.Context, pr *prepared, cal *calibration, cfg Config, log func(string)) error {
	if err := splitConcats(ctx, pr, cal, cfg, log); err != nil {
		return err
	}
	return splitWideOutputs(ctx, pr, cal, cfg, log)
}

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

// splitWideOutputs writes each quantized Conv whose output only float ops
// read, a normalization among them (passes.NormReads: the output or the
// residual sum it is added into), and whose output channels' ranges fall
// into groups concatRatio or more apart, as one Conv per run of channels
// of a group and a float Concat (passes.SplitConvOutputs). The output grid
// exists only for ORT's int8 Conv; one grid over a channel with a massive
// activation leaves the others a few levels, and the norm, dividing by a
// spread the massive channel sets, and its learnt scale make those levels
// count. CRAFT's last residual group writes a channel near 1500 and one
// near 200 beside channels within ±70 into the residual stream its final
// norm reads (Set5, W8A8: −0.35 → −0.11 dB). Conv outputs an int8 op
// reads keep one grid: that op reads one. Without a norm, small channels
// beside a wide one may be near-dead ones, not worth a Conv of their own.
func splitWideOutputs(ctx context.Context, pr *prepared, cal *calibration, cfg Config, log func(string)) error {
	g := pr.g
	pl, err := plan(pr, cfg)
	if err != nil {
		return err
	}
	planned := map[*graph.Node]bool{}
	for _, n := range pl.Nodes {
		planned[n] = true
	}
	var convs []*graph.Node
	var values []string
	for _, n := range pl.Nodes {
		if n.OpType != "Conv" || n.AttrInt("group", 1) != 1 || pl.ReluOf[n] != nil || g.IsGraphOutput(n.Outputs[0]) {
			continue
		}
		if _, ok := g.Const(n.Inputs[1]); !ok {
			continue
		}
		float := passes.NormReads(g, n.Outputs[0])
		for _, c := range g.Consumers(n.Outputs[0]) {
			float = float && !planned[c]
		}
		if float {
			convs = append(convs, n)
			values = append(values, n.Outputs[0])
		}
	}
	if len(convs) == 0 {
		return nil
	}
	ranges, err := calib.CaptureChannelMax(ctx, g, values, cal.batches[:min(concatProbePatches, len(cal.batches))], cal.shape,
		calib.CaptureOptions{Batch: cfg.Batch, Session: ort.Options{Threads: cfg.Threads}})
	if err != nil {
		return fmt.Errorf("output channel probe: %w", err)
	}
	starts := map[string][]int64{}
	var names []string
	for _, n := range convs {
		if s := passes.ChannelRuns(ranges[n.Outputs[0]], concatRatio); s != nil {
			starts[n.Name] = s
			names = append(names, fmt.Sprintf("%s (%d runs)", n.Name, len(s)+1))
		}
	}
	if len(starts) == 0 {
		return nil
	}
	if err := passes.Run(g, passes.SplitConvOutputs{Starts: starts}); err != nil {
		return err
	}
	log(fmt.Sprintf("wrote the output channels of %s on grids of their own (channel ranges %g× apart or more, read in float by a normalization)", strings.Join(names, ", "), float64(concatRatio)))
	return nil
}
