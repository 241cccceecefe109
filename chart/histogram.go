package chart

import (
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// DefaultBars is the bar count a Histogram aims at: enough to show the
// shape of a peaked distribution and its tails, few enough that each bar is
// several pixels wide at DefaultSize.
const DefaultBars = 200

// Histogram is a histogram of counts already binned on a regular grid (such
// as calib.Stats.Histogram's), with vertical markers at chosen values (clip
// ranges, breakpoints). For display the bins are regrouped: leading and
// trailing empty bins are dropped and adjacent bins are summed, ceil(n/Bars)
// per bar, so between Bars/2 and Bars bars show and each covers whole input
// bins (no count is split between bars).
type Histogram struct {
	Title  string
	XLabel string // default "value"
	YLabel string // default "count", or "count (log scale)" with LogY
	// Counts[i] samples lie in [Lo + i·Width, Lo + (i+1)·Width).
	Lo, Width float64
	Counts    []int64
	// Bars is the most bars to draw (0: DefaultBars).
	Bars int
	// LogY draws counts on a log10 axis, where the rare tails of a peaked
	// distribution stay visible; empty bars are not drawn.
	LogY    bool
	Markers []Marker
}

// Marker is a vertical line across the plot at X. Markers with the same
// Label share one legend entry, colour and dash pattern (a ± pair, a clip
// range's two ends); labels get colours in order of first use.
type Marker struct {
	X     float64
	Label string
}

// barColor fills the bars: a muted blue-grey under which markers stand out.
var barColor = color.RGBA{R: 0x8d, G: 0xa0, B: 0xb8, A: 0xff}

// regroup trims the empty bins at both ends of counts and sums groups of
// ceil(n/bars) adjacent bins; it returns the new grid (lo, width) and the
// group sums. It returns no sums when every count is 0.
func regroup(lo, width float64, counts []int64, bars int) (float64, float64, []float64) {
	first, last := -1, -1
	for i, c := range counts {
		if c != 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return lo, width, nil
	}
	n := last - first + 1
	k := (n + bars - 1) / bars
	sums := make([]float64, (n+k-1)/k)
	for i, c := range counts[first : last+1] {
		sums[i/k] += float64(c)
	}
	return lo + float64(first)*width, float64(k) * width, sums
}

func (h Histogram) plot(p *plot.Plot) error {
	switch {
	case !(h.Width > 0) || math.IsInf(h.Width, 0) || math.IsNaN(h.Lo) || math.IsInf(h.Lo, 0):
		return fmt.Errorf("chart: histogram %q: bin grid lo %g, width %g, want a finite lo and width > 0", h.Title, h.Lo, h.Width)
	case h.Bars < 0:
		return fmt.Errorf("chart: histogram %q: %d bars", h.Title, h.Bars)
	}
	for i, c := range h.Counts {
		if c < 0 {
			return fmt.Errorf("chart: histogram %q: bin %d has count %d", h.Title, i, c)
		}
	}
	for _, m := range h.Markers {
		if math.IsNaN(m.X) || math.IsInf(m.X, 0) {
			return fmt.Errorf("chart: histogram %q: marker %q at %g", h.Title, m.Label, m.X)
		}
	}
	bars := h.Bars
	if bars == 0 {
		bars = DefaultBars
	}
	lo, width, sums := regroup(h.Lo, h.Width, h.Counts, bars)
	if len(sums) == 0 {
		return fmt.Errorf("chart: histogram %q has no samples", h.Title)
	}
	bins := make([]plotter.HistogramBin, len(sums))
	for i, s := range sums {
		bins[i] = plotter.HistogramBin{Min: lo + float64(i)*width, Max: lo + float64(i+1)*width, Weight: s}
	}
	p.Title.Text = h.Title
	p.X.Tick.Marker = valueTicks{}
	p.X.Label.Text = h.XLabel
	if p.X.Label.Text == "" {
		p.X.Label.Text = "value"
	}
	p.Y.Label.Text = h.YLabel
	if p.Y.Label.Text == "" {
		p.Y.Label.Text = "count"
		if h.LogY {
			p.Y.Label.Text = "count (log scale)"
		}
	}
	p.Add(&plotter.Histogram{Bins: bins, Width: width, FillColor: barColor,
		LineStyle: draw.LineStyle{Color: barColor, Width: vg.Points(0.3)}, LogY: h.LogY})

	// Room above the tallest bar for the legend: 30% of the height again
	// (of the decades, on a log axis). Markers stop a little above the
	// tallest bar, so they never cross the legend.
	tallest := p.Y.Max
	var top float64
	if h.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = countTicks{}
		span := p.Y.Max / p.Y.Min
		p.Y.Max *= math.Pow(span, 0.3)
		top = tallest * math.Pow(span, 0.05)
	} else {
		p.Y.Min = 0
		p.Y.Max *= 1.3
		top = tallest * 1.05
	}

	// Markers outside the data widen the x range; a little margin on both
	// sides keeps a marker at the data's edge off the axis line.
	for _, m := range h.Markers {
		p.X.Min, p.X.Max = min(p.X.Min, m.X), max(p.X.Max, m.X)
	}
	pad := 0.02 * (p.X.Max - p.X.Min)
	if pad == 0 {
		pad = max(width, 1)
	}
	p.X.Min, p.X.Max = p.X.Min-pad, p.X.Max+pad

	styles := map[string]draw.LineStyle{}
	for _, m := range h.Markers {
		st, ok := styles[m.Label]
		if !ok {
			i := len(styles)
			st = draw.LineStyle{Color: palette[i%len(palette)], Width: vg.Points(1.6), Dashes: dashes[i%len(dashes)]}
			styles[m.Label] = st
			if m.Label != "" {
				p.Legend.Add(m.Label, vline{style: st})
			}
		}
		p.Add(vline{x: m.X, top: top, style: st})
	}
	return nil
}

// vline is a vertical line at x from the bottom of the data area up to top
// (in data units); it does not widen the axes (the histogram sets them).
type vline struct {
	x, top float64
	style  draw.LineStyle
}

func (l vline) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	x := trX(l.x)
	c.StrokeLine2(l.style, x, c.Min.Y, x, min(trY(l.top), c.Max.Y))
}

// Thumbnail draws the legend icon: a horizontal stretch of the line.
func (l vline) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(l.style, c.Min.X, y, c.Max.X, y)
}

// valueTicks marks a linear value axis with about eight labelled ticks at
// multiples of 1, 2 or 5 times a power of ten, written with just the
// decimals that step needs (gonum's default gives three labels, all with the
// same number of decimals: "-25.00"), and unlabelled ticks halfway.
type valueTicks struct{}

func (valueTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return nil
	}
	raw := (hi - lo) / 8
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	decimals := max(0, -int(math.Floor(math.Log10(step))))
	var ticks []plot.Tick
	for i := math.Ceil(lo / step * 2); i <= math.Floor(hi/step*2); i++ {
		v := i * step / 2
		t := plot.Tick{Value: v}
		if math.Mod(i, 2) == 0 {
			if v == 0 {
				v = 0 // no "-0"
			}
			t.Label = strconv.FormatFloat(v, 'f', decimals, 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// countTicks marks a log10 count axis: labelled ticks at powers of ten
// written compactly (1, 10, 100, 1k … 10M), unlabelled ones at 2..9 times
// them. When the range holds fewer than two powers of ten the in-between
// ticks are labelled too, so the axis is never unreadable.
type countTicks struct{}

func (countTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi > lo) {
		return nil
	}
	var ticks []plot.Tick
	majors := 0
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for k := 1.0; k < 10; k++ {
			v := k * base
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if k == 1 {
				t.Label = countLabel(v)
				majors++
			}
			ticks = append(ticks, t)
		}
	}
	if majors < 2 {
		for i := range ticks {
			ticks[i].Label = countLabel(ticks[i].Value)
		}
	}
	return ticks
}

// countLabel writes a count compactly: 500, 2k, 10M, 3G.
func countLabel(v float64) string {
	for _, u := range []struct {
		div    float64
		suffix string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= u.div {
			return strconv.FormatFloat(v/u.div, 'g', 3, 64) + u.suffix
		}
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
