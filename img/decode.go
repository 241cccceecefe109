package img

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// MaxPixels bounds W×H of a decoded image. It is checked on the header before
// the pixels are decoded, so a tiny file that claims a huge size (a
// decompression bomb) fails fast instead of exhausting memory. 2^27 pixels is
// ~1.5 GiB as a float32 RGB Image, far beyond any SR benchmark image.
const MaxPixels = 1 << 27

// Read decodes the PNG, JPEG, BMP or WebP file at path; see Decode.
func Read(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("image %s: no such file", path)
		}
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("image %s: is a directory", path)
	}
	return Decode(f, path)
}

// Decode reads a whole PNG, JPEG, BMP or WebP stream (the format is sniffed
// from the first bytes, not taken from name) and returns it as a 3-channel
// 0..1 image. BMP is decoded by golang.org/x/image/bmp (uncompressed 1-, 2-,
// 4-, 8-bit paletted, 24- and 32-bit), WebP by golang.org/x/image/webp
// (lossy and lossless). name only labels errors. Grayscale is replicated to 3 channels, alpha
// is dropped (the stored, non-premultiplied colour is kept, like Pillow's
// convert("RGB")), 16-bit samples are divided by 65535 and 8-bit ones by 255,
// and paletted images are expanded. JPEG's YCbCr is converted with
// color.YCbCrToRGB, so results match Go's image/jpeg + draw exactly.
func Decode(r io.Reader, name string) (*Image, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("image %s: read: %w", name, err)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("image %s: empty file", name)
	}
	var src image.Image
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		src, err = decodeStd(data, png.DecodeConfig, png.Decode)
	case bytes.HasPrefix(data, []byte{0xff, 0xd8}):
		src, err = decodeStd(data, jpeg.DecodeConfig, jpeg.Decode)
	case bytes.HasPrefix(data, []byte("BM")):
		src, err = decodeStd(data, bmp.DecodeConfig, bmp.Decode)
	case len(data) >= 12 && bytes.HasPrefix(data, []byte("RIFF")) && string(data[8:12]) == "WEBP":
		src, err = decodeStd(data, webp.DecodeConfig, webp.Decode)
	default:
		return nil, fmt.Errorf("image %s: not a PNG, JPEG, BMP or WebP image", name)
	}
	if err != nil {
		if strings.Contains(err.Error(), "non-positive dimension") { // image/png's wording
			return nil, fmt.Errorf("image %s: zero-size image (%v)", name, err)
		}
		if isTruncated(err) {
			return nil, fmt.Errorf("image %s: truncated image (%v)", name, err)
		}
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	return fromImage(src), nil
}

// isTruncated tells whether a decoder error means the data ended early. The
// standard decoders report that as io.ErrUnexpectedEOF or, once the entropy
// coded data runs dry, with these messages.
func isTruncated(err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "not enough pixel data") || strings.Contains(msg, "short Huffman data")
}

// decodeStd runs a decoder of the image.Decode kind after checking the header's
// dimensions against zero and MaxPixels.
func decodeStd(data []byte, config func(io.Reader) (image.Config, error), decode func(io.Reader) (image.Image, error)) (image.Image, error) {
	cfg, err := config(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if err := checkDims(cfg.Width, cfg.Height); err != nil {
		return nil, err
	}
	return decode(bytes.NewReader(data))
}

func checkDims(w, h int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("zero-size image (%dx%d)", w, h)
	}
	if int64(w)*int64(h) > MaxPixels {
		return fmt.Errorf("image too large (%dx%d, limit %d pixels)", w, h, MaxPixels)
	}
	return nil
}

// fromImage converts any decoded image to a 3-channel planar Image. The
// common concrete types are read directly from their pixel slices (no
// per-pixel interface calls); anything else goes through At.
func fromImage(src image.Image) *Image {
	if a, ok := src.(*image.NYCbCrA); ok { // lossy WebP with alpha: keep the colour
		src = &a.YCbCr
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	out := New(3, h, w)
	plane := w * h
	R, G, B := out.Pix[:plane], out.Pix[plane:2*plane], out.Pix[2*plane:]
	var row func(y int) // fills output row y (0-based)
	switch s := src.(type) {
	case *image.RGBA:
		row = func(y int) { rgba8Row(s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):], R[y*w:][:w], G[y*w:][:w], B[y*w:][:w]) }
	case *image.NRGBA:
		row = func(y int) { rgba8Row(s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):], R[y*w:][:w], G[y*w:][:w], B[y*w:][:w]) }
	case *image.RGBA64:
		row = func(y int) { rgba16Row(s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):], R[y*w:][:w], G[y*w:][:w], B[y*w:][:w]) }
	case *image.NRGBA64:
		row = func(y int) { rgba16Row(s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):], R[y*w:][:w], G[y*w:][:w], B[y*w:][:w]) }
	case *image.Gray:
		row = func(y int) {
			p := s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):][:w]
			r, g, bb := R[y*w:][:w], G[y*w:][:w], B[y*w:][:w]
			for x, v := range p {
				f := u8ToF[v]
				r[x], g[x], bb[x] = f, f, f
			}
		}
	case *image.Gray16:
		row = func(y int) {
			p := s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):][:2*w]
			r, g, bb := R[y*w:][:w], G[y*w:][:w], B[y*w:][:w]
			for x := range r {
				f := float32(uint16(p[2*x])<<8|uint16(p[2*x+1])) / 65535
				r[x], g[x], bb[x] = f, f, f
			}
		}
	case *image.Paletted:
		var pal [256][3]float32
		for i, c := range s.Palette {
			if i >= len(pal) || c == nil {
				continue
			}
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			pal[i] = [3]float32{u8ToF[n.R], u8ToF[n.G], u8ToF[n.B]}
		}
		row = func(y int) {
			p := s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):][:w]
			r, g, bb := R[y*w:][:w], G[y*w:][:w], B[y*w:][:w]
			for x, v := range p { // indices past the palette read as black, like image.Paletted.At
				c := pal[v]
				r[x], g[x], bb[x] = c[0], c[1], c[2]
			}
		}
	case *image.YCbCr:
		hs, vs := chromaDiv(s.SubsampleRatio)
		row = func(y int) {
			yy := b.Min.Y + y
			yrow := s.Y[s.YOffset(b.Min.X, yy):][:w]
			cy := (yy/vs - s.Rect.Min.Y/vs) * s.CStride
			r, g, bb := R[y*w:][:w], G[y*w:][:w], B[y*w:][:w]
			for x, yv := range yrow {
				ci := cy + (b.Min.X+x)/hs - s.Rect.Min.X/hs
				cr, cg, cb := color.YCbCrToRGB(yv, s.Cb[ci], s.Cr[ci])
				r[x], g[x], bb[x] = u8ToF[cr], u8ToF[cg], u8ToF[cb]
			}
		}
	default:
		row = func(y int) {
			for x := 0; x < w; x++ {
				c := color.NRGBA64Model.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
				i := y*w + x
				R[i], G[i], B[i] = float32(c.R)/65535, float32(c.G)/65535, float32(c.B)/65535
			}
		}
	}
	parallelRows(h, w, func(y0, y1 int) {
		for y := y0; y < y1; y++ {
			row(y)
		}
	})
	return out
}

// chromaDiv returns the horizontal and vertical chroma subsampling factors;
// with them the row loop computes exactly what image.YCbCr.COffset does,
// without its per-pixel switch.
func chromaDiv(r image.YCbCrSubsampleRatio) (h, v int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return 2, 1
	case image.YCbCrSubsampleRatio420:
		return 2, 2
	case image.YCbCrSubsampleRatio440:
		return 1, 2
	case image.YCbCrSubsampleRatio411:
		return 4, 1
	case image.YCbCrSubsampleRatio410:
		return 4, 2
	}
	return 1, 1
}

// rgba8Row copies the colour of 4-byte RGBA/NRGBA pixels, dropping alpha.
func rgba8Row(p []uint8, r, g, b []float32) {
	p = p[:4*len(r)]
	for x := range r {
		q := p[4*x : 4*x+3 : 4*x+3]
		r[x], g[x], b[x] = u8ToF[q[0]], u8ToF[q[1]], u8ToF[q[2]]
	}
}

// rgba16Row copies the colour of 8-byte big-endian RGBA64/NRGBA64 pixels.
func rgba16Row(p []uint8, r, g, b []float32) {
	p = p[:8*len(r)]
	for x := range r {
		q := p[8*x : 8*x+6 : 8*x+6]
		r[x] = float32(uint16(q[0])<<8|uint16(q[1])) / 65535
		g[x] = float32(uint16(q[2])<<8|uint16(q[3])) / 65535
		b[x] = float32(uint16(q[4])<<8|uint16(q[5])) / 65535
	}
}

// parallelMinWork is the number of per-row work units (roughly pixels) under
// which spawning goroutines costs more than it saves.
const parallelMinWork = 1 << 16

// parallelRows splits [0, n) into contiguous blocks and calls fn(start, end)
// for each, on GOMAXPROCS goroutines when n*cost (cost ≈ work per row) is
// large enough to pay for them; otherwise it calls fn(0, n) inline. Blocks
// let fn allocate scratch space once per goroutine instead of once per row.
func parallelRows(n, cost int, fn func(start, end int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 || n*cost < parallelMinWork {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(start, end)
		}()
	}
	wg.Wait()
}
