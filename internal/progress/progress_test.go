package progress

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPrinterLog(t *testing.T) {
	var b bytes.Buffer
	p := NewPrinter(&b)
	assert.False(t, p.tty, "a buffer is not a terminal")
	for i := 1; i <= 3; i++ {
		p.Report("calibration", i, 3)
	}
	p.Report("tuning", 1, 2)
	p.Done()
	assert.Equal(t, "  calibration 1/3\n  calibration 2/3\n  calibration 3/3\n  tuning 1/2\n", b.String())
}

func TestPrinterTerminal(t *testing.T) {
	var b bytes.Buffer
	clock := time.Unix(0, 0)
	p := &Printer{w: &b, tty: true, now: func() time.Time { return clock }}
	p.Report("verify", 0, 4)
	clock = clock.Add(2 * time.Second)
	p.Report("verify", 1, 4)
	clock = clock.Add(2 * time.Second)
	p.Report("verify", 4, 4)
	p.Report("bench", 1, 10)
	p.Done()
	want := "\rverify [>                       ] 0/4\x1b[K" +
		"\rverify [======>                 ] 1/4  ETA 6s\x1b[K" +
		"\rverify [========================] 4/4\x1b[K\n" +
		"\rbench [==>                     ] 1/10  ETA 0s\x1b[K\n"
	assert.Equal(t, want, b.String())
	var nilFunc Func
	nilFunc.Report("x", 1, 2) // a nil Func is ignored
}

func TestBar(t *testing.T) {
	assert.Equal(t, "[============>           ]", bar(12, 24))
	assert.Len(t, bar(7, 3), barWidth+2, "overrun stays in the frame")
	assert.Len(t, bar(1, 0), barWidth+2)
}
