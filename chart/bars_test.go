package chart

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// layerBars is a per-layer chart shaped like srq's: 34 Conv names as long
// as an exporter writes them, codes per layer, two forms.
func layerBars() Bars {
	b := Bars{Title: "codes per Conv input", XLabel: "codes"}
	for i := range 34 {
		b.Labels = append(b.Labels, fmt.Sprintf("/body/body.%d/conv%d/Conv", i/2, i%2+1))
		b.Values = append(b.Values, float64(16+14*(i%3)))
		form := "shared-grid"
		if i%5 == 0 {
			form = "two-branch"
		}
		b.Groups = append(b.Groups, form)
	}
	return b
}

func TestBarsPNG(t *testing.T) {
	psnr := Bars{Title: "PSNR-Y with one layer quantized", XLabel: "PSNR-Y (dB)", Labels: []string{"a", "b", "c"}, Values: []float64{41.2, 38.9, 44.0}, Base: 38}
	negative := Bars{Title: "change", Labels: []string{"up", "down"}, Values: []float64{0.3, -0.2}}
	for _, tc := range []struct {
		name   string
		b      Bars
		size   Size
		colors []int // palette entries that must show
	}{
		{"groups with legend", layerBars(), layerBars().FitSize(900), []int{0, 1}},
		{"base above zero", psnr, Size{W: 640, H: 300}, nil},
		{"negative values", negative, Size{W: 400, H: 240}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := PNG(tc.b, tc.size)
			require.NoError(t, err)
			im, err := png.Decode(bytes.NewReader(b))
			require.NoError(t, err)
			assert.Equal(t, image.Rect(0, 0, tc.size.W, tc.size.H), im.Bounds())
			assert.Greater(t, distinctColors(im), 3, "not a blank image")
			if tc.colors == nil {
				assert.True(t, hasColor(im, barColor), "bars drawn in the neutral colour")
			}
			for _, i := range tc.colors {
				assert.True(t, hasColor(im, palette[i]), "group %d drawn", i)
			}
			if dir := os.Getenv("SRQ_CHART_DIR"); dir != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "bars "+tc.name+".png"), b, 0o644))
			}
		})
	}
}

func TestBarsFitSize(t *testing.T) {
	for _, tc := range []struct {
		bars int
		want Size
	}{
		{1, Size{W: 800, H: minSide}},
		{34, Size{W: 800, H: 110 + 34*barRow}},
		{10000, Size{W: 800, H: maxSide}},
	} {
		b := Bars{Labels: make([]string, tc.bars)}
		assert.Equal(t, tc.want, b.FitSize(800), "%d bars", tc.bars)
	}
}

func TestBarsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    Bars
		want string
	}{
		{"no bars", Bars{Title: "t"}, `bars "t": no bars`},
		{"values", Bars{Title: "t", Labels: []string{"a", "b"}, Values: []float64{1}}, "1 values for 2 labels"},
		{"groups", Bars{Title: "t", Labels: []string{"a"}, Values: []float64{1}, Groups: []string{"x", "y"}}, "2 groups for 1 labels"},
		{"NaN value", Bars{Title: "t", Labels: []string{"a"}, Values: []float64{math.NaN()}}, `bar "a" has value NaN`},
		{"infinite base", Bars{Title: "t", Labels: []string{"a"}, Values: []float64{1}, Base: math.Inf(-1)}, "base -Inf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PNG(tc.b, Size{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
