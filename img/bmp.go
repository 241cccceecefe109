package img

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
)

// decodeBMP decodes the uncompressed BMP variants that image tools write:
// 24-bit BGR, 32-bit BGRX (BI_RGB, or BI_BITFIELDS with the standard
// masks; the fourth byte is ignored) and 8-bit paletted, bottom-up or
// top-down, with a BITMAPINFOHEADER or a later (V4/V5) header. RLE and other
// bit depths are refused with an error rather than decoded wrongly. It exists
// because golang.org/x/image/bmp is outside srq's allowed dependencies.
func decodeBMP(d []byte) (image.Image, error) {
	const fileHdr = 14
	if len(d) < fileHdr+40 {
		return nil, io.ErrUnexpectedEOF
	}
	le := binary.LittleEndian
	off := int64(le.Uint32(d[10:]))
	dib := int64(le.Uint32(d[14:]))
	if dib != 40 && dib != 52 && dib != 56 && dib != 108 && dib != 124 {
		return nil, fmt.Errorf("unsupported BMP header (size %d)", dib)
	}
	w := int64(int32(le.Uint32(d[18:])))
	h := int64(int32(le.Uint32(d[22:])))
	bpp := le.Uint16(d[28:])
	comp := le.Uint32(d[30:])
	colors := int64(le.Uint32(d[46:]))
	topDown := h < 0
	if topDown {
		h = -h
	}
	if w > 1<<30 || h > 1<<30 {
		return nil, fmt.Errorf("image too large (%dx%d)", w, h)
	}
	if err := checkDims(int(w), int(h)); err != nil {
		return nil, err
	}
	switch {
	case comp == 0 && (bpp == 8 || bpp == 24 || bpp == 32):
	case comp == 3 && bpp == 32:
		masks := fileHdr + dib // masks follow a 40-byte header, sit inside V4/V5
		if dib > 40 {
			masks = fileHdr + 40
		}
		if int64(len(d)) < masks+12 {
			return nil, io.ErrUnexpectedEOF
		}
		if le.Uint32(d[masks:]) != 0xff0000 || le.Uint32(d[masks+4:]) != 0xff00 || le.Uint32(d[masks+8:]) != 0xff {
			return nil, errors.New("unsupported BMP: 32-bit with non-standard channel masks")
		}
	default:
		return nil, fmt.Errorf("unsupported BMP: %d bits per pixel, compression %d (only uncompressed 8/24/32-bit)", bpp, comp)
	}
	stride := (w*int64(bpp) + 31) / 32 * 4
	need := off + stride*(h-1) + (w*int64(bpp)+7)/8 // last row's padding may be missing
	if off < fileHdr+dib || need > int64(len(d)) {
		return nil, io.ErrUnexpectedEOF
	}
	rowAt := func(y int) []byte { // y counts from the top of the picture
		r := int64(y)
		if !topDown {
			r = h - 1 - r
		}
		return d[off+r*stride:]
	}
	W, H := int(w), int(h)
	if bpp == 8 {
		if colors <= 0 || colors > 256 {
			colors = 256
		}
		pstart := fileHdr + dib
		if comp == 3 && dib == 40 {
			pstart += 12
		}
		n := min(colors, max((off-pstart)/4, 0))
		pal := make(color.Palette, 256)
		for i := range pal {
			pal[i] = color.RGBA{A: 255}
		}
		for i := int64(0); i < n; i++ {
			q := d[pstart+4*i:]
			pal[i] = color.RGBA{R: q[2], G: q[1], B: q[0], A: 255}
		}
		out := image.NewPaletted(image.Rect(0, 0, W, H), pal)
		for y := 0; y < H; y++ {
			copy(out.Pix[y*out.Stride:][:W], rowAt(y)[:W])
		}
		return out, nil
	}
	bytesPP := int(bpp) / 8
	out := image.NewRGBA(image.Rect(0, 0, W, H))
	for y := 0; y < H; y++ {
		src := rowAt(y)[:W*bytesPP]
		dst := out.Pix[y*out.Stride:][:4*W]
		for x := 0; x < W; x++ {
			s := src[x*bytesPP:]
			dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = s[2], s[1], s[0], 255
		}
	}
	return out, nil
}
