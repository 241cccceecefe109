package chart

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Bars is a horizontal bar chart of one value per named category, such as
// the codes or the PSNR of each quantized layer. Bars run horizontally
// because the categories are node names: long, and readable only written
// out on the y axis. Categories are listed top to bottom in the order
// given (graph order reads as the network runs).
type Bars struct {
	Title  string
	XLabel string // default "value"
	Labels []string
	Values []float64
	// Groups, if set, holds one group name per bar: bars of a group share a
	// colour (palette order of first use) and one legend entry, e.g. the
	// form a layer's quantizer was written in. Empty: one neutral colour.
	Groups []string
	// Base is where bars start: 0 for counts; a value near the smallest one
	// for quantities like PSNR, whose differences vanish on bars from 0.
	// The axis is labelled, so the offset is read, not hidden.
	Base float64
}

// barRow is the height of one bar's row in pixels: one line of tick-label
// text and a gap, so every name stays legible.
const barRow = 17

// FitSize returns the size at which every bar gets one legible row at the
// given width: the rows plus room for the title, the x axis and the legend.
func (b Bars) FitSize(width int) Size {
	return Size{W: width, H: max(minSide, min(maxSide, 110+barRow*len(b.Labels)))}
}

func (b Bars) plot(p *plot.Plot) error {
	switch {
	case len(b.Labels) == 0:
		return fmt.Errorf("chart: bars %q: no bars", b.Title)
	case len(b.Values) != len(b.Labels):
		return fmt.Errorf("chart: bars %q: %d values for %d labels", b.Title, len(b.Values), len(b.Labels))
	case len(b.Groups) != 0 && len(b.Groups) != len(b.Labels):
		return fmt.Errorf("chart: bars %q: %d groups for %d labels", b.Title, len(b.Groups), len(b.Labels))
	case math.IsNaN(b.Base) || math.IsInf(b.Base, 0):
		return fmt.Errorf("chart: bars %q: base %g", b.Title, b.Base)
	}
	for i, v := range b.Values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("chart: bars %q: bar %q has value %g", b.Title, b.Labels[i], v)
		}
	}
	p.Title.Text = b.Title
	p.X.Label.Text = b.XLabel
	if p.X.Label.Text == "" {
		p.X.Label.Text = "value"
	}
	p.X.Tick.Marker = valueTicks{}

	// Bar i sits at y = n-1-i so that the first label is at the top.
	n := len(b.Labels)
	names := make([]string, n)
	for i, l := range b.Labels {
		names[n-1-i] = l
	}
	p.NominalY(names...)

	colors := make([]color.Color, n)
	seen := map[string]color.Color{}
	for i := range colors {
		colors[i] = barColor
		if len(b.Groups) == 0 {
			continue
		}
		g := b.Groups[i]
		c, ok := seen[g]
		if !ok {
			c = palette[len(seen)%len(palette)]
			seen[g] = c
			p.Legend.Add(g, swatch{c})
		}
		colors[i] = c
	}
	p.Add(barSet{base: b.Base, values: b.Values, colors: colors})
	p.Y.Min, p.Y.Max = -0.5, float64(n)-0.5

	// A little room past the longest bar; more where a legend sits in the
	// top right corner, so it does not cover the top bars.
	span := p.X.Max - p.X.Min
	if span == 0 {
		span = max(math.Abs(p.X.Max), 1)
	}
	room := 0.04
	if len(seen) > 0 {
		room = 0.3
	}
	p.X.Max += room * span
	if p.X.Min < b.Base {
		p.X.Min -= 0.04 * span
	}
	return nil
}

// barSet draws horizontal bars from base to each value, bar i centred on
// y = n-1-i, 0.8 of a row high.
type barSet struct {
	base   float64
	values []float64
	colors []color.Color
}

func (s barSet) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = s.base, s.base
	for _, v := range s.values {
		xmin, xmax = min(xmin, v), max(xmax, v)
	}
	return xmin, xmax, -0.5, float64(len(s.values)) - 0.5
}

func (s barSet) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	n := len(s.values)
	for i, v := range s.values {
		y := float64(n - 1 - i)
		x0, x1 := trX(s.base), trX(v)
		y0, y1 := trY(y-0.4), trY(y+0.4)
		c.FillPolygon(s.colors[i], c.ClipPolygonXY([]vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}))
	}
}

// swatch is a legend icon: a filled square of the group's colour.
type swatch struct{ c color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	side := min(c.Max.X-c.Min.X, c.Max.Y-c.Min.Y)
	x0 := c.Max.X - side // next to the label
	c.FillPolygon(s.c, []vg.Point{{X: x0, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y + side}, {X: x0, Y: c.Min.Y + side}})
}
