package gtune

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDihedralCrop: the 8 views of a crop are its flips and transposes,
// each a different arrangement of the same pixels, view 0 the crop itself.
func TestDihedralCrop(t *testing.T) {
	const c, h, w, n, r0, c0 = 2, 5, 6, 3, 1, 2
	src := make([]float32, c*h*w)
	for i := range src {
		src[i] = float32(i)
	}
	at := func(ch, r, q int) float32 { return src[(ch*h+r0+r)*w+c0+q] }
	want := map[int]func(ch, r, q int) float32{
		0: func(ch, r, q int) float32 { return at(ch, r, q) },
		1: func(ch, r, q int) float32 { return at(ch, n-1-r, q) },
		2: func(ch, r, q int) float32 { return at(ch, r, n-1-q) },
		4: func(ch, r, q int) float32 { return at(ch, q, r) },
		7: func(ch, r, q int) float32 { return at(ch, n-1-q, n-1-r) },
	}
	seen := map[[c * n * n]float32]bool{}
	for v := range 8 {
		dst := make([]float32, c*n*n)
		dihedralCrop(dst, src, c, h, w, r0, c0, n, v)
		if f, ok := want[v]; ok {
			for ch := range c {
				for r := range n {
					for q := range n {
						require.Equal(t, f(ch, r, q), dst[(ch*n+r)*n+q], "view %d at %d,%d,%d", v, ch, r, q)
					}
				}
			}
		}
		seen[[c * n * n]float32(dst)] = true
	}
	assert.Len(t, seen, 8, "8 different views")
}

// TestBatchReference: a batch's targets are what the reference computes
// on the batch's crops.
func TestBatchReference(t *testing.T) {
	d := Data{In: [3]int{1, 8, 8}, Scale: 2}
	for k := range 3 {
		x := make([]float32, 64)
		for i := range x {
			x[i] = float32(k*100 + i)
		}
		d.Inputs = append(d.Inputs, x)
	}
	calls := 0
	d.Reference = func(x []float32, shape []int) ([]float32, error) {
		calls++
		require.Equal(t, []int{2, 1, 4, 4}, shape)
		y := make([]float32, 2*8*8) // nearest 2x upscale
		for i := range y {
			k, r, q := i/64, i%64/8, i%8
			y[i] = x[k*16+r/2*4+q/2]
		}
		return y, nil
	}
	x, y, err := batch(d, 2, 4, rand.New(rand.NewPCG(1, 2)))
	require.NoError(t, err)
	assert.Equal(t, 1, calls)
	assert.Equal(t, []int{2, 1, 8, 8}, y.shape)
	assert.Equal(t, x.data[0], y.data[0])
	assert.Equal(t, x.data[31], y.data[127])

	d.Reference = func(x []float32, shape []int) ([]float32, error) { return make([]float32, 3), nil }
	_, _, err = batch(d, 2, 4, rand.New(rand.NewPCG(1, 2)))
	assert.EqualError(t, err, "gtune: the reference network gave 3 values for 2 crops of 8x8")
}
