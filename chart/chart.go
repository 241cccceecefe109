// Package chart renders the charts srq's reports need as PNG bytes, with
// gonum.org/v1/plot. Each kind of chart is a plain value (Histogram, Bars,
// Lines) that knows how to lay itself out on a gonum plot; PNG renders any
// of them with one look (sans-serif text, sizes readable at 100% zoom,
// markers in a legend), so adding a kind is one more type with a plot
// method. Nothing here touches the file system:
// callers write the bytes (atomically, see internal/atomicfile).
package chart

import (
	"bytes"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart is a chart PNG can render: Histogram, Bars, Lines.
type Chart interface {
	// plot lays the chart out on a styled, empty plot.
	plot(p *plot.Plot) error
}

// Size is an image size in pixels.
type Size struct{ W, H int }

// DefaultSize suits one chart per image viewed at 100% zoom.
var DefaultSize = Size{W: 960, H: 540}

// dpi maps pixels to gonum's lengths (points): at 96 dots per inch a
// 12-point font is 16 pixels high.
const dpi = 96

// Limits on Size: below the minimum, axis labels and ticks do not fit; the
// maximum bounds memory (4 bytes a pixel).
const (
	minSide = 200
	maxSide = 8192
)

// PNG renders c as a PNG image of size s (DefaultSize when zero).
func PNG(c Chart, s Size) ([]byte, error) {
	if s == (Size{}) {
		s = DefaultSize
	}
	if s.W < minSide || s.H < minSide || s.W > maxSide || s.H > maxSide {
		return nil, fmt.Errorf("chart: size %dx%d, want sides in %d..%d pixels", s.W, s.H, minSide, maxSide)
	}
	p := plot.New()
	style(p)
	if err := c.plot(p); err != nil {
		return nil, err
	}
	w := vg.Length(s.W) * vg.Inch / dpi
	h := vg.Length(s.H) * vg.Inch / dpi
	canvas := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(dpi))
	// A margin of a few pixels left and right: gonum sizes the y axis by
	// its measure of the tick labels, which falls a pixel or two short of
	// the rendered text for some strings (long layer names).
	margin := vg.Length(4) * vg.Inch / dpi
	p.Draw(draw.Crop(draw.New(canvas), margin, -margin, 0, 0))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: canvas}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("chart: encode PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// sans is the face of all text: gonum's default serif face reads poorly on
// screen at small sizes.
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

// bold is golang.org/x/image/font.WeightBold (CSS 700), written as the
// number so that chart imports only gonum.org/v1/plot.
const bold = 3

// style gives p srq's look: sans-serif text, a bold title, light grid-free
// axes with a little padding so bars do not touch the axis lines.
func style(p *plot.Plot) {
	p.Title.TextStyle.Font = font.From(font.Font{Typeface: "Liberation", Variant: "Sans", Weight: bold}, 13)
	p.Title.Padding = vg.Points(8)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = font.From(sans, 11)
		a.Tick.Label.Font = font.From(sans, 9.5)
		a.Padding = vg.Points(2)
	}
	p.Legend.TextStyle.Font = font.From(sans, 10)
	p.Legend.Top = true
	p.Legend.ThumbnailWidth = vg.Points(24)
	p.Legend.Padding = vg.Points(3)
	p.Legend.XOffs = -vg.Points(6)
	p.Legend.YOffs = -vg.Points(4)
}

// palette holds the marker colours, assigned in order of first use:
// dark, saturated hues that stay visible over grey bars.
var palette = []color.Color{
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	color.RGBA{R: 0x1f, G: 0x5f, B: 0xc4, A: 0xff}, // blue
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
}

// dashes are the marker line patterns, assigned like palette, so markers
// stay distinct in greyscale and for colour-blind readers.
var dashes = [][]vg.Length{
	nil,
	{vg.Points(6), vg.Points(3)},
	{vg.Points(2), vg.Points(2)},
	{vg.Points(8), vg.Points(2), vg.Points(2), vg.Points(2)},
}
