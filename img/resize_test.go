package img

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sharedData is ../shared/data relative to this package's folder.
var sharedData = filepath.Join("..", "..", "shared", "data")

// TestResizeBicubicPillowFixtures compares with Pillow 9.4 outputs made by
// testdata/gen_pillow.py: non-integer down- and up-scaling, one axis only,
// down to 1x1.
func TestResizeBicubicPillowFixtures(t *testing.T) {
	src, err := Read("testdata/src.png")
	require.NoError(t, err)
	sizes := [][2]int{{20, 14}, {13, 9}, {7, 5}, {1, 1}, {82, 58}, {100, 31}, {41, 10}, {17, 29}, {57, 40}}
	for _, s := range sizes {
		t.Run(fmt.Sprintf("%dx%d", s[0], s[1]), func(t *testing.T) {
			want, err := Read(fmt.Sprintf("testdata/resize_%dx%d.png", s[0], s[1]))
			require.NoError(t, err)
			got := ResizeBicubic(src, s[0], s[1])
			require.Equal(t, [3]int{3, s[1], s[0]}, [3]int{got.C, got.H, got.W})
			assert.Equal(t, ToUint8(want), ToUint8(got), "must be byte-exact with Pillow")
		})
	}
}

// TestResizeBicubicBenchmarkLR checks that HR benchmark images, cropped to a
// multiple of the scale, downscale byte-exactly to the published LR inputs.
func TestResizeBicubicBenchmarkLR(t *testing.T) {
	if _, err := os.Stat(sharedData); err != nil {
		t.Skipf("benchmark data not available (%s: %v); skipping the byte-exact LR check", sharedData, err)
	}
	cases := []struct {
		set    string
		scales []int
	}{
		{"Set5", []int{2, 3, 4}},
		{"Set14", []int{2, 4}},
	}
	for _, c := range cases {
		hrs, err := filepath.Glob(filepath.Join(sharedData, c.set, "*.png"))
		require.NoError(t, err)
		require.NotEmpty(t, hrs)
		for _, p := range hrs {
			hr, err := Read(p)
			require.NoError(t, err)
			for _, s := range c.scales {
				name := fmt.Sprintf("%s/%s/x%d", c.set, filepath.Base(p), s)
				lr, err := Read(filepath.Join(sharedData, fmt.Sprintf("%s_LRbicx%d", c.set, s), filepath.Base(p)))
				require.NoError(t, err, name)
				crop := Crop(hr, 0, 0, hr.W/s*s, hr.H/s*s)
				got := ResizeBicubic(crop, crop.W/s, crop.H/s)
				require.Equal(t, [2]int{lr.W, lr.H}, [2]int{got.W, got.H}, name)
				a, b := ToUint8(got), ToUint8(lr)
				diff := 0
				for i := range a {
					if a[i] != b[i] {
						diff++
					}
				}
				assert.Zero(t, diff, "%s: %d of %d bytes differ from Pillow", name, diff, len(a))
			}
		}
	}
}

func TestResizeBicubicProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rgb := New(3, 33, 47)
	for i := range rgb.Pix {
		rgb.Pix[i] = float32(r.IntN(256)) / 255
	}
	t.Run("same size is the 8-bit image", func(t *testing.T) {
		in := rgb.Clone()
		in.Pix[0] = 0.3 / 255 // not on the 8-bit grid: rounds to 0
		got := ResizeBicubic(in, in.W, in.H)
		want := in.Clone()
		want.Pix[0] = 0
		assert.Equal(t, want.Pix, got.Pix)
	})
	t.Run("channels are independent", func(t *testing.T) {
		got := ResizeBicubic(rgb, 19, 61)
		for c := 0; c < 3; c++ {
			one := &Image{C: 1, H: rgb.H, W: rgb.W, Pix: rgb.Pix[c*rgb.H*rgb.W : (c+1)*rgb.H*rgb.W]}
			g := ResizeBicubic(one, 19, 61)
			assert.Equal(t, g.Pix, got.Pix[c*19*61:(c+1)*19*61])
		}
	})
	t.Run("constant stays constant", func(t *testing.T) {
		in := New(3, 10, 10)
		for i := range in.Pix {
			in.Pix[i] = 77.0 / 255
		}
		for _, s := range [][2]int{{3, 4}, {25, 7}, {40, 40}} {
			got := ResizeBicubic(in, s[0], s[1])
			for _, v := range ToUint8(got) {
				require.Equal(t, uint8(77), v)
			}
		}
	})
	t.Run("degenerate sizes do not panic", func(t *testing.T) {
		assert.Equal(t, 0, len(ResizeBicubic(rgb, 0, 5).Pix))
		assert.Equal(t, 0, len(ResizeBicubic(rgb, -3, -1).Pix))
		got := ResizeBicubic(New(3, 0, 0), 4, 2)
		assert.Equal(t, [3]int{3, 2, 4}, [3]int{got.C, got.H, got.W})
	})
	t.Run("splitting work over goroutines does not change results", func(t *testing.T) {
		big := New(3, 300, 410)
		for i := range big.Pix {
			big.Pix[i] = float32(r.IntN(256)) / 255
		}
		got := ResizeBicubic(big, 137, 100) // 3*100 rows: parallel
		small := Crop(big, 0, 0, 410, 300)
		for c := 0; c < 3; c++ {
			one := &Image{C: 1, H: 300, W: 410, Pix: small.Pix[c*300*410 : (c+1)*300*410]}
			g := ResizeBicubic(one, 137, 100)
			require.Equal(t, g.Pix, got.Pix[c*137*100:(c+1)*137*100])
		}
	})
}

func BenchmarkResizeBicubicDown4(b *testing.B) {
	im := New(3, 512, 512)
	for i := range im.Pix {
		im.Pix[i] = float32(i%251) / 255
	}
	b.ResetTimer()
	for b.Loop() {
		ResizeBicubic(im, 128, 128)
	}
}

func BenchmarkResizeBicubicUp4(b *testing.B) {
	im := New(3, 128, 128)
	for i := range im.Pix {
		im.Pix[i] = float32(i%251) / 255
	}
	b.ResetTimer()
	for b.Loop() {
		ResizeBicubic(im, 512, 512)
	}
}
