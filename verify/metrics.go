package verify

import (
	"fmt"
	"math"
	"sync"

	"github.com/srquant/srq/img"
)

// lumaY returns the BT.601 "studio swing" luma of the SR literature,
//
//	Y = 16 + (65.738 R + 129.057 G + 25.064 B) / 256,
//
// of im quantized to 8 bits (img.Quantize8, so R, G, B ∈ 0..255), computed in
// float64 without rounding, with a border of shave pixels removed. One
// channel is read as gray (R = G = B). The result is row-major h×w.
func lumaY(im *img.Image, shave int) (y []float64, h, w int) {
	h, w = im.H-2*shave, im.W-2*shave
	y = make([]float64, h*w)
	plane := im.H * im.W
	for r := 0; r < h; r++ {
		for c := 0; c < w; c++ {
			i := (r+shave)*im.W + c + shave
			R := float64(img.Quantize8(im.Pix[i]))
			G, B := R, R
			if im.C == 3 {
				G = float64(img.Quantize8(im.Pix[plane+i]))
				B = float64(img.Quantize8(im.Pix[2*plane+i]))
			}
			y[r*w+c] = 16 + (65.738*R+129.057*G+25.064*B)/256
		}
	}
	return y, h, w
}

// checkPair validates that a and b can be compared on Y with the given shave
// and that at least minSide pixels remain on each side after shaving.
func checkPair(a, b *img.Image, shave, minSide int) error {
	if a == nil || b == nil {
		return fmt.Errorf("metric: nil image")
	}
	if a.C != b.C || a.H != b.H || a.W != b.W {
		return fmt.Errorf("metric: size mismatch %dx%dx%d vs %dx%dx%d", a.C, a.H, a.W, b.C, b.H, b.W)
	}
	if a.C != 1 && a.C != 3 {
		return fmt.Errorf("metric: %d channels; Y needs 1 or 3", a.C)
	}
	if len(a.Pix) != a.C*a.H*a.W || len(b.Pix) != b.C*b.H*b.W {
		return fmt.Errorf("metric: pixel buffer does not match the image size")
	}
	if shave < 0 {
		return fmt.Errorf("metric: negative shave %d", shave)
	}
	if a.H-2*shave < minSide || a.W-2*shave < minSide {
		return fmt.Errorf("metric: %dx%d image with shave %d leaves less than %d pixels per side", a.W, a.H, shave, minSide)
	}
	return nil
}

// PSNRY is the PSNR on the Y channel as SR papers report it: both images are
// quantized to 8 bits, converted to Y (see lumaY), shaved by shave pixels on
// every side, and PSNR = 10·log10(255² / MSE). Identical images give +Inf
// (MSE = 0); callers averaging over a set should treat that case explicitly.
// Images of different sizes, or too small for the shave, are an error.
func PSNRY(a, b *img.Image, shave int) (float64, error) {
	mse, err := MSEY(a, b, shave)
	if err != nil {
		return 0, err
	}
	if mse == 0 {
		return math.Inf(1), nil
	}
	return 10 * math.Log10(255*255/mse), nil
}

// MSEY is the mean squared error behind PSNRY: on the Y channel of both
// images quantized to 8 bits, shaved by shave pixels on every side. Range
// tuning scores candidates with it, so that it optimises what srq verify
// reports.
func MSEY(a, b *img.Image, shave int) (float64, error) {
	if err := checkPair(a, b, shave, 1); err != nil {
		return 0, err
	}
	ya, _, _ := lumaY(a, shave)
	yb, _, _ := lumaY(b, shave)
	var sum float64
	for i, v := range ya {
		d := v - yb[i]
		sum += d * d
	}
	return sum / float64(len(ya)), nil
}

// ssimWin and ssimSigma define the Gaussian window of Wang et al. (2004).
const (
	ssimWin   = 11
	ssimSigma = 1.5
)

// SSIMY is the structural similarity of Wang et al. (2004) on the same Y
// channel as PSNRY, in the form SR code uses (BasicSR's calculate_ssim with
// test_y_channel): an 11×11 Gaussian window with σ = 1.5, K1 = 0.01,
// K2 = 0.03, L = 255, only 'valid' window positions (no padding), and the
// mean of the SSIM map. Identical images give exactly 1. The shaved image
// must be at least 11×11.
func SSIMY(a, b *img.Image, shave int) (float64, error) {
	if err := checkPair(a, b, shave, ssimWin); err != nil {
		return 0, err
	}
	x, h, w := lumaY(a, shave)
	y, _, _ := lumaY(b, shave)
	n := h * w
	xx, yy, xy := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range x {
		xx[i], yy[i], xy[i] = x[i]*x[i], y[i]*y[i], x[i]*y[i]
	}
	g := gaussian(ssimWin, ssimSigma)
	// The five local moments are independent: filter them concurrently.
	var maps [5][]float64
	oh, ow := h-len(g)+1, w-len(g)+1
	var wg sync.WaitGroup
	for i, src := range [5][]float64{x, y, xx, yy, xy} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			maps[i], _, _ = filterValid(src, h, w, g)
		}()
	}
	wg.Wait()
	mu1, mu2, e11, e22, e12 := maps[0], maps[1], maps[2], maps[3], maps[4]
	const (
		c1 = (0.01 * 255) * (0.01 * 255)
		c2 = (0.03 * 255) * (0.03 * 255)
	)
	var sum float64
	for i := 0; i < oh*ow; i++ {
		m1, m2 := mu1[i], mu2[i]
		s11, s22, s12 := e11[i]-m1*m1, e22[i]-m2*m2, e12[i]-m1*m2
		sum += ((2*m1*m2 + c1) * (2*s12 + c2)) / ((m1*m1 + m2*m2 + c1) * (s11 + s22 + c2))
	}
	return sum / float64(oh*ow), nil
}

// gaussian returns the normalised 1-D Gaussian of the given size and σ
// (OpenCV's getGaussianKernel); the 2-D window is its outer product.
func gaussian(size int, sigma float64) []float64 {
	g := make([]float64, size)
	var sum float64
	for i := range g {
		d := float64(i - size/2)
		g[i] = math.Exp(-d * d / (2 * sigma * sigma))
		sum += g[i]
	}
	for i := range g {
		g[i] /= sum
	}
	return g
}

// filterValid correlates the h×w row-major src with the separable window
// g⊗g at every position where the window fits entirely ('valid'), returning
// an (h-k+1)×(w-k+1) map. g must be symmetric and of odd length (a Gaussian),
// so correlation equals convolution and mirrored taps share one multiply.
func filterValid(src []float64, h, w int, g []float64) (out []float64, oh, ow int) {
	k := len(g)
	oh, ow = h-k+1, w-k+1
	half := k / 2
	tmp := make([]float64, h*ow) // horizontal pass
	for r := 0; r < h; r++ {
		row := src[r*w : (r+1)*w]
		dst := tmp[r*ow : (r+1)*ow]
		for c, v := range row[half : half+ow] {
			dst[c] = v * g[half]
		}
		for j := 0; j < half; j++ { // tap-outer order keeps the inner loop bounds-check free
			gj, a, b := g[j], row[j:j+ow], row[k-1-j:k-1-j+ow]
			for c := range dst {
				dst[c] += (a[c] + b[c]) * gj
			}
		}
	}
	out = make([]float64, oh*ow)
	for r := 0; r < oh; r++ {
		dst := out[r*ow : (r+1)*ow]
		for c, v := range tmp[(r+half)*ow : (r+half+1)*ow] {
			dst[c] = v * g[half]
		}
		for j := 0; j < half; j++ {
			gj, a, b := g[j], tmp[(r+j)*ow:(r+j+1)*ow], tmp[(r+k-1-j)*ow:(r+k-j)*ow]
			for c := range dst {
				dst[c] += (a[c] + b[c]) * gj
			}
		}
	}
	return out, oh, ow
}
