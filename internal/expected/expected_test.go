package expected

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tableRows returns the rows of the markdown table in text whose header
// line is header, each as its trimmed cells.
func tableRows(t *testing.T, text, header string) [][]string {
	t.Helper()
	i := strings.Index(text, "\n"+header+"\n")
	require.GreaterOrEqual(t, i, 0, "no table with the header %q", header)
	lines := strings.Split(text[i+1:], "\n")[2:] // past the header and the |---| line
	var rows [][]string
	for _, l := range lines {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		rows = append(rows, cells)
	}
	return rows
}

// number reads a table cell as the README writes numbers (− for minus).
func number(t *testing.T, cell string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(strings.ReplaceAll(cell, "−", "-"), 64)
	require.NoError(t, err, "cell %q", cell)
	return v
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../" + name)
	require.NoError(t, err)
	return string(b)
}

// benchmarksHeader is BENCHMARKS.md's "W8A8 defaults, every model" table
// (srq bench writes it): the README's setting, whose rows must match the
// claims here.
const benchmarksHeader = "| model | Set5 Δ | Set14 Δ | B100 Δ | Set5 vs FP32 | speed-up | int8 Convs | kernel check |"

// TestREADME: the README's W8A8 table is this table's README claims, row
// for row (the README rounds to three decimals), and BENCHMARKS.md
// records the same claims for the same setting, so the three documents
// cannot disagree.
func TestREADME(t *testing.T) {
	rows := tableRows(t, readDoc(t, "README.md"), "| model | Set5 Δ | Set14 Δ | B100 Δ | speed-up | int8 Convs | quantize |")
	var names []string
	for _, m := range Shared {
		if m.README != nil {
			names = append(names, m.Name)
		}
	}
	var got []string
	for _, r := range rows {
		require.Len(t, r, 7, "%v", r)
		got = append(got, r[0])
		m, ok := byName(r[0])
		if !assert.True(t, ok && m.README != nil, "README row %q has no measured claim in internal/expected", r[0]) {
			continue
		}
		c := m.README
		for i, want := range []float64{c.Set5, c.Set14, c.B100} {
			assert.InDelta(t, want, number(t, r[1+i]), READMERounding, "%s, %s Δ", r[0], []string{"Set5", "Set14", "B100"}[i])
		}
		assert.Equal(t, fmt.Sprintf("%d/%d", c.Int8Convs, c.Convs), r[5], "%s int8 Convs", r[0])
	}
	assert.Equal(t, names, got, "the README's rows are the models with a claim here, in this order")

	bench := tableRows(t, readDoc(t, "BENCHMARKS.md"), benchmarksHeader)
	seen := 0
	for _, r := range bench {
		require.Len(t, r, 8, "%v", r)
		m, ok := Lookup(r[0])
		if !assert.True(t, ok, "BENCHMARKS.md row %q is no model of Shared", r[0]) || m.README == nil {
			continue
		}
		c := m.README
		for i, want := range []float64{c.Set5, c.Set14, c.B100} {
			assert.InDelta(t, want, number(t, r[1+i]), READMERounding, "BENCHMARKS.md %s, %s Δ", r[0], []string{"Set5", "Set14", "B100"}[i])
		}
		assert.InDelta(t, c.Set5VsFP32, number(t, r[4]), 0.006, "BENCHMARKS.md %s Set5 vs FP32", r[0])
		assert.Equal(t, fmt.Sprintf("%d/%d", c.Int8Convs, c.Convs), r[6], "BENCHMARKS.md %s int8 Convs", r[0])
		seen++
	}
	assert.Equal(t, len(names), seen, "BENCHMARKS.md's W8A8 defaults table has a row per model with a README claim")
}

// TestCoverageIndependentOfCalibration: how many Convs run int8 depends on
// the graph, not on the calibration, so the README's setting and the
// test's give the same coverage; and every model has the fields a test
// reads.
func TestCoverageIndependentOfCalibration(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Shared {
		assert.False(t, seen[m.File], "%s listed twice", m.File)
		seen[m.File] = true
		assert.NotEmpty(t, m.Name, m.File)
		assert.Positive(t, m.Test.Convs, m.File)
		assert.NotNil(t, m.Graph.Ops, m.File)
		assert.NotNil(t, m.Graph.Float, m.File, "an empty map, not nil, says: no float op")
		assert.Equal(t, m.Test.Int8Convs, m.Graph.Ops["QLinearConv"], "%s: int8 Convs are the graph's QLinearConv", m.File)
		if m.README != nil {
			assert.Equal(t, [2]int{m.README.Int8Convs, m.README.Convs}, [2]int{m.Test.Int8Convs, m.Test.Convs}, m.File)
		}
	}
}

func byName(name string) (Model, bool) {
	for _, m := range Shared {
		if m.Name == name {
			return m, true
		}
	}
	return Model{}, false
}

// TestSharedREADME: the FP32 Set5 PSNR-Y measured here is the one
// ../shared/README.md gives (to two decimals) for each shared model.
func TestSharedREADME(t *testing.T) {
	b, err := os.ReadFile("../../../shared/README.md")
	if err != nil {
		t.Skipf("../shared is absent here (the shared models and data live beside the checkout): %v", err)
	}
	rows := tableRows(t, string(b), "| file | arch | scale | input range | params | FP32 PSNR-Y Set5 / Set14 / B100 (PIL bicubic LR, shave = scale) |")
	fp32 := map[string]string{}
	for _, r := range rows {
		require.Len(t, r, 6, "%v", r)
		fp32[strings.TrimSuffix(strings.Trim(r[0], "`"), ".onnx")] = strings.Fields(r[5])[0]
	}
	for _, m := range Shared {
		if assert.Contains(t, fp32, m.File) {
			assert.InDelta(t, m.Test.Set5FP32, number(t, fp32[m.File]), 0.006, "%s FP32 Set5", m.File)
		}
	}
}
