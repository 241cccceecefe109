package gtune_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq"
	"github.com/srquant/srq/grad"
	"github.com/srquant/srq/grad/ortconv"
	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/gtune"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
	"github.com/srquant/srq/quant"
)

const edsr = "../testdata/models/edsr_x2.onnx"

// setup quantizes the bundled EDSR x2 (W4A4 dual, a quick calibration) and
// returns its QDQ graph's Net, the Convs' weights to round (float weights
// from the FP32 model, the graph's codes as the start) and patches of a
// committed photo with the FP32 model as the reference.
func setup(t *testing.T) (*grad.Net, *graph.Graph, []gtune.Weight, gtune.Data) {
	t.Helper()
	orttest.Require(t)
	imgs, err := srq.ListImages("../testdata/images")
	require.NoError(t, err)
	cfg := quant.DefaultConfig()
	cfg.Bits, cfg.Method = quant.Bits{W: 4, A: 4}, quant.Dual
	cfg.Patches, cfg.PatchSize = 8, 32
	out := filepath.Join(t.TempDir(), "q.onnx")
	_, err = srq.Quantize(context.Background(), srq.QuantizeOptions{Model: edsr, Images: imgs, Out: out, Config: cfg})
	require.NoError(t, err)
	qm, err := onnx.Load(out)
	require.NoError(t, err)
	g, err := graph.FromModel(qm)
	require.NoError(t, err)
	nt, err := grad.NewNet(g)
	require.NoError(t, err)

	fm, err := onnx.Load(edsr)
	require.NoError(t, err)
	fg, err := graph.FromModel(fm)
	require.NoError(t, err)
	floats := map[string][]float32{}
	for _, n := range fg.Nodes {
		if n.OpType == "Conv" {
			if w, ok := fg.Const(n.Inputs[1]); ok {
				floats[n.Name], _ = w.Float32()
			}
		}
	}
	var ws []gtune.Weight
	for _, n := range g.Nodes {
		f, ok := floats[n.Name]
		if n.OpType != "Conv" || !ok {
			continue
		}
		if _, folded := nt.Folded[n.Inputs[1]]; !folded {
			continue
		}
		w := nt.Const(n.Inputs[1])
		scale, err := g.Initializer(g.Producer(n.Inputs[1]).Inputs[1]).Float32()
		require.NoError(t, err)
		if len(w.Data) != len(f) {
			continue
		}
		start := make([]float32, len(f))
		inner := len(f) / len(scale)
		qmax := int32(7) // 4-bit, or 8-bit for the wide head and tail
		for i, v := range w.Data {
			start[i] = float32(math.Round(float64(v / scale[i/inner])))
			if math.Abs(float64(start[i])) > 7 {
				qmax = 127
			}
		}
		ws = append(ws, gtune.Weight{Value: n.Inputs[1], Bias: n.Inputs[2], Float: f, Shape: w.Shape, Scale: scale, QMin: -qmax, QMax: qmax, Start: start})
	}
	require.GreaterOrEqual(t, len(ws), 30, "the body Convs keep their names and weights")

	im, err := img.Read("../testdata/images/rocket.jpg")
	require.NoError(t, err)
	fdata, err := os.ReadFile(edsr)
	require.NoError(t, err)
	s, err := ort.NewSession(fdata, "fp32", ort.Options{Threads: 1})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	d := gtune.Data{In: [3]int{3, 24, 24}, Scale: 2}
	d.Reference = func(x []float32, shape []int) ([]float32, error) {
		res, err := s.Run(&ort.Tensor{Shape: []int64{int64(shape[0]), int64(shape[1]), int64(shape[2]), int64(shape[3])}, Data: x})
		if err != nil {
			return nil, err
		}
		return res[0].Data, nil
	}
	for k := range 4 {
		p := img.Crop(im, 40*k, 30*k, 24, 24)
		x := make([]float32, len(p.Pix))
		for i, v := range p.Pix {
			x[i] = v * 255
		}
		d.Inputs = append(d.Inputs, x)
	}
	return nt, g, ws, d
}

// TestTune: on real EDSR x2 patches, gradient tuning moves weights and
// leaves every one on its grid within one code of where it started, freezes the rounding at LR 0, and gives the same
// result twice for a seed (with ORT's Conv kernels).
func TestTune(t *testing.T) {
	nt, g, ws, d := setup(t)
	k := ortconv.New(ortconv.Options{Threads: 1})
	defer k.Close()
	in, out := g.Inputs[0].Name, g.Outputs[0].Name
	o := gtune.DefaultOptions()
	o.Steps, o.Batch, o.Crop, o.LR, o.Kernels = 12, 2, 16, 0.3, k
	r, err := gtune.Tune(context.Background(), nt, in, out, ws, nil, d, o)
	require.NoError(t, err)
	require.Equal(t, 12, r.Steps)
	require.Len(t, r.Weights, len(ws))
	require.Len(t, r.Biases, len(ws))
	moved := 0
	for _, w := range ws {
		hw := r.Weights[w.Value]
		inner := len(hw) / len(w.Scale)
		for i, v := range hw {
			c := float64(v / w.Scale[i/inner])
			require.InDelta(t, math.Round(c), c, 1e-4, "weight on its grid")
			require.LessOrEqual(t, math.Abs(math.Round(c)-float64(w.Start[i])), 1.0, "within a code of the start")
			require.GreaterOrEqual(t, c, float64(w.QMin)-1e-4)
			require.LessOrEqual(t, c, float64(w.QMax)+1e-4)
			if math.Round(c) != float64(w.Start[i]) {
				moved++
			}
		}
	}
	t.Logf("%d weights moved a code; smoothed loss %.3f of the first step's", moved, r.Loss)
	assert.Positive(t, moved)

	again, err := gtune.Tune(context.Background(), nt, in, out, ws, nil, d, o)
	require.NoError(t, err)
	assert.Equal(t, r.Weights, again.Weights, "deterministic for a seed")
	assert.Equal(t, r.Biases, again.Biases)

	t.Run("biases only", func(t *testing.T) {
		o := o
		o.LR = 0
		r, err := gtune.Tune(context.Background(), nt, in, out, ws, nil, d, o)
		require.NoError(t, err)
		assert.Empty(t, r.Weights, "LR 0 leaves the rounding as it is")
		changed := false
		for _, w := range ws {
			b0 := nt.Const(w.Bias).Data
			assert.Len(t, r.Biases[w.Bias], len(b0))
			for i, v := range r.Biases[w.Bias] {
				changed = changed || v != b0[i]
			}
		}
		assert.True(t, changed, "the biases move")
	})
	t.Run("steps", func(t *testing.T) {
		o := o
		o.LR, o.BiasLR, o.ScaleLR = 0, 0, 0.01
		r, err := gtune.Tune(context.Background(), nt, in, out, ws, nil, d, o)
		require.NoError(t, err)
		assert.Empty(t, r.Weights, "the codes stay")
		require.Len(t, r.Scales, len(ws))
		moved := 0
		for _, w := range ws {
			sc := r.Scales[w.Value]
			require.Len(t, sc, len(w.Scale))
			for c, s := range sc {
				assert.Positive(t, s)
				// Adam moves a multiplier by at most about ScaleLR a step.
				assert.InEpsilon(t, w.Scale[c], s, 0.2)
				if s != w.Scale[c] {
					moved++
				}
			}
		}
		assert.Positive(t, moved, "the steps move")
		assert.Less(t, r.Loss, 1.0, "the output loss falls")
	})
	t.Run("batch in parts", func(t *testing.T) {
		o := o
		o.LR = 0
		whole, err := gtune.Tune(context.Background(), nt, in, out, ws, nil, d, o)
		require.NoError(t, err)
		assert.Equal(t, 2, whole.Micro, "2 GiB holds both crops")
		o.TapeBytes = 1 // less than a crop: one crop a part
		parts, err := gtune.Tune(context.Background(), nt, in, out, ws, nil, d, o)
		require.NoError(t, err)
		assert.Equal(t, 1, parts.Micro)
		// The same step up to summation order, Adam's ε and the first
		// loss that normalises the output term (the first part's).
		var diff, size float64
		for name, b := range whole.Biases {
			for i, v := range b {
				diff = max(diff, math.Abs(float64(v-parts.Biases[name][i])))
				size = max(size, math.Abs(float64(v)))
			}
		}
		t.Logf("largest bias difference, whole batches against parts: %g (largest bias %g)", diff, size)
		assert.Less(t, diff, 0.01*size)
	})
	t.Run("bad input", func(t *testing.T) {
		_, err := gtune.Tune(context.Background(), nt, in, out, ws, nil, gtune.Data{}, o)
		assert.EqualError(t, err, "gtune: 0 inputs, reference network set: false")
		_, err = gtune.Tune(context.Background(), nt, in, "nothing", ws, nil, d, o)
		assert.EqualError(t, err, "gtune: the network computed no nothing")
	})
}
