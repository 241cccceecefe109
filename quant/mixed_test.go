package quant

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAllocateBits(t *testing.T) {
	// Equal costs: the noisier layer gets the bits; the mean is the budget.
	bits, used := allocateBits([]float64{1e-4, 1e-6, 1e-6}, []float64{1, 1, 1}, 4, 2, 4)
	assert.Equal(t, 12.0, used)
	assert.Greater(t, bits[0], bits[1])
	assert.Equal(t, bits[1], bits[2])
	// A layer that costs 10x as much gets fewer bits for the same noise.
	bits, _ = allocateBits([]float64{1e-5, 1e-5}, []float64{1, 10}, 4, 2, 4)
	assert.Greater(t, bits[0], bits[1])
	// Widths stay in [lo, 8] however large the budget.
	bits, _ = allocateBits([]float64{1, 1}, []float64{1, 1}, 4, 2, 100)
	assert.Equal(t, []int{8, 8}, bits)
	bits, used = allocateBits([]float64{1, 1}, []float64{1, 1}, 4, 2, 2)
	assert.Equal(t, []int{2, 2}, bits)
	assert.Equal(t, 4.0, used)
}
