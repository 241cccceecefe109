package quant

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSplitValidation: every 4th image by sorted base name is held out,
// at least one, and --val images leave the calibration images whole.
func TestSplitValidation(t *testing.T) {
	on := Config{MaxDrop: 0.05}
	for _, tc := range []struct {
		name     string
		imgs     []string
		cfg      Config
		cal, val []string
		heldOut  bool
		err      string
	}{
		{"off", []string{"a.png"}, Config{}, []string{"a.png"}, nil, false, ""},
		{"every 4th by name", []string{"d/h.png", "d/b.png", "d/a.png", "e/c.png", "d/g.png", "d/f.png", "d/e.png", "d/d.png"}, on,
			[]string{"d/a.png", "d/b.png", "e/c.png", "d/e.png", "d/f.png", "d/g.png"}, []string{"d/d.png", "d/h.png"}, true, ""},
		{"fewer than 4: the last", []string{"b.png", "a.png", "c.png"}, on, []string{"a.png", "b.png"}, []string{"c.png"}, true, ""},
		{"one image", []string{"a.png"}, on, nil, nil, false, "needs at least 2 of them (got 1), or --val"},
		{"--val", []string{"a.png"}, Config{MaxDrop: 0.05, Validation: []string{"v.png"}}, []string{"a.png"}, []string{"v.png"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cal, val, held, err := splitValidation(tc.imgs, tc.cfg)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.cal, cal)
			assert.Equal(t, tc.val, val)
			assert.Equal(t, tc.heldOut, held)
		})
	}
}

// TestUpperBound: the one-sided 90% Student bound on a mean, against
// values computed by hand (t = 1.638 for 3 degrees of freedom).
func TestUpperBound(t *testing.T) {
	assert.InDelta(t, 0.1, upperBound([]float64{0.1}), 1e-12, "one tile: the mean")
	assert.InDelta(t, 2, upperBound([]float64{2, 2, 2}), 1e-12, "no spread")
	xs := []float64{0.02, 0.04, 0.05, 0.09}
	sd := math.Sqrt((0.0009 + 0.0001 + 0 + 0.0016) / 3)
	assert.InDelta(t, 0.05+1.638*sd/2, upperBound(xs), 1e-12)
	many := make([]float64, 40)
	for i := range many {
		many[i] = float64(i % 2)
	}
	assert.InDelta(t, 0.5+1.282*math.Sqrt(40.0/39/4)/math.Sqrt(40), upperBound(many), 1e-12, "beyond the table: the normal quantile")
}

// TestModulePrefixes: the modules a node lies under, from exporter names.
func TestModulePrefixes(t *testing.T) {
	for name, want := range map[string][]string{
		"/body/body.4/conv1/Conv": {"/body", "/body/body.4", "/body/body.4/conv1"},
		"/IMDB3/cca/Mul":          {"/IMDB3", "/IMDB3/cca"},
		"/Add":                    nil,
		"esa.conv1":               {"esa"},
		"fragile":                 nil,
	} {
		assert.Equal(t, want, modulePrefixes(name), name)
	}
}

// TestCropBatches cuts the centre of CHW patches.
func TestCropBatches(t *testing.T) {
	p := make([]float32, 2*4*4)
	for i := range p {
		p[i] = float32(i)
	}
	out, shape := cropBatches([][]float32{p}, [3]int{2, 4, 4}, 2)
	assert.Equal(t, [3]int{2, 2, 2}, shape)
	assert.Equal(t, [][]float32{{5, 6, 9, 10, 21, 22, 25, 26}}, out)
	same, shape := cropBatches([][]float32{p}, [3]int{2, 4, 4}, 8)
	assert.Equal(t, [3]int{2, 4, 4}, shape)
	assert.Equal(t, [][]float32{p}, same)
}
