package verify

import (
	"context"
	"fmt"
	"math"
	"path/filepath"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/progress"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/sr"
)

// MaxPSNR stands for an infinite PSNR (identical 8-bit outputs, MSE = 0) in
// results and reports: JSON has no Inf, and a number keeps "≥ X" checks in
// scripts working. Finite PSNR-Y of 8-bit images stays far below it (one
// pixel off by the smallest Y step in a 4-megapixel image is ~160 dB).
// Means are taken over the capped values.
const MaxPSNR = sr.MaxPSNR

// Pair holds one metric for the FP32 and the quantized model.
type Pair struct {
	FP32      float64 `json:"fp32"`
	Quantized float64 `json:"quantized"`
}

// ImageResult is the comparison on one image.
type ImageResult struct {
	Image string `json:"image"` // file name inside the image folder
	// LRWidth and LRHeight are the size of the LR input the models ran on.
	LRWidth  int `json:"lr_width"`
	LRHeight int `json:"lr_height"`
	// PSNRvsFP32 is PSNR-Y of the quantized output against the FP32 output
	// (shave = scale), capped at MaxPSNR.
	PSNRvsFP32 float64 `json:"psnr_vs_fp32_db"`
	// PSNRGT and SSIMGT compare both outputs with the ground truth; only in
	// HR mode.
	PSNRGT *Pair `json:"psnr_gt_db,omitempty"`
	SSIMGT *Pair `json:"ssim_gt,omitempty"`
	// Reference is the quantized model's own QDQ semantics on this image
	// (CompareOptions.Reference); nil without one.
	Reference *ReferenceResult `json:"reference,omitempty"`
	// Detail is the rendered window of largest error for the HTML report
	// (CompareOptions.Detail); it is not part of the JSON report.
	Detail *Detail `json:"-"`
}

// CompareOptions says how Compare treats the images.
type CompareOptions struct {
	// HR: the images are ground truth. Each is cropped at the top-left to a
	// multiple of the scale and downscaled with img.ResizeBicubic
	// (Pillow-exact bicubic) to make the LR input, as the SR benchmarks do.
	// Otherwise the images are LR inputs and there is no ground truth.
	HR bool
	// Tile is the LR tile side for sr.Model.Upscale (0: whole image),
	// bounding memory on large images; tiles overlap by sr.DefaultOverlap.
	Tile int
	// Progress, if set, hears of every image done (stage "verify").
	Progress progress.Func
	// Reference, if set, is the quantized model run at ORT's graph
	// optimisation level basic: DequantizeLinear → float op →
	// QuantizeLinear, what the QDQ graph means. Each image is run on it
	// too, and ImageResult.Reference says how far the int8 kernels' output
	// is from it and what the graph itself scores.
	Reference *sr.Model
	// Detail: also find, per image, the window where the quantized output
	// differs most from the FP32 output and render it for the HTML report
	// (ImageResult.Detail). It is done while both outputs are in memory,
	// which are then dropped, so a large set is never held whole.
	Detail bool
}

// Compare upscales every image with both models and measures the quantized
// output against the FP32 output and, in HR mode, both against the ground
// truth. Both models must have the same scale. Results are in paths order.
func Compare(ctx context.Context, fp32, quantized *sr.Model, paths []string, o CompareOptions) ([]ImageResult, error) {
	if fp32.Scale != quantized.Scale {
		return nil, fmt.Errorf("scale mismatch: %s is x%d, %s is x%d", fp32.Session.Name(), fp32.Scale, quantized.Session.Name(), quantized.Scale)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no images to compare")
	}
	out := make([]ImageResult, 0, len(paths))
	for i, p := range paths {
		r, err := compareOne(ctx, fp32, quantized, p, o)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		o.Progress.Report("verify", i+1, len(paths))
	}
	return out, nil
}

func compareOne(ctx context.Context, fp32, q *sr.Model, path string, o CompareOptions) (ImageResult, error) {
	s := fp32.Scale
	lr, gt, err := LoadLR(path, s, o.HR)
	if err != nil {
		return ImageResult{}, err
	}
	tile := o.Tile
	if tile < 0 {
		tile = 0
	}
	a, err := fp32.Upscale(ctx, lr, tile, -1)
	if err != nil {
		return ImageResult{}, fmt.Errorf("%s: %w", path, err)
	}
	b, err := q.Upscale(ctx, lr, tile, -1)
	if err != nil {
		return ImageResult{}, fmt.Errorf("%s: %w", path, err)
	}
	r := ImageResult{Image: filepath.Base(path), LRWidth: lr.W, LRHeight: lr.H}
	if r.PSNRvsFP32, err = psnr(b, a, s); err != nil {
		return ImageResult{}, fmt.Errorf("%s: quantized vs FP32: %w", path, err)
	}
	if o.Reference != nil {
		if r.Reference, err = reference(ctx, o.Reference, lr, a, b, gt, tile, s); err != nil {
			return ImageResult{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	if o.Detail {
		if r.Detail, err = detailOf(a, b, gt, s); err != nil {
			return ImageResult{}, fmt.Errorf("%s: report detail: %w", path, err)
		}
	}
	if gt == nil {
		return r, nil
	}
	var pg, sg Pair
	if pg.FP32, err = psnr(a, gt, s); err == nil {
		if pg.Quantized, err = psnr(b, gt, s); err == nil {
			if sg.FP32, err = SSIMY(a, gt, s); err == nil {
				sg.Quantized, err = SSIMY(b, gt, s)
			}
		}
	}
	if err != nil {
		return ImageResult{}, fmt.Errorf("%s: vs ground truth: %w", path, err)
	}
	r.PSNRGT, r.SSIMGT = &pg, &sg
	return r, nil
}

// psnr is PSNRY capped at MaxPSNR.
func psnr(a, b *img.Image, shave int) (float64, error) {
	v, err := PSNRY(a, b, shave)
	return math.Min(v, MaxPSNR), err
}

// LoadLR reads the image at path and returns the LR input to run. With hr,
// the image is ground truth: it is cropped at the top-left to a multiple of
// scale (returned as gt) and downscaled by scale with img.ResizeBicubic;
// without hr, the image itself is the LR input and gt is nil.
func LoadLR(path string, scale int, hr bool) (lr, gt *img.Image, err error) {
	if scale < 1 {
		return nil, nil, fmt.Errorf("%s: scale %d: want at least 1", path, scale)
	}
	im, err := img.Read(path)
	if err != nil {
		return nil, nil, err
	}
	if !hr {
		return im, nil, nil
	}
	gt = img.Crop(im, 0, 0, im.W-im.W%scale, im.H-im.H%scale)
	if gt.W == 0 || gt.H == 0 {
		return nil, nil, fmt.Errorf("%s: %dx%d is smaller than the scale %d", path, im.W, im.H, scale)
	}
	return img.ResizeBicubic(gt, gt.W/scale, gt.H/scale), gt, nil
}

// ReferenceResult compares, on one image, the quantized model as ORT's
// int8 kernels ran it with the same model's QDQ semantics (level basic).
type ReferenceResult struct {
	// PSNRvsFP32 and PSNRGT score the reference output as the quantized
	// one is scored: the quantization error of the graph itself.
	PSNRvsFP32 float64  `json:"psnr_vs_fp32_db"`
	PSNRGT     *float64 `json:"psnr_gt_db,omitempty"`
	// Kernels is how far the int8 kernels' output is from the reference,
	// in 8-bit output levels.
	Kernels kernelcheck.Agreement `json:"kernels"`
}

// reference runs the reference model on lr and compares its output with
// the FP32 output a, the quantized output b and the ground truth gt.
func reference(ctx context.Context, ref *sr.Model, lr, a, b, gt *img.Image, tile, s int) (*ReferenceResult, error) {
	c, err := ref.Upscale(ctx, lr, tile, -1)
	if err != nil {
		return nil, fmt.Errorf("reference (level basic): %w", err)
	}
	rr := &ReferenceResult{Kernels: kernelcheck.Compare(c.Pix, b.Pix, 1)}
	if rr.PSNRvsFP32, err = psnr(c, a, s); err != nil {
		return nil, fmt.Errorf("reference vs FP32: %w", err)
	}
	if gt != nil {
		p, err := psnr(c, gt, s)
		if err != nil {
			return nil, fmt.Errorf("reference vs ground truth: %w", err)
		}
		rr.PSNRGT = &p
	}
	return rr, nil
}
