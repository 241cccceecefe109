package quant

import (
	"context"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
)

// equalizePatches bounds the patches that measure per-channel ranges:
// equalization needs the channel profile, not the tails.
const equalizePatches = 16

// equalizeAlpha is the strength of equalization: channel c is scaled by
// its range to the power −alpha, splitting the spread between the
// activations and the next Conv's weights. On realesr_animevideo_x4 W8A8
// (Set5 LR, PSNR-Y vs FP32) 0.5 gave 43.74 dB, full equalization 42.68,
// none 41.79.
const equalizeAlpha = 0.5

// equalizeSpaces picks the channel spaces to rescale. A per-channel PRelu
// scales each channel's negative side by its own slope, so the channels of
// the tensors around it differ in range by construction, and one 8-bit
// grid per tensor wastes levels on all but the widest (Real-ESRGAN's
// compact network: 17 Conv→PRelu spaces, +1.95 dB as above). Elsewhere
// equalization measured no gain — EDSR x2 W8A8 within 0.01 dB, IMDN W8A8
// −0.18/−0.20 dB against −0.19 — and lost 0.12 dB on EDSR x4 W4A4 dual,
// whose dual-region tails catch the outlier channels better unscaled, so
// EqualizeAuto leaves those spaces alone.
func equalizeSpaces(g *graph.Graph, e Equalization) []passes.ChannelSpace {
	if e == EqualizeOff {
		return nil
	}
	spaces := passes.ChannelSpaces(g)
	if e == EqualizeOn {
		return spaces
	}
	var out []passes.ChannelSpace
	for _, s := range spaces {
		for _, v := range s.Values {
			if p := g.Producer(v); p != nil && p.OpType == "PRelu" {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// equalize measures the per-channel ranges of the quantized values in the
// chosen channel spaces and rescales the spaces (passes.Equalize); it
// returns how many it rescaled.
func equalize(ctx context.Context, g *graph.Graph, pl *passes.Plan, c *calibration, cfg Config) (int, error) {
	spaces := equalizeSpaces(g, cfg.Equalize)
	if len(spaces) == 0 {
		return 0, nil
	}
	quantized := map[string]bool{}
	for _, v := range pl.Values {
		quantized[v] = true
	}
	for v := range pl.Shared {
		quantized[v] = true
	}
	var vals []string
	for _, s := range spaces {
		for _, v := range s.Values {
			if quantized[v] {
				vals = append(vals, v)
			}
		}
	}
	if len(vals) == 0 {
		return 0, nil
	}
	ranges, err := calib.CaptureChannelMax(ctx, g, vals, c.batches[:min(len(c.batches), equalizePatches)], c.shape,
		calib.CaptureOptions{Batch: cfg.Batch, Session: ort.Options{Threads: cfg.Threads}})
	if err != nil {
		return 0, err
	}
	if err := passes.Run(g, passes.Equalize{Spaces: spaces, Ranges: ranges, Alpha: equalizeAlpha}); err != nil {
		return 0, err
	}
	return len(spaces), nil
}
