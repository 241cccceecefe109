package img

import "math"

// Fixed-point layout of Pillow's 8-bit resampler (libImaging/Resample.c):
// 8 bits for the result, 2 spare bits because bicubic weights can be negative
// or sum past 1 within a partial window, the rest for the fraction.
const (
	precisionBits = 32 - 8 - 2
	halfUnit      = 1 << (precisionBits - 1)
)

// bicubic is Pillow's bicubic_filter (Keys' cubic convolution, a = -0.5).
// The explicit float64 conversions stop the compiler from fusing
// multiply-adds, so every weight rounds exactly as Pillow's C code does.
func bicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64((a+2)*x)-(a+3))*x)*x + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(x-5)*x)+8)*x-4) * a
	}
	return 0
}

// axisCoeffs holds the fixed-point weights of one resampling axis: output
// position i reads n[i] inputs starting at first[i], weighted by
// k[i*ksize : i*ksize+n[i]].
type axisCoeffs struct {
	ksize    int
	first, n []int
	k        []int32
}

// precomputeCoeffs mirrors Pillow's precompute_coeffs followed by
// normalize_coeffs_8bpc for box (0, inSize): the filter support grows with the
// downscale factor (antialiasing), weights are normalised to sum 1 in float64
// and then rounded half away from zero to precisionBits fixed point.
func precomputeCoeffs(inSize, outSize int) axisCoeffs {
	const support0 = 2.0 // bicubic support
	// Pillow passes the box edges as C floats; (in1 - in0) is a float subtraction.
	in0, in1 := float32(0), float32(inSize)
	scale := float64(in1-in0) / float64(outSize)
	filterscale := max(scale, 1)
	support := support0 * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := axisCoeffs{ksize: ksize, first: make([]int, outSize), n: make([]int, outSize), k: make([]int32, outSize*ksize)}
	w := make([]float64, ksize)
	ss := 1.0 / filterscale
	for xx := 0; xx < outSize; xx++ {
		center := float64(in0) + float64((float64(xx)+0.5)*scale)
		xmin := int(center - support + 0.5) // C's (int) truncates toward zero, as Go's conversion does
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w[x] = bicubic(float64(float64(x+xmin)-center+0.5) * ss)
			ww += w[x]
		}
		k := c.k[xx*ksize:][:ksize]
		for x := 0; x < xmax; x++ {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				k[x] = int32(-0.5 + float64(v*(1<<precisionBits)))
			} else {
				k[x] = int32(0.5 + float64(v*(1<<precisionBits)))
			}
		}
		c.first[xx], c.n[xx] = xmin, max(xmax, 0)
	}
	return c
}

// clip8 converts a fixed-point accumulator to a byte like Pillow's clip8
// (arithmetic shift, then clamp to 0..255).
func clip8(ss int32) uint8 {
	v := ss >> precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// ResizeBicubic resizes im to w×h exactly as Pillow's
// Image.resize((w, h), Image.BICUBIC) does for 8-bit images: im is first
// quantized to 8 bits (Quantize8), then a separable fixed-point bicubic
// filter (a = -0.5, support widened by the downscale factor) runs
// horizontally and then vertically with an 8-bit intermediate, each channel
// independently. The result therefore holds only multiples of 1/255; on the
// benchmark sets it is byte-identical to the published Pillow LR images.
// A non-positive w or h, or an empty input, gives an all-zero image of
// C×max(h,0)×max(w,0) instead of a panic.
func ResizeBicubic(im *Image, w, h int) *Image {
	if w <= 0 || h <= 0 || im.W <= 0 || im.H <= 0 || im.C <= 0 {
		return New(im.C, max(h, 0), max(w, 0))
	}
	src := ToUint8(im)
	inW, inH := im.W, im.H
	needH, needV := w != inW, h != inH

	// Rows of the source that the vertical pass reads; the horizontal pass
	// only needs to produce these (Pillow's ybox_first/ybox_last).
	var vc axisCoeffs
	y0, y1 := 0, inH
	if needV {
		vc = precomputeCoeffs(inH, h)
		y0 = vc.first[0]
		y1 = vc.first[h-1] + vc.n[h-1]
	}

	tmp, tmpW, tmpRows := src, inW, inH // plane layout: C × tmpRows × tmpW
	if needH {
		hc := precomputeCoeffs(inW, w)
		tmpW, tmpRows = w, y1-y0
		tmp = make([]uint8, im.C*tmpRows*tmpW)
		rows := im.C * tmpRows
		parallelRows(rows, w*hc.ksize, func(r0, r1 int) {
			for r := r0; r < r1; r++ {
				c, y := r/tmpRows, r%tmpRows
				in := src[(c*inH+y0+y)*inW:][:inW]
				out := tmp[r*tmpW:][:tmpW]
				for xx := range out {
					n := hc.n[xx]
					k := hc.k[xx*hc.ksize:][:n]
					p := in[hc.first[xx]:][:n]
					ss := int32(halfUnit)
					for i, v := range p {
						ss += int32(v) * k[i]
					}
					out[xx] = clip8(ss)
				}
			}
		})
	} else {
		y0 = 0 // tmp is the full source
	}

	res := tmp
	if needV {
		res = make([]uint8, im.C*h*tmpW)
		rows := im.C * h
		parallelRows(rows, tmpW*vc.ksize, func(r0, r1 int) {
			acc := make([]int32, tmpW)
			for r := r0; r < r1; r++ {
				c, yy := r/h, r%h
				n := vc.n[yy]
				k := vc.k[yy*vc.ksize:][:n]
				base := c*tmpRows + vc.first[yy] - y0
				for i := range acc {
					acc[i] = halfUnit
				}
				for j, kj := range k {
					in := tmp[(base+j)*tmpW:][:tmpW]
					for x, v := range in {
						acc[x] += int32(v) * kj
					}
				}
				out := res[r*tmpW:][:tmpW]
				for x, s := range acc {
					out[x] = clip8(s)
				}
			}
		})
	}
	return FromUint8(im.C, h, w, res)
}
