package calib

import (
	"fmt"
	"math/rand/v2"

	"github.com/srquant/srq/img"
)

// PatchOptions says how calibration patches are cut from a folder of images.
type PatchOptions struct {
	Scale int   // SR scale: HR images are downscaled by it (ignored when LR)
	Size  int   // side of a square LR patch, in pixels
	Count int   // number of patches
	Seed  int64 // seeds the patch positions; same inputs + seed → same patches
	LR    bool  // images are already LR inputs: use them without downscaling
}

// pcgStream is the fixed second PCG word; only Seed varies between runs.
const pcgStream = 0x5eed5a7c4e5c0de5

// source is one image ready to be sampled, with the patch size it yields.
type source struct {
	im     *img.Image
	pw, ph int
	path   int // index in the paths given
}

// Patches cuts o.Count LR patches of o.Size×o.Size from the images at paths.
//
// Each HR image is cropped at the top-left to a multiple of o.Scale and
// downscaled with img.ResizeBicubic (Pillow-exact bicubic, as the SR
// benchmarks make their LR inputs); with o.LR the image is used as it is.
// Grayscale images arrive as 3 identical channels from img.Read.
//
// Patches are spread round-robin over the usable images in path order
// (patch i comes from usable image i mod n), so no image gets more than one
// patch more than another; positions are uniform over the image, drawn from a
// math/rand/v2 PCG seeded with o.Seed. Images are read only until there are
// o.Count usable ones, so with fewer patches than images the later images are
// not read.
//
// An image smaller than a patch (after downscaling) is still used if both
// sides are at least half the patch side: its patches are
// min(W,Size)×min(H,Size), i.e. the short side is taken whole. These are the
// only patches of a different size; Batch refuses such a mix, so callers
// that need one tensor should run them separately or drop them. Smaller
// images are skipped. Both cases are reported through warn (which may be
// nil), naming the file. An unreadable image is an error naming the file.
func Patches(paths []string, o PatchOptions, warn func(string)) ([]*img.Image, error) {
	p, _, err := PatchesFrom(paths, o, warn)
	return p, err
}

// PatchesFrom is Patches that also says where each patch comes from:
// src[i] is the index in paths of patch i's image, so that a caller can
// hold whole images out.
func PatchesFrom(paths []string, o PatchOptions, warn func(string)) (patches []*img.Image, src []int, err error) {
	switch {
	case o.Size < 1:
		return nil, nil, fmt.Errorf("calibration patches: patch size %d, want >= 1", o.Size)
	case o.Count < 1:
		return nil, nil, fmt.Errorf("calibration patches: patch count %d, want >= 1", o.Count)
	case !o.LR && o.Scale < 1:
		return nil, nil, fmt.Errorf("calibration patches: scale %d, want >= 1", o.Scale)
	case len(paths) == 0:
		return nil, nil, fmt.Errorf("calibration patches: no images given")
	}
	if warn == nil {
		warn = func(string) {}
	}
	var srcs []source
	for i, p := range paths {
		if len(srcs) == o.Count {
			break
		}
		im, err := img.Read(p)
		if err != nil {
			return nil, nil, fmt.Errorf("calibration patches: %w", err)
		}
		if !o.LR {
			w, h := im.W/o.Scale, im.H/o.Scale
			if w == 0 || h == 0 {
				warn(fmt.Sprintf("calibration: skipping %s: %dx%d is smaller than the scale %d", p, im.W, im.H, o.Scale))
				continue
			}
			im = img.ResizeBicubic(img.Crop(im, 0, 0, w*o.Scale, h*o.Scale), w, h)
		}
		switch {
		case im.W >= o.Size && im.H >= o.Size:
			srcs = append(srcs, source{im, o.Size, o.Size, i})
		case 2*im.W >= o.Size && 2*im.H >= o.Size:
			pw, ph := min(im.W, o.Size), min(im.H, o.Size)
			warn(fmt.Sprintf("calibration: %s is %dx%d (LR), smaller than a %dx%d patch; using %dx%d patches from it", p, im.W, im.H, o.Size, o.Size, pw, ph))
			srcs = append(srcs, source{im, pw, ph, i})
		default:
			warn(fmt.Sprintf("calibration: skipping %s: %dx%d (LR) is smaller than half a %dx%d patch", p, im.W, im.H, o.Size, o.Size))
		}
	}
	if len(srcs) == 0 {
		return nil, nil, fmt.Errorf("calibration patches: none of the %d images is large enough for %dx%d patches", len(paths), o.Size, o.Size)
	}
	rng := rand.New(rand.NewPCG(uint64(o.Seed), pcgStream))
	out, src := make([]*img.Image, o.Count), make([]int, o.Count)
	for i := range out {
		s := srcs[i%len(srcs)]
		src[i] = s.path
		x := rng.IntN(s.im.W - s.pw + 1)
		y := rng.IntN(s.im.H - s.ph + 1)
		out[i] = img.Crop(s.im, x, y, s.pw, s.ph)
	}
	return out, src, nil
}

// Batch stacks same-size patches into one NCHW float32 tensor (patch-major,
// each patch's planar CHW pixels in turn). An empty list or patches of
// different sizes (whole-image fallbacks from Patches) are an error, never a
// panic.
func Batch(p []*img.Image) (data []float32, n, c, h, w int, err error) {
	if len(p) == 0 {
		return nil, 0, 0, 0, 0, fmt.Errorf("calibration batch: no patches")
	}
	c, h, w = p[0].C, p[0].H, p[0].W
	per := c * h * w
	for i, im := range p {
		if im == nil {
			return nil, 0, 0, 0, 0, fmt.Errorf("calibration batch: patch %d is nil", i)
		}
		if im.C != c || im.H != h || im.W != w || len(im.Pix) != per {
			return nil, 0, 0, 0, 0, fmt.Errorf("calibration batch: patch %d is %dx%dx%d, patch 0 is %dx%dx%d; all patches must have one size", i, im.C, im.H, im.W, c, h, w)
		}
	}
	data = make([]float32, 0, len(p)*per)
	for _, im := range p {
		data = append(data, im.Pix...)
	}
	return data, len(p), c, h, w, nil
}
