package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/ort"
)

// WarmupRuns run before timing starts: the first ORT run allocates its
// memory arena and plans, and on some EPs compiles kernels.
const WarmupRuns = 2

// RecommendedRuns is the number of timed runs a report should use: with
// fewer, one disturbance on a shared machine moves the median.
const RecommendedRuns = 10

// LatencyStats summarises timed runs of one session, in milliseconds.
type LatencyStats struct {
	Runs     int     `json:"runs"`
	MedianMS float64 `json:"median_ms"`
	MinMS    float64 `json:"min_ms"`
	MaxMS    float64 `json:"max_ms"`
}

// Latency runs s on in WarmupRuns times untimed, then runs times timed, and
// returns the median, min and max wall time of the timed runs.
func Latency(ctx context.Context, s *ort.Session, in *ort.Tensor, runs int) (LatencyStats, error) {
	st, err := latencies(ctx, []*ort.Session{s}, in, WarmupRuns, runs)
	if err != nil {
		return LatencyStats{}, err
	}
	return st[0], nil
}

// LatencyPair times a and b on the same input, alternating a, b, a, b, … so
// that a change in machine load (other jobs on a shared host) hits both
// equally and their ratio stays honest.
func LatencyPair(ctx context.Context, a, b *ort.Session, in *ort.Tensor, runs int) (LatencyStats, LatencyStats, error) {
	return LatencyPairWarm(ctx, a, b, in, WarmupRuns, runs)
}

// LatencyPairWarm is LatencyPair with warmup untimed runs of each session
// instead of WarmupRuns: accuracy control times several pairs of models
// and keeps them short.
func LatencyPairWarm(ctx context.Context, a, b *ort.Session, in *ort.Tensor, warmup, runs int) (LatencyStats, LatencyStats, error) {
	st, err := latencies(ctx, []*ort.Session{a, b}, in, warmup, runs)
	if err != nil {
		return LatencyStats{}, LatencyStats{}, err
	}
	return st[0], st[1], nil
}

func latencies(ctx context.Context, ss []*ort.Session, in *ort.Tensor, warmup, runs int) ([]LatencyStats, error) {
	if runs < 1 {
		return nil, fmt.Errorf("latency: %d runs: want at least 1 (%d for a report)", runs, RecommendedRuns)
	}
	if in == nil {
		return nil, errors.New("latency: nil input tensor")
	}
	for _, s := range ss {
		for range warmup {
			if _, err := s.RunContext(ctx, in); err != nil {
				return nil, fmt.Errorf("latency: %w", err)
			}
		}
	}
	times := make([][]float64, len(ss))
	for range runs {
		for i, s := range ss {
			t0 := time.Now()
			if _, err := s.RunContext(ctx, in); err != nil {
				return nil, fmt.Errorf("latency: %w", err)
			}
			times[i] = append(times[i], float64(time.Since(t0).Nanoseconds())/1e6)
		}
	}
	out := make([]LatencyStats, len(ss))
	for i, t := range times {
		out[i] = summarise(t)
	}
	return out, nil
}

// summarise returns the median (mean of the two middle values for an even
// count), min and max of t; t is sorted in place.
func summarise(t []float64) LatencyStats {
	slices.Sort(t)
	n := len(t)
	med := t[n/2]
	if n%2 == 0 {
		med = (t[n/2-1] + t[n/2]) / 2
	}
	return LatencyStats{Runs: n, MedianMS: med, MinMS: t[0], MaxMS: t[n-1]}
}

// LatencyInput makes the size×size input of a latency run from a real image
// (a synthetic one would let ORT's kernels see unrealistic value
// statistics; beyond that the content barely matters): the largest centred
// square is cut from im, resized with img.ResizeBicubic to size×size, and
// scaled to the model's input range rng. The tensor is 1×3×size×size.
func LatencyInput(im *img.Image, size int, rng float32) (*ort.Tensor, error) {
	if size < 1 {
		return nil, fmt.Errorf("latency input size %d: want at least 1", size)
	}
	if im == nil || im.C != 3 || im.W < 1 || im.H < 1 {
		return nil, errors.New("latency input: want a non-empty 3-channel image")
	}
	side := min(im.W, im.H)
	sq := img.Crop(im, (im.W-side)/2, (im.H-side)/2, side, side)
	if side != size {
		sq = img.ResizeBicubic(sq, size, size)
	}
	data := make([]float32, len(sq.Pix))
	for i, v := range sq.Pix {
		data[i] = v * rng
	}
	return &ort.Tensor{Shape: []int64{1, 3, int64(size), int64(size)}, Data: data}, nil
}
