package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort/orttest"
	"github.com/srquant/srq/quant"
)

// quantizeModel runs srq quantize on model with quickFlags and extra flags
// into a fresh folder, and returns the written model's path and both
// streams.
func quantizeModel(t *testing.T, model string, extra ...string) (path, stdout, stderr string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "q.onnx")
	args := append(append([]string{"quantize", "--model", model, "--calib", tdImages, "--out", path, "--speed-check", "0"}, quickFlags...), extra...)
	code, stdout, stderr := runSRQ(args...)
	require.Equal(t, exitOK, code, stderr)
	return path, stdout, stderr
}

// provenance reads what srq recorded in the model at path: its setting and
// per-layer choices.
func provenance(t *testing.T, path string) (quant.Setting, []quant.Layer, map[string]string) {
	t.Helper()
	m, err := onnx.Load(path)
	require.NoError(t, err)
	meta := map[string]string{}
	for _, p := range m.GetMetadataProps() {
		meta[p.GetKey()] = p.GetValue()
	}
	var s quant.Setting
	require.NoError(t, json.Unmarshal([]byte(meta[quant.MetaSetting]), &s))
	var ls []quant.Layer
	if v, ok := meta[quant.MetaLayers]; ok {
		require.NoError(t, json.Unmarshal([]byte(v), &ls))
	}
	return s, ls, meta
}

// withoutMetadata returns the model at path serialized without its
// metadata_props: the graph and weights alone.
func withoutMetadata(t *testing.T, path string) []byte {
	t.Helper()
	m, err := onnx.Load(path)
	require.NoError(t, err)
	m.MetadataProps = nil
	b, err := onnx.Marshal(m)
	require.NoError(t, err)
	return b
}

// TestQuantizeTimeBudget: `--tune --time-budget` bounds the tuning. A
// budget spent before the first layer leaves every layer as calibrated:
// the model is the untuned one, weight for weight, and says so. (Without
// a budget every layer is tuned: quant's TestQuantizeTune.)
func TestQuantizeTimeBudget(t *testing.T) {
	needORT(t)
	model := tinyNet(t, t.TempDir())
	lowBit := []string{"--bits", "w4a4", "--method", "dual", "--rotate=off", "--patches", "20", "--scale", "2", "--input-range", "1"}
	plain, _, _ := quantizeModel(t, model, lowBit...)
	spent, out, _ := quantizeModel(t, model, append(lowBit, "--tune", "--time-budget", "1ms")...)
	assert.Contains(t, out, "tuned     0 Convs (4 left as calibrated), kept \"calibrated\"")
	assert.True(t, bytes.Equal(withoutMetadata(t, plain), withoutMetadata(t, spent)), "a spent budget changes no weight and no quantizer")
	s, layers, _ := provenance(t, spent)
	assert.Equal(t, "1ms", s.TimeBudget)
	assert.True(t, s.Tune)
	require.Len(t, layers, 4)
	for _, l := range layers {
		assert.Empty(t, l.Tuned, l.Conv)
	}
}

// TestQuantizeBudgetBits: `--budget-bits 4` at w4a4 gives the low-bit
// Convs widths of their own whose mean, weighted by multiply-accumulates,
// is at most 4 bits; the model records the budget, each layer's width and
// the sensitivity it was chosen from. MACs are counted here from the
// written model's weights: tinyNet's low-bit Convs (the first and last
// keep 8 bits) all run at the LR resolution, so a Conv's MACs are
// proportional to its weight's size, which differs between them.
func TestQuantizeBudgetBits(t *testing.T) {
	needORT(t)
	q, _, stderr := quantizeModel(t, tinyNet(t, t.TempDir()), "--bits", "w4a4", "--method", "dual", "--budget-bits", "4", "--scale", "2", "--input-range", "1")
	s, layers, meta := provenance(t, q)
	assert.Equal(t, 4.0, s.BudgetBits)
	assert.Contains(t, meta, quant.MetaSensitivity)
	require.Len(t, layers, 4)

	m, err := onnx.Load(q)
	require.NoError(t, err)
	g, err := graph.FromModel(m)
	require.NoError(t, err)
	var macs, bitMACs float64
	widths := map[int]int{}
	for _, l := range layers {
		n := nodeNamed(g, l.Conv)
		require.NotNil(t, n, l.Conv)
		w := n.Inputs[1]
		if p := g.Producer(w); p != nil && p.OpType == "DequantizeLinear" {
			w = p.Inputs[0]
		}
		wt, ok := g.Const(w)
		require.True(t, ok, "weight of %s", l.Conv)
		size := 1.0
		for _, d := range wt.Dims {
			size *= float64(d)
		}
		macs += size
		bitMACs += size * float64(l.Bits)
		widths[l.Bits]++
	}
	mean := bitMACs / macs
	t.Logf("widths %v, MAC-weighted mean %.3f bits", widths, mean)
	assert.LessOrEqual(t, mean, 4+1e-9)
	assert.Greater(t, len(widths), 1, "mixed: not every layer at one width")
	logged := regexp.MustCompile(`mixed precision: mean (\d+\.\d+) bits over 4 Convs \(budget 4\.00, MAC-weighted\)`).FindStringSubmatch(stderr)
	require.NotNil(t, logged, stderr)
	v, err := strconv.ParseFloat(logged[1], 64)
	require.NoError(t, err)
	assert.InDelta(t, mean, v, 0.005, "srq's accounting and this test's agree")
}

func nodeNamed(g *graph.Graph, name string) *graph.Node {
	for _, n := range g.Nodes {
		if n.Name == name && n.OpType == "Conv" {
			return n
		}
	}
	return nil
}

// TestQuantizeLayerEncodingAndBreakpoint: at W4A4 dual, `--layer-encoding
// NODE=simulate` writes that one Conv's input with float ops (ORT runs it
// in float, the others stay int8) and records the override, and
// `--breakpoint search` places the breakpoints elsewhere than p99 and
// records it.
func TestQuantizeLayerEncodingAndBreakpoint(t *testing.T) {
	needORT(t)
	const layer = "/body/body.0/body/body.0/Conv"
	base, _, _ := quantizeModel(t, tdModel, "--bits", "w4a4", "--method", "dual")
	_, baseLayers, _ := provenance(t, base)
	p99 := map[string]string{}
	for _, l := range baseLayers {
		p99[l.Conv] = l.Quantizer
	}
	require.Contains(t, p99, layer)

	t.Run("layer encoding", func(t *testing.T) {
		q, out, _ := quantizeModel(t, tdModel, "--bits", "w4a4", "--method", "dual", "--layer-encoding", layer+"=simulate")
		assert.Contains(t, out, "(encoding int8): 1 float, 33 shared-grid;")
		s, layers, _ := provenance(t, q)
		assert.Equal(t, map[string]string{layer: "simulate"}, s.LayerEncoding)
		for _, l := range layers {
			want := "shared-grid"
			if l.Conv == layer {
				want = "float"
			}
			assert.Equal(t, want, l.Form, l.Conv)
			assert.Equal(t, p99[l.Conv], l.Quantizer, "the same quantizer, written another way: %s", l.Conv)
		}
		b, err := os.ReadFile(q)
		require.NoError(t, err)
		g := orttest.Summarize(orttest.Optimized(t, b))
		assert.Equal(t, 35, g.Ops["QLinearConv"], "one Conv fewer in int8 than the 36 of the int8 encoding")
		assert.Equal(t, 2, g.Ops["Conv"], "the long skip's head copy and the simulated layer")
	})

	t.Run("breakpoint search", func(t *testing.T) {
		q, _, _ := quantizeModel(t, tdModel, "--bits", "w4a4", "--method", "dual", "--breakpoint", "search")
		s, layers, _ := provenance(t, q)
		assert.Equal(t, "search", s.Breakpoint)
		require.Len(t, layers, 34)
		moved := 0
		for _, l := range layers {
			assert.Equal(t, "dual", l.Kind, l.Conv)
			if l.Quantizer != p99[l.Conv] {
				moved++
			}
		}
		t.Logf("%d of %d breakpoints moved from p99", moved, len(layers))
		assert.Positive(t, moved)
		b, err := os.ReadFile(q)
		require.NoError(t, err)
		assert.Equal(t, 36, orttest.Summarize(orttest.Optimized(t, b)).Ops["QLinearConv"])
	})
}

// net builds small x2 SR networks in the form PyTorch exports them, with
// seeded random weights scaled to keep activations of order one, for tests
// that need a model of a given structure.
type net struct {
	g *graph.Graph
	r *rand.Rand
}

func newNet(name string) *net {
	g := graph.New(name, map[string]int64{"": 17})
	g.Inputs = []*graph.Value{{Name: "input", DType: onnx.TensorProto_FLOAT,
		Shape: graph.Shape{{Value: -1, Param: "n"}, {Value: 3}, {Value: -1, Param: "h"}, {Value: -1, Param: "w"}}}}
	g.Outputs = []*graph.Value{{Name: "output", DType: onnx.TensorProto_FLOAT}}
	return &net{g: g, r: rand.New(rand.NewPCG(3, 7))}
}

// conv adds a 3x3 Conv (padding 1, a bias) from cin to cout channels.
func (n *net) conv(name, in, out string, cout, cin int64) {
	w := make([]float32, cout*cin*9)
	s := float32(math.Sqrt(3 / float64(cin*9)))
	for i := range w {
		w[i] = (2*n.r.Float32() - 1) * s
	}
	b := make([]float32, cout)
	for i := range b {
		b[i] = (2*n.r.Float32() - 1) * 0.1
	}
	n.g.SetInitializer(graph.NewFloat32(name+".w", []int64{cout, cin, 3, 3}, w))
	n.g.SetInitializer(graph.NewFloat32(name+".b", []int64{cout}, b))
	c := &graph.Node{Name: name, OpType: "Conv", Inputs: []string{in, name + ".w", name + ".b"}, Outputs: []string{out}}
	c.SetAttrInts("kernel_shape", []int64{3, 3})
	c.SetAttrInts("pads", []int64{1, 1, 1, 1})
	n.g.AddNode(c)
}

// op adds a node with one output.
func (n *net) op(typ, name string, ins []string, out string) *graph.Node {
	o := &graph.Node{Name: name, OpType: typ, Inputs: ins, Outputs: []string{out}}
	n.g.AddNode(o)
	return o
}

// save ends the network with a 2x pixel shuffle of in (12 channels) and
// writes it to dir/file.
func (n *net) save(t *testing.T, in, dir, file string) string {
	t.Helper()
	d := n.op("DepthToSpace", "shuffle", []string{in}, "output")
	d.SetAttrInt("blocksize", 2)
	d.SetAttrString("mode", "CRD")
	m, err := n.g.ToModel()
	require.NoError(t, err)
	p := filepath.Join(dir, file)
	require.NoError(t, onnx.Save(p, m, onnx.SaveOptions{}))
	return p
}

// tinyNet is a 6-Conv x2 network: a head Conv to 16 channels, four body
// Convs with ReLU (16→16, 16→16, 16→32, 32→16: two sizes of
// multiply-accumulates per pixel) and a Conv to 12 channels for the pixel
// shuffle. Its first and last Convs keep 8 bits, so four are low-bit.
func tinyNet(t *testing.T, dir string) string {
	t.Helper()
	n := newNet("tiny")
	n.conv("head", "input", "x0", 16, 3)
	for i, c := range [][2]int64{{16, 16}, {16, 16}, {32, 16}, {16, 32}} {
		n.conv(fmt.Sprintf("body%d", i), fmt.Sprintf("x%d", i), fmt.Sprintf("c%d", i), c[0], c[1])
		n.op("Relu", fmt.Sprintf("relu%d", i), []string{fmt.Sprintf("c%d", i)}, fmt.Sprintf("x%d", i+1))
	}
	n.conv("tail", "x4", "t", 12, 16)
	return n.save(t, "t", dir, "tiny.onnx")
}

// poolNet is a small x2 network ORT runs slower in int8 than in float: a
// Conv, a stack of twelve 3x3 AveragePools (a box-filter smoothing) and a
// Conv to 12 channels for the pixel shuffle. srq quantizes AveragePool
// (QLinearAveragePool), and ORT's uint8 average pool is far slower than
// its float one: the int8 model measured 0.15–0.34x of FP32 at 128×128
// with eight pools, 2 threads, on a loaded 2-core machine.
func poolNet(t *testing.T, dir string) string {
	t.Helper()
	n := newNet("pools")
	n.conv("head", "input", "p0", 16, 3)
	for i := range 12 {
		p := n.op("AveragePool", fmt.Sprintf("pool%d", i), []string{fmt.Sprintf("p%d", i)}, fmt.Sprintf("p%d", i+1))
		p.SetAttrInts("kernel_shape", []int64{3, 3})
		p.SetAttrInts("pads", []int64{1, 1, 1, 1})
	}
	n.conv("tail", "p12", "t", 12, 16)
	return n.save(t, "t", dir, "pools.onnx")
}

var speedLine = regexp.MustCompile(`(?m)^speed     128x128 LR, median of 3 runs: fp32 [\d.]+ ms, quantized [\d.]+ ms, (\d+\.\d\d)x`)

// TestQuantizeSlowerWarning: srq quantize times the written model against
// FP32 and warns on stderr when it is slower — here a network that ORT
// really runs slower in int8 (poolNet), not a faked ratio; the model is
// still written.
func TestQuantizeSlowerWarning(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	model := poolNet(t, dir)
	out := filepath.Join(dir, "q.onnx")
	code, stdout, stderr := runSRQ("quantize", "--model", model, "--calib", tdImages, "--out", out, "--patches", "8", "--patch-size", "32",
		"--threads", "2", "--scale", "2", "--input-range", "1", "--speed-check", "128")
	require.Equal(t, exitOK, code, stderr)
	m := speedLine.FindStringSubmatch(stdout)
	require.NotNil(t, m, stdout)
	ratio, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	assert.Less(t, ratio, 1.0)
	assert.Contains(t, stderr, fmt.Sprintf("warning: %s is slower than the FP32 model on this machine (%.2fx at 128x128)", out, ratio))
	assert.FileExists(t, out)
}
