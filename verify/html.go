package verify

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/srquant/srq/chart"
	"github.com/srquant/srq/internal/htmlpage"
	"github.com/srquant/srq/internal/version"
	"github.com/srquant/srq/onnx"
)

// Metadata keys of a quantized model that the HTML report reads; quant
// writes them under the same names (quant.Meta*).
const (
	MetaVersion     = "srq.version"
	MetaSetting     = "srq.setting"
	MetaCalibration = "srq.calibration"
	MetaLayers      = "srq.layers"
	// MetaSensitivity is a JSON array of {"conv", "psnr_db", "score"} and
	// optionally "bits" (quant.LayerSensitivity, written when a run
	// measured it): the output PSNR with only that layer quantized, and
	// the method's own score.
	MetaSensitivity = "srq.sensitivity"
	// MetaKernels is KernelsMeta: where srq checked the model's int8
	// kernels against its QDQ graph before writing it.
	MetaKernels = "srq.kernels"
	// MetaAccuracy is quant.Accuracy: what accuracy control (--max-drop)
	// measured, step by step; the report draws its drop-vs-speed curve.
	MetaAccuracy = "srq.accuracy"
)

// HTMLExtras is what the HTML report shows beyond the Report: what the
// quantized model says about itself, and charts measured elsewhere.
type HTMLExtras struct {
	// Metadata is the quantized model's metadata_props. The report shows
	// srq.version, srq.setting and srq.calibration as tables, srq.layers
	// (codes per Conv input, by form) and srq.sensitivity (noise per layer)
	// as charts; other keys are ignored. A value it cannot read is named
	// in the page, not an error: the model's metadata is not verify's to
	// reject.
	Metadata map[string]string
	// Activations are charts of the FP32 model's activations (srq verify
	// --calib: one histogram per Conv input), shown in a collapsed section
	// in the order given.
	Activations []Figure
}

// Figure is a titled PNG.
type Figure struct {
	Title string
	PNG   []byte
}

//go:embed html.tmpl
var htmlBody string

// htmlTemplate parses the report page; the template is part of the binary,
// so a parse error is a bug that every test run finds.
func htmlTemplate() (*template.Template, error) {
	return htmlpage.New("verify report", htmlBody, template.FuncMap{
		"db":   db,
		"base": filepath.Base,
		"f":    func(prec int, v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) },
		"inc":  func(i int) int { return i + 1 },
		"sub":  func(a, b float64) float64 { return a - b },
		"pct":  func(v float64) string { return strconv.FormatFloat(100*v, 'f', 2, 64) + "%" },
	})
}

// WriteHTML writes the report as one self-contained page, dir/index.html
// (dir is created if missing; the file is written atomically): a summary
// of the run, per image the window of largest error (when the report was
// made with Config.Detail) as zoomed crops of the FP32 output, the
// quantized output and the ground truth with |ΔY| heat maps, and the
// charts extras give or its metadata allows. It returns the file's path.
func WriteHTML(dir string, r *Report, extras HTMLExtras) (string, error) {
	page, err := RenderHTML(r, extras)
	if err != nil {
		return "", err
	}
	return htmlpage.Write(dir, page)
}

// RenderHTML is WriteHTML without the file: the page's bytes.
func RenderHTML(r *Report, extras HTMLExtras) ([]byte, error) {
	t, err := htmlTemplate()
	if err != nil {
		return nil, err
	}
	p, err := newHTMLPage(r, extras)
	if err != nil {
		return nil, err
	}
	return htmlpage.Render(t, p)
}

// CheckHTMLDir says, before a run, whether WriteHTML could write into dir
// without replacing one of inputs (models, images): dir is a folder or can
// be created, and its index.html is none of them. It creates nothing.
func CheckHTMLDir(dir string, inputs []string) error {
	if err := htmlpage.CheckDir(dir); err != nil {
		return err
	}
	idx := filepath.Join(dir, htmlpage.Index)
	for _, in := range inputs {
		if onnx.SameFile(idx, in) {
			return fmt.Errorf("%s: is the same file as the input %s; refusing to overwrite it", idx, in)
		}
	}
	return nil
}

// htmlPage is what the template renders.
type htmlPage struct {
	R         *Report
	Generator string
	// From the quantized model's metadata.
	By          string
	Setting     []kv
	Calibration []kv
	Layers      *chartFigure
	Sensitivity *chartFigure
	Accuracy    *chartFigure
	MetaNotes   []string // metadata that could not be read
	Activations []Figure
	Images      []htmlImage
	ColorBar    PNG
	HasDetail   bool
}

type kv struct{ K, V string }

type chartFigure struct {
	PNG     []byte
	Caption string
	Rows    []kv // the values charted, for a table under it
}

// htmlImage is one image's section: its numbers and, with Detail, its
// crops, with the colour scale's tick labels.
type htmlImage struct {
	ImageResult
	Ticks []string
}

func newHTMLPage(r *Report, x HTMLExtras) (*htmlPage, error) {
	if r == nil {
		return nil, fmt.Errorf("HTML report: no report")
	}
	p := &htmlPage{R: r, Generator: version.String(), Activations: x.Activations}
	for _, im := range r.PerImage {
		hi := htmlImage{ImageResult: im}
		if d := im.Detail; d != nil {
			p.HasDetail = true
			hi.Ticks = []string{"0", scaleTick(d.MaxAbsDY / 2), scaleTick(d.MaxAbsDY)}
		}
		p.Images = append(p.Images, hi)
	}
	if p.HasDetail {
		cb, err := ColorBar(256, 14)
		if err != nil {
			return nil, err
		}
		p.ColorBar = cb
	}

	md := x.Metadata
	if v, ok := md[MetaVersion]; ok {
		p.By = v
	}
	for _, m := range []struct {
		key string
		dst *[]kv
	}{{MetaSetting, &p.Setting}, {MetaCalibration, &p.Calibration}} {
		v, ok := md[m.key]
		if !ok {
			continue
		}
		rows, err := objectRows(v)
		if err != nil {
			p.MetaNotes = append(p.MetaNotes, fmt.Sprintf("%s: not a JSON object (%v)", m.key, err))
			continue
		}
		*m.dst = rows
	}
	if v, ok := md[MetaLayers]; ok {
		fig, err := layersChart(v)
		if err != nil {
			p.MetaNotes = append(p.MetaNotes, fmt.Sprintf("%s: %v", MetaLayers, err))
		}
		p.Layers = fig
	}
	if v, ok := md[MetaAccuracy]; ok {
		fig, err := accuracyChart(v)
		if err != nil {
			p.MetaNotes = append(p.MetaNotes, fmt.Sprintf("%s: %v", MetaAccuracy, err))
		}
		p.Accuracy = fig
	}
	if v, ok := md[MetaSensitivity]; ok {
		fig, err := sensitivityChart(v)
		if err != nil {
			p.MetaNotes = append(p.MetaNotes, fmt.Sprintf("%s: %v", MetaSensitivity, err))
		}
		p.Sensitivity = fig
	}
	return p, nil
}

// scaleTick writes a colour-scale label in Y levels: enough digits to
// tell small maxima apart, no more.
func scaleTick(v float64) string {
	if v >= 10 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// chartWidth is the width of the metadata charts, in pixels: the page's
// content width.
const chartWidth = 1000

// metaLayer is an element of srq.layers (quant.Layer's JSON, the fields
// the chart uses).
type metaLayer struct {
	Conv  string `json:"conv"`
	Kind  string `json:"kind"`
	Bits  int    `json:"bits"`
	Codes int    `json:"codes"`
	Form  string `json:"form"`
}

// layersChart draws srq.layers: the codes (distinct levels) of each Conv
// input's quantizer, coloured by the form it was written in.
func layersChart(v string) (*chartFigure, error) {
	var ls []metaLayer
	if err := json.Unmarshal([]byte(v), &ls); err != nil {
		return nil, fmt.Errorf("not a JSON array of layers: %w", err)
	}
	if len(ls) == 0 {
		return nil, nil
	}
	b := chart.Bars{Title: "Codes per Conv input (distinct levels of its quantizer)", XLabel: "codes"}
	kinds := map[string]int{}
	var order []string
	for _, l := range ls {
		form := l.Form
		if form == "" {
			form = "unknown form"
		}
		b.Labels, b.Values, b.Groups = append(b.Labels, l.Conv), append(b.Values, float64(l.Codes)), append(b.Groups, form)
		k := fmt.Sprintf("%d-bit %s", l.Bits, l.Kind)
		if kinds[k] == 0 {
			order = append(order, k)
		}
		kinds[k]++
	}
	png, err := chart.PNG(b, b.FitSize(chartWidth))
	if err != nil {
		return nil, err
	}
	var parts []string
	dual := false
	for _, k := range order {
		parts = append(parts, fmt.Sprintf("%d× %s", kinds[k], k))
		dual = dual || strings.HasSuffix(k, " dual")
	}
	caption := fmt.Sprintf("%d Conv inputs with a quantizer of their own (%s); colour: the form ORT runs it in (srq.layers).",
		len(ls), strings.Join(parts, ", "))
	if dual {
		// More codes than 2^bits is no bug: the published accounting
		// gives each tail a grid of its own.
		caption += " A b-bit dual-region input has more than 2^b levels under the reference accounting (--accounting reference, the published code's): a b-bit dense grid plus a (b−1)-bit grid on each tail, up to 16 + 7 + 7 = 30 levels at 4 bits; --accounting strict keeps it to 2^b."
	}
	return &chartFigure{PNG: png, Caption: caption}, nil
}

// metaSensitivity is an element of srq.sensitivity.
type metaSensitivity struct {
	Conv  string   `json:"conv"`
	Bits  int      `json:"bits"`
	PSNR  *float64 `json:"psnr_db"`
	Score *float64 `json:"score"`
}

// sensitivityChart draws srq.sensitivity: per layer in the order
// recorded, the output noise with that layer alone quantized, −PSNR dB,
// bars from just below the quietest layer so that the most sensitive layer
// has the longest bar, coloured by the layer's bits where the metadata
// says them.
func sensitivityChart(v string) (*chartFigure, error) {
	var ss []metaSensitivity
	if err := json.Unmarshal([]byte(v), &ss); err != nil {
		return nil, fmt.Errorf("not a JSON array of layers: %w", err)
	}
	if len(ss) == 0 {
		return nil, nil
	}
	b := chart.Bars{Title: "Output noise per layer, that layer alone quantized (srq.sensitivity)",
		XLabel: "noise against the FP32 output, dB of full scale (= −PSNR-Y); longer bar: more sensitive"}
	fig := &chartFigure{}
	lo := math.Inf(1)
	for i, s := range ss {
		if s.PSNR == nil {
			return nil, fmt.Errorf("layer %d (%q) has no psnr_db", i, s.Conv)
		}
		b.Labels, b.Values = append(b.Labels, s.Conv), append(b.Values, -*s.PSNR)
		if s.Bits > 0 {
			b.Groups = append(b.Groups, fmt.Sprintf("%d-bit", s.Bits))
		}
		lo = min(lo, -*s.PSNR)
		score := "–"
		if s.Score != nil {
			score = strconv.FormatFloat(*s.Score, 'g', 4, 64)
		}
		fig.Rows = append(fig.Rows, kv{s.Conv, fmt.Sprintf("%.3f dB, score %s", *s.PSNR, score)})
	}
	if len(b.Groups) != len(b.Labels) {
		b.Groups = nil // bits for some layers only: one colour
	}
	if !math.IsInf(lo, 0) {
		b.Base = math.Floor(lo) - 1
	}
	png, err := chart.PNG(b, b.FitSize(chartWidth))
	if err != nil {
		return nil, err
	}
	fig.PNG = png
	fig.Caption = fmt.Sprintf("%d layers: the output noise (−PSNR-Y against the FP32 output) with each layer alone quantized; bars start at %g dB so that their differences show, and the longest bar is the most sensitive layer.", len(ss), b.Base)
	return fig, nil
}

// metaAccuracy is srq.accuracy (quant.Accuracy's JSON, the fields the
// chart uses).
type metaAccuracy struct {
	MaxDrop       float64 `json:"max_drop_db"`
	MaxDropVsFP32 float64 `json:"min_psnr_vs_fp32_db"`
	Validation    []string
	Candidates    int            `json:"candidates"`
	Chosen        int            `json:"chosen"`
	Met           bool           `json:"met"`
	Steps         []accuracyStep `json:"steps"`
}

// accuracyStep is an element of srq.accuracy's steps.
type accuracyStep struct {
	Widened    int      `json:"widened"`
	Drop       *float64 `json:"drop_db"`
	DropHigh   *float64 `json:"drop_high_db"`
	PSNRvsFP32 float64  `json:"psnr_vs_fp32_db"`
	Speedup    float64  `json:"speedup_est"`
	Within     bool     `json:"within"`
	Added      []string `json:"added"`
	Removed    []string `json:"removed"`
}

// accuracyChart draws srq.accuracy: every model accuracy control measured
// as a point, drop on the validation images (or PSNR-Y against FP32 when
// they had no ground truth) against its estimated speed-up, joined in the
// order of the widenings, with the budget as a level and the model
// written marked.
func accuracyChart(v string) (*chartFigure, error) {
	var a metaAccuracy
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		return nil, fmt.Errorf("not a JSON object of accuracy control: %w", err)
	}
	if len(a.Steps) == 0 {
		return nil, nil
	}
	if a.Chosen < 0 || a.Chosen >= len(a.Steps) {
		return nil, fmt.Errorf("chosen step %d of %d", a.Chosen, len(a.Steps))
	}
	gt := a.Steps[0].Drop != nil
	y := func(i int) float64 {
		if gt {
			return *a.Steps[i].Drop
		}
		return a.Steps[i].PSNRvsFP32
	}
	order := make([]int, len(a.Steps))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return a.Steps[i].Widened - a.Steps[j].Widened })
	l := chart.Lines{Title: "Accuracy control: every model measured (srq.accuracy)", XLabel: "speed-up over FP32, estimated from each rung's measured latency (srq.accuracy)"}
	measured := chart.Series{Name: "models measured, in the order of the widenings"}
	for _, i := range order {
		measured.X, measured.Y = append(measured.X, a.Steps[i].Speedup), append(measured.Y, y(i))
	}
	chosen := chart.Series{Name: "the model written", X: []float64{a.Steps[a.Chosen].Speedup}, Y: []float64{y(a.Chosen)}}
	l.Series = []chart.Series{measured, chosen}
	if gt {
		l.YLabel = "PSNR-Y drop vs ground truth on the validation images, dB"
		if a.MaxDrop > 0 {
			l.Levels = append(l.Levels, chart.Level{Y: a.MaxDrop, Label: fmt.Sprintf("budget %g dB", a.MaxDrop)})
		}
	} else {
		l.YLabel = "PSNR-Y vs FP32 output on the validation images, dB"
		if a.MaxDropVsFP32 > 0 {
			l.Levels = append(l.Levels, chart.Level{Y: a.MaxDropVsFP32, Label: fmt.Sprintf("floor %g dB", a.MaxDropVsFP32)})
		}
	}
	fig := &chartFigure{}
	if !slices.ContainsFunc(a.Steps, func(s accuracyStep) bool { return s.Speedup <= 0 }) {
		// Without a speed-up (no latency was measured: the base model met
		// the budget) there is no curve, only the steps.
		png, err := chart.PNG(l, chart.Size{W: chartWidth, H: 480})
		if err != nil {
			return nil, err
		}
		fig.PNG = png
	}
	for i, s := range a.Steps {
		val := fmt.Sprintf("%d of %d widenings, PSNR-Y vs FP32 %.2f dB", s.Widened, a.Candidates, s.PSNRvsFP32)
		if s.Speedup > 0 {
			val += fmt.Sprintf(", speed-up %.2fx (est.)", s.Speedup)
		}
		if s.Drop != nil {
			val = fmt.Sprintf("drop %.3f dB", *s.Drop) + optionalBound(s.DropHigh) + ", " + val
		}
		if s.Within {
			val += ", within"
		}
		if i == a.Chosen {
			val += ", written"
		}
		switch {
		case len(s.Added) > 0:
			val += "; + " + listed(s.Added)
		case len(s.Removed) > 0:
			val += "; − " + listed(s.Removed)
		}
		fig.Rows = append(fig.Rows, kv{fmt.Sprintf("step %d", i+1), val})
	}
	verdict := "met the budget"
	if !a.Met {
		verdict = "did not meet the budget (the best model measured was kept)"
	}
	fig.Caption = fmt.Sprintf("%d models measured on %d validation tiles that calibration did not use; the widenings (a Conv to 8 bits, a value read in two int8 parts, a Conv or block float) are applied in the order ranked by measured accuracy per millisecond, and the model written, %s, is the first in that order within the budget. The budget is checked on a 90%% upper confidence bound of the mean drop over the tiles.",
		len(a.Steps), len(a.Validation), verdict)
	return fig, nil
}

func optionalBound(v *float64) string {
	if v == nil {
		return ""
	}
	return fmt.Sprintf(" (≤ %.3f)", *v)
}

// listed writes a list for a table cell, at most maxListed items.
func listed(s []string) string {
	if len(s) <= maxListed {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:maxListed], ", ") + fmt.Sprintf(", … (%d more)", len(s)-maxListed)
}

// maxListed bounds how many elements of a JSON array a table cell lists
// (a calibration set can hold thousands of file names).
const maxListed = 12

// objectRows reads a JSON object into rows in the order of its keys, each
// value written for people: strings bare, arrays of scalars as a list,
// anything else as compact JSON.
func objectRows(v string) ([]kv, error) {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("starts with %v", tok)
	}
	var rows []kv
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		rows = append(rows, kv{key, readable(raw)})
	}
	return rows, nil
}

// readable writes a JSON value for a table cell.
func readable(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []any
	if json.Unmarshal(raw, &list) == nil {
		parts := make([]string, 0, min(len(list), maxListed))
		for i, e := range list {
			if i == maxListed {
				parts = append(parts, fmt.Sprintf("… (%d more)", len(list)-maxListed))
				break
			}
			switch e := e.(type) {
			case string:
				parts = append(parts, e)
			case float64, bool, nil:
				parts = append(parts, fmt.Sprint(e))
			default:
				b, _ := json.Marshal(e)
				parts = append(parts, string(b))
			}
		}
		return strings.Join(parts, ", ")
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) == nil {
		return b.String()
	}
	return string(raw)
}
