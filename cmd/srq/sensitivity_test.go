package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSensitivityRefuses: every bad input of `srq sensitivity` is one error
// line naming the flag it came from, exit code 2, before any measurement,
// and nothing is written (neither the JSON nor the chart, nor over an
// input).
func TestSensitivityRefuses(t *testing.T) {
	needORT(t) // the one-channel model is refused by its probe
	fixtures := t.TempDir()
	emptyDir := filepath.Join(fixtures, "empty")
	require.NoError(t, os.Mkdir(emptyDir, 0o755))
	gray := oneChannelModel(t, fixtures)
	calibImage := filepath.Join(tdImages, "chelsea.png")
	modelBefore, err := os.ReadFile(tdModel)
	require.NoError(t, err)
	imageBefore, err := os.ReadFile(calibImage)
	require.NoError(t, err)

	tests := []struct {
		name string
		// args are added to --model tdModel --calib tdImages (later flags
		// win); OUT stands for a file in a fresh folder.
		args []string
		want string
	}{
		{"missing --model", []string{"--model", ""}, "--model is required"},
		{"missing --calib", []string{"--calib", ""}, "--calib is required"},
		{"positional argument", []string{"extra"}, "expected no positional arguments"},
		{"malformed bits", []string{"--bits", "int4"}, `--bits: bits "int4": want wNaM`},
		{"bits above 8", []string{"--bits", "w9a9"}, `--bits: bits "w9a9": weight and activation widths must be in 2..8`},
		{"unknown method", []string{"--method", "entropy"}, `--method: method "entropy": want minmax, percentile, mse or dual`},
		{"bad accounting", []string{"--accounting", "paper"}, `--accounting: bit accounting "paper": want reference or strict`},
		{"bad breakpoint", []string{"--breakpoint", "-3"}, `--breakpoint: breakpoint "-3": want search, pP`},
		{"bad percentile", []string{"--percentile", "101"}, "--percentile 101: want a value in [50, 100]"},
		{"bad weights", []string{"--weights", "per-row"}, `--weights "per-row": want per-channel or per-tensor`},
		{"no patches", []string{"--patches", "0"}, "--patches, --patch-size: want positive integers"},
		{"bad patch size", []string{"--patch-size", "-4"}, "--patches, --patch-size: want positive integers"},
		{"bad threads", []string{"--threads", "-1"}, "--threads: 0 or more"},
		{"bad input range", []string{"--input-range", "2"}, "--input-range 2: want 1 or 255"},
		{"empty calibration folder", []string{"--calib", emptyDir}, "no .png/.jpg/.jpeg/.bmp files in folder " + emptyDir},
		{"missing calibration folder", []string{"--calib", filepath.Join(fixtures, "nope")}, "cannot read folder"},
		{"missing model", []string{"--model", filepath.Join(fixtures, "nope.onnx")}, "nope.onnx"},
		{"one-channel model", []string{"--model", gray}, ": not an NCHW 3-channel image input"},
		{"json is the model", []string{"--json", tdModel}, "--json " + tdModel + ": is the same file as the input " + tdModel},
		{"json is a calibration image", []string{"--json", calibImage}, "--json " + calibImage + ": is the same file as the input"},
		{"json folder missing", []string{"--json", filepath.Join(fixtures, "no", "s.json")}, "--json " + filepath.Join(fixtures, "no", "s.json") + ": folder " + filepath.Join(fixtures, "no") + " does not exist"},
		{"json is a folder", []string{"--json", fixtures}, "--json " + fixtures + ": not a regular file"},
		// The audit's bug: a --plot path was reported as --json.
		{"plot folder missing", []string{"--plot", "nodir/p.png"}, "--plot nodir/p.png: folder nodir does not exist"},
		{"plot is the model", []string{"--plot", tdModel}, "--plot " + tdModel + ": is the same file as the input " + tdModel},
		{"plot is a calibration image", []string{"--plot", calibImage}, "--plot " + calibImage + ": is the same file as the input"},
		{"plot is a folder", []string{"--plot", fixtures}, "--plot " + fixtures + ": not a regular file"},
		{"plot to stdout", []string{"--plot", "-"}, "--plot -: a PNG chart goes to a file"},
		{"plot and json the same file", []string{"--json", "OUT", "--plot", "OUT"}, ": same file as --json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"sensitivity", "--model", tdModel, "--calib", tdImages, "--patches", "4", "--patch-size", "16", "--threads", "1"}
			for _, a := range tc.args {
				if a == "OUT" {
					a = filepath.Join(dir, "s.out")
				}
				args = append(args, a)
			}
			code, stdout, stderr := runSRQ(args...)
			assertOneLineError(t, code, stdout, stderr, "srq sensitivity: ", tc.want)
			assert.Empty(t, dirEntries(t, dir), "nothing written")
		})
	}
	after, err := os.ReadFile(tdModel)
	require.NoError(t, err)
	assert.Equal(t, modelBefore, after, "the model is untouched")
	after, err = os.ReadFile(calibImage)
	require.NoError(t, err)
	assert.Equal(t, imageBefore, after, "the calibration image is untouched")
	assert.Equal(t, []string{"empty", "gray.onnx"}, dirEntries(t, fixtures))
	assert.NoDirExists(t, "nodir")
}
