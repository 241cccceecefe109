package verify

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
)

func TestLoadLR(t *testing.T) {
	dir := t.TempDir()
	src, err := img.Read(filepath.Join(testImage, "chelsea.png"))
	require.NoError(t, err)
	p := filepath.Join(dir, "odd.png")
	require.NoError(t, img.WritePNG(p, img.Crop(src, 10, 20, 45, 31)))

	lr, gt, err := LoadLR(p, 1, false)
	require.NoError(t, err)
	assert.Nil(t, gt)
	assert.Equal(t, [2]int{45, 31}, [2]int{lr.W, lr.H})

	// HR: cropped at the top-left to a multiple of the scale, then
	// downscaled with the Pillow-exact bicubic.
	lr, gt, err = LoadLR(p, 4, true)
	require.NoError(t, err)
	assert.Equal(t, [2]int{44, 28}, [2]int{gt.W, gt.H})
	assert.Equal(t, [2]int{11, 7}, [2]int{lr.W, lr.H})
	full, _ := img.Read(p)
	assert.Equal(t, img.Crop(full, 0, 0, 44, 28).Pix, gt.Pix)
	assert.Equal(t, img.ResizeBicubic(gt, 11, 7).Pix, lr.Pix)

	_, _, err = LoadLR(p, 32, true)
	assert.ErrorContains(t, err, "smaller than the scale 32")
	_, _, err = LoadLR(filepath.Join(dir, "none.png"), 2, true)
	assert.ErrorContains(t, err, "none.png")
}

// TestLoadLRMatchesBenchmarkLR: HR mode makes exactly the published LR
// inputs of the SR benchmarks (Pillow BICUBIC after the top-left crop),
// so its PSNR numbers are comparable with the literature's.
func TestLoadLRMatchesBenchmarkLR(t *testing.T) {
	hrDir := filepath.Join(sharedData, "Set5")
	if _, err := os.Stat(hrDir); err != nil {
		t.Skipf("shared benchmark data not found at %s: %v", hrDir, err)
	}
	paths, err := img.List(hrDir)
	require.NoError(t, err)
	for _, scale := range []int{2, 3, 4} {
		for _, p := range paths {
			lrPath := filepath.Join(sharedData, fmt.Sprintf("Set5_LRbicx%d", scale), filepath.Base(p))
			want, err := img.Read(lrPath)
			require.NoError(t, err)
			lr, gt, err := LoadLR(p, scale, true)
			require.NoError(t, err)
			assert.Equal(t, [2]int{lr.W * scale, lr.H * scale}, [2]int{gt.W, gt.H})
			assert.Equal(t, img.ToUint8(want), img.ToUint8(lr), "%s x%d", p, scale)
		}
	}
}
