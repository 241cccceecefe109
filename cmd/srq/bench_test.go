package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/verify"
)

// benchFixture lays out a bench in a temporary folder: models/ with the
// bundled EDSR x2 and data/Tiny/ with one crop of a real photo. It returns
// the folder, the models folder and the data folder.
func benchFixture(t *testing.T) (dir, models, data string) {
	t.Helper()
	dir = t.TempDir()
	models, data = filepath.Join(dir, "models"), filepath.Join(dir, "data")
	require.NoError(t, os.MkdirAll(models, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(data, "Tiny"), 0o755))
	abs, err := filepath.Abs(tdModel)
	require.NoError(t, err)
	require.NoError(t, os.Symlink(abs, filepath.Join(models, "edsr_x2.onnx")))
	require.NoError(t, os.Rename(writeCrop(t, 150, 60, 96, 96), filepath.Join(data, "Tiny", "chelsea.png")))
	return dir, models, data
}

// TestBenchLowBit runs `srq bench` on the committed EDSR x2 with a one-image
// set: the low-bit table has a row per method with its Δ, the dual row
// says how its Conv inputs were written, and the JSON holds the numbers.
func TestBenchLowBit(t *testing.T) {
	needORT(t)
	dir, models, data := benchFixture(t)
	md, js := filepath.Join(dir, "BENCH.md"), filepath.Join(dir, "bench.json")

	code, out, errOut := runSRQ("bench", "--models", models, "--data", data, "--sets", "Tiny",
		"--calib", tdImages, "--bits", "w4a4", "--methods", "percentile,dual", "--sizes", "32", "--runs", "1",
		"--patches", "4", "--threads", "2", "--tune-every-model=false", "--out", md, "--json", js)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "wrote "+md+" (2 rows")
	b, err := os.ReadFile(md)
	require.NoError(t, err)
	text := string(b)
	assert.Contains(t, text, "## Low bits")
	assert.NotContains(t, text, "## W8A8")
	assert.NotContains(t, text, "## Variants", "variant rows only for --variants-for models")
	rows := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "| edsr_x2 | w4a4 |") {
			rows++
			assert.NotContains(t, line, "failed", line)
		}
	}
	assert.Equal(t, 2, rows)
	assert.Contains(t, text, "34 shared-grid", "every dual Conv input on ORT's int8 kernels")

	var got []benchRow
	b, err = os.ReadFile(js)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &got))
	require.Len(t, got, 2)
	for _, r := range got {
		assert.Empty(t, r.Failure)
		assert.Positive(t, r.Quantized["Tiny"], r.Method)
		assert.Less(t, r.Quantized["Tiny"], r.FP32["Tiny"], "%s: 4 bits cost something", r.Method)
		assert.Equal(t, 36, r.Coverage.Int8, r.Method)
		assert.True(t, r.KernelsOK, "%s: %s", r.Method, r.Kernels)
		assert.Contains(t, r.Kernels, "fused groups agree with the QDQ graph", r.Method)
	}
	assert.Greater(t, got[1].VsFP32["Tiny"], got[0].VsFP32["Tiny"], "dual closer to FP32 than percentile at W4A4")
}

func TestBenchRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bits", "w9a9"}, "--bits: bits \"w9a9\""},
		{[]string{"--report", filepath.Join(file, "html")}, "--report " + filepath.Join(file, "html") + ": cannot create it: " + file + " is not a folder"},
		{[]string{"--report", dir, "--out", filepath.Join(dir, "index.html")}, "is also the markdown or JSON output"},
		{[]string{"--methods", "kl"}, "--methods: method \"kl\""},
		{[]string{"--runs", "0"}, "--runs 0"},
		{[]string{"--models", t.TempDir()}, "no .onnx models"},
	} {
		code, out, errOut := runSRQ(append([]string{"bench"}, tc.args...)...)
		assertOneLineError(t, code, out, errOut, "srq bench: ", tc.want)
	}
}

// TestBenchMerge: --merge carries an earlier run's rows for the models this
// run does not bench, in model order, and says so.
func TestBenchMerge(t *testing.T) {
	needORT(t)
	dir, models, data := benchFixture(t)
	md, js := filepath.Join(dir, "BENCH.md"), filepath.Join(dir, "bench.json")
	args := []string{"bench", "--models", models, "--data", data, "--sets", "Tiny", "--calib", tdImages, "--bits", "w4a4", "--methods", "dual",
		"--sizes", "32", "--runs", "1", "--patches", "4", "--threads", "2", "--tune-every-model=false", "--out", md}
	code, _, errOut := runSRQ(append(args, "--json", js)...)
	require.Equal(t, exitOK, code, errOut)

	var rows []benchRow
	b, err := os.ReadFile(js)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rows))
	require.Len(t, rows, 1)
	rows = append(rows, rows[0], rows[0])
	rows[1].Model, rows[2].Model = "a_net.onnx", "edsr_x2.onnx" // the second is benched again: not carried
	b, err = json.Marshal(rows[1:])
	require.NoError(t, err)
	earlier := filepath.Join(dir, "earlier.json")
	require.NoError(t, os.WriteFile(earlier, b, 0o644))

	code, out, errOut := runSRQ(append(args, "--merge", earlier)...)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "(2 rows")
	b, err = os.ReadFile(md)
	require.NoError(t, err)
	text := string(b)
	assert.Contains(t, text, "1 rows (a_net.onnx) carried over from "+earlier)
	assert.Less(t, strings.Index(text, "| a_net | w4a4 |"), strings.Index(text, "| edsr_x2 | w4a4 |"), "models in name order")

	code, _, errOut = runSRQ(append(args, "--merge", filepath.Join(dir, "missing.json"))...)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "--merge")
}

// TestBenchDefaultsTable: the defaults table has one row per model at
// srq quantize's defaults, each timed at its own size, with its kernel
// check; other methods are left to the W8A8 table.
func TestBenchDefaultsTable(t *testing.T) {
	row := func(model, method string, size int, ok bool) *benchRow {
		return &benchRow{Model: model, Bits: "w8a8", Method: method, FP32: map[string]float64{"Set5": 32}, Quantized: map[string]float64{"Set5": 31.9},
			VsFP32: map[string]float64{"Set5": 45}, Latency: map[int][2]float64{size: {300, 100}}, Coverage: verify.ConvCoverage{Int8: 5, Total: 6},
			Kernels: "5 fused groups ...", KernelsOK: ok}
	}
	tables := benchTables([]*benchRow{row("edsr_x2.onnx", "percentile", 256, true), row("edsr_x2.onnx", "mse", 256, true),
		row("craft_x4.onnx", "percentile", 128, false)}, []string{"Set5"}, []int{256})
	require.NotEmpty(t, tables)
	d := tables[0]
	assert.Equal(t, "W8A8 defaults, every model", d.Title)
	assert.Equal(t, []string{"model", "Set5 Δ", "Set5 vs FP32", "speed-up", "int8 Convs", "kernel check"}, d.Header)
	assert.Equal(t, [][]string{
		{"edsr_x2", "-0.100", "45.00", "3.00x at 256²", "5/6", "agree"},
		{"craft_x4", "-0.100", "45.00", "3.00x at 128²", "5/6", "WRONG: 5 fused groups ..."},
	}, d.Rows)
	w8 := tables[1]
	assert.Equal(t, "W8A8", w8.Title)
	assert.Contains(t, w8.Rows[2], "–", "CRAFT was timed at 128², not 256²")
}
