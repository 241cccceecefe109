package verify

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/ort"
)

func TestSummarise(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want LatencyStats
	}{
		{"one", []float64{3}, LatencyStats{Runs: 1, MedianMS: 3, MinMS: 3, MaxMS: 3}},
		{"odd, unsorted", []float64{9, 1, 5}, LatencyStats{Runs: 3, MedianMS: 5, MinMS: 1, MaxMS: 9}},
		{"even takes the mean of the middle two", []float64{4, 1, 100, 2}, LatencyStats{Runs: 4, MedianMS: 3, MinMS: 1, MaxMS: 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, summarise(tc.in)) })
	}
}

func TestLatencyInput(t *testing.T) {
	im, err := img.Read(testImage + "/chelsea.png") // 451×300
	require.NoError(t, err)
	in, err := LatencyInput(im, 32, 255)
	require.NoError(t, err)
	assert.Equal(t, []int64{1, 3, 32, 32}, in.Shape)
	require.Len(t, in.Data, 3*32*32)
	lo, hi := in.Data[0], in.Data[0]
	for _, v := range in.Data {
		lo, hi = min(lo, v), max(hi, v)
	}
	assert.GreaterOrEqual(t, lo, float32(0))
	assert.LessOrEqual(t, hi, float32(255))
	assert.Greater(t, hi-lo, float32(50), "a real image has contrast; got %g..%g", lo, hi)

	// A square of the requested size is taken as it is (centred crop only).
	sq := img.Crop(im, 0, 0, 40, 40)
	in, err = LatencyInput(sq, 40, 1)
	require.NoError(t, err)
	assert.Equal(t, sq.Pix, in.Data)

	_, err = LatencyInput(im, 0, 1)
	assert.ErrorContains(t, err, "size 0")
	_, err = LatencyInput(nil, 8, 1)
	assert.Error(t, err)
}

func TestLatencyRuns(t *testing.T) {
	requireORT(t)
	s, err := ort.NewSession(tinyFloatModel(), "tiny", ort.Options{Threads: 1})
	require.NoError(t, err)
	defer s.Close()
	q, err := ort.NewSession(tinyQDQModel(), "tinyq", ort.Options{Threads: 1})
	require.NoError(t, err)
	defer q.Close()
	in := &ort.Tensor{Shape: []int64{1, 3, 16, 16}, Data: make([]float32, 3*16*16)}

	st, err := Latency(context.Background(), s, in, 3)
	require.NoError(t, err)
	assert.Equal(t, 3, st.Runs)
	assert.Greater(t, st.MedianMS, 0.0)
	assert.LessOrEqual(t, st.MinMS, st.MedianMS)
	assert.LessOrEqual(t, st.MedianMS, st.MaxMS)

	a, b, err := LatencyPair(context.Background(), s, q, in, 2)
	require.NoError(t, err)
	assert.Equal(t, 2, a.Runs)
	assert.Equal(t, 2, b.Runs)

	_, err = Latency(context.Background(), s, in, 0)
	assert.ErrorContains(t, err, "0 runs")
	_, err = Latency(context.Background(), s, nil, 1)
	assert.Error(t, err)
	bad := &ort.Tensor{Shape: []int64{1, 3, 4, 4}, Data: make([]float32, 5)}
	_, err = Latency(context.Background(), s, bad, 1)
	assert.ErrorContains(t, err, "tiny")
}
