package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/verify"
)

// TestDoctor runs the whole kernel grid: it passes on a machine whose ORT
// computes every int8 kernel srq relies on like its QDQ graph, and fails
// (exit 1, the failing shapes listed) on one that does not — on an AMX CPU
// with ORT 1.24.x, the Convs with 17–31 outputs.
func TestDoctor(t *testing.T) {
	needORT(t)
	js := filepath.Join(t.TempDir(), "doctor.json")
	code, out, errOut := runSRQ("doctor", "--json", js)
	require.Equal(t, exitOK, code, "%s\n%s", out, errOut)
	for _, want := range []string{"ONNX Runtime 1.", "execution providers: cpu", "CPU: ", "QLinearConv ", "QLinearAdd ", "QLinearSigmoid ", "Resize ", "cases agree within 1 code"} {
		assert.Contains(t, out, want)
	}
	var rep doctorReport
	b, err := os.ReadFile(js)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rep))
	assert.Len(t, rep.Cases, len(kernelcheck.GridCases()))
	assert.Zero(t, rep.Failed)

	code, out, errOut = runSRQ("doctor", "extra")
	assertOneLineError(t, code, out, errOut, "srq doctor: ", "no positional arguments")
}

// TestVerifyKernelCheck: srq verify reports the kernel check and the QDQ
// graph's own score; on a model whose fused and unfused forms differ (a
// bias DequantizeLinear whose scale is not s_in·s_w, which ORT's fused
// QLinearConv reads as if it were, standing in for a defective kernel on
// a machine without one) the table and the JSON name the Conv and the
// command fails its gate (exit 1).
func TestVerifyKernelCheck(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	q := filepath.Join(dir, "q.onnx")
	code, _, errOut := runSRQ("quantize", "--model", tdModel, "--calib", tdImages, "--patches", "4", "--patch-size", "32",
		"--threads", "2", "--speed-check", "0", "--out", q)
	require.Equal(t, exitOK, code, errOut)
	crop := writeCrop(t, 100, 60, 64, 48)
	imgs := filepath.Dir(crop)
	code, out, errOut := runSRQ("verify", "--model", tdModel, "--quantized", q, "--images", imgs, "--runs", "1", "--size", "16", "--threads", "2")
	require.Equal(t, exitOK, code, "%s\n%s", out, errOut)
	assert.Contains(t, out, "kernel check: ok, ORT ")
	assert.Contains(t, out, "QDQ graph semantics (ORT level basic): PSNR-Y vs FP32 ")

	m, err := onnx.Load(q)
	require.NoError(t, err)
	g, err := graph.FromModel(m)
	require.NoError(t, err)
	g = g.Clone()
	var conv *graph.Node
	for _, n := range g.Nodes {
		if n.OpType == "Conv" && len(n.Inputs) == 3 && strings.Contains(n.Name, "body.3") {
			conv = n
			break
		}
	}
	require.NotNil(t, conv)
	s := g.Initializer(g.Producer(conv.Inputs[2]).Inputs[1])
	f, err := s.Float32()
	require.NoError(t, err)
	wide := make([]float32, len(f))
	for i, v := range f {
		wide[i] = 40 * v
	}
	g.SetInitializer(graph.NewFloat32(s.Name, s.Dims, wide))
	bm, err := g.ToModel()
	require.NoError(t, err)
	broken := filepath.Join(dir, "broken.onnx")
	require.NoError(t, onnx.Save(broken, bm, onnx.SaveOptions{}))

	js := filepath.Join(dir, "v.json")
	code, out, errOut = runSRQ("verify", "--model", tdModel, "--quantized", broken, "--images", imgs, "--runs", "1", "--size", "16", "--threads", "2", "--json", js)
	assert.Equal(t, exitGate, code, "%s\n%s", out, errOut)
	assert.Contains(t, out, "kernel check: WRONG")
	assert.Contains(t, out, conv.Name+" (Conv 64→64, 3×3)")
	assert.Contains(t, errOut, "int8 kernels disagree with the model's QDQ graph")
	var rep verify.Report
	b, err := os.ReadFile(js)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rep))
	require.NotNil(t, rep.Kernels)
	require.NotEmpty(t, rep.Kernels.Disagree)
	assert.Equal(t, conv.Name, rep.Kernels.Disagree[0].Node)
	assert.Empty(t, rep.Kernels.ReferenceFused)
}
