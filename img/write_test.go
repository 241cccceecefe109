package img

import (
	"bytes"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWritePNGRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []int{1, 3} {
		p := make([]uint8, c*9*13)
		for i := range p {
			p[i] = uint8(i*31 + i/13)
		}
		im := FromUint8(c, 9, 13, p)
		path := filepath.Join(dir, "out.png")
		require.NoError(t, WritePNG(path, im))
		back, err := Read(path)
		require.NoError(t, err)
		require.Equal(t, [3]int{3, 9, 13}, [3]int{back.C, back.H, back.W})
		got := ToUint8(back)
		for ch := 0; ch < 3; ch++ {
			want := p
			if c == 3 {
				want = p[ch*9*13 : (ch+1)*9*13]
			}
			assert.Equal(t, want, got[ch*9*13:(ch+1)*9*13], "channels=%d, channel %d", c, ch)
		}
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		assert.Len(t, entries, 1, "no temporary file may be left behind")
	}
}

func TestWritePNGClipsAndRounds(t *testing.T) {
	im := New(1, 1, 6)
	copy(im.Pix, []float32{-0.3, 1.7, float32(math.NaN()), 127.5 / 255, 0.2 / 255, 254.6 / 255})
	path := filepath.Join(t.TempDir(), "clip.png")
	require.NoError(t, WritePNG(path, im))
	back, err := Read(path)
	require.NoError(t, err)
	assert.Equal(t, []uint8{0, 255, 0, 128, 0, 255}, ToUint8(back)[:6])
}

func TestWritePNGErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		im   *Image
	}{
		{"missing folder", filepath.Join(dir, "no", "such", "x.png"), New(3, 2, 2)},
		{"two channels", filepath.Join(dir, "c2.png"), New(2, 2, 2)},
		{"empty image", filepath.Join(dir, "e.png"), New(3, 0, 0)},
		{"short buffer", filepath.Join(dir, "s.png"), &Image{C: 3, H: 2, W: 2, Pix: make([]float32, 5)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := WritePNG(tc.path, tc.im)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.path)
			_, statErr := os.Stat(tc.path)
			assert.True(t, os.IsNotExist(statErr), "no partial file")
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no temporary file may be left behind")
}

func TestFormatOf(t *testing.T) {
	tests := []struct {
		path    string
		want    Format
		wantErr string
	}{
		{"out.png", PNG, ""},
		{"dir.v2/OUT.PNG", PNG, ""},
		{"out.jpg", JPEG, ""},
		{"out.JPEG", JPEG, ""},
		{"out.bmp", BMP, ""},
		{"out.webp", "", "out.webp: cannot write .webp images"},
		{"out.tiff", "", "cannot write .tiff"},
		{"out", "", "out: no file extension"},
		{"dir.png/out", "", "no file extension"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got, err := FormatOf(tc.path)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				assert.ErrorContains(t, err, ".png, .jpg, .jpeg or .bmp")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestWriteFormats: Write encodes what the name asks for; PNG and BMP
// round-trip exactly (BMP through golang.org/x/image/bmp both ways), JPEG
// is a JPEG of the asked quality, close to the image.
func TestWriteFormats(t *testing.T) {
	photo, err := Read(filepath.Join(testImages, "chelsea.png"))
	require.NoError(t, err)
	src := Crop(photo, 150, 60, 64, 48)
	dir := t.TempDir()
	tests := []struct {
		name    string
		quality int
		magic   string
		exact   bool
	}{
		{"out.png", 0, "\x89PNG", true},
		{"out.bmp", 0, "BM", true},
		{"out.BMP", 0, "BM", true},
		{"out.jpg", 0, "\xff\xd8", false},
		{"out.jpeg", 60, "\xff\xd8", false},
	}
	var sizes []int
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			require.NoError(t, Write(path, src, WriteOptions{Quality: tc.quality}))
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.True(t, bytes.HasPrefix(b, []byte(tc.magic)), "%s starts with %q", tc.name, b[:4])
			back, err := Read(path)
			require.NoError(t, err)
			require.Equal(t, [3]int{3, src.H, src.W}, [3]int{back.C, back.H, back.W})
			if tc.exact {
				assert.Equal(t, ToUint8(src), ToUint8(back))
				return
			}
			_, err = jpeg.Decode(bytes.NewReader(b))
			require.NoError(t, err, "a JPEG decoder reads it")
			sizes = append(sizes, len(b))
			var se float64
			for i, v := range ToUint8(back) {
				d := float64(v) - float64(ToUint8(src)[i])
				se += d * d
			}
			psnr := 10 * math.Log10(255*255/(se/float64(len(src.Pix))))
			assert.Greater(t, psnr, 30.0, "quality %d", tc.quality)
		})
	}
	require.Len(t, sizes, 2)
	assert.Greater(t, sizes[0], sizes[1], "quality 95 (the default) takes more bytes than 60")

	gray := FromUint8(1, 3, 5, []uint8{0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 255})
	p := filepath.Join(dir, "gray.bmp")
	require.NoError(t, Write(p, gray, WriteOptions{}))
	back, err := Read(p)
	require.NoError(t, err)
	assert.Equal(t, append(append(ToUint8(gray), ToUint8(gray)...), ToUint8(gray)...), ToUint8(back))

	for _, tc := range []struct {
		path    string
		o       WriteOptions
		wantErr string
	}{
		{filepath.Join(dir, "x.webp"), WriteOptions{}, "cannot write .webp"},
		{filepath.Join(dir, "x"), WriteOptions{}, "no file extension"},
		{filepath.Join(dir, "q.jpg"), WriteOptions{Quality: 101}, "JPEG quality 101"},
	} {
		err := Write(tc.path, src, tc.o)
		assert.ErrorContains(t, err, tc.path)
		assert.ErrorContains(t, err, tc.wantErr)
		assert.NoFileExists(t, tc.path)
	}
}
