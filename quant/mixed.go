package quant

import (
	"context"
	"fmt"
	"math"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/passes"
)

// Mixed precision (Config.BudgetBits) gives each low-bit Conv its own width
// b (weights and input) so that the mean width, weighted by the Convs'
// multiply-accumulates, stays within the budget, and the model's output
// noise is least. Each Conv's noise at the setting's width is measured
// (the output PSNR-Y against FP32 with that Conv alone quantized, as `srq
// sensitivity` does): e = 10^(−PSNR/10). One more bit halves a uniform
// quantizer's step and quarters its noise, so e(b) = e·4^(b₀−b); noises of
// different layers add. Widths are then bought greedily, each time the
// one bit that removes the most noise per MAC: for a sum of convex,
// decreasing costs under one linear budget that is the optimum up to one
// bit. First and last Convs keep their 8 bits outside the budget.

// mixedBelow bounds how far below the setting's width mixed precision
// goes: the 6 dB-per-bit model is measured at the setting's width and
// holds less the farther it is extrapolated.
const mixedBelow = 2

// mixedPrecision returns the width of every low-bit Conv (by name), and the
// sensitivity measured on the way.
func mixedPrecision(ctx context.Context, pr *prepared, pl *passes.Plan, cal *calibration, cfg Config, ev Events) (map[string]int, []LayerSensitivity, error) {
	if cfg.Bits.W != cfg.Bits.A {
		return nil, nil, fmt.Errorf("--budget-bits sets weights and inputs together: it needs a setting wXaX, got %s", cfg.Bits)
	}
	b0 := cfg.Bits.A
	m, err := newOutputMeter(ctx, pr, cal, cfg)
	if err != nil {
		return nil, nil, err
	}
	lqs, err := layerQuants(pl, cal, cfg, func(n *graph.Node) Bits {
		if pl.Wide[n] {
			return Bits{}
		}
		return cfg.Bits
	})
	if err != nil {
		return nil, nil, err
	}
	layers, err := measureLayers(ctx, m, lqs, cal, ev)
	if err != nil {
		return nil, nil, err
	}
	scores(layers)
	macs, err := convMACs(ctx, pr, pl, cal, cfg)
	if err != nil {
		return nil, nil, err
	}
	noise := make([]float64, len(layers))
	cost := make([]float64, len(layers))
	var total float64
	for i, l := range layers {
		noise[i] = math.Pow(10, -l.PSNR/10)
		cost[i] = macs[l.Conv]
		if cost[i] <= 0 {
			return nil, nil, fmt.Errorf("node %q: no multiply-accumulate count", l.Conv)
		}
		total += cost[i]
	}
	bits, used := allocateBits(noise, cost, b0, max(MinBits, b0-mixedBelow), cfg.BudgetBits)
	out := make(map[string]int, len(layers))
	for i, l := range layers {
		out[l.Conv] = bits[i]
	}
	ev.log(fmt.Sprintf("mixed precision: mean %.2f bits over %d Convs (budget %.2f, MAC-weighted)", used/total, len(layers), cfg.BudgetBits))
	return out, layers, nil
}

// allocateBits gives layer i (noise noise[i] at b0 bits, cost cost[i] per
// bit) a width in [lo, MaxBits] so that Σ cost·bits ≤ budget·Σ cost, buying
// one bit at a time where it removes the most noise per unit of cost
// (noise at b bits: noise·4^(b0−b)). It returns the widths and Σ cost·bits.
func allocateBits(noise, cost []float64, b0, lo int, budget float64) ([]int, float64) {
	bits := make([]int, len(noise))
	var total, used float64
	for i := range noise {
		bits[i] = lo
		total += cost[i]
		used += cost[i] * float64(lo)
	}
	limit := budget * total * (1 + 1e-9)
	for {
		best, gain := -1, 0.0
		for i := range noise {
			if bits[i] >= MaxBits || used+cost[i] > limit {
				continue
			}
			e := noise[i] * math.Pow(4, float64(b0-bits[i]))
			if g := 0.75 * e / cost[i]; g > gain {
				best, gain = i, g
			}
		}
		if best < 0 {
			return bits, used
		}
		bits[best]++
		used += cost[best]
	}
}

// convMACs counts each Conv's multiply-accumulates on one calibration
// patch: output elements × input channels per group × kernel taps.
func convMACs(ctx context.Context, pr *prepared, pl *passes.Plan, cal *calibration, cfg Config) (map[string]float64, error) {
	var outs []string
	byOut := map[string]*graph.Node{}
	for _, n := range pl.Nodes {
		if n.OpType == "Conv" {
			outs = append(outs, n.Outputs[0])
			byOut[n.Outputs[0]] = n
		}
	}
	dims, err := calib.Shapes(ctx, pr.g, outs, cal.batches, cal.shape, calib.CaptureOptions{Session: ort.Options{Threads: cfg.Threads}})
	if err != nil {
		return nil, err
	}
	macs := map[string]float64{}
	for v, n := range byOut {
		wt, ok := pr.g.Const(n.Inputs[1])
		if !ok || len(wt.Dims) < 2 {
			continue
		}
		per := 1.0
		for _, d := range wt.Dims[1:] {
			per *= float64(d)
		}
		elems := 1.0
		for _, d := range dims[v] {
			elems *= float64(d)
		}
		macs[n.Name] = elems * per
	}
	return macs, nil
}
