package sr

import (
	"context"
	"fmt"
	"math"

	"github.com/srquant/srq/img"
)

// Probe input size. Non-square, so a model that scales H and W differently
// (or transposes) is caught; small, so probing the largest models here costs
// tens of milliseconds; large enough that the interior, away from the
// zero-padded border, decides the range.
const probeH, probeW = 24, 20

// probe sets m.Scale and m.Range. It runs the model on a synthetic natural-
// looking image (see synthImage) and
//
//   - reads the scale off the output size: output H/W divided by input H/W
//     must be the same integer k ≥ 1 for both axes, with 3 output channels,
//     otherwise the model is not an SR model (a classifier, a downsampler);
//   - decides the range by running the image as 0..1 and as 0..255 and
//     comparing each output, divided back by its assumed range and clipped,
//     with a bicubic upscale of the input: an SR network fed the range it was
//     trained on lands close to bicubic, while the wrong range drives a
//     mean-shift model (EDSR, RCAN) to a flat colour and a 0..1 model through
//     its biases and saturating activations at 255× their trained inputs.
//
// Values in p replace detection; a requested scale that contradicts the
// output size is an error, since tiling depends on it.
func (m *Model) probe(p ProbeOptions) error {
	dims := m.Session.Inputs()[0].Dims
	n, h, w := 1, probeH, probeW
	// Models exported with a fixed size must be probed at that size.
	if dims[0] > 0 {
		n = int(dims[0])
	}
	if dims[2] > 0 {
		h = int(dims[2])
	}
	if dims[3] > 0 {
		w = int(dims[3])
	}
	im := synthImage(h, w)
	inShape := fmtDims([]int64{int64(n), 3, int64(h), int64(w)})

	ranges := []float32{1, 255}
	if p.Range != 0 {
		ranges = []float32{p.Range}
	}
	outs := make([][]float32, len(ranges))
	batch := make([]float32, n*len(im.Pix))
	for i, r := range ranges {
		for j := range n {
			dst := batch[j*len(im.Pix):][:len(im.Pix)]
			for k, v := range im.Pix {
				dst[k] = v * r
			}
		}
		out, shape, err := m.run(context.Background(), batch, n, h, w)
		if err != nil {
			return fmt.Errorf("%w (probing with a %s input in 0..%g)", err, inShape, r)
		}
		if i == 0 {
			if m.Scale, err = scaleOf(shape, n, h, w); err != nil {
				return fmt.Errorf("%s: output %q has shape %s for input %s: %w", m.name, m.Output, fmtDims(shape), inShape, err)
			}
		}
		outs[i] = out[:3*h*m.Scale*w*m.Scale] // first image of the batch
	}
	if p.Scale > 0 && p.Scale != m.Scale {
		return fmt.Errorf("%s: scale %d requested, but the model upscales %dx%d to %dx%d (x%d)", m.name, p.Scale, w, h, w*m.Scale, h*m.Scale, m.Scale)
	}
	if p.Range != 0 {
		m.Range = p.Range
		return nil
	}
	ref := img.ResizeBicubic(im, w*m.Scale, h*m.Scale)
	e1 := probeMSE(outs[0], 1, ref, 2*m.Scale)
	e255 := probeMSE(outs[1], 255, ref, 2*m.Scale)
	m.Range = 1
	if e255 < e1 {
		m.Range = 255
	}
	return nil
}

// scaleOf returns k when shape is [n, 3, h·k, w·k] for an integer k ≥ 1.
func scaleOf(shape []int64, n, h, w int) (int, error) {
	notSR := fmt.Errorf("does not look like an SR model (want [%d 3 %dk %dk] for an integer scale k)", n, h, w)
	if len(shape) != 4 || shape[0] != int64(n) || shape[1] != 3 {
		return 0, notSR
	}
	oh, ow := shape[2], shape[3]
	if oh < int64(h) || oh%int64(h) != 0 || ow%int64(w) != 0 || oh/int64(h) != ow/int64(w) {
		return 0, notSR
	}
	return int(oh / int64(h)), nil
}

// probeMSE is the mean squared difference between out/r, clipped to 0..1,
// and ref, over the pixels more than border away from the edges (where zero
// padding makes any model deviate). NaN outputs count as maximal error.
func probeMSE(out []float32, r float32, ref *img.Image, border int) float64 {
	h, w := ref.H, ref.W
	if 2*border >= h || 2*border >= w {
		border = 0
	}
	var sum float64
	var cnt int
	for c := range 3 {
		for y := border; y < h-border; y++ {
			row := (c*h + y) * w
			for x := border; x < w-border; x++ {
				v := clip01(out[row+x] / r)
				if math.IsNaN(float64(out[row+x])) {
					v = 2
				}
				d := float64(v - ref.Pix[row+x])
				sum += d * d
				cnt++
			}
		}
	}
	return sum / float64(cnt)
}

// synthImage returns a deterministic h×w RGB image that looks natural enough
// for an SR model to treat it as a photo: smooth colour gradients, a soft-
// edged disc, and low-amplitude texture at a few frequencies, all within
// 0.05..0.95. Noise would not do: SR models are trained on natural images and
// react to noise in ways that say little about their input range.
func synthImage(h, w int) *img.Image {
	im := img.New(3, h, w)
	cy, cx := 0.55*float64(h), 0.45*float64(w)
	rad := 0.3 * float64(min(h, w))
	for y := range h {
		for x := range w {
			fy, fx := float64(y)/float64(h), float64(x)/float64(w)
			d := math.Hypot(float64(y)-cy, float64(x)-cx)
			disc := 1 / (1 + math.Exp((d-rad)/0.8)) // soft edge, ~2 px wide
			tex := 0.04*math.Sin(2*math.Pi*float64(x)/3.7)*math.Cos(2*math.Pi*float64(y)/5.3) +
				0.03*math.Sin(2*math.Pi*(float64(x)+float64(y))/7.1)
			rgb := [3]float64{
				0.25 + 0.35*fx + 0.15*fy + 0.25*disc + tex,
				0.35 + 0.25*math.Sin(math.Pi*fy) + 0.1*fx - 0.15*disc + tex,
				0.6 - 0.3*fy + 0.1*math.Cos(2*math.Pi*fx) + 0.1*disc + 0.5*tex,
			}
			for c, v := range rgb {
				im.Pix[(c*h+y)*w+x] = float32(min(max(v, 0.05), 0.95))
			}
		}
	}
	return im
}

// clip01 clamps v to 0..1; NaN becomes 0.
func clip01(v float32) float32 {
	if !(v > 0) {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}
