// Package progress reports the steps of srq's long stages (calibration,
// tuning, verifying a folder, benchmarking): library code calls a Func; the
// CLI turns the calls into a one-line bar with an ETA on a terminal, and
// into plain lines in a log.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Func receives the progress of a stage: done of total steps. Library code
// takes a Func that may be nil.
type Func func(stage string, done, total int)

// Report calls f if it is not nil.
func (f Func) Report(stage string, done, total int) {
	if f != nil {
		f(stage, done, total)
	}
}

// Printer renders progress on w. On a terminal it redraws one line per
// stage, "stage [=====>    ] 12/64  ETA 8s", in place; elsewhere (a log, a
// pipe) it prints one plain line per step, "  stage 12/64", so logs keep
// the current lines. It is safe for concurrent use.
type Printer struct {
	w      io.Writer
	tty    bool
	now    func() time.Time
	mu     sync.Mutex
	stage  string
	start  time.Time
	drawn  bool
	latest string
}

// NewPrinter returns a Printer on w; tty is detected when w is a terminal.
func NewPrinter(w io.Writer) *Printer {
	return &Printer{w: w, tty: IsTerminal(w), now: time.Now}
}

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// barWidth is the number of cells of the bar.
const barWidth = 24

// Func returns the Printer as a progress Func.
func (p *Printer) Func() Func { return p.Report }

// Report shows that done of total steps of stage are finished.
func (p *Printer) Report(stage string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if stage != p.stage {
		p.finishLocked()
		p.stage, p.start = stage, p.now()
	}
	if !p.tty {
		fmt.Fprintf(p.w, "  %s %d/%d\n", stage, done, total)
		return
	}
	line := fmt.Sprintf("%s %s %d/%d", stage, bar(done, total), done, total)
	if done > 0 && done < total {
		el := p.now().Sub(p.start)
		eta := time.Duration(float64(el) / float64(done) * float64(total-done))
		line += "  ETA " + eta.Round(time.Second).String()
	}
	// \r and a clear-to-end-of-line keep one line on screen.
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.drawn, p.latest = true, line
	if done >= total {
		p.finishLocked()
	}
}

// Done ends the current line, if a bar is drawn; call it before printing
// anything else to the same writer.
func (p *Printer) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
}

func (p *Printer) finishLocked() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
	p.stage = ""
}

// bar renders [=====>    ] for done of total.
func bar(done, total int) string {
	if total <= 0 {
		return "[" + strings.Repeat(" ", barWidth) + "]"
	}
	n := min(max(done*barWidth/total, 0), barWidth)
	s := strings.Repeat("=", n)
	if n < barWidth {
		s += ">" + strings.Repeat(" ", barWidth-n-1)
	}
	return "[" + s + "]"
}
