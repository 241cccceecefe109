package sr

import (
	"context"
	"fmt"

	"github.com/srquant/srq/img"
)

// DefaultOverlap is the context, in LR pixels, that Upscale adds around each
// tile when the caller passes a negative overlap. Measured on EDSR x2 and
// chelsea.png (451×300, tile 64): max abs difference from the untiled result
// is below 1/255 from 16 on (see the package tests and the report in
// upscale_test.go).
const DefaultOverlap = 16

// Upscale runs the model on im (3 channels, 0..1) and returns the upscaled
// image, clipped to 0..1.
//
// tile == 0 runs the whole image at once. tile > 0 cuts the LR image into
// cores of at most tile×tile pixels (spread evenly), runs each core with
// overlap pixels of real image context on every side where the image has
// them, and keeps only the core's part of the output. Each run's window is
// shifted inside the image so that all windows have the same size
// (tile+2·overlap, or the image size if smaller), which lets ORT reuse its
// memory plan. Peak memory beyond the input and output images is one window
// and its output. For a network whose every output pixel depends only on a
// neighbourhood of the input (plain CNNs: EDSR, SRResNet, CARN), with
// overlap at least the network's receptive-field radius the result equals
// the untiled one up to float rounding; SR networks have large receptive
// fields but their influence decays fast, so a modest overlap gets within
// 1/255. A network with m.Reductions (global pooling or spatial means:
// RCAN's channel attention, IMDN's contrast attention) computes those
// statistics per tile instead of per image, and no overlap makes the
// result exact; CheckTiling measures by how much it differs. overlap < 0
// means DefaultOverlap. It stops with ctx's error when ctx ends.
func (m *Model) Upscale(ctx context.Context, im *img.Image, tile, overlap int) (*img.Image, error) {
	if im == nil || im.C != 3 || im.H <= 0 || im.W <= 0 || len(im.Pix) != im.C*im.H*im.W {
		return nil, fmt.Errorf("%s: upscale: want a non-empty 3-channel image, got %s", m.name, describe(im))
	}
	if tile < 0 {
		return nil, fmt.Errorf("%s: upscale: tile %d: want 0 (whole image) or a positive size", m.name, tile)
	}
	if overlap < 0 {
		overlap = DefaultOverlap
	}
	H, W, s := im.H, im.W, m.Scale
	if tile == 0 {
		tile, overlap = max(H, W), 0
	}
	out := img.New(3, H*s, W*s)

	winH, winW := min(H, tile+2*overlap), min(W, tile+2*overlap)
	buf := make([]float32, 3*winH*winW)
	ys, xs := splits(H, tile), splits(W, tile)
	inv := 1 / m.Range
	for i := 0; i+1 < len(ys); i++ {
		y0, y1 := ys[i], ys[i+1]
		wy := window(y0, overlap, winH, H)
		for j := 0; j+1 < len(xs); j++ {
			x0, x1 := xs[j], xs[j+1]
			wx := window(x0, overlap, winW, W)

			// Window [wy, wy+winH) × [wx, wx+winW), scaled to the model's range.
			for c := range 3 {
				for y := range winH {
					src := im.Pix[(c*H+wy+y)*W+wx:][:winW]
					dst := buf[(c*winH+y)*winW:][:winW]
					for x, v := range src {
						dst[x] = v * m.Range
					}
				}
			}
			res, err := m.Run(ctx, buf, 1, winH, winW)
			if err != nil {
				return nil, fmt.Errorf("upscale tile at (%d,%d) size %dx%d: %w", x0, y0, x1-x0, y1-y0, err)
			}

			// Copy the core: output rows (y0-wy)·s … (y1-wy)·s of the window.
			rw := winW * s
			for c := range 3 {
				for y := y0 * s; y < y1*s; y++ {
					src := res[(c*winH*s+y-wy*s)*rw+(x0-wx)*s:][:(x1-x0)*s]
					dst := out.Pix[(c*H*s+y)*W*s+x0*s:][:(x1-x0)*s]
					for x, v := range src {
						dst[x] = clip01(v * inv)
					}
				}
			}
		}
	}
	return out, nil
}

// splits cuts 0..n into ceil(n/tile) nearly equal parts and returns their
// boundaries (len parts+1), so no tile is a thin sliver at the edge.
func splits(n, tile int) []int {
	k := (n + tile - 1) / tile
	b := make([]int, k+1)
	for i := range b {
		b[i] = i * n / k
	}
	return b
}

// window returns the start of a size-long window that gives the core starting
// at c0 overlap pixels of context on each side, shifted to stay inside 0..n.
// Because the core is at most size-2·overlap long, a shifted window still
// covers it, and on the side it was shifted from, the context is cut only by
// the image border, as in the untiled run.
func window(c0, overlap, size, n int) int {
	return max(0, min(c0-overlap, n-size))
}

func describe(im *img.Image) string {
	if im == nil {
		return "nil"
	}
	return fmt.Sprintf("%d channels, %dx%d, %d values", im.C, im.W, im.H, len(im.Pix))
}
