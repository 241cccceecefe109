package main

import (
	_ "embed"
	"fmt"
	"html/template"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/srquant/srq/chart"
	"github.com/srquant/srq/internal/htmlpage"
	"github.com/srquant/srq/internal/version"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/verify"
)

//go:embed bench_report.tmpl
var benchReportBody string

// benchPage is what bench_report.tmpl renders: the run's conditions, the
// tables of BENCHMARKS.md, and per model a chart of quality against bits.
type benchPage struct {
	CPU       verify.CPU
	CPUs      int
	ORT       string
	Threads   int
	Runs      int
	Patches   int
	PatchSize int
	Sets      []string
	Took      time.Duration
	Rows      int
	Tables    []benchHTMLTable
	Charts    []verify.Figure
	Generator string
}

// benchHTMLTable is a benchTable laid out for HTML: numbers right-aligned,
// a failed row's last cell spanning the columns it lacks.
type benchHTMLTable struct {
	Title  string
	Header []benchHTMLCell
	Rows   [][]benchHTMLCell
}

type benchHTMLCell struct {
	Text string
	Num  bool // right-aligned
	Span int  // columns, 1 but for a failure
}

// numericCell matches the numbers of the bench tables: "32.10", "-0.20",
// "36/37", "3.08x", "34.84 (-0.02)", "25 (3.22x)".
var numericCell = regexp.MustCompile(`^[-+]?[0-9][0-9.]*(/[0-9]+)?x?( \([-+]?[0-9][0-9.]*x?\))?$`)

// numeric says whether a cell holds a number: those are right-aligned so
// their digits line up.
func numeric(s string) bool { return numericCell.MatchString(s) }

// htmlTable lays t out; a column is numeric when its cell in the first
// complete row is.
func htmlTable(t benchTable) benchHTMLTable {
	ht := benchHTMLTable{Title: t.Title}
	num := make([]bool, len(t.Header))
	for _, r := range t.Rows {
		if len(r) == len(t.Header) {
			for i, c := range r {
				num[i] = numeric(c)
			}
			break
		}
	}
	for i, h := range t.Header {
		ht.Header = append(ht.Header, benchHTMLCell{Text: h, Num: num[i], Span: 1})
	}
	for _, r := range t.Rows {
		cells := make([]benchHTMLCell, len(r))
		for i, c := range r {
			cells[i] = benchHTMLCell{Text: c, Num: num[i] && numeric(c), Span: 1}
		}
		cells[len(r)-1].Span = len(t.Header) - len(r) + 1
		ht.Rows = append(ht.Rows, cells)
	}
	return ht
}

// benchChartSize fits two charts side by side on the page.
var benchChartSize = chart.Size{W: 600, H: 380}

// benchHTML renders the bench report page (srq bench --report).
func benchHTML(rows []*benchRow, sets []string, sizes []int, threads, runs, patches int, took time.Duration) ([]byte, error) {
	t, err := htmlpage.New("bench report", benchReportBody, template.FuncMap{"join": strings.Join})
	if err != nil {
		return nil, err
	}
	p := &benchPage{CPU: verify.HostCPU(), CPUs: runtime.NumCPU(), ORT: ort.Version(), Threads: threads, Runs: runs,
		Patches: patches, PatchSize: quant.DefaultConfig().PatchSize, Sets: sets, Took: took.Round(time.Second), Rows: len(rows),
		Generator: version.String()}
	for _, bt := range benchTables(rows, sets, sizes) {
		p.Tables = append(p.Tables, htmlTable(bt))
	}
	if p.Charts, err = benchCharts(rows, sets[0]); err != nil {
		return nil, err
	}
	return htmlpage.Render(t, p)
}

// benchCharts draws, per model, the mean PSNR-Y on set against the
// activation bits, one line per range method, with the FP32 model's PSNR
// as a reference level. Variant and failed rows are left out; a model
// without a point gets no chart.
func benchCharts(rows []*benchRow, set string) ([]verify.Figure, error) {
	var models []string
	for _, r := range rows {
		if !slices.Contains(models, r.Model) {
			models = append(models, r.Model)
		}
	}
	var figs []verify.Figure
	for _, m := range models {
		name := strings.TrimSuffix(m, ".onnx")
		l := chart.Lines{Title: fmt.Sprintf("%s: %s PSNR-Y against activation bits", name, set), XLabel: "activation bits", YLabel: set + " PSNR-Y (dB)"}
		fp32 := 0.0
		for _, r := range rows {
			if r.Model != m || r.Variant != "" || r.Failure != "" {
				continue
			}
			bits, err := quant.ParseBits(r.Bits)
			if err != nil {
				continue
			}
			v, ok := r.Quantized[set]
			if !ok {
				continue
			}
			fp32 = r.FP32[set]
			i := slices.IndexFunc(l.Series, func(s chart.Series) bool { return s.Name == r.Method })
			if i < 0 {
				l.Series = append(l.Series, chart.Series{Name: r.Method})
				i = len(l.Series) - 1
			}
			s := &l.Series[i]
			s.X, s.Y = append(s.X, float64(bits.A)), append(s.Y, v)
			if !slices.Contains(l.XTicks, float64(bits.A)) {
				l.XTicks = append(l.XTicks, float64(bits.A))
			}
		}
		if len(l.Series) == 0 {
			continue
		}
		for i := range l.Series {
			sortPoints(&l.Series[i])
		}
		l.Levels = []chart.Level{{Y: fp32, Label: fmt.Sprintf("FP32 %.2f dB", fp32)}}
		b, err := chart.PNG(l, benchChartSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		figs = append(figs, verify.Figure{Title: name, PNG: b})
	}
	return figs, nil
}

// sortPoints orders a series by x, so its line runs left to right
// whatever order the bit settings were benched in.
func sortPoints(s *chart.Series) {
	idx := make([]int, len(s.X))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case s.X[a] < s.X[b]:
			return -1
		case s.X[a] > s.X[b]:
			return 1
		}
		return 0
	})
	x, y := make([]float64, len(idx)), make([]float64, len(idx))
	for i, j := range idx {
		x[i], y[i] = s.X[j], s.Y[j]
	}
	s.X, s.Y = x, y
}
