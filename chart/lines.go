package chart

import (
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Lines is a line plot of a few series over a shared x axis, such as PSNR
// against activation bits with one line per range method, with optional
// horizontal reference levels (the FP32 model's PSNR). Each series gets a
// colour, a dash pattern and a point shape in order, so lines stay apart in
// greyscale and where points coincide. The legend sits in the bottom right
// corner, which quality-against-bits curves (rising to the right) leave free.
type Lines struct {
	Title  string
	XLabel string // default "x"
	YLabel string // default "y"
	Series []Series
	Levels []Level
	// XTicks, if set, are the only labelled x ticks (the bit widths
	// measured); otherwise ticks are placed as on a value axis.
	XTicks []float64
}

// Series is one line: points (X[i], Y[i]) joined in the order given.
type Series struct {
	Name string
	X, Y []float64
}

// Level is a horizontal reference line across the plot at Y, drawn in grey
// with its label in the legend.
type Level struct {
	Y     float64
	Label string
}

// levelColor draws reference levels: darker than the bars' blue-grey so a
// thin dashed line still shows, neutral so it reads as a reference.
var levelColor = color.RGBA{R: 0x55, G: 0x5b, B: 0x66, A: 0xff}

// shapes are the point markers, assigned like palette.
var shapes = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.BoxGlyph{}, draw.TriangleGlyph{}, draw.PyramidGlyph{}, draw.CrossGlyph{}}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func (l Lines) plot(p *plot.Plot) error {
	if len(l.Series) == 0 {
		return fmt.Errorf("chart: lines %q: no series", l.Title)
	}
	for _, s := range l.Series {
		if len(s.X) != len(s.Y) || len(s.X) == 0 {
			return fmt.Errorf("chart: lines %q: series %q has %d x and %d y values", l.Title, s.Name, len(s.X), len(s.Y))
		}
		for i := range s.X {
			if !finite(s.X[i]) || !finite(s.Y[i]) {
				return fmt.Errorf("chart: lines %q: series %q has point (%g, %g)", l.Title, s.Name, s.X[i], s.Y[i])
			}
		}
	}
	for _, v := range l.Levels {
		if !finite(v.Y) {
			return fmt.Errorf("chart: lines %q: level %q at %g", l.Title, v.Label, v.Y)
		}
	}
	for _, x := range l.XTicks {
		if !finite(x) {
			return fmt.Errorf("chart: lines %q: x tick %g", l.Title, x)
		}
	}
	p.Title.Text = l.Title
	p.X.Label.Text, p.Y.Label.Text = l.XLabel, l.YLabel
	if p.X.Label.Text == "" {
		p.X.Label.Text = "x"
	}
	if p.Y.Label.Text == "" {
		p.Y.Label.Text = "y"
	}
	p.Legend.Top = false
	p.Legend.YOffs = vg.Points(4)
	p.Y.Tick.Marker = valueTicks{}
	p.X.Tick.Marker = valueTicks{}
	if len(l.XTicks) > 0 {
		ticks := slices.Sorted(slices.Values(l.XTicks))
		var ct plot.ConstantTicks
		for _, x := range slices.Compact(ticks) {
			ct = append(ct, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'g', -1, 64)})
		}
		p.X.Tick.Marker = ct
		p.X.Min, p.X.Max = min(p.X.Min, ticks[0]), max(p.X.Max, ticks[len(ticks)-1])
	}

	for i, lv := range l.Levels {
		st := draw.LineStyle{Color: levelColor, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(5), vg.Points(3)}}
		if i > 0 {
			st.Dashes = dashes[(i+1)%len(dashes)]
		}
		h := hline{y: lv.Y, style: st}
		p.Add(h)
		if lv.Label != "" {
			p.Legend.Add(lv.Label, h)
		}
	}
	for i, s := range l.Series {
		xy := make(plotter.XYs, len(s.X))
		for j := range s.X {
			xy[j] = plotter.XY{X: s.X[j], Y: s.Y[j]}
		}
		line, points, err := plotter.NewLinePoints(xy)
		if err != nil {
			return fmt.Errorf("chart: lines %q: series %q: %w", l.Title, s.Name, err)
		}
		c := palette[i%len(palette)]
		line.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(1.8), Dashes: dashes[i%len(dashes)]}
		points.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(3.2), Shape: shapes[i%len(shapes)]}
		p.Add(line, points)
		p.Legend.Add(s.Name, line, points)
	}

	// Margins so that points at the ends are not cut by the axes, and room
	// below the lowest point for the legend.
	xs := p.X.Max - p.X.Min
	if xs == 0 {
		xs = max(math.Abs(p.X.Max), 1)
	}
	p.X.Min, p.X.Max = p.X.Min-0.06*xs, p.X.Max+0.06*xs
	ys := p.Y.Max - p.Y.Min
	if ys == 0 {
		ys = max(math.Abs(p.Y.Max)*0.01, 0.1)
	}
	rows := len(l.Series) + len(l.Levels)
	p.Y.Min, p.Y.Max = p.Y.Min-ys*(0.08+0.09*float64(rows)), p.Y.Max+0.08*ys
	return nil
}

// hline is a horizontal line at y across the whole data area. Its data range
// covers only y, so it widens the y axis to show the level but leaves the x
// axis to the series.
type hline struct {
	y     float64
	style draw.LineStyle
}

func (h hline) DataRange() (xmin, xmax, ymin, ymax float64) {
	return math.Inf(1), math.Inf(-1), h.y, h.y
}

func (h hline) Plot(c draw.Canvas, p *plot.Plot) {
	_, trY := p.Transforms(&c)
	y := trY(h.y)
	c.StrokeLine2(h.style, c.Min.X, y, c.Max.X, y)
}

// Thumbnail draws the legend icon: a horizontal stretch of the line.
func (h hline) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(h.style, c.Min.X, y, c.Max.X, y)
}
