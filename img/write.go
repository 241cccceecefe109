package img

import (
	"fmt"
	"image"
	"image/png"
	"io"

	"github.com/srquant/srq/internal/atomicfile"
)

// WritePNG writes im as an 8-bit PNG: RGB when C==3, gray when C==1. Values
// are quantized with Quantize8 (clip to 0..1, ×255, round half away from
// zero). The file is written to a temporary file in the same folder and
// renamed into place, so readers never see a partial file and a failed write
// leaves nothing behind.
func WritePNG(path string, im *Image) (err error) {
	if im.C != 1 && im.C != 3 {
		return fmt.Errorf("write %s: %d channels; PNG output needs 1 or 3", path, im.C)
	}
	if im.W <= 0 || im.H <= 0 || len(im.Pix) != im.C*im.H*im.W {
		return fmt.Errorf("write %s: invalid image %dx%dx%d with %d values", path, im.C, im.H, im.W, len(im.Pix))
	}
	var m image.Image
	plane := im.H * im.W
	if im.C == 1 {
		g := image.NewGray(image.Rect(0, 0, im.W, im.H))
		for i, v := range im.Pix {
			g.Pix[i] = Quantize8(v)
		}
		m = g
	} else {
		rgba := image.NewRGBA(image.Rect(0, 0, im.W, im.H))
		R, G, B := im.Pix[:plane], im.Pix[plane:2*plane], im.Pix[2*plane:]
		for i := 0; i < plane; i++ {
			p := rgba.Pix[4*i : 4*i+4 : 4*i+4]
			p[0], p[1], p[2], p[3] = Quantize8(R[i]), Quantize8(G[i]), Quantize8(B[i]), 255
		}
		m = rgba // opaque: image/png stores it as 8-bit RGB without alpha
	}

	err = atomicfile.Write(path, func(w io.Writer) error {
		enc := png.Encoder{CompressionLevel: png.DefaultCompression}
		if err := enc.Encode(w, m); err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
