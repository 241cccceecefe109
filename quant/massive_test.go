package quant_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/sr"
)

// massiveNet builds a small x2 network whose residual branch writes one
// channel with a massive activation (a bias of 40 beside channels of
// order one, as CRAFT's last residual group writes a channel near 1500)
// into a sum that a channel norm reads, spelled out as PyTorch exports
// it (ReduceMean, Sub, the mean square, Sqrt, Div, the learnt scale).
func massiveNet() *graph.Graph {
	const nf = 8
	g := graph.New("massive", map[string]int64{"": 17})
	g.Inputs = []*graph.Value{{Name: "input", DType: onnx.TensorProto_FLOAT,
		Shape: graph.Shape{{Value: -1, Param: "n"}, {Value: 3}, {Value: -1, Param: "h"}, {Value: -1, Param: "w"}}}}
	r := rand.New(rand.NewPCG(3, 7))
	conv := func(name, in, out string, cout, cin int64, big int) {
		w := make([]float32, cout*cin*9)
		s := float32(math.Sqrt(3 / float64(cin*9)))
		for i := range w {
			w[i] = (2*r.Float32() - 1) * s
		}
		b := make([]float32, cout)
		for i := range b {
			b[i] = (2*r.Float32() - 1) * 0.1
		}
		if big >= 0 {
			b[big] = 40
		}
		g.SetInitializer(graph.NewFloat32(name+".w", []int64{cout, cin, 3, 3}, w))
		g.SetInitializer(graph.NewFloat32(name+".b", []int64{cout}, b))
		n := &graph.Node{Name: name, OpType: "Conv", Inputs: []string{in, name + ".w", name + ".b"}, Outputs: []string{out}}
		n.SetAttrInts("pads", []int64{1, 1, 1, 1})
		g.AddNode(n)
	}
	op := func(name, typ string, ins ...string) *graph.Node {
		n := &graph.Node{Name: name, OpType: typ, Inputs: ins, Outputs: []string{name}}
		g.AddNode(n)
		return n
	}
	conv("head", "input", "x", nf, 3, -1)
	conv("body", "x", "y", nf, nf, 5)
	op("sum", "Add", "x", "y")
	op("mean", "ReduceMean", "sum").SetAttrInts("axes", []int64{1})
	op("centered", "Sub", "sum", "mean")
	op("square", "Mul", "centered", "centered")
	op("var", "ReduceMean", "square").SetAttrInts("axes", []int64{1})
	g.SetInitializer(graph.NewFloat32("eps", nil, []float32{1e-5}))
	op("var_eps", "Add", "var", "eps")
	op("std", "Sqrt", "var_eps")
	op("normed", "Div", "centered", "std")
	// The norm's learnt scale gives the small channels back their size.
	gamma := make([]float32, nf)
	for i := range gamma {
		gamma[i] = 20
	}
	gamma[5] = 0.05
	g.SetInitializer(graph.NewFloat32("gamma", []int64{1, nf, 1, 1}, gamma))
	op("scaled", "Mul", "normed", "gamma")
	conv("tail", "scaled", "t", 12, nf, -1)
	d2s := &graph.Node{Name: "shuffle", OpType: "DepthToSpace", Inputs: []string{"t"}, Outputs: []string{"output"}}
	d2s.SetAttrInt("blocksize", 2)
	d2s.SetAttrString("mode", "CRD")
	g.AddNode(d2s)
	g.Outputs = []*graph.Value{{Name: "output", DType: onnx.TensorProto_FLOAT}}
	g.Invalidate()
	return g
}

// TestQuantizeMassiveChannel: a Conv whose output only a float op reads
// (the residual sum a norm reads) and whose channels fall into ranges 4x
// apart is written as Convs over runs of its channels, each on its own
// grid and int8 in ORT's graph, and the quantized network tracks the
// float one on a real image better than with one grid over all channels
// (measured on the chelsea crop: 60.0 dB split, 53.0 dB without).
func TestQuantizeMassiveChannel(t *testing.T) {
	requireORT(t)
	path, data := writeGraph(t, massiveNet(), "massive.onnx")

	cfg := smallConfig()
	cfg.Probe = sr.ProbeOptions{Scale: 2, Range: 1}
	var logs []string
	_, model := quantizeFileEv(t, path, images, cfg, quant.Events{Log: func(s string) { logs = append(logs, s) }})
	assert.Contains(t, strings.Join(logs, "\n"), "wrote the output channels of body (3 runs) on grids of their own")

	ops := optimizedOps(t, model)
	assert.Equal(t, 5, ops["QLinearConv"], "head, three runs of body, tail: %v", ops)
	assert.Zero(t, ops["QLinearConcat"], "the runs meet in a float Concat: %v", ops)

	psnr := chelseaPSNR(t, data, model, 64, cfg.Probe)
	t.Logf("PSNR-Y quantized vs float: %.2f dB", psnr)
	assert.Greater(t, psnr, 56.0)
}
