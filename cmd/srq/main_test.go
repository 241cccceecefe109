package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/image/bmp"

	"github.com/srquant/srq"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/internal/version"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

// Fixtures, relative to this package's folder.
const (
	tdModel   = "../../testdata/models/edsr_x2.onnx"
	tdImages  = "../../testdata/images"
	tdChelsea = "../../testdata/images/chelsea.png"
)

// runSRQ runs the CLI in-process and returns its exit code and output.
func runSRQ(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// needORT skips the test when the ONNX Runtime library is not installed.
func needORT(t *testing.T) { orttest.Require(t) }

// assertOneLineError checks the CLI's error contract: exit 2 and exactly one
// line on stderr, prefixed with the command, that contains want.
func assertOneLineError(t *testing.T, code int, stdout, stderr, prefix, want string) {
	t.Helper()
	assert.Equal(t, exitFailure, code, "stderr: %s", stderr)
	assert.Empty(t, stdout)
	assert.True(t, strings.HasSuffix(stderr, "\n") && strings.Count(stderr, "\n") == 1, "want one line, got %q", stderr)
	assert.True(t, strings.HasPrefix(stderr, prefix), "want prefix %q, got %q", prefix, stderr)
	assert.Contains(t, stderr, want)
}

// writeCrop writes a w×h crop of chelsea.png to a temporary PNG.
func writeCrop(t *testing.T, x, y, w, h int) string {
	t.Helper()
	src, err := img.Read(tdChelsea)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "crop.png")
	require.NoError(t, img.WritePNG(p, img.Crop(src, x, y, w, h)))
	return p
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{nil, {"help"}, {"-h"}, {"--help"}} {
		code, out, errOut := runSRQ(args...)
		usage := out
		if args == nil {
			// srq alone is a usage error: usage on stderr, exit 2.
			assert.Equal(t, exitFailure, code)
			assert.Empty(t, out)
			usage = errOut
		} else {
			assert.Equal(t, exitOK, code, args)
			assert.Empty(t, errOut, args)
		}
		for _, c := range commands {
			assert.Contains(t, usage, "\n  "+c.name+" ", args)
		}
		assert.Contains(t, usage, "srq help COMMAND is srq COMMAND --help; srq --version is srq version.")
		assert.Contains(t, usage, "exit codes: 0 ok, 1 a quality gate failed, 2 bad input or failure")
	}
}

// TestHelpCommand: srq help CMD prints what srq CMD --help prints.
func TestHelpCommand(t *testing.T) {
	for _, c := range commands {
		code, out, errOut := runSRQ("help", c.name)
		require.Equal(t, exitOK, code, errOut)
		_, want, _ := runSRQ(c.name, "--help")
		assert.Equal(t, want, out, c.name)
	}
	code, out, errOut := runSRQ("help", "nope")
	assertOneLineError(t, code, out, errOut, "srq: ", `unknown command "nope"`)
	code, out, errOut = runSRQ("help", "upscale", "verify")
	assertOneLineError(t, code, out, errOut, "srq help: ", "expected one COMMAND, got 2")
}

// TestHelpStatesDefaults: commands whose defaults differ from srq
// quantize's say so, and why, in their --help; --rotate's optional value
// reads as such.
func TestHelpStatesDefaults(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"quantize", []string{`(default "w8a8")`, "srq sensitivity and srq inspect --activations default to w4a4 instead", `(default "percentile")`,
			"--rotate[=on] ", "--rotate=on (or a bare --rotate)", "give the value after =", "(default auto)", "--speed-check int ", "(default 96)"}},
		{"sensitivity", []string{`(default "w4a4")`, "unlike srq quantize's w8a8", `(default "dual")`, "unlike srq quantize's percentile"}},
		{"inspect", []string{`(default "w4a4")`, "unlike srq quantize's w8a8", "(created if missing)"}},
		{"verify", []string{"--threads int ", "(default 2)", "--size int ", "(default 256)", "--runs int ", "(default 10)"}},
	} {
		_, out, _ := runSRQ(tc.cmd, "--help")
		for _, w := range tc.want {
			assert.Contains(t, out, w, tc.cmd)
		}
	}
}

// TestVersion: srq --version and srq version print srq's version, then
// ONNX Runtime's with the library, or why it is not loaded (exit 0 both).
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, errOut := runSRQ(args...)
		require.Equal(t, exitOK, code, errOut)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		require.Len(t, lines, 2, out)
		assert.Equal(t, version.String(), lines[0])
		if _, err := ort.FindLibrary(""); err == nil {
			assert.Regexp(t, `^ONNX Runtime \d+\.\d+\.\d+ \(/.*libonnxruntime\.so(\.1)?\)$`, lines[1])
		} else {
			assert.True(t, strings.HasPrefix(lines[1], "ONNX Runtime: not loaded: "), lines[1])
		}
	}
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so")
	code, out, errOut := runSRQ("version", "--ort-lib", missing)
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, version.String()+"\nONNX Runtime: not loaded: ort: library "+missing+": no such file\n", out)
	code, out, errOut = runSRQ("version", "extra")
	assertOneLineError(t, code, out, errOut, "srq version: ", "expected no arguments")
}

func TestCommandHelp(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runSRQ(c.name, "--help")
			assert.Equal(t, exitOK, code)
			assert.Empty(t, errOut)
			assert.True(t, strings.HasPrefix(out, "usage: srq "+c.name+" [flags]"), out)
			assert.Contains(t, out, "--ort-lib PATH ")
			assert.NotContains(t, out, `string[="`, "optional values show as --flag[=value]")
		})
	}
}

// TestORTLib: --ort-lib and SRQ_ORT_LIB take either library name (make
// setup links libonnxruntime.so to libonnxruntime.so.1) or the folder, and
// a wrong path is one error line naming the flag.
func TestORTLib(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so")
	code, out, errOut := runSRQ("inspect", "--ort-lib", missing, tdModel)
	assertOneLineError(t, code, out, errOut, "srq inspect: ", "--ort-lib: ort: library "+missing+": no such file")

	t.Setenv(ort.EnvLibrary, missing)
	code, out, errOut = runSRQ("inspect", tdModel)
	assertOneLineError(t, code, out, errOut, "srq inspect: ", "$SRQ_ORT_LIB="+missing+": no such file")

	t.Setenv(ort.EnvLibrary, "")
	lib := orttest.Require(t)
	link := filepath.Join(t.TempDir(), "libonnxruntime.so")
	require.NoError(t, os.Symlink(lib, link))
	for _, tc := range []struct{ name, flag, env string }{
		{"flag, unversioned name", link, ""},
		{"flag, folder", filepath.Dir(link), ""},
		{"env, unversioned name", "", link},
		{"env, make setup's link", "", "../../.ort/libonnxruntime.so"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.env); tc.env != "" && err != nil {
				t.Skipf("%s: %v (run `make setup`)", tc.env, err)
			}
			t.Setenv(ort.EnvLibrary, tc.env)
			args := []string{"inspect", tdModel}
			if tc.flag != "" {
				args = append(args, "--ort-lib", tc.flag)
			}
			code, _, errOut := runSRQ(args...)
			assert.Equal(t, exitOK, code, errOut)
		})
	}
}

func TestUsageErrors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.png")
	tests := []struct {
		name   string
		args   []string
		prefix string
		want   string
	}{
		{"unknown command", []string{"frobnicate"}, "srq: ", `unknown command "frobnicate"`},
		{"unknown flag", []string{"inspect", "--nope", tdModel}, "srq inspect: ", "unknown flag: --nope"},
		{"bad flag value", []string{"upscale", "--tile", "x", "a", "b"}, "srq upscale: ", "--tile"},
		{"inspect without model", []string{"inspect"}, "srq inspect: ", "expected one MODEL, got 0"},
		{"inspect two models", []string{"inspect", tdModel, tdModel}, "srq inspect: ", "got 2"},
		{"inspect missing file", []string{"inspect", "--no-probe", "nope.onnx"}, "srq inspect: ", "nope.onnx"},
		{"inspect not a model", []string{"inspect", "--no-probe", tdChelsea}, "srq inspect: ", "chelsea.png"},
		{"inspect bad range", []string{"inspect", "--input-range", "3", tdModel}, "srq inspect: ", "--input-range 3: want 1 or 255"},
		{"inspect bad scale", []string{"inspect", "--scale", "-2", tdModel}, "srq inspect: ", "--scale -2"},
		{"upscale one path", []string{"upscale", "--model", tdModel, tdChelsea}, "srq upscale: ", "expected IN and OUT"},
		{"upscale without model", []string{"upscale", tdChelsea, out}, "srq upscale: ", "--model is required"},
		{"upscale negative tile", []string{"upscale", "--model", tdModel, "--tile", "-1", tdChelsea, out}, "srq upscale: ", "--tile and --overlap"},
		{"upscale over its input", []string{"upscale", "--model", tdModel, tdChelsea, tdChelsea}, "srq upscale: ", "same file as an input"},
		{"upscale over the model", []string{"upscale", "--model", tdModel, tdChelsea, tdModel}, "srq upscale: ", "same file as an input"},
		{"upscale missing image", []string{"upscale", "--model", tdModel, "nope.png", out}, "srq upscale: ", "nope.png"},
		{"rotate value after a space", []string{"quantize", "--model", tdModel, "--calib", tdImages, "--out", out, "--rotate", "off"}, "srq quantize: ", "--rotate takes its value after '=': --rotate=off"},
		// The output format is checked before the input is even read.
		{"upscale to webp", []string{"upscale", "--model", tdModel, "nope.png", out + ".webp"}, "srq upscale: ", out + ".webp: cannot write .webp images: end the output name in .png, .jpg, .jpeg or .bmp"},
		{"upscale without extension", []string{"upscale", "--model", tdModel, "nope.png", strings.TrimSuffix(out, ".png")}, "srq upscale: ", "no file extension"},
		{"upscale quality for png", []string{"upscale", "--model", tdModel, "--quality", "80", tdChelsea, out}, "srq upscale: ", "--quality sets JPEG quality, but " + out + " is written as PNG"},
		{"upscale bad quality", []string{"upscale", "--model", tdModel, "--quality", "0", tdChelsea, out + ".jpg"}, "srq upscale: ", "--quality 0: want 1..100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runSRQ(tc.args...)
			assertOneLineError(t, code, stdout, stderr, tc.prefix, tc.want)
		})
	}
	for _, p := range []string{out, out + ".webp", out + ".jpg", strings.TrimSuffix(out, ".png")} {
		assert.NoFileExists(t, p, "no output written")
	}
}

func TestInspectNoProbe(t *testing.T) {
	code, out, errOut := runSRQ("inspect", "--no-probe", tdModel)
	require.Equal(t, exitOK, code, errOut)
	for _, want := range []string{
		"ir version  8, opsets ai.onnx 17\n",
		"input       input float [batch 3 height width]\n",
		"output      output float [batch 3 out_height out_width]\n",
		"nodes       73 (38 Conv), 1369874 parameters\n",
		"  Conv                   38\n",
		"  DepthToSpace           1\n",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "scale", "no probe, no scale line")
}

func TestInspectJSON(t *testing.T) {
	needORT(t)
	code, out, errOut := runSRQ("inspect", "--json", tdModel)
	require.Equal(t, exitOK, code, errOut)
	var r srq.Inspection
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.Equal(t, tdModel, r.Model)
	assert.Equal(t, 38, r.Convs)
	assert.Equal(t, 73, r.Nodes)
	assert.Equal(t, int64(1369874), r.Params)
	assert.Equal(t, 2, r.Scale)
	assert.Equal(t, float32(255), r.InputRange)
	require.Len(t, r.Inputs, 1)
	assert.Equal(t, srq.IO{Name: "input", Type: "float", Shape: []string{"batch", "3", "height", "width"}}, r.Inputs[0])

	// Overrides are taken as given when they agree with the model.
	code, out, errOut = runSRQ("inspect", "--scale", "2", "--input-range", "255", tdModel)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "scale       x2")
	// and refused when they do not.
	code, out, errOut = runSRQ("inspect", "--scale", "3", tdModel)
	assertOneLineError(t, code, out, errOut, "srq inspect: ", "scale 3 requested")
}

func TestUpscale(t *testing.T) {
	needORT(t)
	in := writeCrop(t, 150, 60, 40, 32)
	tests := []struct {
		name string
		args []string
		w, h int
		want []string
	}{
		{"whole", nil, 80, 64, []string{": 40x32 -> 80x64 (x2, input range 0..255)"}},
		{"tiled", []string{"--tile", "16", "--overlap", "8"}, 80, 64, []string{"40x32 -> 80x64"}},
		{"hr", []string{"--hr"}, 40, 32, []string{"20x16 -> 40x32", "PSNR-Y vs " + in + ": model "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sr.png")
			args := append([]string{"upscale", "--model", tdModel, "--threads", "1"}, tc.args...)
			code, stdout, stderr := runSRQ(append(args, in, out)...)
			require.Equal(t, exitOK, code, stderr)
			assert.Empty(t, stderr)
			for _, w := range tc.want {
				assert.Contains(t, stdout, w)
			}
			im, err := img.Read(out)
			require.NoError(t, err)
			assert.Equal(t, [3]int{3, tc.h, tc.w}, [3]int{im.C, im.H, im.W})
		})
	}
}

// TestUpscaleFormats: OUT's extension picks the format. A .jpg decodes as
// JPEG (of the asked quality: smaller at a lower one), a .bmp is BMP with
// the same pixels as the .png.
func TestUpscaleFormats(t *testing.T) {
	needORT(t)
	in := writeCrop(t, 150, 60, 40, 32)
	dir := t.TempDir()
	upscale := func(out string, flags ...string) []byte {
		t.Helper()
		args := append(append([]string{"upscale", "--model", tdModel, "--threads", "1"}, flags...), in, out)
		code, stdout, stderr := runSRQ(args...)
		require.Equal(t, exitOK, code, stderr)
		assert.Contains(t, stdout, "wrote "+out)
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		return b
	}
	pngOut := filepath.Join(dir, "sr.png")
	upscale(pngOut)
	want, err := img.Read(pngOut)
	require.NoError(t, err)

	for _, name := range []string{"sr.jpg", "SR.JPEG"} {
		b := upscale(filepath.Join(dir, name))
		m, err := jpeg.Decode(bytes.NewReader(b))
		require.NoError(t, err, "%s is a JPEG", name)
		assert.Equal(t, image.Rect(0, 0, 80, 64), m.Bounds())
	}
	low := upscale(filepath.Join(dir, "low.jpg"), "--quality", "50")
	high, err := os.ReadFile(filepath.Join(dir, "sr.jpg"))
	require.NoError(t, err)
	assert.Less(t, len(low), len(high), "--quality 50 is smaller than the default 95")

	b := upscale(filepath.Join(dir, "sr.bmp"))
	require.True(t, bytes.HasPrefix(b, []byte("BM")))
	m, err := bmp.Decode(bytes.NewReader(b))
	require.NoError(t, err)
	assert.Equal(t, image.Rect(0, 0, 80, 64), m.Bounds())
	got, err := img.Read(filepath.Join(dir, "sr.bmp"))
	require.NoError(t, err)
	assert.Equal(t, img.ToUint8(want), img.ToUint8(got), "BMP holds the PNG's pixels")
}
