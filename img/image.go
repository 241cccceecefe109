// Package img reads and writes images as planar float tensors and resizes them
// with the bicubic filter the SR literature uses to make LR inputs.
package img

import "fmt"

// Image is a planar (CHW) float image with values in 0..1, the layout ONNX SR
// models take (after scaling to the model's input range).
type Image struct {
	C, H, W int
	Pix     []float32 // len C*H*W, channel-major
}

// New returns a zeroed image of the given size.
func New(c, h, w int) *Image {
	return &Image{C: c, H: h, W: w, Pix: make([]float32, c*h*w)}
}

// Clone returns a deep copy, so callers can modify pixels without aliasing.
func (im *Image) Clone() *Image {
	out := &Image{C: im.C, H: im.H, W: im.W, Pix: make([]float32, len(im.Pix))}
	copy(out.Pix, im.Pix)
	return out
}

// Crop returns a copy of the rectangle with top-left (x, y) and size w×h.
// The rectangle is intersected with the image first, so a rectangle that
// reaches past an edge yields a smaller image and one fully outside yields an
// image with zero pixels; Crop never panics on coordinates.
func Crop(im *Image, x, y, w, h int) *Image {
	x0, y0 := max(x, 0), max(y, 0)
	x1, y1 := min(x+w, im.W), min(y+h, im.H)
	cw, ch := max(x1-x0, 0), max(y1-y0, 0)
	out := New(im.C, ch, cw)
	for c := 0; c < im.C; c++ {
		for r := 0; r < ch; r++ {
			src := im.Pix[(c*im.H+y0+r)*im.W+x0:][:cw]
			copy(out.Pix[(c*ch+r)*cw:][:cw], src)
		}
	}
	return out
}

// Quantize8 maps a 0..1 value to 8 bits the way SR evaluation code does:
// clip to 0..1, scale by 255, round half away from zero (math.Round).
// NaN maps to 0. For v in (0, 1), float64(v)*255 is exact (24+8 significant
// bits) and so is adding 0.5, so truncating x+0.5 equals math.Round(x)
// without its cost.
func Quantize8(v float32) uint8 {
	if !(v > 0) { // also catches NaN
		return 0
	}
	if v >= 1 {
		return 255
	}
	return uint8(float64(v)*255 + 0.5)
}

// ToUint8 returns the pixels as planar 8-bit values (same CHW order), each
// quantized with Quantize8.
func ToUint8(im *Image) []uint8 {
	out := make([]uint8, len(im.Pix))
	for i, v := range im.Pix {
		out[i] = Quantize8(v)
	}
	return out
}

// u8ToF maps every 8-bit value to v/255 once, so conversions are a table load.
var u8ToF = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// FromUint8 builds an image from planar 8-bit values (v/255). It panics if
// len(planar) != c*h*w: that is a programming error, not bad input.
func FromUint8(c, h, w int, planar []uint8) *Image {
	if c < 0 || h < 0 || w < 0 || len(planar) != c*h*w {
		panic(fmt.Sprintf("img.FromUint8: %d values for a %dx%dx%d image", len(planar), c, h, w))
	}
	out := New(c, h, w)
	for i, v := range planar {
		out.Pix[i] = u8ToF[v]
	}
	return out
}
