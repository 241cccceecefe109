package calib

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
)

// testImages holds chelsea.png (451x300 RGB), brick.png (512x512 gray) and
// rocket.jpg (640x427); they are committed, so these tests always run.
const testImages = "../testdata/images"

func listTestImages(t *testing.T) []string {
	t.Helper()
	paths, err := img.List(testImages)
	require.NoError(t, err)
	return paths
}

func TestPatchesDeterministicAndSpread(t *testing.T) {
	paths := listTestImages(t)
	o := PatchOptions{Scale: 2, Size: 48, Count: 7, Seed: 1}
	a, err := Patches(paths, o, func(s string) { t.Errorf("unexpected warning: %s", s) })
	require.NoError(t, err)
	require.Len(t, a, 7)
	for i, p := range a {
		require.Equal(t, [3]int{3, 48, 48}, [3]int{p.C, p.H, p.W}, "patch %d", i)
		plane := p.H * p.W
		grayish := assert.ObjectsAreEqual(p.Pix[:plane], p.Pix[plane:2*plane]) && assert.ObjectsAreEqual(p.Pix[:plane], p.Pix[2*plane:])
		// Round-robin over sorted paths: brick (gray) gets patches 0, 3, 6.
		assert.Equal(t, i%3 == 0, grayish, "patch %d from image %d", i, i%3)
	}
	b, err := Patches(paths, o, nil)
	require.NoError(t, err)
	assert.Equal(t, a, b, "same seed, same patches")

	o.Seed = 2
	c, err := Patches(paths, o, nil)
	require.NoError(t, err)
	assert.NotEqual(t, a, c, "different seeds must give different patches")
}

// findCrop returns the position of p inside src, or (-1, -1).
func findCrop(src, p *img.Image) (int, int) {
	match := func(x, y int) bool {
		for c := 0; c < p.C; c++ {
			for r := 0; r < p.H; r++ {
				a := src.Pix[(c*src.H+y+r)*src.W+x:][:p.W]
				b := p.Pix[(c*p.H+r)*p.W:][:p.W]
				for i := range b {
					if a[i] != b[i] {
						return false
					}
				}
			}
		}
		return true
	}
	for y := 0; y+p.H <= src.H; y++ {
		for x := 0; x+p.W <= src.W; x++ {
			if match(x, y) {
				return x, y
			}
		}
	}
	return -1, -1
}

func TestPatchesAreCropsOfTheBicubicLR(t *testing.T) {
	chelsea := filepath.Join(testImages, "chelsea.png")
	hr, err := img.Read(chelsea)
	require.NoError(t, err)
	for _, scale := range []int{3, 4} {
		t.Run(fmt.Sprintf("x%d", scale), func(t *testing.T) {
			w, h := hr.W/scale, hr.H/scale
			lr := img.ResizeBicubic(img.Crop(hr, 0, 0, w*scale, h*scale), w, h)
			ps, err := Patches([]string{chelsea}, PatchOptions{Scale: scale, Size: 24, Count: 3, Seed: 9}, nil)
			require.NoError(t, err)
			for i, p := range ps {
				x, y := findCrop(lr, p)
				assert.GreaterOrEqual(t, x, 0, "patch %d is not a crop of the LR image", i)
				assert.GreaterOrEqual(t, y, 0, "patch %d is not a crop of the LR image", i)
			}
		})
	}
	t.Run("LR images are used as they are", func(t *testing.T) {
		ps, err := Patches([]string{chelsea}, PatchOptions{Size: 32, Count: 2, Seed: 5, LR: true}, nil)
		require.NoError(t, err)
		for i, p := range ps {
			x, _ := findCrop(hr, p)
			assert.GreaterOrEqual(t, x, 0, "patch %d is not a crop of the image", i)
		}
	})
}

func TestPatchesCountSmallerThanImages(t *testing.T) {
	paths := listTestImages(t)
	// Count 1: only the first image (brick) is read; a corrupt later file is not touched.
	dir := t.TempDir()
	bad := filepath.Join(dir, "zz_bad.png")
	require.NoError(t, os.WriteFile(bad, []byte("not a png"), 0o644))
	ps, err := Patches(append(paths, bad), PatchOptions{Scale: 4, Size: 16, Count: 1, Seed: 3}, nil)
	require.NoError(t, err)
	require.Len(t, ps, 1)
}

// writePNG writes a w×h mid-gray RGB PNG.
func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	im := img.New(3, h, w)
	for i := range im.Pix {
		im.Pix[i] = 0.5
	}
	require.NoError(t, img.WritePNG(path, im))
}

func TestPatchesSmallImages(t *testing.T) {
	dir := t.TempDir()
	chelsea, err := os.ReadFile(filepath.Join(testImages, "chelsea.png"))
	require.NoError(t, err)
	big := filepath.Join(dir, "a_big.png")
	require.NoError(t, os.WriteFile(big, chelsea, 0o644))
	tiny := filepath.Join(dir, "b_tiny.png")
	writePNG(t, tiny, 10, 10) // LR 5x5: skipped
	mid := filepath.Join(dir, "c_mid.png")
	writePNG(t, mid, 60, 40) // LR 30x20 vs 32: used whole along the short side
	one := filepath.Join(dir, "d_one.png")
	writePNG(t, one, 1, 1) // smaller than the scale: skipped

	var warnings []string
	ps, src, err := PatchesFrom([]string{big, tiny, mid, one}, PatchOptions{Scale: 2, Size: 32, Count: 4, Seed: 1}, func(s string) { warnings = append(warnings, s) })
	require.NoError(t, err)
	require.Len(t, ps, 4)
	assert.Equal(t, []int{0, 2, 0, 2}, src, "each patch names its image, skipped ones counted")
	require.Len(t, warnings, 3)
	assert.Contains(t, warnings[0], tiny)
	assert.Contains(t, warnings[0], "skipping")
	assert.Contains(t, warnings[1], mid)
	assert.Contains(t, warnings[2], one)
	sizes := make([][2]int, len(ps))
	for i, p := range ps {
		sizes[i] = [2]int{p.W, p.H}
	}
	assert.Equal(t, [][2]int{{32, 32}, {30, 20}, {32, 32}, {30, 20}}, sizes)

	_, _, _, _, _, err = Batch(ps)
	assert.ErrorContains(t, err, "patch 1")

	_, err = Patches([]string{tiny, one}, PatchOptions{Scale: 2, Size: 32, Count: 4}, nil)
	assert.ErrorContains(t, err, "large enough")
}

func TestPatchesErrors(t *testing.T) {
	paths := listTestImages(t)
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.png")
	require.NoError(t, os.WriteFile(corrupt, []byte("\x89PNG\r\n\x1a\nshort"), 0o644))
	tests := []struct {
		name  string
		paths []string
		o     PatchOptions
		want  string
	}{
		{"unreadable image", []string{paths[0], corrupt}, PatchOptions{Scale: 2, Size: 16, Count: 4}, corrupt},
		{"missing image", []string{filepath.Join(dir, "gone.png")}, PatchOptions{Scale: 2, Size: 16, Count: 1}, "gone.png"},
		{"no paths", nil, PatchOptions{Scale: 2, Size: 16, Count: 1}, "no images"},
		{"zero size", paths, PatchOptions{Scale: 2, Count: 1}, "patch size"},
		{"zero count", paths, PatchOptions{Scale: 2, Size: 16}, "patch count"},
		{"zero scale", paths, PatchOptions{Size: 16, Count: 1}, "scale"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Patches(tc.paths, tc.o, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestBatch(t *testing.T) {
	a, b := img.New(2, 2, 3), img.New(2, 2, 3)
	for i := range a.Pix {
		a.Pix[i], b.Pix[i] = float32(i), float32(100+i)
	}
	data, n, c, h, w, err := Batch([]*img.Image{a, b})
	require.NoError(t, err)
	assert.Equal(t, [4]int{2, 2, 2, 3}, [4]int{n, c, h, w})
	assert.Equal(t, append(append([]float32{}, a.Pix...), b.Pix...), data)

	_, _, _, _, _, err = Batch(nil)
	assert.Error(t, err)
	_, _, _, _, _, err = Batch([]*img.Image{a, img.New(3, 2, 3)})
	assert.ErrorContains(t, err, "patch 1")
	_, _, _, _, _, err = Batch([]*img.Image{a, nil})
	assert.ErrorContains(t, err, "nil")
}
