package img

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testImages = "../testdata/images"

// refRGB8 is the reference conversion through the image interfaces: JPEG
// YCbCr via color.YCbCrToRGB (what image/draw uses), everything else via the
// non-premultiplied 8-bit colour model.
func refRGB8(t *testing.T, m image.Image) []uint8 {
	t.Helper()
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]uint8, 3*w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var r, g, bb uint8
			switch c := m.At(b.Min.X+x, b.Min.Y+y).(type) {
			case color.YCbCr:
				r, g, bb = color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
			default:
				n := color.NRGBAModel.Convert(c).(color.NRGBA)
				r, g, bb = n.R, n.G, n.B
			}
			i := y*w + x
			out[i], out[w*h+i], out[2*w*h+i] = r, g, bb
		}
	}
	return out
}

func decodeStdFile(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	m, _, err := image.Decode(f)
	require.NoError(t, err)
	return m
}

func TestReadCommittedImages(t *testing.T) {
	tests := []struct {
		file string
		w, h int
		gray bool
	}{
		{"chelsea.png", 451, 300, false},
		{"brick.png", 512, 512, true},
		{"rocket.jpg", 640, 427, false},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(testImages, tc.file)
			im, err := Read(path)
			require.NoError(t, err)
			require.Equal(t, [3]int{3, tc.h, tc.w}, [3]int{im.C, im.H, im.W})
			got := ToUint8(im)
			assert.Equal(t, refRGB8(t, decodeStdFile(t, path)), got)
			if tc.gray {
				n := tc.w * tc.h
				assert.Equal(t, got[:n], got[n:2*n])
				assert.Equal(t, got[:n], got[2*n:])
			}
			for _, v := range im.Pix {
				require.True(t, v >= 0 && v <= 1)
			}
		})
	}
}

// encodePNG writes m with image/png into dir and returns the path.
func encodePNG(t *testing.T, dir, name string, m image.Image) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, m))
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	return p
}

func TestDecodePixelTypes(t *testing.T) {
	dir := t.TempDir()
	r := image.Rect(0, 0, 5, 3)
	g16 := image.NewGray16(r)
	rgba64 := image.NewRGBA64(r)
	nrgba64 := image.NewNRGBA64(r)
	nrgba := image.NewNRGBA(r)
	pal := image.NewPaletted(r, color.Palette{color.RGBA{10, 20, 30, 255}, color.NRGBA{200, 100, 50, 128}, color.RGBA{0, 0, 255, 255}})
	for y := 0; y < 3; y++ {
		for x := 0; x < 5; x++ {
			v := uint16(x*13000 + y*1000 + 7)
			g16.SetGray16(x, y, color.Gray16{Y: v})
			rgba64.SetRGBA64(x, y, color.RGBA64{v, 65535 - v, v / 2, 65535})
			nrgba64.SetNRGBA64(x, y, color.NRGBA64{v, 65535 - v, v / 3, uint16(y * 20000)})
			nrgba.SetNRGBA(x, y, color.NRGBA{uint8(x * 50), uint8(y * 80), 7, uint8(x * 60)})
			pal.SetColorIndex(x, y, uint8((x+y)%3))
		}
	}
	tests := []struct {
		name string
		m    image.Image
		// want returns the expected RGB (0..1 as float32) of pixel (x, y).
		want func(x, y int) [3]float32
	}{
		{"gray16", g16, func(x, y int) [3]float32 {
			v := float32(g16.Gray16At(x, y).Y) / 65535
			return [3]float32{v, v, v}
		}},
		{"rgba64", rgba64, func(x, y int) [3]float32 {
			c := rgba64.RGBA64At(x, y)
			return [3]float32{float32(c.R) / 65535, float32(c.G) / 65535, float32(c.B) / 65535}
		}},
		{"nrgba64 alpha dropped", nrgba64, func(x, y int) [3]float32 {
			c := nrgba64.NRGBA64At(x, y)
			return [3]float32{float32(c.R) / 65535, float32(c.G) / 65535, float32(c.B) / 65535}
		}},
		{"nrgba alpha dropped", nrgba, func(x, y int) [3]float32 {
			c := nrgba.NRGBAAt(x, y)
			return [3]float32{float32(c.R) / 255, float32(c.G) / 255, float32(c.B) / 255}
		}},
		{"paletted", pal, func(x, y int) [3]float32 {
			c := [][3]uint8{{10, 20, 30}, {200, 100, 50}, {0, 0, 255}}[(x+y)%3]
			return [3]float32{float32(c[0]) / 255, float32(c[1]) / 255, float32(c[2]) / 255}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := encodePNG(t, dir, strings.ReplaceAll(tc.name, " ", "_")+".png", tc.m)
			im, err := Read(p)
			require.NoError(t, err)
			require.Equal(t, [3]int{3, 3, 5}, [3]int{im.C, im.H, im.W})
			for y := 0; y < 3; y++ {
				for x := 0; x < 5; x++ {
					w := tc.want(x, y)
					for c := 0; c < 3; c++ {
						assert.InDelta(t, w[c], im.Pix[(c*3+y)*5+x], 1e-7, "pixel (%d,%d) channel %d", x, y, c)
					}
				}
			}
		})
	}
}

func TestDecodeJPEGSubsampling(t *testing.T) {
	// Re-encode a crop of chelsea at an odd offset-free size; Go's encoder
	// writes 4:2:0, and a gray JPEG decodes to *image.Gray.
	src, err := Read(filepath.Join(testImages, "chelsea.png"))
	require.NoError(t, err)
	src = Crop(src, 0, 0, 37, 21)
	m := image.NewRGBA(image.Rect(0, 0, src.W, src.H))
	u := ToUint8(src)
	n := src.W * src.H
	for i := 0; i < n; i++ {
		m.Pix[4*i], m.Pix[4*i+1], m.Pix[4*i+2], m.Pix[4*i+3] = u[i], u[n+i], u[2*n+i], 255
	}
	gray := image.NewGray(m.Bounds())
	copy(gray.Pix, u[:n])
	for name, mm := range map[string]image.Image{"color": m, "gray": gray} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, jpeg.Encode(&buf, mm, &jpeg.Options{Quality: 90}))
			ref, err := jpeg.Decode(bytes.NewReader(buf.Bytes()))
			require.NoError(t, err)
			im, err := Decode(bytes.NewReader(buf.Bytes()), name+".jpg")
			require.NoError(t, err)
			assert.Equal(t, refRGB8(t, ref), ToUint8(im))
		})
	}
}

func TestDecodeBMP(t *testing.T) {
	tests := []struct{ bmp, ref string }{
		{"bmp_24.bmp", "bmp_ref.png"},
		{"bmp_32.bmp", "bmp_ref.png"},
		{"bmp_8.bmp", "bmp_8_ref.png"},
		{"bmp_8gray.bmp", "bmp_8gray_ref.png"},
	}
	for _, tc := range tests {
		t.Run(tc.bmp, func(t *testing.T) {
			got, err := Read(filepath.Join("testdata", tc.bmp))
			require.NoError(t, err)
			want, err := Read(filepath.Join("testdata", tc.ref))
			require.NoError(t, err)
			assert.Equal(t, [3]int{want.C, want.H, want.W}, [3]int{got.C, got.H, got.W})
			assert.Equal(t, ToUint8(want), ToUint8(got))
		})
	}
}

// makeBMP32 builds a top-down 32-bit BI_BITFIELDS BMP with a V4 header (as
// some tools write), for the variants Pillow does not produce.
func makeBMP32(w, h int, bgra func(x, y int) [4]byte) []byte {
	const hdr = 14 + 108
	le := binary.LittleEndian
	b := make([]byte, hdr+4*w*h)
	copy(b, "BM")
	le.PutUint32(b[2:], uint32(len(b)))
	le.PutUint32(b[10:], hdr)
	le.PutUint32(b[14:], 108)
	le.PutUint32(b[18:], uint32(int32(w)))
	le.PutUint32(b[22:], uint32(int32(-h))) // negative: top-down
	le.PutUint16(b[26:], 1)
	le.PutUint16(b[28:], 32)
	le.PutUint32(b[30:], 3)
	le.PutUint32(b[54:], 0xff0000)
	le.PutUint32(b[58:], 0xff00)
	le.PutUint32(b[62:], 0xff)
	le.PutUint32(b[66:], 0xff000000)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := bgra(x, y)
			copy(b[hdr+4*(y*w+x):], p[:])
		}
	}
	return b
}

func TestDecodeBMPTopDownBitfields(t *testing.T) {
	data := makeBMP32(3, 2, func(x, y int) [4]byte { return [4]byte{byte(x), byte(y), byte(10 * x), 0} })
	im, err := Decode(bytes.NewReader(data), "td.bmp")
	require.NoError(t, err)
	u := ToUint8(im)
	// Planar R, G, B for rows y=0,1: R = 10x, G = y, B = x.
	assert.Equal(t, []uint8{0, 10, 20, 0, 10, 20, 0, 0, 0, 1, 1, 1, 0, 1, 2, 0, 1, 2}, u)

	bad := bytes.Clone(data)
	binary.LittleEndian.PutUint32(bad[54:], 0xf800) // 565-style masks
	_, err = Decode(bytes.NewReader(bad), "mask.bmp")
	assert.ErrorContains(t, err, "mask.bmp")
	assert.ErrorContains(t, err, "unsupported BMP")
}

// TestDecodeWebP reads WebP files from golang.org/x/image's test data
// (BSD, The Go Authors; see testdata/README.md): a lossless one matches
// its PNG exactly, a lossy one decodes to its size.
func TestDecodeWebP(t *testing.T) {
	got, err := Read(filepath.Join("testdata", "blue-purple-pink.lossless.webp"))
	require.NoError(t, err)
	want, err := Read(filepath.Join("testdata", "blue-purple-pink.png"))
	require.NoError(t, err)
	assert.Equal(t, [3]int{want.C, want.H, want.W}, [3]int{got.C, got.H, got.W})
	assert.Equal(t, ToUint8(want), ToUint8(got))

	lossy, err := Read(filepath.Join("testdata", "video-001.lossy.webp"))
	require.NoError(t, err)
	assert.Equal(t, [3]int{3, 103, 150}, [3]int{lossy.C, lossy.H, lossy.W})

	b, err := os.ReadFile(filepath.Join("testdata", "video-001.lossy.webp"))
	require.NoError(t, err)
	_, err = Decode(bytes.NewReader(b[:len(b)/2]), "half.webp")
	assert.ErrorContains(t, err, "half.webp")
}

// pngWithSize returns a minimal PNG whose header claims w×h (no pixel data).
func pngWithSize(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		return p
	}
	chelsea, err := os.ReadFile(filepath.Join(testImages, "chelsea.png"))
	require.NoError(t, err)
	rocket, err := os.ReadFile(filepath.Join(testImages, "rocket.jpg"))
	require.NoError(t, err)
	bmp, err := os.ReadFile("testdata/bmp_24.bmp")
	require.NoError(t, err)
	zeroBMP := bytes.Clone(bmp)
	binary.LittleEndian.PutUint32(zeroBMP[18:], 0)

	tests := []struct {
		name, path, want string
	}{
		{"absent", filepath.Join(dir, "nope.png"), "no such file"},
		{"empty", write("empty.png", nil), "empty file"},
		{"not an image", write("notes.png", []byte("hello, world\n")), "not a PNG, JPEG, BMP or WebP"},
		{"truncated png", write("half.png", chelsea[:len(chelsea)/2]), "truncated"},
		{"truncated jpeg", write("half.jpg", rocket[:len(rocket)/2]), "truncated"},
		{"truncated bmp", write("half.bmp", bmp[:len(bmp)-40]), "truncated"},
		{"zero-size png", write("zero.png", pngWithSize(0, 5)), "zero-size"},
		{"zero-size bmp", write("zero.bmp", zeroBMP), "zero-size"},
		{"huge png header", write("bomb.png", pngWithSize(1<<20, 1<<20)), "too large"},
		{"directory", dir, "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			im, err := Read(tc.path)
			require.Error(t, err)
			assert.Nil(t, im)
			msg := err.Error()
			t.Log(msg)
			assert.Contains(t, msg, tc.path, "error must name the file")
			assert.Contains(t, msg, tc.want)
			assert.NotContains(t, msg, "\n", "error must be one line")
		})
	}
}
