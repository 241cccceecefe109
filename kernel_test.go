package srq

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/verify"
)

// headDefect stands in for a runtime whose int8 kernel computes one Conv
// shape wrong (as ORT 1.24 on AMX CPUs computes 17–31 output channels):
// every quantized Conv with 3 inputs and 64 outputs — EDSR x2's head —
// gets a bias DequantizeLinear whose scale is not s_in·s_w, which the QDQ
// graph means literally and the fused QLinearConv reads as if it were. A
// padded head (80 outputs) is a shape the stand-in gets right.
func headDefect(g *graph.Graph) {
	for _, n := range g.Nodes {
		if n.OpType != "Conv" || len(n.Inputs) < 3 {
			continue
		}
		wdq := g.Producer(n.Inputs[1])
		if wdq == nil || wdq.OpType != "DequantizeLinear" {
			continue
		}
		w := g.Initializer(wdq.Inputs[0])
		if w == nil || w.Dims[0] != 64 || w.Dims[1] != 3 {
			continue
		}
		bdq := g.Producer(n.Inputs[2])
		s := g.Initializer(bdq.Inputs[1])
		f, _ := s.Float32()
		wide := make([]float32, len(f))
		for i, v := range f {
			wide[i] = 40 * v
		}
		g.SetInitializer(graph.NewFloat32(s.Name, s.Dims, wide))
	}
}

func fastConfig() quant.Config {
	cfg := quant.DefaultConfig()
	cfg.Patches, cfg.PatchSize, cfg.Threads = 4, 32, 2
	return cfg
}

// TestQuantizeRefusesWrongKernels: with the workaround off, a model whose
// fused kernels disagree with its QDQ graph is not written; the error
// names the node, the runtime and what to do.
func TestQuantizeRefusesWrongKernels(t *testing.T) {
	requireORT(t)
	imgs, err := ListImages(images)
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "q.onnx")
	cfg := fastConfig()
	cfg.AvoidKernelDefects = false
	_, err = Quantize(context.Background(), QuantizeOptions{Model: edsrX2, Images: imgs, Out: out, Config: cfg,
		KernelCheck: DefaultKernelCheck, simulateDefect: headDefect})
	var kerr *kernelcheck.Error
	require.True(t, errors.As(err, &kerr), "got %v", err)
	assert.Equal(t, "Conv 3→64, 3×3", kerr.Report.Disagree[0].Shape)
	assert.Contains(t, err.Error(), out+" not written")
	assert.Contains(t, err.Error(), kerr.Report.Disagree[0].Node)
	assert.Contains(t, err.Error(), "ONNX Runtime "+kerr.Report.ORTVersion)
	assert.NoFileExists(t, out)
	entries, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	assert.Empty(t, entries, "no temporary file left")
}

// TestQuantizePadsWrongKernels: with the workaround on (the default), the
// Conv the check finds wrong is padded to a shape the kernels get right,
// checked again, and the model written; the metadata says where it was
// checked and what was padded, and it verifies as the unpadded model does.
func TestQuantizePadsWrongKernels(t *testing.T) {
	requireORT(t)
	imgs, err := ListImages(images)
	require.NoError(t, err)
	dir := t.TempDir()
	out := filepath.Join(dir, "q.onnx")
	res, err := Quantize(context.Background(), QuantizeOptions{Model: edsrX2, Images: imgs, Out: out, Config: fastConfig(),
		KernelCheck: DefaultKernelCheck, simulateDefect: headDefect})
	require.NoError(t, err)
	require.Len(t, res.KernelFixed, 1)
	require.NotNil(t, res.Kernels)
	assert.True(t, res.Kernels.OK())
	m, _, err := LoadModel(out)
	require.NoError(t, err)
	var meta verify.KernelsMeta
	for _, p := range m.GetMetadataProps() {
		if p.GetKey() == verify.MetaKernels {
			require.NoError(t, json.Unmarshal([]byte(p.GetValue()), &meta))
		}
	}
	assert.Equal(t, res.KernelFixed, meta.Padded)
	assert.Equal(t, res.Kernels.ORTVersion, meta.ORTVersion)
	assert.Equal(t, res.CPU.String(), meta.CPU)

	plain := filepath.Join(dir, "plain.onnx")
	_, err = Quantize(context.Background(), QuantizeOptions{Model: edsrX2, Images: imgs, Out: plain, Config: fastConfig(), KernelCheck: DefaultKernelCheck})
	require.NoError(t, err)
	im, err := img.Read(imgs[0])
	require.NoError(t, err)
	crop := filepath.Join(dir, "crop.png")
	require.NoError(t, img.WritePNG(crop, img.Crop(im, 0, 0, 48, 40)))
	rep, err := Verify(context.Background(), VerifyOptions{Model: plain, Quantized: out, Images: []string{crop},
		Config: verify.Config{Threads: 2, Size: 16, Runs: 1}})
	require.NoError(t, err)
	assert.Equal(t, float64(verify.MaxPSNR), rep.PSNRvsFP32, "padding changes no output value")
}
