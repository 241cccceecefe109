package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/sr"
)

// Resampler names the bicubic implementation that made the LR inputs in HR
// mode: img.ResizeBicubic is byte-exact with Pillow's BICUBIC, which the SR
// benchmark LR sets use. Another implementation moves PSNR by hundredths
// of a dB, so reports say which one they used.
const Resampler = "pillow-bicubic"

// Report is the result of Run. Its JSON keys are a stable contract for
// scripts; apart from the latency fields the content is deterministic (no
// timestamps, no temporary paths). PSNR values are in dB, rounded to 1e-4,
// SSIM to 1e-6, times to 1 µs; an infinite PSNR (identical outputs) is
// written as MaxPSNR. Ground-truth fields are present only in HR mode.
type Report struct {
	Model      string  `json:"model"`
	Quantized  string  `json:"quantized"`
	Scale      int     `json:"scale"`
	InputRange float32 `json:"input_range"`
	HR         bool    `json:"hr"`
	Resampler  string  `json:"resampler"`
	Images     int     `json:"images"`

	// PSNRvsFP32 is the mean over images of PSNR-Y, quantized vs FP32.
	PSNRvsFP32 float64 `json:"psnr_vs_fp32_db"`
	PSNRGT     *Pair   `json:"psnr_gt_db,omitempty"`
	// PSNRGTDrop is PSNRGT.FP32 - PSNRGT.Quantized (positive: a loss).
	PSNRGTDrop *float64 `json:"psnr_gt_drop_db,omitempty"`
	SSIMGT     *Pair    `json:"ssim_gt,omitempty"`

	// LatencyMS holds the medians; Latency the details per model.
	LatencyMS    Pair                    `json:"latency_ms"`
	Speedup      float64                 `json:"speedup"` // fp32 median / quantized median
	Latency      map[string]LatencyStats `json:"latency"`
	LatencyInput string                  `json:"latency_input"` // image the input was cut from
	// Int8Conv is nil (null) on TensorRT, whose compiled graph ORT cannot write.
	Int8Conv *ConvCoverage `json:"int8_conv"`
	// Tiling is set when the images were tiled (Config.Tile) and the FP32
	// model pools over the whole image, so that tiles are not exact: what
	// tiling changed on a crop of the first image.
	Tiling *sr.TileCheck `json:"tiling,omitempty"`

	// Reference scores the quantized model's own QDQ semantics (ORT at
	// level basic) as the quantized output is scored, and says how far
	// the int8 kernels' output is from it over all images: the
	// quantization error and the runtime's error, apart.
	Reference *ReferenceSummary `json:"reference,omitempty"`
	// Kernels checks every fused int8 group on its own against the QDQ
	// graph (kernelcheck.Check, on the first image): the verdict on
	// whether this machine's ORT computes the model right.
	Kernels *kernelcheck.Report `json:"kernel_check,omitempty"`

	EP         string `json:"ep"`
	Threads    int    `json:"threads"`
	Size       int    `json:"size"`
	Runs       int    `json:"runs"`
	Warmup     int    `json:"warmup"`
	ORTVersion string `json:"ort_version"`
	CPU        CPU    `json:"cpu"`

	PerImage []ImageResult `json:"per_image"`
}

// ReferenceSummary is the means over images of ImageResult.Reference.
type ReferenceSummary struct {
	PSNRvsFP32 float64  `json:"psnr_vs_fp32_db"`
	PSNRGT     *float64 `json:"psnr_gt_db,omitempty"`
	// PSNRGTDrop is the FP32 model's mean PSNR-Y against the ground truth
	// minus the reference's: the drop the QDQ graph itself causes.
	PSNRGTDrop *float64 `json:"psnr_gt_drop_db,omitempty"`
	// Kernels is the int8 kernels' output against the reference, over
	// every image.
	Kernels kernelcheck.Agreement `json:"kernels"`
}

// newReport fills the quality part of a report: per-image results (rounded)
// and their means.
func newReport(res []ImageResult, hr bool) *Report {
	r := &Report{HR: hr, Resampler: Resampler, Images: len(res), PerImage: make([]ImageResult, len(res))}
	var psnr float64
	var pg, sg Pair
	for i, x := range res {
		psnr += x.PSNRvsFP32
		y := x
		y.PSNRvsFP32 = round(x.PSNRvsFP32, 4)
		if x.PSNRGT != nil && x.SSIMGT != nil {
			pg.FP32 += x.PSNRGT.FP32
			pg.Quantized += x.PSNRGT.Quantized
			sg.FP32 += x.SSIMGT.FP32
			sg.Quantized += x.SSIMGT.Quantized
			y.PSNRGT = &Pair{round(x.PSNRGT.FP32, 4), round(x.PSNRGT.Quantized, 4)}
			y.SSIMGT = &Pair{round(x.SSIMGT.FP32, 6), round(x.SSIMGT.Quantized, 6)}
		}
		r.PerImage[i] = y
	}
	n := float64(max(len(res), 1))
	r.PSNRvsFP32 = round(psnr/n, 4)
	if hr {
		r.PSNRGT = &Pair{round(pg.FP32/n, 4), round(pg.Quantized/n, 4)}
		r.SSIMGT = &Pair{round(sg.FP32/n, 6), round(sg.Quantized/n, 6)}
		d := round((pg.FP32-pg.Quantized)/n, 4)
		r.PSNRGTDrop = &d
	}
	r.Reference = referenceSummary(res, pg.FP32/n)
	return r
}

// referenceSummary averages the per-image reference results; fp32GT is the
// FP32 model's mean PSNR against the ground truth. Nil when no image has
// a reference.
func referenceSummary(res []ImageResult, fp32GT float64) *ReferenceSummary {
	var s ReferenceSummary
	var vs, gt float64
	hasGT := true
	for _, x := range res {
		rr := x.Reference
		if rr == nil {
			return nil
		}
		vs += rr.PSNRvsFP32
		if rr.PSNRGT == nil {
			hasGT = false
		} else {
			gt += *rr.PSNRGT
		}
		s.Kernels.Merge(rr.Kernels)
	}
	if len(res) == 0 {
		return nil
	}
	n := float64(len(res))
	s.PSNRvsFP32 = round(vs/n, 4)
	if hasGT {
		g, d := round(gt/n, 4), round(fp32GT-gt/n, 4)
		s.PSNRGT, s.PSNRGTDrop = &g, &d
	}
	s.Kernels.Over1 = round(s.Kernels.Over1, 6)
	return &s
}

// round rounds x to n decimals so reports stay readable and byte-stable.
func round(x float64, n int) float64 {
	p := math.Pow(10, float64(n))
	return math.Round(x*p) / p
}

func roundStats(s LatencyStats) LatencyStats {
	return LatencyStats{Runs: s.Runs, MedianMS: round(s.MedianMS, 3), MinMS: round(s.MinMS, 3), MaxMS: round(s.MaxMS, 3)}
}

// JSON returns the indented JSON form of the report, newline-terminated.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return append(b, '\n'), nil
}

// WriteJSON writes the report to path atomically: into a temporary file in
// the same folder, then renamed over path, so a reader (or a crash) never
// sees half a report and a failure leaves path untouched.
func (r *Report) WriteJSON(path string) error {
	b, err := r.JSON()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(path, b); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Gates are the quality thresholds a CI job can require; nil means unset.
type Gates struct {
	// MinPSNR applies to the mean PSNR-Y of the quantized output against
	// the FP32 output.
	MinPSNR *float64
	// MaxDrop applies to the mean ground-truth PSNR-Y drop, FP32 minus
	// quantized; it needs an HR report.
	MaxDrop *float64
	// MinSpeedup applies to Speedup, FP32 median latency over quantized:
	// a quantized model that is not faster than FP32 on the machine that
	// will run it is rarely worth shipping.
	MinSpeedup *float64
}

// Slower reports whether the quantized model measured slower than FP32.
func (r *Report) Slower() bool { return r.Speedup > 0 && r.Speedup < 1 }

// Check returns nil when every set gate passes, else one error naming each
// failed gate with the measured and required values.
func (r *Report) Check(g Gates) error {
	var fails []string
	if g.MinPSNR != nil && !(r.PSNRvsFP32 >= *g.MinPSNR) {
		fails = append(fails, fmt.Sprintf("mean PSNR-Y vs FP32 %.2f dB is below the minimum %.2f dB", r.PSNRvsFP32, *g.MinPSNR))
	}
	if g.MaxDrop != nil {
		switch {
		case r.PSNRGTDrop == nil:
			fails = append(fails, "a maximum ground-truth PSNR drop needs ground-truth images (HR mode)")
		case !(*r.PSNRGTDrop <= *g.MaxDrop):
			fails = append(fails, fmt.Sprintf("mean PSNR-Y drop vs ground truth %.4f dB is above the maximum %.4f dB", *r.PSNRGTDrop, *g.MaxDrop))
		}
	}
	if g.MinSpeedup != nil && !(r.Speedup >= *g.MinSpeedup) {
		fails = append(fails, fmt.Sprintf("speed-up %.2fx is below the minimum %.2fx", r.Speedup, *g.MinSpeedup))
	}
	if k := r.Kernels; k != nil && !k.OK() {
		// Not a setting: a model the machine computes wrong fails every
		// gate a pipeline could set.
		fails = append(fails, "ORT's int8 kernels disagree with the model's QDQ graph on this machine: "+k.Summary())
	}
	if len(fails) == 0 {
		return nil
	}
	return fmt.Errorf("quality gate failed: %s", strings.Join(fails, "; "))
}

// WriteTable prints the human-readable summary: one row per image, the
// means, latency, speed-up and int8 coverage.
func (r *Report) WriteTable(w io.Writer) error {
	var b bytes.Buffer
	mode := "LR inputs"
	if r.HR {
		mode = "HR ground truth, LR by " + r.Resampler
	}
	fmt.Fprintf(&b, "%s vs %s: x%d, input 0..%g, %d images (%s), ep %s, %s\n",
		r.Quantized, r.Model, r.Scale, r.InputRange, r.Images, mode, r.EP, threadsText(r.Threads))

	nameW := len("mean")
	for _, x := range r.PerImage {
		nameW = max(nameW, len(x.Image))
	}
	tw := &b
	// Column names say what is compared with what: "q vs fp32" is the
	// quantized output against the FP32 output (how close the model is),
	// "vs GT" each model against the ground truth, and "Δ vs GT" the
	// difference of those two (what quantizing cost on the benchmark).
	if r.HR {
		fmt.Fprintf(tw, "%-*s  %14s  %15s  %12s  %s  %9s  %9s\n", nameW, "image", "q vs fp32 (dB)", "fp32 vs GT (dB)", "q vs GT (dB)", "Δ vs GT (dB)", "SSIM fp32", "SSIM q") // %s: Δ is two bytes, one column
		row := func(name string, vs float64, p, s *Pair) {
			fmt.Fprintf(tw, "%-*s  %14s  %15.2f  %12.2f  %+12.2f  %9.4f  %9.4f\n", nameW, name, db(vs), p.FP32, p.Quantized, p.Quantized-p.FP32, s.FP32, s.Quantized)
		}
		for _, x := range r.PerImage {
			row(x.Image, x.PSNRvsFP32, x.PSNRGT, x.SSIMGT)
		}
		row("mean", r.PSNRvsFP32, r.PSNRGT, r.SSIMGT)
		fmt.Fprintln(tw, "(PSNR-Y in dB, SSIM-Y 0..1 against the ground truth, shave = scale; q vs fp32: quantized output against the FP32 output, higher is closer; vs GT: each model against the ground truth; Δ vs GT: q minus fp32 against the ground truth, negative is the loss)")
	} else {
		fmt.Fprintf(tw, "%-*s  %14s\n", nameW, "image", "q vs fp32 (dB)")
		for _, x := range r.PerImage {
			fmt.Fprintf(tw, "%-*s  %14s\n", nameW, x.Image, db(x.PSNRvsFP32))
		}
		fmt.Fprintf(tw, "%-*s  %14s\n", nameW, "mean", db(r.PSNRvsFP32))
		fmt.Fprintln(tw, "(PSNR-Y in dB of the quantized output against the FP32 output, shave = scale)")
	}
	fmt.Fprintf(&b, "latency %dx%d LR, median of %d runs: fp32 %.1f ms, quantized %.1f ms, speed-up %.2fx\n",
		r.Size, r.Size, r.Runs, r.LatencyMS.FP32, r.LatencyMS.Quantized, r.Speedup)
	if r.Slower() {
		fmt.Fprintf(&b, "warning: the quantized model is slower than FP32 here (%s, %s): what runs in float and the conversions around it cost more than the int8 convs save\n", r.EP, threadsText(r.Threads))
	}
	if r.Int8Conv != nil {
		fmt.Fprintf(&b, "int8 coverage (ORT's optimized graph on %s): %s\n", r.EP, r.Int8Conv)
		if f := r.Int8Conv.Float; len(f) > 0 {
			more := ""
			if len(f) > maxTableNames {
				f, more = f[:maxTableNames], fmt.Sprintf(", … (%d more in the JSON report)", len(f)-maxTableNames)
			}
			fmt.Fprintf(&b, "float convs: %s%s\n", strings.Join(f, ", "), more)
		}
	} else {
		fmt.Fprintf(&b, "int8 coverage: not available on %s (ORT cannot write a graph with compiled nodes)\n", r.EP)
	}
	r.writeKernels(&b)
	_, err := w.Write(b.Bytes())
	return err
}

// maxTableNames bounds the float conv names the table lists; a model with
// no int8 at all would otherwise print every conv.
const maxTableNames = 8

// db formats a PSNR, spelling the MaxPSNR sentinel as "inf".
func db(v float64) string {
	if v >= MaxPSNR {
		return "inf"
	}
	return fmt.Sprintf("%.2f", v)
}

func threadsText(n int) string {
	if n == 0 {
		return "ORT default threads"
	}
	if n == 1 {
		return "1 thread"
	}
	return fmt.Sprintf("%d threads", n)
}

// writeKernels prints the kernel check and the reference (the QDQ graph's
// own semantics) apart from the quantization error above them.
func (r *Report) writeKernels(b *bytes.Buffer) {
	if k := r.Kernels; k != nil {
		verdict := "ok"
		if !k.OK() {
			verdict = "WRONG"
		}
		fmt.Fprintf(b, "kernel check: %s, ORT %s on %s: %s\n", verdict, k.ORTVersion, r.CPU, k.Summary())
		for _, d := range k.Disagree {
			fmt.Fprintf(b, "  %s (%s): up to %d codes off on %.2f%% of its outputs\n", d.Node, d.Describe(), d.MaxCodeDiff, 100*d.WrongShare)
		}
	}
	if ref := r.Reference; ref != nil {
		line := fmt.Sprintf("QDQ graph semantics (ORT level basic): PSNR-Y vs FP32 %s dB", db(ref.PSNRvsFP32))
		if ref.PSNRGTDrop != nil {
			line += fmt.Sprintf(", drop vs ground truth %.3f dB", *ref.PSNRGTDrop)
		}
		k := ref.Kernels
		fmt.Fprintf(b, "%s; the int8 kernels' output differs from it by up to %d levels, %.2f%% of values by more than 1\n", line, k.MaxDiff, 100*k.Over1)
	}
}
