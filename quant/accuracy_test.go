package quant_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/sr"
)

// fragileNet builds a small x2 SR network with one fragile layer: head →
// fragile → tail → pixel shuffle computes the nearest-neighbour upscale of
// the image (each Conv passes the colour channels on through its centre
// tap; the other channels carry small random features nobody reads), and
// the fragile Conv reads the head's features plus a constant 1000 on one
// channel (a float Add, as an exporter leaves a folded constant). That
// outlier stretches the fragile Conv's 8-bit input grid to steps of about
// 4 on colours in 0..1: quantized, the layer's output is noise. Its
// weights ignore the outlier channel, so in float nothing is wrong. Names
// carry no module path, so no block can go float as a whole: the fix is
// the fragile Conv alone.
func fragileNet() *graph.Graph {
	const nf = 8
	g := graph.New("fragile", map[string]int64{"": 17})
	g.Inputs = []*graph.Value{{Name: "input", DType: onnx.TensorProto_FLOAT,
		Shape: graph.Shape{{Value: -1, Param: "n"}, {Value: 3}, {Value: -1, Param: "h"}, {Value: -1, Param: "w"}}}}
	r := rand.New(rand.NewPCG(7, 19))
	// conv adds a 3x3 Conv whose output channel o copies input channel
	// pass[o] through the centre tap; every other output channel gets
	// small random weights from every input channel but ignore, and with
	// mix so do the copies, from the channels no copy reads (a little
	// weight rounding noise in every layer).
	conv := func(name, in, out string, cout, cin int64, pass map[int64]int64, ignore int64, mix bool) {
		w := make([]float32, cout*cin*9)
		read := map[int64]bool{}
		for _, c := range pass {
			read[c] = true
		}
		for o := range cout {
			c0, copies := pass[o]
			if copies {
				w[(o*cin+c0)*9+4] = 1
				if !mix {
					continue
				}
			}
			for c := range cin {
				if c == ignore || copies && read[c] {
					continue
				}
				for k := range int64(9) {
					w[(o*cin+c)*9+k] = (2*r.Float32() - 1) * 0.02
				}
			}
		}
		g.SetInitializer(graph.NewFloat32(name+"_w", []int64{cout, cin, 3, 3}, w))
		g.SetInitializer(graph.NewFloat32(name+"_b", []int64{cout}, make([]float32, cout)))
		n := &graph.Node{Name: name, OpType: "Conv", Inputs: []string{in, name + "_w", name + "_b"}, Outputs: []string{out}}
		n.SetAttrInts("kernel_shape", []int64{3, 3})
		n.SetAttrInts("pads", []int64{1, 1, 1, 1})
		g.AddNode(n)
	}
	op := func(name, typ string, ins, outs []string) *graph.Node {
		n := &graph.Node{Name: name, OpType: typ, Inputs: ins, Outputs: outs}
		g.AddNode(n)
		return n
	}
	// head: colours to channels 1..3; fragile: channels 1..3 back to
	// 0..2; tail: channel c to the four sub-pixels of colour c (CRD).
	conv("head", "input", "h", nf, 3, map[int64]int64{1: 0, 2: 1, 3: 2}, -1, false)
	outlier := make([]float32, nf)
	outlier[0] = 1000
	g.SetInitializer(graph.NewFloat32("outlier", []int64{1, nf, 1, 1}, outlier))
	op("shift", "Add", []string{"h", "outlier"}, []string{"x"})
	conv("fragile", "x", "f", nf, nf, map[int64]int64{0: 1, 1: 2, 2: 3}, 0, false)
	tail := map[int64]int64{}
	for c := range int64(3) {
		for k := range int64(4) {
			tail[c*4+k] = c
		}
	}
	conv("tail", "f", "t", 12, nf, tail, -1, true)
	d2s := op("shuffle", "DepthToSpace", []string{"t"}, []string{"output"})
	d2s.SetAttrInt("blocksize", 2)
	d2s.SetAttrString("mode", "CRD")
	g.Outputs = []*graph.Value{{Name: "output", DType: onnx.TensorProto_FLOAT}}
	g.Invalidate()
	return g
}

// quantizeFragile quantizes fragileNet on the committed images (rocket.jpg,
// the last by name, is held out for validation) under cfg.
func quantizeFragile(t *testing.T, cfg quant.Config) (*quant.Result, []byte, error) {
	t.Helper()
	m, err := fragileNet().ToModel()
	require.NoError(t, err)
	require.NoError(t, onnx.Validate(m))
	data, err := onnx.Marshal(m)
	require.NoError(t, err)
	imgs, err := img.List(images)
	require.NoError(t, err)
	res, err := quant.Quantize(context.Background(), m, data, "fragile", imgs, cfg, quant.Events{Log: func(s string) { t.Log(s) }})
	if res == nil {
		return nil, nil, err
	}
	b, merr := onnx.Marshal(res.Model)
	require.NoError(t, merr)
	return res, b, err
}

// TestAccuracyControl: the fragile Conv is the first widening in the
// ranked order, the search measures the base model (over the budget) and
// the model with that one widening (within), and stops there.
func TestAccuracyControl(t *testing.T) {
	requireORT(t)
	cfg := smallConfig()
	cfg.Probe = sr.ProbeOptions{Scale: 2, Range: 1}
	cfg.MaxDrop = 0.3
	cfg.LatencyCache = t.TempDir()
	res, model, err := quantizeFragile(t, cfg)
	require.NoError(t, err)
	acc := res.Accuracy
	require.NotNil(t, acc)
	assert.True(t, acc.Met)
	assert.True(t, acc.HeldOut)
	assert.Equal(t, []string{"rocket.jpg@0,0", "rocket.jpg@256,0"}, acc.Validation, "rocket.jpg held out, cut into tiles of 256")
	assert.Equal(t, []string{"fragile: float"}, acc.Widened, "the fragile Conv is widened first, and alone")
	assert.Greater(t, acc.Candidates, 1, "the other Convs' weight rounding can be widened too, later")
	require.Len(t, acc.Steps, 2, "the base model, then the first model within the budget")
	base, fixed := acc.Steps[0], acc.Steps[1]
	require.NotNil(t, base.Drop)
	require.NotNil(t, fixed.Drop)
	t.Logf("drop: base %.3f dB, fragile float %.3f dB", *base.Drop, *fixed.Drop)
	assert.False(t, base.Within)
	assert.Greater(t, *base.Drop, 1.0, "a quantized fragile layer costs dBs")
	assert.Equal(t, 1, fixed.Widened)
	assert.True(t, fixed.Within)
	assert.Less(t, *fixed.DropHigh, cfg.MaxDrop)
	assert.Equal(t, []string{"fragile: float"}, fixed.Added)
	assert.Equal(t, 1, acc.Chosen)
	assert.Equal(t, "kept float by --max-drop", res.Skipped["fragile"])
	assert.Equal(t, 2, res.ConvsInt8, "head and tail stay int8")
	assert.Contains(t, string(model), quant.MetaAccuracy)

	t.Run("deterministic", func(t *testing.T) {
		// The second run reads the kernel times the first measured.
		_, again, err := quantizeFragile(t, cfg)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(model, again), "same config, images and latency cache must give the same bytes")
	})

	t.Run("budget not met", func(t *testing.T) {
		c := cfg
		c.MaxSteps = 1
		res, _, err := quantizeFragile(t, c)
		var notMet *quant.DropNotMetError
		require.True(t, errors.As(err, &notMet), "got %v", err)
		assert.Contains(t, err.Error(), "none of the 1 models measured (--max-steps 1)")
		require.NotNil(t, res, "the best model measured comes with the error")
		assert.False(t, res.Accuracy.Met)
		assert.Empty(t, res.Accuracy.Widened)
	})
}

// TestAccuracyConfig: accuracy control's settings are checked before any
// work.
func TestAccuracyConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*quant.Config)
		want string
	}{
		{"negative drop", func(c *quant.Config) { c.MaxDrop = -1 }, "--max-drop -1"},
		{"NaN floor", func(c *quant.Config) { c.MaxDropVsFP32 = math.NaN() }, "--max-drop-vs-fp32 NaN"},
		{"no steps", func(c *quant.Config) { c.MaxDrop, c.MaxSteps = 0.1, 0 }, "--max-steps 0"},
		{"validation without budget", func(c *quant.Config) { c.Validation = []string{chelsea} }, "--val images are for --max-drop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig()
			tc.edit(&cfg)
			_, err := quant.Quantize(context.Background(), nil, nil, "m", nil, cfg, quant.Events{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
