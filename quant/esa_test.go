package quant_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/internal/expected"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort/orttest"
	"github.com/srquant/srq/sr"
)

// esaNet builds a small x2 SR network around the enhanced spatial attention
// block of RFDN and its successors in the efficient-SR challenges, spelled
// as PyTorch exports it: a 1x1 reduction, a strided 3x3 Conv, a 7x7/3
// MaxPool, Convs with ReLU, a bilinear Resize back to the input's runtime
// size (sizes computed from Shape, as the exporter spells x.size()), a skip 1x1 Conv added in, a 1x1
// expansion, Sigmoid and the gating Mul. Weights are random (seeded), scaled
// to keep activations of order one.
func esaNet() *graph.Graph {
	const nf, f = 16, 8
	g := graph.New("esa", map[string]int64{"": 17})
	g.Inputs = []*graph.Value{{Name: "input", DType: onnx.TensorProto_FLOAT,
		Shape: graph.Shape{{Value: -1, Param: "n"}, {Value: 3}, {Value: -1, Param: "h"}, {Value: -1, Param: "w"}}}}
	r := rand.New(rand.NewPCG(11, 5))
	conv := func(name, in, out string, cout, cin, k int64, attrs map[string][]int64) {
		w := make([]float32, cout*cin*k*k)
		s := float32(math.Sqrt(3 / float64(cin*k*k)))
		for i := range w {
			w[i] = (2*r.Float32() - 1) * s
		}
		b := make([]float32, cout)
		for i := range b {
			b[i] = (2*r.Float32() - 1) * 0.1
		}
		g.SetInitializer(graph.NewFloat32(name+".w", []int64{cout, cin, k, k}, w))
		g.SetInitializer(graph.NewFloat32(name+".b", []int64{cout}, b))
		n := &graph.Node{Name: name, OpType: "Conv", Inputs: []string{in, name + ".w", name + ".b"}, Outputs: []string{out}}
		n.SetAttrInts("kernel_shape", []int64{k, k})
		for a, v := range attrs {
			n.SetAttrInts(a, v)
		}
		g.AddNode(n)
	}
	op := func(name, typ string, ins, outs []string) *graph.Node {
		n := &graph.Node{Name: name, OpType: typ, Inputs: ins, Outputs: outs}
		g.AddNode(n)
		return n
	}
	pad1 := map[string][]int64{"pads": {1, 1, 1, 1}}
	conv("head", "input", "x", nf, 3, 3, pad1)
	// ESA(x)
	conv("esa.conv1", "x", "c1_", f, nf, 1, nil)
	conv("esa.conv2", "c1_", "c1", f, f, 3, map[string][]int64{"strides": {2, 2}})
	mp := op("esa.maxpool", "MaxPool", []string{"c1"}, []string{"vmax"})
	mp.SetAttrInts("kernel_shape", []int64{7, 7})
	mp.SetAttrInts("strides", []int64{3, 3})
	conv("esa.conv_max", "vmax", "vr0", f, f, 3, pad1)
	op("esa.relu1", "Relu", []string{"vr0"}, []string{"vrange"})
	conv("esa.conv3", "vrange", "c30", f, f, 3, pad1)
	op("esa.relu2", "Relu", []string{"c30"}, []string{"c31"})
	conv("esa.conv3_", "c31", "c32", f, f, 3, pad1)
	g.SetInitializer(graph.NewInt64("s.begin", []int64{1}, []int64{2}))
	g.SetInitializer(graph.NewInt64("s.end", []int64{1}, []int64{4}))
	g.SetInitializer(graph.NewInt64("s.zero", []int64{1}, []int64{0}))
	op("esa.shape", "Shape", []string{"x"}, []string{"xshape"})
	op("esa.cshape", "Shape", []string{"c32"}, []string{"cshape"})
	op("esa.nc", "Slice", []string{"cshape", "s.zero", "s.begin"}, []string{"nc"})
	op("esa.hw", "Slice", []string{"xshape", "s.begin", "s.end"}, []string{"hw"})
	op("esa.sizes", "Concat", []string{"nc", "hw"}, []string{"sizes"}).SetAttrInt("axis", 0)
	rs := op("esa.resize", "Resize", []string{"c32", "", "", "sizes"}, []string{"c3"})
	rs.SetAttrString("mode", "linear")
	rs.SetAttrString("coordinate_transformation_mode", "half_pixel")
	conv("esa.conv_f", "c1_", "cf", f, f, 1, nil)
	op("esa.add", "Add", []string{"c3", "cf"}, []string{"c3cf"})
	conv("esa.conv4", "c3cf", "c4", nf, f, 1, nil)
	op("esa.sigmoid", "Sigmoid", []string{"c4"}, []string{"m"})
	op("esa.mul", "Mul", []string{"x", "m"}, []string{"gated"})
	// Upsampler.
	conv("tail", "gated", "t", 12, nf, 3, pad1)
	d2s := op("shuffle", "DepthToSpace", []string{"t"}, []string{"output"})
	d2s.SetAttrInt("blocksize", 2)
	d2s.SetAttrString("mode", "CRD")
	g.Outputs = []*graph.Value{{Name: "output", DType: onnx.TensorProto_FLOAT}}
	g.Invalidate()
	return g
}

// TestQuantizeESA: every op of the enhanced spatial attention block takes
// part in the int8 chain in the graph ORT runs (the Convs as QLinearConv,
// MaxPool (ORT's channels-last uint8 NhwcMaxPool) and the bilinear Resize on uint8 codes, Sigmoid, Add and the gate
// Mul as their QLinear kernels), and the quantized network stays close to
// the float one on a real image.
func TestQuantizeESA(t *testing.T) {
	requireORT(t)
	path, data := writeGraph(t, esaNet(), "esa.onnx")

	cfg := smallConfig()
	cfg.Probe = sr.ProbeOptions{Scale: 2, Range: 1}
	res, model := quantizeFile(t, path, images, cfg)
	assert.Equal(t, 9, res.Convs)
	assert.Equal(t, 9, res.ConvsInt8, "skipped: %v", res.Skipped)

	opt, err := graph.FromModel(orttest.Optimized(t, model))
	require.NoError(t, err)
	ops := map[string]int{}
	producer := map[string]string{}
	for _, n := range opt.Nodes {
		ops[n.OpType]++
		for _, o := range n.Outputs {
			producer[o] = n.OpType
		}
	}
	t.Logf("ORT optimized graph: %v", ops)
	assert.Equal(t, 9, ops["QLinearConv"])
	for _, want := range []string{"QLinearSigmoid", "QLinearAdd", "QLinearMul", "NhwcMaxPool", "Resize"} {
		assert.Equal(t, 1, ops[want], want)
	}
	for _, n := range opt.Nodes {
		if n.OpType == "NhwcMaxPool" || n.OpType == "Resize" {
			assert.NotEqual(t, "DequantizeLinear", producer[n.Inputs[0]], "%s must run on uint8 codes", n.OpType)
		}
	}
	// One int8 chain: the image is quantized once and the output
	// dequantized once.
	assert.Equal(t, 1, ops["QuantizeLinear"])
	assert.Equal(t, 1, ops["DequantizeLinear"])

	// Quantized vs float output on a real image.
	psnr := chelseaPSNR(t, data, model, 64, cfg.Probe)
	t.Logf("PSNR-Y quantized vs float: %.2f dB", psnr)
	assert.Greater(t, psnr, expected.Bundled.ESA-expected.PSNRMargin, "measured %.2f dB", expected.Bundled.ESA)
}
