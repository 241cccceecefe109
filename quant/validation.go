package quant

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/verify"
)

// Validation for accuracy control: the images that judge each model it
// measures, cut into tiles scored as images, and the confidence bound the
// budget is checked on.

const (
	// validationEvery holds out every 4th calibration image (sorted by
	// name) for validation: 2 of the 8 photos in ../shared/images.
	validationEvery = 4
	// validationTile is the side, in HR pixels, of the tiles validation
	// images are cut into, each scored as an image of its own: the size
	// of a Set5 image. Benchmarks average the drop per image, and a small
	// image's drop weighs its smooth, well reconstructed parts more than
	// a large one's does (a drop is the quantization noise over the FP32
	// model's own error): IMDN x4 W8A8 lost 0.113 dB on the two photos
	// held out of ../shared/images as whole images, 0.162 dB as tiles of
	// 256, and 0.189 dB on Set5. validationTiles bounds the tiles per
	// image, spread over it, so that a 2K photo costs what a benchmark
	// image does.
	validationTile  = 256
	validationTiles = 8
)

// splitValidation returns the calibration and validation images: with
// Config.Validation those, else every validationEvery-th image by sorted
// base name held out (at least one, the last, and at least one left).
func splitValidation(imgs []string, cfg Config) (cal, val []string, heldOut bool, err error) {
	if !cfg.accuracy() {
		return imgs, nil, false, nil
	}
	if len(cfg.Validation) > 0 {
		return imgs, cfg.Validation, false, nil
	}
	if len(imgs) < 2 {
		return nil, nil, false, fmt.Errorf("--max-drop holds validation images out of the calibration images and needs at least 2 of them (got %d), or --val", len(imgs))
	}
	sorted := slices.Clone(imgs)
	slices.SortStableFunc(sorted, func(a, b string) int {
		if c := strings.Compare(filepath.Base(a), filepath.Base(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for i, p := range sorted {
		if i%validationEvery == validationEvery-1 {
			val = append(val, p)
		} else {
			cal = append(cal, p)
		}
	}
	if len(val) == 0 {
		cal, val = sorted[:len(sorted)-1], sorted[len(sorted)-1:]
	}
	return cal, val, true, nil
}

// validation is the validation images, ready to score models on.
type validation struct {
	ims    []valImage
	gt     bool
	fp32GT float64 // the FP32 model's mean PSNR-Y against the ground truth
	scale  int
	rng    float32
}

type valImage struct {
	name         string
	lr, gt, fp32 *img.Image
	fp32PSNR     float64 // of fp32 against gt
}

// loadValidation reads the validation images (ground truth unless
// Config.CalibLR: LR made by the benchmarks' bicubic), cropped to
// validationSide LR pixels around the centre, and runs the FP32 model
// (data) on them once.
func loadValidation(ctx context.Context, data []byte, name string, paths []string, pr *prepared, cfg Config) (*validation, error) {
	v := &validation{gt: !cfg.CalibLR, scale: pr.scale, rng: pr.rng}
	if cfg.MaxDrop > 0 && !v.gt {
		return nil, errors.New("--max-drop measures the drop against the ground truth, and --calib-lr images are LR inputs without it; use --max-drop-vs-fp32")
	}
	s, err := ort.NewSession(data, name, ort.Options{Threads: cfg.Threads})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	for _, p := range paths {
		tiles, err := cutValidation(p, pr.scale, v.gt)
		if err != nil {
			return nil, err
		}
		for _, vi := range tiles {
			if vi.fp32, err = runImage(ctx, s, vi.lr, pr.rng); err != nil {
				return nil, fmt.Errorf("validation image %s: %w", p, err)
			}
			v.ims = append(v.ims, vi)
		}
	}
	if v.gt {
		for i, vi := range v.ims {
			p, err := verify.PSNRY(vi.fp32, vi.gt, pr.scale)
			if err != nil {
				return nil, fmt.Errorf("validation image %s: %w", vi.name, err)
			}
			v.ims[i].fp32PSNR = min(p, verify.MaxPSNR)
			v.fp32GT += v.ims[i].fp32PSNR / float64(len(v.ims))
		}
	}
	return v, nil
}

// cutValidation cuts the image at path into tiles of validationTile HR
// pixels (a multiple of scale; the whole image if smaller), at most
// validationTiles of them spread over the tile grid, and makes each
// tile's LR input by the benchmarks' bicubic (with gt) or takes the image
// as LR (without: tiles of validationTile/scale LR pixels).
func cutValidation(path string, scale int, gt bool) ([]valImage, error) {
	im, err := img.Read(path)
	if err != nil {
		return nil, fmt.Errorf("validation image %w", err)
	}
	side := validationTile / scale * scale
	if !gt {
		side = validationTile / scale
	}
	tw, th := min(side, im.W), min(side, im.H)
	if gt {
		tw, th = tw-tw%scale, th-th%scale
	}
	if tw == 0 || th == 0 {
		return nil, fmt.Errorf("validation image %s: %dx%d is smaller than the scale %d", path, im.W, im.H, scale)
	}
	nx, ny := im.W/tw, im.H/th
	n := min(nx*ny, validationTiles)
	var out []valImage
	for i := range n {
		t := i * nx * ny / n
		x, y := t%nx*tw, t/nx*th
		crop := img.Crop(im, x, y, tw, th)
		vi := valImage{name: fmt.Sprintf("%s@%d,%d", filepath.Base(path), x, y), lr: crop}
		if gt {
			vi.gt, vi.lr = crop, img.ResizeBicubic(crop, tw/scale, th/scale)
		}
		out = append(out, vi)
	}
	return out, nil
}

// runImage runs session s on one LR image (values in 0..1, scaled to the
// model's range rng) and returns the output in 0..1.
func runImage(ctx context.Context, s *ort.Session, lr *img.Image, rng float32) (*img.Image, error) {
	in := make([]float32, len(lr.Pix))
	for i, v := range lr.Pix {
		in[i] = v * rng
	}
	out, err := s.RunContext(ctx, &ort.Tensor{Shape: []int64{1, int64(lr.C), int64(lr.H), int64(lr.W)}, Data: in})
	if err != nil {
		return nil, err
	}
	o := out[0]
	if len(o.Shape) != 4 || o.Shape[0] != 1 {
		return nil, fmt.Errorf("output of shape %v for one image", o.Shape)
	}
	pix := make([]float32, len(o.Data))
	for i, v := range o.Data {
		pix[i] = v / rng
	}
	return &img.Image{C: int(o.Shape[1]), H: int(o.Shape[2]), W: int(o.Shape[3]), Pix: pix}, nil
}

// score is a model's measurement on the validation images: the mean
// drop and PSNR-Y against the FP32 output over the tiles, and the bounds
// the budget is checked on.
type score struct {
	drop, psnr float64
	// dropHi is a one-sided upper confidence bound on the mean drop and
	// psnrLo a lower one on the mean PSNR-Y against FP32 (confidence
	// validationConfidence, Student's t over the tiles).
	dropHi, psnrLo float64
}

// validationConfidence is the confidence of the bounds a budget is
// checked on. The tiles are a sample of the images the model will see, and
// a budget is a guarantee: a mean that meets it by less than its own
// uncertainty has not met it. On IMDN x4 W8A8 at 0.05 dB the mean over
// the 4 held-out tiles chose a model that lost 0.041 dB there and 0.053 on
// Set5.
const validationConfidence = 0.9

// tQuantile90 is Student's t at one-sided 90% by degrees of freedom
// (index; 0: none), the normal quantile beyond the table.
var tQuantile90 = [...]float64{math.Inf(1), 3.078, 1.886, 1.638, 1.533, 1.476, 1.440, 1.415, 1.397, 1.383, 1.372,
	1.363, 1.356, 1.350, 1.345, 1.341, 1.337, 1.333, 1.330, 1.328, 1.325}

// upperBound is the one-sided validationConfidence upper bound on the
// mean of xs.
func upperBound(xs []float64) float64 {
	n := float64(len(xs))
	var m, v float64
	for _, x := range xs {
		m += x / n
	}
	if len(xs) < 2 {
		return m
	}
	for _, x := range xs {
		v += (x - m) * (x - m) / (n - 1)
	}
	t := 1.282
	if df := len(xs) - 1; df < len(tQuantile90) {
		t = tQuantile90[df]
	}
	return m + t*math.Sqrt(v/n)
}

// measure runs model m on the validation images.
func (v *validation) measure(ctx context.Context, m *onnx.ModelProto, threads int) (score, error) {
	data, err := onnx.Marshal(m)
	if err != nil {
		return score{}, err
	}
	s, err := ort.NewSession(data, "candidate model", ort.Options{Threads: threads})
	if err != nil {
		return score{}, err
	}
	defer s.Close()
	var drops, negPSNR []float64
	for _, im := range v.ims {
		out, err := runImage(ctx, s, im.lr, v.rng)
		if err != nil {
			return score{}, fmt.Errorf("validation image %s: %w", im.name, err)
		}
		p, err := verify.PSNRY(out, im.fp32, v.scale)
		if err != nil {
			return score{}, fmt.Errorf("validation image %s: %w", im.name, err)
		}
		negPSNR = append(negPSNR, -min(p, verify.MaxPSNR))
		if im.gt != nil {
			q, err := verify.PSNRY(out, im.gt, v.scale)
			if err != nil {
				return score{}, fmt.Errorf("validation image %s: %w", im.name, err)
			}
			drops = append(drops, im.fp32PSNR-min(q, verify.MaxPSNR))
		}
	}
	sc := score{psnr: -mean(negPSNR), psnrLo: -upperBound(negPSNR)}
	if v.gt {
		sc.drop, sc.dropHi = mean(drops), upperBound(drops)
	}
	return sc, nil
}

func mean(xs []float64) float64 {
	var m float64
	for _, x := range xs {
		m += x / float64(len(xs))
	}
	return m
}

// excess is how far a score's bounds are from the budget, as a ratio of
// noise powers: at most 1 within it. A drop is proportional to the noise
// added while it is small against the FP32 model's own error; a PSNR
// floor is a noise power itself.
func (c Config) excess(s score) float64 {
	r := math.Inf(-1)
	if c.MaxDrop > 0 {
		r = max(r, s.dropHi/c.MaxDrop)
	}
	if c.MaxDropVsFP32 > 0 {
		r = max(r, math.Pow(10, (c.MaxDropVsFP32-s.psnrLo)/10))
	}
	return r
}
