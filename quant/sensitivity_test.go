package quant

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSpearman(t *testing.T) {
	assert.InDelta(t, 1, spearman([]float64{1, 2, 3, 4}, []float64{10, 20, 30, 400}), 1e-12, "monotone")
	assert.InDelta(t, -1, spearman([]float64{1, 2, 3}, []float64{3, 2, 1}), 1e-12)
	// One swapped pair of four: Σd² = 2, ρ = 1 − 6·2/(4·(16−1)) = 0.8.
	assert.InDelta(t, 0.8, spearman([]float64{1, 2, 3, 4}, []float64{1, 3, 2, 4}), 1e-12)
	// With ties (average ranks): Pearson of ranks [1 2.5 2.5 4] and [1 2 3 4] = 4.5/√(4.5·5) = 0.9487.
	assert.InDelta(t, 4.5/math.Sqrt(4.5*5), spearman([]float64{1, 5, 5, 9}, []float64{1, 2, 3, 4}), 1e-12)
	assert.Equal(t, []float64{1, 2.5, 2.5, 4}, ranks([]float64{1, 5, 5, 9}), "ties share the average rank")
	assert.Zero(t, spearman([]float64{1, 1}, []float64{2, 3}), "constant: no correlation")
}

func TestScores(t *testing.T) {
	ls := []LayerSensitivity{{InputStd: 1}, {InputStd: 2}, {InputStd: 3}}
	scores(ls)
	var sum float64
	for _, l := range ls {
		sum += l.Score
	}
	assert.InDelta(t, 1, sum, 1e-12)
	assert.InDelta(t, math.Exp(-1), ls[0].Score/ls[1].Score, 1e-12, "softmax ratio")
	big := []LayerSensitivity{{InputStd: 1}, {InputStd: 1000}}
	scores(big)
	assert.InDelta(t, 1, big[1].Score, 1e-12, "no overflow on large stds")
	assert.False(t, math.IsNaN(big[0].Score))
}
