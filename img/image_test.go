package img

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refQuantize8 is the definition Quantize8 must match.
func refQuantize8(v float32) uint8 {
	f := math.Max(0, math.Min(1, float64(v)))
	if math.IsNaN(float64(v)) {
		return 0
	}
	return uint8(math.Round(f * 255))
}

func TestQuantize8(t *testing.T) {
	var vals []float32
	for k := 0; k <= 255; k++ {
		for _, x := range []float32{float32(k) / 255, (float32(k) + 0.5) / 255} {
			vals = append(vals, x, math.Nextafter32(x, 0), math.Nextafter32(x, 2))
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 100000; i++ {
		vals = append(vals, r.Float32()*1.2-0.1)
	}
	vals = append(vals, -1, 0, 1, 2, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-30)
	for _, v := range vals {
		require.Equal(t, refQuantize8(v), Quantize8(v), "value %v", v)
	}
}

func TestUint8RoundTrip(t *testing.T) {
	p := make([]uint8, 3*4*5)
	for i := range p {
		p[i] = uint8(i * 17)
	}
	im := FromUint8(3, 4, 5, p)
	assert.Equal(t, [3]int{3, 4, 5}, [3]int{im.C, im.H, im.W})
	assert.Equal(t, p, ToUint8(im))
	assert.Panics(t, func() { FromUint8(3, 4, 5, p[:10]) })
}

func TestCropAndClone(t *testing.T) {
	p := make([]uint8, 2*3*4) // C=2, H=3, W=4; value = 100c + 10y + x
	for c := 0; c < 2; c++ {
		for y := 0; y < 3; y++ {
			for x := 0; x < 4; x++ {
				p[(c*3+y)*4+x] = uint8(100*c + 10*y + x)
			}
		}
	}
	im := FromUint8(2, 3, 4, p)
	tests := []struct {
		name       string
		x, y, w, h int
		want       []uint8
		wantW      int
		wantH      int
	}{
		{"inside", 1, 1, 2, 2, []uint8{11, 12, 21, 22, 111, 112, 121, 122}, 2, 2},
		{"past the edge is clipped", 3, 2, 5, 5, []uint8{23, 123}, 1, 1},
		{"negative origin is clipped", -1, -1, 2, 2, []uint8{0, 100}, 1, 1},
		{"outside is empty", 10, 10, 2, 2, []uint8{}, 0, 0},
		{"whole", 0, 0, 4, 3, p, 4, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Crop(im, tc.x, tc.y, tc.w, tc.h)
			assert.Equal(t, [3]int{2, tc.wantH, tc.wantW}, [3]int{c.C, c.H, c.W})
			assert.Equal(t, tc.want, ToUint8(c))
		})
	}
	cl := im.Clone()
	cl.Pix[0] = 1
	assert.Equal(t, float32(0), im.Pix[0], "Clone must not alias")
	c := Crop(im, 0, 0, 4, 3)
	c.Pix[0] = 1
	assert.Equal(t, float32(0), im.Pix[0], "Crop must copy")
}
