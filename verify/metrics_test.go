package verify

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
)

// sharedData is ../shared/data relative to this package's folder.
var sharedData = filepath.Join("..", "..", "shared", "data")

// solid returns a 3-channel image filled with the 8-bit colour (r, g, b).
func solid(h, w int, r, g, b uint8) *img.Image {
	p := make([]uint8, 3*h*w)
	for i := 0; i < h*w; i++ {
		p[i], p[h*w+i], p[2*h*w+i] = r, g, b
	}
	return img.FromUint8(3, h, w, p)
}

func TestPSNRYKnownMSE(t *testing.T) {
	// A gray step of d on every channel moves Y by d·(65.738+129.057+25.064)/256.
	const ySum = (65.738 + 129.057 + 25.064) / 256
	tests := []struct {
		name  string
		a, b  *img.Image
		shave int
		want  float64
	}{
		{"uniform step 1", solid(8, 8, 100, 100, 100), solid(8, 8, 101, 101, 101), 0, 10 * math.Log10(255*255/(ySum*ySum))},
		{"uniform step 10, shaved", solid(8, 8, 0, 0, 0), solid(8, 8, 10, 10, 10), 2, 10 * math.Log10(255*255/(100*ySum*ySum))},
		{"red only", solid(4, 4, 0, 0, 0), solid(4, 4, 255, 0, 0), 0, 10 * math.Log10(255*255/math.Pow(255*65.738/256, 2))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PSNRY(tc.a, tc.b, tc.shave)
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-9)
		})
	}
}

func TestPSNRYShaveIgnoresBorder(t *testing.T) {
	a := solid(10, 10, 50, 60, 70)
	b := a.Clone()
	// Change one channel value in the border only; interior is equal.
	b.Pix[0] = 1
	p, err := PSNRY(a, b, 1)
	require.NoError(t, err)
	assert.True(t, math.IsInf(p, 1), "border must be shaved, got %v", p)
	p, err = PSNRY(a, b, 0)
	require.NoError(t, err)
	assert.False(t, math.IsInf(p, 0))
	// One pixel with ΔR=205 among 100: MSE = (205·65.738/256)²/100.
	want := 10 * math.Log10(255*255/(math.Pow((255-50)*65.738/256, 2)/100))
	assert.InDelta(t, want, p, 1e-9)
}

func TestPSNRYQuantizesFirst(t *testing.T) {
	a := solid(4, 4, 10, 20, 30)
	b := a.Clone()
	for i := range b.Pix { // less than half a level: same uint8
		b.Pix[i] += 0.4 / 255
	}
	p, err := PSNRY(a, b, 0)
	require.NoError(t, err)
	assert.True(t, math.IsInf(p, 1))
}

func TestMetricsErrors(t *testing.T) {
	a := solid(20, 20, 1, 2, 3)
	tests := []struct {
		name  string
		b     *img.Image
		shave int
	}{
		{"size mismatch", solid(20, 21, 1, 2, 3), 0},
		{"channel mismatch", img.New(1, 20, 20), 0},
		{"negative shave", a, -1},
		{"shave eats image", a, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PSNRY(a, tc.b, tc.shave)
			assert.Error(t, err)
			_, err = SSIMY(a, tc.b, tc.shave)
			assert.Error(t, err)
		})
	}
	_, err := SSIMY(a, a, 5) // 10x10 left: smaller than the 11x11 window
	assert.ErrorContains(t, err, "less than 11")
	_, err = PSNRY(nil, a, 0)
	assert.Error(t, err)
}

func TestSSIMY(t *testing.T) {
	// A textured image: SSIM(x, x) = 1 exactly; noise lowers it; a constant
	// offset on a flat image gives the closed form (2μ1μ2+C1)/(μ1²+μ2²+C1).
	h, w := 32, 40
	p := make([]uint8, 3*h*w)
	for i := range p {
		p[i] = uint8((i*37 + (i/w)*11) % 256)
	}
	x := img.FromUint8(3, h, w, p)
	s, err := SSIMY(x, x, 2)
	require.NoError(t, err)
	assert.Equal(t, 1.0, s)

	noisy := x.Clone()
	for i := range noisy.Pix {
		if i%3 == 0 {
			noisy.Pix[i] = min(noisy.Pix[i]+20.0/255, 1)
		}
	}
	s, err = SSIMY(x, noisy, 0)
	require.NoError(t, err)
	assert.Less(t, s, 1.0)
	assert.Greater(t, s, 0.0)
	s2, err := SSIMY(noisy, x, 0)
	require.NoError(t, err)
	assert.InDelta(t, s, s2, 1e-12, "SSIM is symmetric")

	a, b := solid(16, 16, 100, 100, 100), solid(16, 16, 120, 120, 120)
	const ySum = (65.738 + 129.057 + 25.064) / 256
	m1, m2 := 16+100*ySum, 16+120*ySum
	c1 := math.Pow(0.01*255, 2)
	want := (2*m1*m2 + c1) / (m1*m1 + m2*m2 + c1)
	s, err = SSIMY(a, b, 0)
	require.NoError(t, err)
	assert.InDelta(t, want, s, 1e-9)
}

// TestMetricsMatchNumpyReference pins PSNRY and SSIMY to an independent
// NumPy/SciPy implementation (BasicSR's formulas; scipy.ndimage.correlate
// with the 2-D 11×11 window, 'valid' region) on a committed image: chelsea.png
// cropped to 450×300, Pillow-bicubic down ×2 and back up, shave 2. Pillow
// 9.4 made the images there; ResizeBicubic is byte-exact with it.
func TestMetricsMatchNumpyReference(t *testing.T) {
	hr, err := img.Read(filepath.Join("..", "testdata", "images", "chelsea.png"))
	require.NoError(t, err)
	hr = img.Crop(hr, 0, 0, 450, 300)
	sr := img.ResizeBicubic(img.ResizeBicubic(hr, 225, 150), 450, 300)
	p, err := PSNRY(sr, hr, 2)
	require.NoError(t, err)
	assert.InDelta(t, 35.2502540283, p, 1e-8)
	s, err := SSIMY(sr, hr, 2)
	require.NoError(t, err)
	assert.InDelta(t, 0.9157641996, s, 1e-8)
}

// TestBicubicBaselinePSNR reproduces the bicubic-upscaling numbers of
// ../shared/README.md: Pillow-bicubic LR images upscaled back with
// img.ResizeBicubic, PSNR-Y against HR cropped to a multiple of the scale,
// shave = scale, mean over the set.
func TestBicubicBaselinePSNR(t *testing.T) {
	if _, err := os.Stat(sharedData); err != nil {
		t.Skipf("benchmark data not available (%s: %v); skipping the cross-check against published bicubic PSNR", sharedData, err)
	}
	// wantSSIM (0: unchecked) comes from the same NumPy/SciPy reference as
	// TestMetricsMatchNumpyReference.
	tests := []struct {
		set      string
		scale    int
		want     float64
		wantSSIM float64
	}{
		{"Set5", 2, 33.67, 0.930291}, {"Set14", 2, 30.33, 0}, {"B100", 2, 29.56, 0},
		{"Set5", 4, 28.43, 0.811075}, {"Set14", 4, 26.09, 0}, {"B100", 4, 25.96, 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s_x%d", tc.set, tc.scale), func(t *testing.T) {
			if tc.set == "B100" && testing.Short() {
				t.Skip("B100 (100 images) skipped in -short mode")
			}
			start := time.Now()
			hrs, err := filepath.Glob(filepath.Join(sharedData, tc.set, "*.png"))
			require.NoError(t, err)
			require.NotEmpty(t, hrs, "no HR images in %s", tc.set)
			var sum, ssim float64
			for _, p := range hrs {
				hr, err := img.Read(p)
				require.NoError(t, err)
				lr, err := img.Read(filepath.Join(sharedData, fmt.Sprintf("%s_LRbicx%d", tc.set, tc.scale), filepath.Base(p)))
				require.NoError(t, err)
				hr = img.Crop(hr, 0, 0, hr.W/tc.scale*tc.scale, hr.H/tc.scale*tc.scale)
				require.Equal(t, [2]int{hr.W, hr.H}, [2]int{lr.W * tc.scale, lr.H * tc.scale}, p)
				sr := img.ResizeBicubic(lr, hr.W, hr.H)
				v, err := PSNRY(sr, hr, tc.scale)
				require.NoError(t, err)
				sum += v
				s, err := SSIMY(sr, hr, tc.scale)
				require.NoError(t, err)
				ssim += s
			}
			mean := sum / float64(len(hrs))
			t.Logf("%s x%d: mean PSNR-Y %.4f dB, SSIM-Y %.4f over %d images (%v)", tc.set, tc.scale, mean, ssim/float64(len(hrs)), len(hrs), time.Since(start).Round(time.Millisecond))
			assert.InDelta(t, tc.want, mean, 0.01)
			if tc.wantSSIM != 0 {
				assert.InDelta(t, tc.wantSSIM, ssim/float64(len(hrs)), 1e-6)
			}
		})
	}
}

func TestMetricsGrayEqualsReplicatedRGB(t *testing.T) {
	g1, g2 := img.New(1, 16, 16), img.New(1, 16, 16)
	for i := range g1.Pix {
		g1.Pix[i], g2.Pix[i] = float32(i%200)/255, float32((i*7)%256)/255
	}
	rgb := func(g *img.Image) *img.Image {
		out := img.New(3, g.H, g.W)
		for c := 0; c < 3; c++ {
			copy(out.Pix[c*g.H*g.W:], g.Pix)
		}
		return out
	}
	p1, err := PSNRY(g1, g2, 1)
	require.NoError(t, err)
	p3, err := PSNRY(rgb(g1), rgb(g2), 1)
	require.NoError(t, err)
	assert.Equal(t, p3, p1)
	s1, err := SSIMY(g1, g2, 1)
	require.NoError(t, err)
	s3, err := SSIMY(rgb(g1), rgb(g2), 1)
	require.NoError(t, err)
	assert.Equal(t, s3, s1)
}
