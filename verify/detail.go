package verify

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"

	"github.com/srquant/srq/img"
)

// DetailWindow is the side, in HR (output) pixels, of the window the HTML
// report shows per image: about what one looks at when judging SR detail
// (a few edges, a patch of texture), and at DetailZoom the crops of three
// models and a heat map fit side by side on a page.
const DetailWindow = 48

// DetailZoom is the nearest-neighbour zoom of the crops: each output pixel
// becomes a DetailZoom×DetailZoom block, rendered here rather than by the
// browser's image scaling, so that the crops look the same in every browser
// and no interpolation blurs the quantization error one wants to see.
// Smaller windows (tiny images) are zoomed more, up to the same displayed
// side (DetailWindow·DetailZoom) or 8×.
const DetailZoom = 4

// overviewSide bounds the long side of the whole-image thumbnails: the SR
// benchmark images (Set5, Set14: up to 512 pixels at x4, shaved) show
// at full size or halved, and two thumbnails fit side by side.
const overviewSide = 360

// PNG is an encoded image with its size, which the report writes into the
// page so the layout does not move while images decode.
type PNG struct {
	Data []byte
	W, H int
}

// Detail is what the HTML report shows of one image: the window where the
// quantized output differs most from the FP32 output, as zoomed crops and
// heat maps. Compare computes it while both outputs are in memory (with
// CompareOptions.Detail) and keeps only these small PNGs, so a large set
// costs a few hundred kB per image, not its full outputs.
//
// The search and the heat maps use |ΔY| = |Y_quantized − Y_fp32| (the Y of
// PSNRY, in 8-bit Y levels) on the image shaved by the scale, the region
// the PSNR is measured on; X and Y are in the output image's coordinates.
type Detail struct {
	X, Y, Side int // the window: top-left corner and side, HR pixels
	Zoom       int // nearest-neighbour zoom of the crops and heat map
	OutW, OutH int // the output image's size
	Shave      int // border left out of the search and the thumbnails
	// MeanAbsDY is the mean |ΔY| in the window, the largest of any window;
	// MaxAbsDY the largest |ΔY| in the shaved image, the top of the heat
	// maps' colour scale (0 … MaxAbsDY); MeanAbsDYImage the image's mean.
	MeanAbsDY, MaxAbsDY, MeanAbsDYImage float64

	// FP32, Quantized and GT (HR mode only) are the window of each image,
	// zoomed; Heat is |ΔY| in the window on the colour scale, zoomed.
	FP32, Quantized, GT, Heat PNG
	// Thumb is the whole (shaved) image — the ground truth in HR mode, else
	// the FP32 output — and HeatMap its |ΔY| (the largest value of each
	// block where the image is scaled down), both at most overviewSide
	// pixels on the long side, with the window outlined.
	Thumb, HeatMap PNG
}

// detailOf computes the Detail of one image from the FP32 output f, the
// quantized output q and the ground truth gt (nil without HR), all of the
// same size, leaving out shave pixels at every border.
func detailOf(f, q, gt *img.Image, shave int) (*Detail, error) {
	if err := checkPair(f, q, shave, 1); err != nil {
		return nil, err
	}
	if gt != nil {
		if err := checkPair(f, gt, shave, 1); err != nil {
			return nil, err
		}
	}
	yf, h, w := lumaY(f, shave)
	yq, _, _ := lumaY(q, shave)
	d := yf // |ΔY|, in place of Y_fp32
	var peak, total float64
	for i, v := range yq {
		a := math.Abs(v - d[i])
		d[i] = a
		peak = max(peak, a)
		total += a
	}
	k := min(DetailWindow, h, w)
	x0, y0, sum := maxWindow(d, h, w, k)
	zoom := min(8, max(DetailZoom, DetailWindow*DetailZoom/k))
	det := &Detail{X: x0 + shave, Y: y0 + shave, Side: k, Zoom: zoom, OutW: f.W, OutH: f.H, Shave: shave,
		MeanAbsDY: sum / float64(k*k), MaxAbsDY: peak, MeanAbsDYImage: total / float64(h*w)}

	var err error
	if det.FP32, err = cropPNG(f, det.X, det.Y, k, zoom); err != nil {
		return nil, err
	}
	if det.Quantized, err = cropPNG(q, det.X, det.Y, k, zoom); err != nil {
		return nil, err
	}
	if gt != nil {
		if det.GT, err = cropPNG(gt, det.X, det.Y, k, zoom); err != nil {
			return nil, err
		}
	}
	if det.Heat, err = heatPNG(d, w, x0, y0, k, zoom, peak); err != nil {
		return nil, err
	}
	src := f
	if gt != nil {
		src = gt
	}
	if det.Thumb, err = thumbPNG(src, shave, h, w, x0, y0, k); err != nil {
		return nil, err
	}
	if det.HeatMap, err = heatMapPNG(d, h, w, x0, y0, k, peak); err != nil {
		return nil, err
	}
	return det, nil
}

// maxWindow returns the top-left corner (x, y) and the sum of the k×k
// window of the row-major h×w map d with the largest sum; ties go to the
// first in row-major order. It builds the summed-area table
// S[r][c] = Σ d[i][j] over i < r, j < c once, after which every window sum is
// S[y+k][x+k] − S[y][x+k] − S[y+k][x] + S[y][x]: O(h·w) in all instead of
// O(h·w·k²). Sums are float64: exact enough for 8-bit differences over any
// image size srq reads.
func maxWindow(d []float64, h, w, k int) (x, y int, sum float64) {
	sw := w + 1
	s := make([]float64, (h+1)*sw)
	for r := 0; r < h; r++ {
		var row float64
		prev, cur, src := s[r*sw:(r+1)*sw], s[(r+1)*sw:(r+2)*sw], d[r*w:(r+1)*w]
		for c, v := range src {
			row += v
			cur[c+1] = prev[c+1] + row
		}
	}
	sum = math.Inf(-1)
	for r := 0; r+k <= h; r++ {
		top, bot := s[r*sw:(r+1)*sw], s[(r+k)*sw:(r+k+1)*sw]
		for c := 0; c+k <= w; c++ {
			if v := bot[c+k] - top[c+k] - bot[c] + top[c]; v > sum {
				x, y, sum = c, r, v
			}
		}
	}
	return x, y, sum
}

// rgb8 returns pixel i of the planar image im as 8-bit RGB (gray repeated).
func rgb8(im *img.Image, i int) (r, g, b uint8) {
	r = img.Quantize8(im.Pix[i])
	if im.C != 3 {
		return r, r, r
	}
	plane := im.H * im.W
	return r, img.Quantize8(im.Pix[plane+i]), img.Quantize8(im.Pix[2*plane+i])
}

// cropPNG renders the side×side window of im at (x, y), each pixel a
// zoom×zoom block.
func cropPNG(im *img.Image, x, y, side, zoom int) (PNG, error) {
	n := side * zoom
	out := image.NewRGBA(image.Rect(0, 0, n, n))
	for r := 0; r < n; r++ {
		row := (y + r/zoom) * im.W
		px := out.Pix[r*out.Stride : r*out.Stride+4*n]
		for c := 0; c < n; c++ {
			R, G, B := rgb8(im, row+x+c/zoom)
			p := px[4*c : 4*c+4 : 4*c+4]
			p[0], p[1], p[2], p[3] = R, G, B, 255
		}
	}
	return encodePNG(out)
}

// heatPNG renders the side×side window at (x, y) of the |ΔY| map d (width
// w) on the colour scale 0 … peak, each value a zoom×zoom block.
func heatPNG(d []float64, w, x, y, side, zoom int, peak float64) (PNG, error) {
	n := side * zoom
	out := image.NewRGBA(image.Rect(0, 0, n, n))
	for r := 0; r < n; r++ {
		src := d[(y+r/zoom)*w+x : (y+r/zoom)*w+x+side]
		px := out.Pix[r*out.Stride : r*out.Stride+4*n]
		for c := 0; c < n; c++ {
			col := heatColor(src[c/zoom], peak)
			p := px[4*c : 4*c+4 : 4*c+4]
			p[0], p[1], p[2], p[3] = col.R, col.G, col.B, 255
		}
	}
	return encodePNG(out)
}

// heatColor maps v in 0 … peak through the colour map (0 when peak is 0:
// identical outputs are all black).
func heatColor(v, peak float64) color.RGBA {
	if !(peak > 0) {
		return inferno[0]
	}
	i := int(math.Round(255 * min(max(v/peak, 0), 1)))
	return inferno[i]
}

// overviewScale returns how a h×w image is fitted into overviewSide: shrunk
// by an integer factor down (blocks of down×down pixels) or enlarged by an
// integer factor up; exactly one of them is above 1, or both are 1.
func overviewScale(h, w int) (down, up int) {
	long := max(h, w)
	if long > overviewSide {
		return (long + overviewSide - 1) / overviewSide, 1
	}
	return 1, max(1, min(8, overviewSide/long))
}

// thumbPNG renders the shaved image im (h×w after removing shave pixels)
// fitted into overviewSide: block means when shrunk, nearest neighbour when
// enlarged; with the window at (x, y) of side k (shaved coordinates)
// outlined.
func thumbPNG(im *img.Image, shave, h, w, x, y, k int) (PNG, error) {
	down, up := overviewScale(h, w)
	oh, ow := (h+down-1)/down*up, (w+down-1)/down*up
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for r := 0; r < oh; r++ {
		for c := 0; c < ow; c++ {
			var sr, sg, sb, n int
			r0, c0 := r/up*down, c/up*down
			for i := r0; i < min(r0+down, h); i++ {
				for j := c0; j < min(c0+down, w); j++ {
					R, G, B := rgb8(im, (i+shave)*im.W+j+shave)
					sr, sg, sb, n = sr+int(R), sg+int(G), sb+int(B), n+1
				}
			}
			p := out.Pix[r*out.Stride+4*c : r*out.Stride+4*c+4 : r*out.Stride+4*c+4]
			p[0], p[1], p[2], p[3] = uint8((sr+n/2)/n), uint8((sg+n/2)/n), uint8((sb+n/2)/n), 255
		}
	}
	outline(out, x, y, k, down, up)
	return encodePNG(out)
}

// heatMapPNG renders the h×w |ΔY| map d fitted into overviewSide on the
// colour scale 0 … peak: the largest value of each block when shrunk (so a
// single bad pixel still shows), nearest neighbour when enlarged; with the
// window outlined.
func heatMapPNG(d []float64, h, w, x, y, k int, peak float64) (PNG, error) {
	down, up := overviewScale(h, w)
	oh, ow := (h+down-1)/down*up, (w+down-1)/down*up
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for r := 0; r < oh; r++ {
		for c := 0; c < ow; c++ {
			var m float64
			r0, c0 := r/up*down, c/up*down
			for i := r0; i < min(r0+down, h); i++ {
				for _, v := range d[i*w+c0 : i*w+min(c0+down, w)] {
					m = max(m, v)
				}
			}
			col := heatColor(m, peak)
			p := out.Pix[r*out.Stride+4*c : r*out.Stride+4*c+4 : r*out.Stride+4*c+4]
			p[0], p[1], p[2], p[3] = col.R, col.G, col.B, 255
		}
	}
	outline(out, x, y, k, down, up)
	return encodePNG(out)
}

// outlineColor frames the window on the thumbnails: a cyan that stands
// out on photographs and on the colour map (black → purple → orange →
// yellow), with a dark edge against light backgrounds.
var (
	outlineColor = color.RGBA{R: 0x00, G: 0xe5, B: 0xff, A: 0xff}
	outlineEdge  = color.RGBA{R: 0x00, G: 0x00, B: 0x00, A: 0xff}
)

// outline draws the frame of the window (x, y, side k, in pixels before
// scaling) on a thumbnail scaled by down or up: two pixels of outlineColor
// just inside the window's edge, one of outlineEdge around them.
func outline(m *image.RGBA, x, y, k, down, up int) {
	x0, y0 := x/down*up, y/down*up
	x1, y1 := ((x+k+down-1)/down)*up-1, ((y+k+down-1)/down)*up-1
	b := m.Bounds()
	x1, y1 = min(x1, b.Max.X-1), min(y1, b.Max.Y-1)
	rect := func(l, t, r, btm int, c color.RGBA) {
		for i := l; i <= r; i++ {
			m.SetRGBA(i, t, c)
			m.SetRGBA(i, btm, c)
		}
		for j := t; j <= btm; j++ {
			m.SetRGBA(l, j, c)
			m.SetRGBA(r, j, c)
		}
	}
	rect(x0-1, y0-1, x1+1, y1+1, outlineEdge) // SetRGBA ignores pixels outside
	rect(x0, y0, x1, y1, outlineColor)
	if x1-x0 > 3 && y1-y0 > 3 {
		rect(x0+1, y0+1, x1-1, y1-1, outlineColor)
	}
}

// ColorBar renders the heat maps' colour scale as a w×h strip, 0 on the
// left, the top of the scale on the right; the page labels its ends.
func ColorBar(w, h int) (PNG, error) {
	if w < 2 || h < 1 {
		return PNG{}, fmt.Errorf("colour bar %dx%d: want at least 2x1", w, h)
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for c := 0; c < w; c++ {
		col := heatColor(float64(c), float64(w-1))
		for r := 0; r < h; r++ {
			out.SetRGBA(c, r, col)
		}
	}
	return encodePNG(out)
}

func encodePNG(m *image.RGBA) (PNG, error) {
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		return PNG{}, fmt.Errorf("encode PNG: %w", err)
	}
	return PNG{Data: b.Bytes(), W: m.Rect.Dx(), H: m.Rect.Dy()}, nil
}

// inferno is matplotlib's "inferno" colour map as 256 8-bit colours, from
// Matt Zucker's degree-6 polynomial fit (CC0), whose error against the
// matplotlib table is below one 8-bit step on most of the range. Inferno is
// perceptually uniform and its lightness rises monotonically from black,
// so "no error" reads as dark and larger errors as brighter in colour and
// in greyscale prints, for colour-blind readers too.
var inferno = func() (t [256]color.RGBA) {
	c := [7][3]float64{
		{0.0002189403691192265, 0.001651004631001012, -0.01948089843709184},
		{0.1065134194856116, 0.5639564367884091, 3.932712388889277},
		{11.60249308247187, -3.972853965665698, -15.9423941062914},
		{-41.70399613139459, 17.43639888205313, 44.35414519872813},
		{77.162935699427, -33.40235894210092, -81.80730925738993},
		{-71.31942824499214, 32.62606426397723, 73.20951985803202},
		{25.13112622477341, -12.24266895238567, -23.07032500287172},
	}
	for i := range t {
		x := float64(i) / 255
		var rgb [3]uint8
		for ch := range rgb {
			v := 0.0
			for k := len(c) - 1; k >= 0; k-- {
				v = v*x + c[k][ch]
			}
			rgb[ch] = uint8(math.Round(255 * min(max(v, 0), 1)))
		}
		t[i] = color.RGBA{R: rgb[0], G: rgb[1], B: rgb[2], A: 255}
	}
	return t
}()
