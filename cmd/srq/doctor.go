package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/srquant/srq/internal/atomicfile"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/verify"
)

// doctorReport is the JSON form of `srq doctor --json`.
type doctorReport struct {
	ORTVersion string                   `json:"ort_version"`
	Library    string                   `json:"library"`
	Providers  []string                 `json:"providers"`
	CPU        verify.CPU               `json:"cpu"`
	EP         string                   `json:"ep"`
	Cases      []kernelcheck.CaseResult `json:"cases"`
	Failed     int                      `json:"failed"`
}

func doctorFlags(fs *pflag.FlagSet) func(*app, []string) error {
	jsonPath := fs.String("json", "", "also write the report as JSON to this file")
	threads := fs.Int("threads", 2, "intra-op threads")
	ep := fs.String("ep", "cpu", "execution provider whose int8 kernels are checked: cpu, cuda or tensorrt")
	all := fs.Bool("all", false, "print every case, not only a line per kernel and the failures")
	return func(a *app, args []string) error {
		if err := wantArgs(args, 0, "no positional arguments"); err != nil {
			return err
		}
		if *threads < 0 {
			return fmt.Errorf("--threads %d: want 0 (ORT's default) or more", *threads)
		}
		if *jsonPath != "" {
			if err := checkReportPath("--json", *jsonPath, nil); err != nil {
				return err
			}
		}
		if err := a.initORT(); err != nil {
			return err
		}
		cpu := verify.HostCPU()
		fmt.Fprintf(a.stdout, "ONNX Runtime %s (%s)\nexecution providers: %s\nCPU: %s\n",
			ort.Version(), ort.Library(), strings.Join(ort.Providers(), ", "), cpu)
		start := time.Now()
		cases := kernelcheck.GridCases()
		fmt.Fprintf(a.stdout, "checking %d single-op QDQ models: ORT's int8 kernels (level all, %s) against the graph's QDQ semantics (level basic)...\n", len(cases), *ep)
		res, err := kernelcheck.Grid(a.ctx, cases, kernelcheck.GridOptions{Threads: *threads, EP: *ep})
		if err != nil {
			return err
		}
		rep := doctorReport{ORTVersion: ort.Version(), Library: ort.Library(), Providers: ort.Providers(), CPU: cpu, EP: *ep, Cases: res}
		for _, r := range res {
			if !r.OK() {
				rep.Failed++
			}
		}
		printDoctor(a.stdout, res, *all)
		fmt.Fprintf(a.stdout, "%d of %d cases agree within %d code (%s)\n", len(res)-rep.Failed, len(res), kernelcheck.Tolerance, time.Since(start).Round(time.Millisecond))
		if *jsonPath != "" {
			b, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				return err
			}
			if err := atomicfile.WriteBytes(*jsonPath, append(b, '\n')); err != nil {
				return fmt.Errorf("%s: %w", *jsonPath, err)
			}
		}
		if rep.Failed > 0 {
			return &gateError{msg: fmt.Sprintf("%d int8 kernel cases disagree with their QDQ graphs on this machine (ORT %s, %s): a model using those shapes is computed wrong here; srq quantize pads the Conv shapes it knows and refuses models it cannot fix",
				rep.Failed, ort.Version(), cpu)}
		}
		return nil
	}
}

// printDoctor prints one line per kernel (how many of its shapes agree)
// and every failing case, or every case with all.
func printDoctor(w io.Writer, res []kernelcheck.CaseResult, all bool) {
	type tally struct{ ok, n int }
	var ops []string
	count := map[string]*tally{}
	for _, r := range res {
		t := count[r.Op]
		if t == nil {
			t = &tally{}
			count[r.Op] = t
			ops = append(ops, r.Op)
		}
		t.n++
		if r.OK() {
			t.ok++
		}
	}
	fmt.Fprintf(w, "%-26s  %s\n", "kernel", "shapes that agree")
	for _, op := range ops {
		t := count[op]
		verdict := "ok"
		if t.ok < t.n {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%-26s  %d/%d  %s\n", op, t.ok, t.n, verdict)
	}
	header := false
	for _, r := range res {
		if r.OK() && !all {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\n%-4s  %-26s  %-44s  %s\n", "", "kernel", "shape", "largest difference (codes), share off by more than 1")
			header = true
		}
		verdict := "ok"
		if !r.OK() {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%-4s  %-26s  %-44s  %d, %.2f%%\n", verdict, r.Op, r.Shape, r.MaxCodeDiff, 100*r.WrongShare)
	}
}
