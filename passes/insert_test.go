package passes_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

// chain3Ranges are activation ranges for chain3, wide enough that nothing
// clips on inputs in [0, 1) (TestInsertQDQRunsInORT would see clipping).
func chain3Ranges(p *passes.Plan) map[string]qdq.Params {
	act := map[string]qdq.Params{}
	for _, v := range p.Values {
		act[v] = qdq.Asymmetric(-3, 3, 8)
	}
	act["x"] = qdq.Asymmetric(0, 1, 8)
	act["r"] = qdq.Asymmetric(0, 3, 8) // absorbed Relu: starts at 0
	return act
}

// insert plans and inserts QDQ on g with per-channel MinMax weights unless
// wc says otherwise.
func insert(t *testing.T, g *graph.Graph, wc *passes.WeightConfig) (*passes.Plan, map[string]qdq.Params) {
	t.Helper()
	p, err := passes.PlanQDQ(g, passes.Policy{})
	require.NoError(t, err)
	act := chain3Ranges(p)
	if wc == nil {
		wc = &passes.WeightConfig{Bits: 8, PerChannel: true, Method: qdq.MinMax}
	}
	require.NoError(t, passes.Run(g, passes.InsertQDQ{Plan: p, Act: act, Weights: *wc}))
	return p, act
}

func TestInsertQDQSnapshot(t *testing.T) {
	g := newGraph(3)
	chain3(g)
	insert(t, g, nil)
	assert.Equal(t, `DequantizeLinear(w1_quantized, w1_scale, w1_zero_point) -> w1_dequantized
DequantizeLinear(w2_quantized, w2_scale, w2_zero_point) -> w2_dequantized
DequantizeLinear(w3_quantized, w3_scale, w3_zero_point) -> w3_dequantized
QuantizeLinear(x, x_scale, x_zero_point) -> x_q
DequantizeLinear(x_q, x_scale, x_zero_point) -> x_dq
Conv(x_dq, w1_dequantized) -> r
QuantizeLinear(r, r_scale, r_zero_point) -> r_q
DequantizeLinear(r_q, r_scale, r_zero_point) -> r_dq
Conv(r_dq, w2_dequantized) -> b
QuantizeLinear(b, b_scale, b_zero_point) -> b_q
DequantizeLinear(b_q, b_scale, b_zero_point) -> b_dq
Add(r_dq, b_dq) -> s
QuantizeLinear(s, s_scale, s_zero_point) -> s_q
DequantizeLinear(s_q, s_scale, s_zero_point) -> s_dq
Conv(s_dq, w3_dequantized) -> y_float
QuantizeLinear(y_float, y_scale, y_zero_point) -> y_q
DequantizeLinear(y_q, y_scale, y_zero_point) -> y
`, dump(g))
	checkQDQPattern(t, g)
	assert.Equal(t, "x", g.Inputs[0].Name, "graph input keeps its name")
	assert.Equal(t, "y", g.Outputs[0].Name, "graph output keeps its name")
	serialize(t, g)
}

// checkQDQPattern asserts the deploy pattern ORT fuses around every Conv:
// DQ(Q(.)) -> Conv -> Q, with the weight (and bias) behind a DQ of an int8
// (int32) initializer. The graph input is read only by a QuantizeLinear.
func checkQDQPattern(t *testing.T, g *graph.Graph) {
	t.Helper()
	convs := 0
	for _, n := range g.Nodes {
		if n.OpType != "Conv" {
			continue
		}
		convs++
		dq := g.Producer(n.Inputs[0])
		require.NotNil(t, dq, "conv %s input", n.Name)
		require.Equal(t, "DequantizeLinear", dq.OpType, "conv %s input", n.Name)
		q := g.Producer(dq.Inputs[0])
		require.NotNil(t, q, "conv %s input DQ", n.Name)
		assert.Equal(t, "QuantizeLinear", q.OpType, "conv %s input DQ", n.Name)
		for i, dt := range map[int]onnx.TensorProto_DataType{1: onnx.TensorProto_INT8, 2: onnx.TensorProto_INT32} {
			if i >= len(n.Inputs) || n.Inputs[i] == "" {
				continue
			}
			wdq := g.Producer(n.Inputs[i])
			require.NotNil(t, wdq, "conv %s input %d", n.Name, i)
			require.Equal(t, "DequantizeLinear", wdq.OpType, "conv %s input %d", n.Name, i)
			init := g.Initializer(wdq.Inputs[0])
			require.NotNil(t, init, "conv %s input %d", n.Name, i)
			assert.Equal(t, dt, init.DType, "conv %s input %d", n.Name, i)
		}
		cs := g.Consumers(n.Outputs[0])
		require.Len(t, cs, 1, "conv %s output", n.Name)
		assert.Equal(t, "QuantizeLinear", cs[0].OpType, "conv %s output", n.Name)
	}
	assert.Positive(t, convs)
	for _, in := range g.Inputs {
		for _, c := range g.Consumers(in.Name) {
			assert.Equal(t, "QuantizeLinear", c.OpType, "graph input %s", in.Name)
		}
	}
}

// convWithBias is x -> Conv(w, b) -> y, 3 -> 4 channels.
func convWithBias() (g *graph.Graph, w, b []float32) {
	g = newGraph(3)
	w = weight(g, "w", 0.5, 4, 3, 3, 3)
	b = weight(g, "b", 2, 4)
	node(g, "conv", "Conv", "x,w,b", "y", pad1)
	outputs(g, "y")
	return g, w, b
}

// dqInputs returns the initializers behind a DequantizeLinear that produces
// value v: quantized data, scale, zero point, and the node.
func dqInputs(t *testing.T, g *graph.Graph, v string) (q, s, z *graph.Tensor, n *graph.Node) {
	t.Helper()
	n = g.Producer(v)
	require.NotNil(t, n, v)
	require.Equal(t, "DequantizeLinear", n.OpType, v)
	q, s, z = g.Initializer(n.Inputs[0]), g.Initializer(n.Inputs[1]), g.Initializer(n.Inputs[2])
	require.NotNil(t, q, v)
	require.NotNil(t, s, v)
	require.NotNil(t, z, v)
	return q, s, z, n
}

func TestInsertQDQWeightsAndBias(t *testing.T) {
	g, w, b := convWithBias()
	_, act := insert(t, g, nil)
	checkQDQPattern(t, g)
	conv := g.Producer("y_float")
	require.NotNil(t, conv)
	require.Equal(t, "Conv", conv.OpType)

	// Weight: int8, per output channel on axis 0, symmetric (zero point 0),
	// MinMax: max |w| of each channel maps to 127 and nothing clips.
	qw, sw, zw, dqw := dqInputs(t, g, conv.Inputs[1])
	assert.Equal(t, onnx.TensorProto_INT8, qw.DType)
	assert.Equal(t, []int64{4, 3, 3, 3}, qw.Dims)
	assert.Equal(t, int64(0), dqw.AttrInt("axis", -1))
	wScales, err := sw.Float32()
	require.NoError(t, err)
	require.Len(t, wScales, 4)
	zp, err := zw.Int8()
	require.NoError(t, err)
	assert.Equal(t, []int8{0, 0, 0, 0}, zp)
	wq, err := qw.Int8()
	require.NoError(t, err)
	for o := range 4 {
		var absmax float32
		for i := o * 27; i < (o+1)*27; i++ {
			absmax = max(absmax, float32(math.Abs(float64(w[i]))))
			assert.InDelta(t, w[i], float32(wq[i])*wScales[o], float64(wScales[o])/2+1e-7, "w[%d]", i)
		}
		assert.InDelta(t, absmax/127, wScales[o], 1e-7, "channel %d scale", o)
	}

	// Bias: int32 with scale s_in·s_w[o] and zero point 0.
	qb, sb, zb, dqb := dqInputs(t, g, conv.Inputs[2])
	assert.Equal(t, onnx.TensorProto_INT32, qb.DType)
	assert.Equal(t, int64(0), dqb.AttrInt("axis", -1))
	bScales, err := sb.Float32()
	require.NoError(t, err)
	bq, err := qb.Int32()
	require.NoError(t, err)
	bz, err := zb.Int32()
	require.NoError(t, err)
	assert.Equal(t, []int32{0, 0, 0, 0}, bz)
	sIn := act["x"].Scale
	for o := range 4 {
		assert.Equal(t, sIn*wScales[o], bScales[o], "bias scale %d", o)
		assert.InDelta(t, b[o], float32(bq[o])*bScales[o], float64(bScales[o])/2+1e-7, "bias %d", o)
	}
	assert.Nil(t, g.Initializer("w"), "float weight removed")
	assert.Nil(t, g.Initializer("b"), "float bias removed")
}

func TestInsertQDQPerTensor(t *testing.T) {
	g, _, _ := convWithBias()
	_, act := insert(t, g, &passes.WeightConfig{Bits: 8, PerChannel: false, Method: qdq.MSE})
	conv := g.Producer("y_float")
	require.NotNil(t, conv)
	_, sw, zw, dqw := dqInputs(t, g, conv.Inputs[1])
	assert.Nil(t, dqw.Attr("axis"))
	assert.Empty(t, sw.Dims, "scalar weight scale")
	assert.Empty(t, zw.Dims, "scalar weight zero point")
	ws, err := sw.Float32()
	require.NoError(t, err)
	// The bias may keep one scale per channel; they all equal s_in·s_w.
	_, sb, _, _ := dqInputs(t, g, conv.Inputs[2])
	bs, err := sb.Float32()
	require.NoError(t, err)
	for _, s := range bs {
		assert.Equal(t, act["x"].Scale*ws[0], s)
	}
}

// The QDQ graph computes what the float graph does, up to a few steps of
// the 8-bit grids (here the activation step is 6/255).
func TestInsertQDQRunsInORT(t *testing.T) {
	requireORT(t)
	g := newGraph(3)
	chain3(g)
	in := randInput(9, 1, 3, 16, 16)
	want := runORT(t, g, in)
	insert(t, g, nil)
	got := runORT(t, g, in)
	var maxDiff float64
	for i := range want.Data {
		maxDiff = math.Max(maxDiff, math.Abs(float64(want.Data[i]-got.Data[i])))
	}
	t.Logf("max abs diff %.4f (activation step %.4f)", maxDiff, 6.0/255)
	assert.Less(t, maxDiff, 4*6.0/255)
	assert.Greater(t, maxDiff, 0.0, "quantization must change something")
}

func TestInsertQDQErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(act map[string]qdq.Params)
		want string
	}{
		{"missing range", func(act map[string]qdq.Params) { delete(act, "s") }, `no quantization range for value "s"`},
		{"invalid range", func(act map[string]qdq.Params) { act["b"] = qdq.Params{Scale: 0, QMax: 255} }, `value "b"`},
		{"absorbed relu below 0", func(act map[string]qdq.Params) { act["r"] = qdq.Asymmetric(-1, 1, 8) }, `"relu"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph(3)
			chain3(g)
			p, err := passes.PlanQDQ(g, passes.Policy{})
			require.NoError(t, err)
			act := chain3Ranges(p)
			tc.edit(act)
			err = passes.Run(g, passes.InsertQDQ{Plan: p, Act: act, Weights: passes.WeightConfig{Bits: 8, PerChannel: true}})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// A DepthToSpace output is quantized with its input's parameters, so ORT
// can run the op on uint8 between two identical grids.
func TestInsertQDQSharedDepthToSpace(t *testing.T) {
	g := newGraph(3)
	weight(g, "w1", 0.5, 12, 3, 3, 3)
	node(g, "c1", "Conv", "x,w1", "a", pad1)
	node(g, "d2s", "DepthToSpace", "a", "y", intAttr("blocksize", 2), strAttr("mode", "CRD"))
	outputs(g, "y")
	p, err := passes.PlanQDQ(g, passes.Policy{})
	require.NoError(t, err)
	act := map[string]qdq.Params{"x": qdq.Asymmetric(0, 1, 8), "a": qdq.Asymmetric(-2, 3, 8)}
	require.NoError(t, passes.Run(g, passes.InsertQDQ{Plan: p, Act: act, Weights: passes.WeightConfig{Bits: 8, PerChannel: true}}))
	assert.Equal(t, `DequantizeLinear(w1_quantized, w1_scale, w1_zero_point) -> w1_dequantized
QuantizeLinear(x, x_scale, x_zero_point) -> x_q
DequantizeLinear(x_q, x_scale, x_zero_point) -> x_dq
Conv(x_dq, w1_dequantized) -> a
QuantizeLinear(a, a_scale, a_zero_point) -> a_q
DequantizeLinear(a_q, a_scale, a_zero_point) -> a_dq
DepthToSpace(a_dq) -> y_float
QuantizeLinear(y_float, y_scale, y_zero_point) -> y_q
DequantizeLinear(y_q, y_scale, y_zero_point) -> y
`, dump(g))
	for _, suffix := range []string{"_scale", "_zero_point"} {
		a, y := g.Initializer("a"+suffix), g.Initializer("y"+suffix)
		require.NotNil(t, a)
		require.NotNil(t, y)
		assert.Equal(t, a.DType, y.DType, suffix)
		assert.Equal(t, a.Data, y.Data, suffix)
	}
	serialize(t, g)
}
