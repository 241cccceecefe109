package chart

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bitsLines is PSNR against activation bits for four methods with the FP32
// level, the chart `srq bench --report` draws per model.
func bitsLines() Lines {
	bits := []float64{4, 6, 8}
	return Lines{Title: "edsr_x4: Set5 PSNR-Y against activation bits", XLabel: "activation bits", YLabel: "PSNR-Y (dB)", XTicks: bits,
		Series: []Series{
			{"minmax", bits, []float64{27.1, 31.2, 32.40}},
			{"percentile", bits, []float64{29.5, 32.0, 32.42}},
			{"mse", bits, []float64{30.1, 32.1, 32.41}},
			{"dual", bits, []float64{31.0, 32.3, 32.43}},
		},
		Levels: []Level{{32.46, "FP32"}}}
}

func TestLinesPNG(t *testing.T) {
	one := Lines{Title: "one point", Series: []Series{{"only", []float64{8}, []float64{30}}}}
	for _, tc := range []struct {
		name   string
		l      Lines
		series int
	}{
		{"methods against bits", bitsLines(), 4},
		{"a single point", one, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := PNG(tc.l, Size{W: 720, H: 420})
			require.NoError(t, err)
			im, err := png.Decode(bytes.NewReader(b))
			require.NoError(t, err)
			assert.Equal(t, image.Rect(0, 0, 720, 420), im.Bounds())
			for i := range tc.series {
				assert.True(t, hasColor(im, palette[i]), "series %d drawn", i)
			}
			if len(tc.l.Levels) > 0 {
				assert.True(t, hasColor(im, levelColor), "reference level drawn")
			}
			if dir := os.Getenv("SRQ_CHART_DIR"); dir != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "lines "+tc.name+".png"), b, 0o644))
			}
		})
	}
}

func TestLinesErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Lines
		want string
	}{
		{"no series", Lines{Title: "t"}, `lines "t": no series`},
		{"lengths", Lines{Title: "t", Series: []Series{{"s", []float64{1, 2}, []float64{1}}}}, `series "s" has 2 x and 1 y values`},
		{"empty series", Lines{Title: "t", Series: []Series{{Name: "s"}}}, "0 x and 0 y"},
		{"NaN point", Lines{Title: "t", Series: []Series{{"s", []float64{1}, []float64{math.NaN()}}}}, "point (1, NaN)"},
		{"bad level", Lines{Title: "t", Series: []Series{{"s", []float64{1}, []float64{1}}}, Levels: []Level{{math.Inf(1), "FP32"}}}, `level "FP32"`},
		{"bad tick", Lines{Title: "t", Series: []Series{{"s", []float64{1}, []float64{1}}}, XTicks: []float64{math.NaN()}}, "x tick NaN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PNG(tc.l, Size{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
