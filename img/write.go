package img

import (
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"path/filepath"
	"strings"

	"golang.org/x/image/bmp"

	"github.com/srquant/srq/internal/atomicfile"
)

// Format is an image file format srq writes.
type Format string

// The formats Write encodes. WebP is read (Decode) but not written: Go has
// no WebP encoder, and a format srq writes must round-trip through its own
// reader.
const (
	PNG  Format = "PNG"
	JPEG Format = "JPEG"
	BMP  Format = "BMP"
)

// DefaultJPEGQuality is the JPEG quality Write uses when none is given:
// high enough that the codec's blocking stays below what an SR model's
// output is judged by, as photo tools default to for final output.
const DefaultJPEGQuality = 95

// FormatOf returns the format a file name asks for by its extension (any
// letter case): .png, .jpg/.jpeg or .bmp. Any other extension, or none, is
// an error naming the file, so that a caller can refuse it before doing any
// work instead of writing PNG bytes under a name that says otherwise.
func FormatOf(path string) (Format, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".png":
		return PNG, nil
	case ".jpg", ".jpeg":
		return JPEG, nil
	case ".bmp":
		return BMP, nil
	case "":
		return "", fmt.Errorf("%s: no file extension: end the output name in .png, .jpg, .jpeg or .bmp to choose the format", path)
	default:
		return "", fmt.Errorf("%s: cannot write %s images: end the output name in .png, .jpg, .jpeg or .bmp", path, ext)
	}
}

// WriteOptions tune the encoders; the zero value is the defaults.
type WriteOptions struct {
	// Quality is the JPEG quality, 1..100 (0: DefaultJPEGQuality); other
	// formats are lossless and ignore it.
	Quality int
}

// Write writes im (1 or 3 channels, 0..1) as an 8-bit image in the format
// its name asks for (FormatOf). Values are quantized with Quantize8 (clip to
// 0..1, ×255, round half away from zero). The file is written to a
// temporary file in the same folder and renamed into place, so readers
// never see a partial file and a failed write leaves nothing behind.
func Write(path string, im *Image, o WriteOptions) error {
	f, err := FormatOf(path)
	if err != nil {
		return fmt.Errorf("write %w", err)
	}
	return write(path, im, f, o)
}

// WritePNG writes im as an 8-bit PNG whatever its name says: RGB when C==3,
// gray when C==1, atomically as Write does.
func WritePNG(path string, im *Image) error { return write(path, im, PNG, WriteOptions{}) }

func write(path string, im *Image, f Format, o WriteOptions) error {
	if im.C != 1 && im.C != 3 {
		return fmt.Errorf("write %s: %d channels; %s output needs 1 or 3", path, im.C, f)
	}
	if im.W <= 0 || im.H <= 0 || len(im.Pix) != im.C*im.H*im.W {
		return fmt.Errorf("write %s: invalid image %dx%dx%d with %d values", path, im.C, im.H, im.W, len(im.Pix))
	}
	q := o.Quality
	if q == 0 {
		q = DefaultJPEGQuality
	}
	if q < 1 || q > 100 {
		return fmt.Errorf("write %s: JPEG quality %d: want 1..100", path, q)
	}
	m := toStd(im)
	err := atomicfile.Write(path, func(w io.Writer) error {
		var err error
		switch f {
		case JPEG:
			err = jpeg.Encode(w, m, &jpeg.Options{Quality: q})
		case BMP:
			err = bmp.Encode(w, m)
		default:
			enc := png.Encoder{CompressionLevel: png.DefaultCompression}
			err = enc.Encode(w, m)
		}
		if err != nil {
			return fmt.Errorf("encode %s: %w", f, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// toStd converts a valid 1- or 3-channel image to an 8-bit image.Gray or
// an opaque image.RGBA, which every encoder stores without alpha (PNG as
// 8-bit RGB, BMP as 24-bit, JPEG as YCbCr).
func toStd(im *Image) image.Image {
	plane := im.H * im.W
	if im.C == 1 {
		g := image.NewGray(image.Rect(0, 0, im.W, im.H))
		for i, v := range im.Pix {
			g.Pix[i] = Quantize8(v)
		}
		return g
	}
	rgba := image.NewRGBA(image.Rect(0, 0, im.W, im.H))
	R, G, B := im.Pix[:plane], im.Pix[plane:2*plane], im.Pix[2*plane:]
	for i := 0; i < plane; i++ {
		p := rgba.Pix[4*i : 4*i+4 : 4*i+4]
		p[0], p[1], p[2], p[3] = Quantize8(R[i]), Quantize8(G[i]), Quantize8(B[i]), 255
	}
	return rgba
}
