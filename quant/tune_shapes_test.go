package quant

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/calib"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
	"github.com/srquant/srq/qdq"
	"github.com/srquant/srq/sr"
)

// Tuning and sensitivity on every Conv shape an SR network holds: each
// case is a small x2 network (an 8-bit head and tail around the layers
// under test) with the shape next to a sibling Conv that reads the same
// value with another geometry, as in the published networks where tuning
// once failed: ESA's strided 3x3 beside its 1x1 ("gptq: 2304 weights, want
// 16×16"), a pixel-attention 3x3 beside its 1x1 ("3600 weights, want
// 20×20"), RFDN's 50→25 1x1 distillation beside its 50→50 3x3 (a panic in
// OutputError).

const tuneImages = "../testdata/images"

// shapeNet builds the graph of one case.
type shapeNet struct {
	g *graph.Graph
	r *rand.Rand
}

func newShapeNet(channels int64) *shapeNet {
	g := graph.New("shapes", map[string]int64{"": 17})
	g.Inputs = []*graph.Value{{Name: "input", DType: onnx.TensorProto_FLOAT,
		Shape: graph.Shape{{Value: -1, Param: "n"}, {Value: 3}, {Value: -1, Param: "h"}, {Value: -1, Param: "w"}}}}
	s := &shapeNet{g: g, r: rand.New(rand.NewPCG(16, 4))}
	s.conv("head", "input", "h0", channels, 3, 3, 1, "pads", 1, 1, 1, 1)
	s.op("head.relu", "Relu", "h0", "x")
	return s
}

// conv adds a Conv of cout outputs reading in (cin channels, groups
// groups) with a k×k kernel; attrs are name, values... pairs of INTS
// attributes, a name followed by its values (e.g. "strides", 2, 2).
func (s *shapeNet) conv(name, in, out string, cout, cin, k, groups int64, attrs ...any) {
	w := make([]float32, cout*cin/groups*k*k)
	sc := float32(math.Sqrt(3 / float64(cin/groups*k*k)))
	for i := range w {
		w[i] = (2*s.r.Float32() - 1) * sc
	}
	b := make([]float32, cout)
	for i := range b {
		b[i] = (2*s.r.Float32() - 1) * 0.1
	}
	s.g.SetInitializer(graph.NewFloat32(name+".w", []int64{cout, cin / groups, k, k}, w))
	s.g.SetInitializer(graph.NewFloat32(name+".b", []int64{cout}, b))
	n := &graph.Node{Name: name, OpType: "Conv", Inputs: []string{in, name + ".w", name + ".b"}, Outputs: []string{out}}
	n.SetAttrInts("kernel_shape", []int64{k, k})
	if groups != 1 {
		n.SetAttrInt("group", groups)
	}
	var attr string
	var vals []int64
	flush := func() {
		if attr != "" {
			n.SetAttrInts(attr, vals)
		}
	}
	for _, a := range attrs {
		switch v := a.(type) {
		case string:
			flush()
			attr, vals = v, nil
		case int:
			vals = append(vals, int64(v))
		}
	}
	flush()
	s.g.AddNode(n)
}

func (s *shapeNet) op(name, typ, ins, outs string) *graph.Node {
	n := &graph.Node{Name: name, OpType: typ, Inputs: strings.Split(ins, ","), Outputs: strings.Split(outs, ",")}
	s.g.AddNode(n)
	return n
}

// model adds the x2 tail reading v (c channels) and returns the model.
func (s *shapeNet) model(t *testing.T, v string, c int64) []byte {
	t.Helper()
	s.conv("tail", v, "t", 12, c, 3, 1, "pads", 1, 1, 1, 1)
	d2s := s.op("shuffle", "DepthToSpace", "t", "output")
	d2s.SetAttrInt("blocksize", 2)
	d2s.SetAttrString("mode", "CRD")
	s.g.Outputs = []*graph.Value{{Name: "output", DType: onnx.TensorProto_FLOAT}}
	s.g.Invalidate()
	m, err := s.g.ToModel()
	require.NoError(t, err)
	require.NoError(t, onnx.Validate(m))
	data, err := onnx.Marshal(m)
	require.NoError(t, err)
	return data
}

// shapeCases are the layer shapes, each with the Convs under test.
var shapeCases = []struct {
	name  string
	build func(t *testing.T) []byte
	convs []string
}{
	{"strided 3x3, 16 channels, stride 2 (ESA)", func(t *testing.T) []byte {
		s := newShapeNet(16)
		s.conv("L", "x", "s", 16, 16, 3, 1, "strides", 2, 2, "pads", 1, 1, 1, 1)
		s.conv("side", "x", "f", 16, 16, 1, 1)
		s.g.SetInitializer(graph.NewFloat32("up.scales", []int64{4}, []float32{1, 1, 2, 2}))
		rs := s.op("up", "Resize", "s,,up.scales", "u")
		rs.SetAttrString("mode", "nearest")
		s.op("add", "Add", "u,f", "y")
		return s.model(t, "y", 16)
	}, []string{"L", "side"}},
	{"strided 3x3, pads 0,0,1,1", func(t *testing.T) []byte {
		s := newShapeNet(16)
		s.conv("L", "x", "s", 16, 16, 3, 1, "strides", 2, 2, "pads", 0, 0, 1, 1)
		s.conv("side", "x", "f", 16, 16, 1, 1)
		s.g.SetInitializer(graph.NewFloat32("up.scales", []int64{4}, []float32{1, 1, 2, 2}))
		s.op("up", "Resize", "s,,up.scales", "u").SetAttrString("mode", "nearest")
		s.op("add", "Add", "u,f", "y")
		return s.model(t, "y", 16)
	}, []string{"L", "side"}},
	{"pixel attention: 3x3 20→20 beside a 1x1", func(t *testing.T) []byte {
		s := newShapeNet(20)
		s.conv("k2", "x", "a", 20, 20, 1, 1)
		s.op("k2.sigmoid", "Sigmoid", "a", "as")
		s.conv("L", "x", "k3", 20, 20, 3, 1, "pads", 1, 1, 1, 1)
		s.op("mul", "Mul", "k3,as", "y")
		return s.model(t, "y", 20)
	}, []string{"L", "k2"}},
	{"grouped 3x3, group 4 (CARN-M)", func(t *testing.T) []byte {
		s := newShapeNet(16)
		s.conv("L", "x", "gc", 16, 16, 3, 4, "pads", 1, 1, 1, 1)
		s.op("L.relu", "Relu", "gc", "gr")
		s.conv("side", "x", "f", 16, 16, 1, 1)
		s.op("add", "Add", "gr,f", "y")
		return s.model(t, "y", 16)
	}, []string{"L", "side"}},
	{"depthwise 3x3 and pointwise 1x1", func(t *testing.T) []byte {
		s := newShapeNet(16)
		s.conv("L", "x", "dw", 16, 16, 3, 16, "pads", 1, 1, 1, 1)
		s.op("L.relu", "Relu", "dw", "dr")
		s.conv("pw", "dr", "p", 16, 16, 1, 1)
		s.op("add", "Add", "p,x", "y")
		return s.model(t, "y", 16)
	}, []string{"L", "pw"}},
	{"dilated 3x3, dilation 2", func(t *testing.T) []byte {
		s := newShapeNet(16)
		s.conv("L", "x", "d", 16, 16, 3, 1, "dilations", 2, 2, "pads", 2, 2, 2, 2)
		s.conv("side", "x", "f", 16, 16, 1, 1)
		s.op("add", "Add", "d,f", "y")
		return s.model(t, "y", 16)
	}, []string{"L", "side"}},
	{"1x1 16→32→16", func(t *testing.T) []byte {
		s := newShapeNet(16)
		s.conv("L", "x", "e", 32, 16, 1, 1)
		s.op("L.relu", "Relu", "e", "er")
		s.conv("M", "er", "y", 16, 32, 1, 1)
		return s.model(t, "y", 16)
	}, []string{"L", "M"}},
	{"distillation 50→25 1x1 beside 50→50 3x3, then 25→50 (RFDN)", func(t *testing.T) []byte {
		s := newShapeNet(50)
		s.conv("L", "x", "d", 25, 50, 1, 1)
		lr := s.op("L.lrelu", "LeakyRelu", "d", "dl")
		lr.SetAttrFloat("alpha", 0.05)
		s.conv("r", "x", "rr", 50, 50, 3, 1, "pads", 1, 1, 1, 1)
		s.conv("M", "dl", "m", 50, 25, 3, 1, "pads", 1, 1, 1, 1)
		s.op("add", "Add", "rr,m", "y")
		return s.model(t, "y", 50)
	}, []string{"L", "r", "M"}},
	{"Split part and Concat (IMDN)", func(t *testing.T) []byte {
		s := newShapeNet(32)
		s.g.SetInitializer(graph.NewInt64("split.sizes", []int64{2}, []int64{8, 24}))
		s.op("split", "Split", "x,split.sizes", "p1,p2").SetAttrInt("axis", 1)
		s.conv("L", "p2", "c", 24, 24, 3, 1, "pads", 1, 1, 1, 1)
		s.op("L.relu", "Relu", "c", "cr")
		s.op("cat", "Concat", "p1,cr", "cat").SetAttrInt("axis", 1)
		s.conv("M", "cat", "y", 32, 32, 1, 1)
		return s.model(t, "y", 32)
	}, []string{"L", "M"}},
}

// tuneShapeConfig is a small calibration: tuneMinPatches patches and a
// few more, of 32x32 (even, so that the strided cases' Resize restores
// the size).
func tuneShapeConfig(bits Bits, m Method) Config {
	cfg := DefaultConfig()
	cfg.Bits, cfg.Method, cfg.Tune = bits, m, true
	cfg.Patches, cfg.PatchSize, cfg.Threads = tuneMinPatches+4, 32, 2
	cfg.Probe = sr.ProbeOptions{Scale: 2, Range: 1}
	return cfg
}

// TestTuneShapes: on every shape, tuning at W4A4 dual and W8A8 completes,
// tunes every low-bit Conv (none left as calibrated), writes a valid
// model, and each layer's output error on held-out windows (patches at
// other positions than the calibration's) is no worse than the
// calibrated quantizers' with round-to-nearest weights; srq sensitivity
// measures every Conv of the same networks.
func TestTuneShapes(t *testing.T) {
	orttest.Require(t)
	imgs, err := img.List(tuneImages)
	require.NoError(t, err)
	for _, tc := range shapeCases {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.build(t)
			for _, set := range []struct {
				bits Bits
				m    Method
			}{{Bits{4, 4}, Dual}, {Bits{8, 8}, Percentile}} {
				t.Run(fmt.Sprintf("%s %s", set.bits, set.m), func(t *testing.T) {
					cfg := tuneShapeConfig(set.bits, set.m)
					tuneAndMeasure(t, data, imgs, cfg, tc.convs)
				})
			}
			t.Run("sensitivity", func(t *testing.T) {
				cfg := tuneShapeConfig(Bits{4, 4}, Dual)
				cfg.Tune = false
				m, err := onnx.LoadBytes(data, "shapes", "")
				require.NoError(t, err)
				res, err := Sensitivity(context.Background(), m, data, tc.name, imgs, cfg, Events{})
				require.NoError(t, err)
				got := map[string]bool{}
				for _, l := range res.Layers {
					got[l.Conv] = true
					assert.False(t, math.IsNaN(l.PSNR), l.Conv)
				}
				for _, c := range append([]string{"head", "tail"}, tc.convs...) {
					assert.True(t, got[c], "%s measured", c)
				}
			})
		})
	}
}

// tuneAndMeasure runs Quantize's stages on the model data with the
// quantizers kept (prepare, plan, calibrate, choose, tune, rewrite) and
// measures each Conv of convs on held-out windows: with every stage the
// tuner found for it (its GPTQ weights, with its tuned input quantizer
// when it found one) and with the variant the held-out patches kept.
func tuneAndMeasure(t *testing.T, data []byte, imgs []string, cfg Config, convs []string) {
	t.Helper()
	ctx := context.Background()
	m, err := onnx.LoadBytes(data, "shapes", "")
	require.NoError(t, err)
	var logs []string
	ev := Events{Log: func(s string) { logs = append(logs, s) }}
	defer func() {
		if t.Failed() {
			t.Log(strings.Join(logs, "\n"))
		}
	}()
	pr, err := prepare(m, data, "shapes", cfg)
	require.NoError(t, err)
	cal, err := cutPatches(pr, imgs, cfg, ev.log)
	require.NoError(t, err)
	require.NoError(t, splitConcats(ctx, pr, cal, cfg, ev.log))
	pl, err := plan(pr, cfg)
	require.NoError(t, err)
	require.NoError(t, calibrate(ctx, pr, pl, cal, cfg, ev))
	qs, err := choose(ctx, pr, pl, cal, cfg, nil, ev.log)
	require.NoError(t, err)
	float, calibrated := pr.g.Clone(), *qs

	tn := &Tuning{HeldOut: map[string]float64{}, Untuned: map[string]string{}}
	layers, err := tuneConvs(ctx, pr, pl, cal, qs, cfg, tn, ev)
	require.NoError(t, err)
	assert.Empty(t, tn.Untuned, "every low-bit Conv tuned")
	assert.Equal(t, len(convs), tn.Layers)
	all := pr.g.Clone()
	allQs := applyTuning(all, qs, layers, true, true, false)
	require.NoError(t, keepTuning(ctx, pr, pl, cal, qs, cfg, layers, tn, ev))
	t.Logf("kept %q, held-out PSNR-Y vs FP32 %v", tn.Kept, tn.HeldOut)
	assert.GreaterOrEqual(t, tn.HeldOut[tn.Kept], tn.HeldOut["calibrated"])

	// Held-out windows: other patch positions of the same images.
	patches, err := calib.Patches(imgs, calib.PatchOptions{Scale: pr.scale, Size: cfg.PatchSize, Count: 16, Seed: cfg.Seed + 100}, nil)
	require.NoError(t, err)
	held, shape, err := patchData(patches, pr.rng)
	require.NoError(t, err)
	specs := map[string]calib.WindowSpec{}
	for _, name := range convs {
		n := nodeNamed(float, name)
		require.NotNil(t, n, name)
		wt, _ := float.Const(n.Inputs[1])
		geom, err := calib.ConvGeomOf(n, wt.Dims)
		require.NoError(t, err)
		specs[name] = calib.WindowSpec{Value: n.Inputs[0], Geom: geom}
	}
	ws, missing, err := calib.SampleWindows(ctx, float, specs, held, shape, 64, 7, calib.CaptureOptions{Batch: cfg.Batch, Session: ort.Options{Threads: cfg.Threads}})
	require.NoError(t, err)
	require.Empty(t, missing)
	for _, name := range convs {
		before := layerError(t, float, float, &calibrated, pl.Shared, name, ws[name], cfg)
		tuned := layerError(t, float, all, allQs, pl.Shared, name, ws[name], cfg)
		kept := layerError(t, float, pr.g, qs, pl.Shared, name, ws[name], cfg)
		t.Logf("%s: held-out output error calibrated %.4g, tuned %.4g (%+.0f%%), kept %.4g", name, before, tuned, 100*(tuned/before-1), kept)
		assert.LessOrEqual(t, tuned, before*1.0001, "%s: tuning made the layer's held-out output error worse", name)
		assert.LessOrEqual(t, kept, before*1.0001, "%s: the kept variant made the layer's held-out output error worse", name)
	}

	model, _, err := rewrite(pr.g, pr, pl, qs, cal.set, cfg)
	require.NoError(t, err)
	require.NoError(t, onnx.Validate(model))
	b, err := onnx.Marshal(model)
	require.NoError(t, err)
	s, err := ort.NewSession(b, "tuned model", ort.Options{Threads: cfg.Threads})
	require.NoError(t, err, "ORT loads the tuned model")
	require.NoError(t, s.Close())
}

// layerError is Σ ||W·x − Ŵ·q(x)||² of Conv name on windows x, with W its
// weight in the float graph, and Ŵ and q what graph g and quantizers qs
// give it: tuned weights when g carries them (on their grid already), else
// the float weights rounded to nearest as InsertQDQ would.
func layerError(t *testing.T, float, g *graph.Graph, qs *quantizers, shared map[string]string, name string, x *calib.Windows, cfg Config) float64 {
	t.Helper()
	n0, n := nodeNamed(float, name), nodeNamed(g, name)
	require.NotNil(t, n)
	wt, _ := float.Const(n0.Inputs[1])
	w, err := wt.Float32()
	require.NoError(t, err)
	var wq []float32
	if n.Inputs[1] != n0.Inputs[1] {
		tw, _ := g.Const(n.Inputs[1])
		wq, err = tw.Float32()
		require.NoError(t, err)
	} else {
		ps, err := qdq.WeightParams(w, int(wt.Dims[0]), cfg.Bits.W, !cfg.PerTensorWeights, cfg.WeightMethod)
		require.NoError(t, err)
		wq = make([]float32, len(w))
		require.NoError(t, qdq.FakeQuantPerChannel(wq, w, expandParams(ps, int(wt.Dims[0]))))
	}
	cw := calib.ConvWeights{W: w, Out: int(wt.Dims[0]), Groups: int(n.AttrInt("group", 1))}
	e, err := calib.ReconError(cw, wq, x, calib.Quantized(x, inputQuantizerOf(shared, qs, n)))
	require.NoError(t, err)
	return e
}

// inputQuantizerOf is the quantizer Conv n reads its input through under
// qs: its own, or the 8-bit carrier of the value.
func inputQuantizerOf(shared map[string]string, qs *quantizers, n *graph.Node) qdq.Quantizer {
	if q, ok := qs.convIn[n.Name]; ok {
		return q
	}
	src := n.Inputs[0]
	if s, ok := shared[src]; ok {
		src = s
	}
	return qdq.UniformOf(qs.act[src], 8)
}
