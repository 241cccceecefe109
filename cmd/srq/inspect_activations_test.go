package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/passes"
)

// preparedConvs returns, for the bundled model prepared as `srq inspect
// --activations` prepares it, the input 0 of every Conv and every Conv's
// name: what the report must cover.
func preparedConvs(t *testing.T) (inputs map[string]bool, convs []string) {
	t.Helper()
	m, err := onnx.Load(tdModel)
	require.NoError(t, err)
	g, err := graph.FromModel(m)
	require.NoError(t, err)
	require.NoError(t, passes.Run(g, passes.FoldIdentity{}, passes.FuseConv1x1{}))
	inputs = map[string]bool{}
	for _, n := range g.Nodes {
		if n.OpType == "Conv" {
			inputs[n.Inputs[0]] = true
			convs = append(convs, n.Name)
		}
	}
	return inputs, convs
}

// TestInspectActivationsJSON runs the analysis on the bundled EDSR x2 with 4
// patches and checks the report's contract: every Conv input once, numbers
// in their natural order and ranges, one decodable plot per tensor.
func TestInspectActivationsJSON(t *testing.T) {
	needORT(t)
	plots := filepath.Join(t.TempDir(), "plots", "edsr") // created, as --report's folder is
	code, out, errOut := runSRQ("inspect", tdModel, "--activations", "--images", tdImages, "--patches", "4", "--threads", "2", "--json", "--plots", plots)
	require.Equal(t, exitOK, code, errOut)

	var r activationsReport
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.Equal(t, tdModel, r.Model)
	assert.Equal(t, 2, r.Scale)
	assert.Equal(t, float32(255), r.InputRange)
	assert.Equal(t, 4, r.Patches)
	assert.Equal(t, 64, r.PatchSize)
	assert.Equal(t, "percentile", r.Method)
	assert.Equal(t, 99.999, r.Percentile)
	assert.Equal(t, "w4a4", r.Bits)
	assert.Equal(t, 99.0, r.BreakpointPercentile)

	inputs, convs := preparedConvs(t)
	var read []string
	seen := map[string]bool{}
	for _, tn := range r.Tensors {
		assert.False(t, seen[tn.Value], "%s listed twice", tn.Value)
		seen[tn.Value] = true
		read = append(read, tn.Consumers...)
	}
	assert.Len(t, seen, len(inputs))
	for v := range inputs {
		assert.True(t, seen[v], "Conv input %s missing", v)
	}
	assert.ElementsMatch(t, convs, read, "every Conv named once as a consumer")

	pngs, err := filepath.Glob(filepath.Join(plots, "*"))
	require.NoError(t, err)
	assert.Len(t, pngs, len(r.Tensors), "one file per tensor, no temporary files left")
	for _, tn := range r.Tensors {
		t.Run(tn.Value, func(t *testing.T) {
			checkTensor(t, tn, r.Patches)
			require.Equal(t, plots, filepath.Dir(tn.Plot))
			assert.Regexp(t, `^[A-Za-z0-9._-]+\.png$`, filepath.Base(tn.Plot))
			b, err := os.ReadFile(tn.Plot)
			require.NoError(t, err)
			im, err := png.Decode(bytes.NewReader(b))
			require.NoError(t, err)
			assert.Greater(t, im.Bounds().Dx(), 400)
			assert.Greater(t, im.Bounds().Dy(), 300)
		})
	}
	byName := map[string]tensorActivations{}
	for _, tn := range r.Tensors {
		byName[tn.Value] = tn
	}
	// The upsampler's output is read at twice the input's resolution.
	up := byName["/tail/tail.0/tail.0.1/DepthToSpace_output_0"]
	assert.Equal(t, [3]int{64, 128, 128}, [3]int{up.Channels, up.Height, up.Width})
	assert.Equal(t, int64(4*128*128), up.Pixels)

	// Keys are snake_case and stable: spot-check the raw JSON.
	var raw struct {
		Tensors []map[string]any `json:"tensors"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &raw))
	for _, k := range []string{"name", "consumers", "min", "max", "abs_p99", "abs_p99_9", "abs_p99_99", "bp", "bp_over_max",
		"outlier_fraction", "excess_kurtosis", "channel_outliers", "channels_90", "channels", "chroma_correlation",
		"chroma_mean_outlier_pixels", "chroma_mean_all_pixels", "clip_lo", "clip_hi", "plot"} {
		assert.Contains(t, raw.Tensors[0], k)
	}
	assert.NotContains(t, raw.Tensors[0], "Stats")
}

// checkTensor checks the invariants of one tensor's numbers.
func checkTensor(t *testing.T, tn tensorActivations, patches int) {
	t.Helper()
	amax := math.Max(math.Abs(float64(tn.Min)), math.Abs(float64(tn.Max)))
	assert.LessOrEqual(t, tn.Min, tn.Max)
	assert.GreaterOrEqual(t, tn.AbsP99, float32(0))
	assert.Equal(t, tn.AbsP99, tn.Breakpoint)
	assert.LessOrEqual(t, tn.AbsP99, tn.AbsP999)
	assert.LessOrEqual(t, tn.AbsP999, tn.AbsP9999)
	assert.LessOrEqual(t, float64(tn.AbsP9999), amax)
	assert.LessOrEqual(t, tn.ClipLo, float32(0))
	assert.GreaterOrEqual(t, tn.ClipHi, float32(0))
	assert.GreaterOrEqual(t, tn.ClipLo, min(tn.Min, 0))
	assert.LessOrEqual(t, tn.ClipHi, max(tn.Max, 0))
	for name, f := range map[string]float64{"outlier_fraction": tn.OutlierFraction, "bp_over_max": tn.BreakpointRatio,
		"chroma_mean_outlier_pixels": tn.ChromaMeanOutlierPixels, "chroma_mean_all_pixels": tn.ChromaMeanAllPixels} {
		assert.True(t, f >= 0 && f <= 1, "%s = %g, want [0, 1]", name, f)
	}
	assert.True(t, tn.ChromaCorrelation >= -1 && tn.ChromaCorrelation <= 1, "correlation %g", tn.ChromaCorrelation)
	assert.Greater(t, tn.Std, 0.0)
	assert.GreaterOrEqual(t, tn.ExcessKurtosis, -2.0, "kurtosis is at least 1")
	assert.Equal(t, int64(patches*tn.Channels*tn.Height*tn.Width), tn.Count)
	assert.Equal(t, int64(patches*tn.Height*tn.Width), tn.Pixels)
	assert.LessOrEqual(t, tn.OutlierPixels, tn.Pixels)
	require.Len(t, tn.ChannelOutliers, tn.Channels)
	var sum int64
	for _, c := range tn.ChannelOutliers {
		sum += c
	}
	assert.Equal(t, tn.Outliers, sum)
	assert.InDelta(t, float64(tn.Outliers)/float64(tn.Count), tn.OutlierFraction, 1e-12)
	assert.True(t, tn.Channels90 >= 1 && tn.Channels90 <= tn.Channels, "channels_90 %d of %d", tn.Channels90, tn.Channels)
}

// TestInspectActivationsTable: the table names every tensor with its Conv,
// the MSE clip is searched for the activation bits, and no plots are
// written without --plots.
func TestInspectActivationsTable(t *testing.T) {
	needORT(t)
	code, out, errOut := runSRQ("inspect", tdModel, "--activations", "--images", tdImages, "--patches", "2", "--patch-size", "32",
		"--method", "mse", "--bits", "w8a4", "--threads", "2")
	require.Equal(t, exitOK, code, errOut)
	for _, want := range []string{
		"model       " + tdModel + " (x2, input range 0..255)\n",
		"patches     2 of 32x32 LR pixels, seed 1\n",
		"clip        uniform, mse w8a4\n",
		"\n/head/Conv_output_0 ", " /body/body.0/body/body.0/Conv ",
		"\ntime        analysis ",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "plots")
	inputs, _ := preparedConvs(t)
	assert.Equal(t, len(inputs)+15, strings.Count(out, "\n"), "one row per tensor, a header row, ten lines saying what the columns are and four of context")
	assert.Contains(t, errOut, "analysing 37 Conv inputs on 2 patches of 32x32")
}

// TestPrintActivations: every column has a name that says what it is, and
// the header explains each.
func TestPrintActivations(t *testing.T) {
	r := &activationsReport{Model: "m.onnx", Scale: 2, InputRange: 255, Patches: 4, PatchSize: 32, Seed: 1,
		Method: "percentile", Percentile: 99.999, Bits: "w4a4", BreakpointPercentile: 99,
		Tensors: []tensorActivations{{
			OutlierStats: calib.OutlierStats{Value: "/head/Conv_output_0", Channels: 64, Min: -166, Max: 224.3, AbsP999: 120, AbsP9999: 180,
				Breakpoint: 90.5, BreakpointRatio: 0.4035, OutlierFraction: 0.0101, ExcessKurtosis: 7.25, Channels90: 11,
				ChromaCorrelation: 0.31, ChromaMeanOutlierPixels: 0.14, ChromaMeanAllPixels: 0.11},
			Consumers: []string{"/body/0/Conv", "/Add"}, ClipLo: -159.9, ClipHi: 206.6,
		}}}
	var b bytes.Buffer
	printActivations(&b, r, time.Second, 2*time.Second)
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"columns     min, max             extremes of x\n",
		"            bp                   dual-region breakpoint: the 99th percentile of |x|\n",
		"            outlier ch           channels holding 90% of the samples beyond ±bp / all channels\n",
		"            chroma corr          correlation of a pixel's outlier count (channels with |x| > bp) with the chroma max(R,G,B) − min(R,G,B) of its LR input pixel\n",
		"            chroma out/all       mean chroma at pixels with outliers / at all pixels\n",
		"            uniform clip         the clip of a uniform quantizer, percentile 99.999\n",
		"tensor               conv                   min       max  p99.9|x|  p99.99|x|        bp    >bp % bp/max|x| ex.kurtosis outlier ch  chroma corr  chroma out/all  uniform clip\n",
		"/head/Conv_output_0  /body/0/Conv +1       -166     224.3       120        180      90.5    1.010     0.404        7.25      11/64        +0.31  0.14/0.11       -159.9..206.6\n",
	} {
		assert.Contains(t, out, want)
	}
	for _, old := range []string{" ch90", " r ", "out%", " kurt "} {
		assert.NotContains(t, out, old)
	}
}

func TestInspectActivationsErrors(t *testing.T) {
	plots := t.TempDir()
	badImages := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(badImages, "broken.png"), []byte("not a png"), 0o644))
	tests := []struct {
		name string
		ort  bool // the error comes after the model is opened
		args []string
		want string
	}{
		{"no images", false, []string{"--activations"}, "--activations needs --images"},
		{"images without activations", false, []string{"--images", tdImages}, "--images needs --activations"},
		{"plots without activations", false, []string{"--plots", plots}, "--plots needs --activations"},
		{"no probe", false, []string{"--activations", "--images", tdImages, "--no-probe"}, "--no-probe: --activations runs the model"},
		{"bad bits", false, []string{"--activations", "--images", tdImages, "--bits", "w9a4"}, `--bits: bits "w9a4"`},
		{"bad method", false, []string{"--activations", "--images", tdImages, "--method", "kl"}, `--method: method "kl"`},
		{"bad percentile", false, []string{"--activations", "--images", tdImages, "--percentile", "40"}, "--percentile 40"},
		{"bad patches", false, []string{"--activations", "--images", tdImages, "--patches", "0"}, "--patches 0"},
		{"plots under a file", false, []string{"--activations", "--images", tdImages, "--plots", filepath.Join(tdChelsea, "plots")}, "--plots " + filepath.Join(tdChelsea, "plots") + ": cannot create it: " + tdChelsea + " is not a folder"},
		{"plots is a file", false, []string{"--activations", "--images", tdImages, "--plots", tdChelsea}, "--plots " + tdChelsea + ": not a folder"},
		{"images folder missing, plots folder not created", false, []string{"--activations", "--images", "nope", "--plots", filepath.Join(plots, "new")}, "nope"},
		{"images folder missing", false, []string{"--activations", "--images", "nope"}, "nope"},
		{"unreadable image", true, []string{"--activations", "--images", badImages, "--plots", plots}, "broken.png"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ort {
				needORT(t)
			}
			code, stdout, stderr := runSRQ(append([]string{"inspect", tdModel}, tc.args...)...)
			assertOneLineError(t, code, stdout, stderr, "srq inspect: ", tc.want)
		})
	}
	left, err := os.ReadDir(plots)
	require.NoError(t, err)
	assert.Empty(t, left, "no output written")
}

func TestPlotName(t *testing.T) {
	used := map[string]bool{}
	for _, tc := range []struct{ tensor, want string }{
		{"/body/body.0/Add_output_0", "body_body.0_Add_output_0.png"},
		{"/body/body.0:Add output 0", "body_body.0_Add_output_0_2.png"}, // same after sanitising
		{"input", "input.png"},
		{"INPUT", "INPUT_2.png"}, // case-folding file systems
		{"..", "tensor.png"},
		{"/", "tensor_2.png"},
		{"é", "__.png"},
	} {
		assert.Equal(t, tc.want, plotName(tc.tensor, used), tc.tensor)
	}
	long := plotName(strings.Repeat("a", 300), used)
	assert.Len(t, long, 204)
}
