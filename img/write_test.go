package img

import (
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
