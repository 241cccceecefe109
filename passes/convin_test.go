package passes_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

func mustDual(t *testing.T, spec qdq.DualSpec) qdq.Dual {
	t.Helper()
	d, err := qdq.NewDual(spec)
	require.NoError(t, err)
	return d
}

func mustUniform(t *testing.T, lo, hi float32, bits int) qdq.Uniform {
	t.Helper()
	u, err := qdq.NewUniform(lo, hi, bits)
	require.NoError(t, err)
	return u
}

func TestChooseForm(t *testing.T) {
	fits := mustDual(t, qdq.DualSpec{Lo: -60, Hi: 80, BP: 10, Bits: 4, Accounting: qdq.Reference})
	wide := mustDual(t, qdq.DualSpec{Lo: -300, Hi: 300, BP: 10, Bits: 6, Accounting: qdq.Reference})
	noTail := mustDual(t, qdq.DualSpec{Lo: -6, Hi: 8, BP: 9, Bits: 4, Accounting: qdq.Reference})
	_, ok := fits.Fine()
	require.True(t, ok)
	_, ok = wide.Fine()
	require.False(t, ok)
	tests := []struct {
		name string
		q    qdq.Quantizer
		enc  passes.Encoding
		want passes.Form
		why  string
		err  string
	}{
		{"uniform int8", mustUniform(t, -1, 3, 4), passes.EncodingInt8, passes.FormGrid, "", ""},
		{"uniform simulate", mustUniform(t, -1, 3, 4), passes.EncodingSimulate, passes.FormGrid, "", ""},
		{"dual without tail", noTail, passes.EncodingSimulate, passes.FormGrid, "", ""},
		{"dual fits", fits, passes.EncodingInt8, passes.FormShared, "", ""},
		{"dual fits shared", fits, passes.EncodingShared, passes.FormShared, "", ""},
		{"dual simulate", fits, passes.EncodingSimulate, passes.FormFloat, "", ""},
		{"dual too wide", wide, passes.EncodingInt8, passes.FormTwoBranch, "fine steps, more than one 8-bit grid's 255: dense and tail Convs summed", ""},
		{"dual too wide shared", wide, passes.EncodingShared, "", "", "cannot be exact on one 8-bit grid: levels span"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, why, err := passes.ChooseForm(tc.q, tc.enc)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, f)
			if tc.why == "" {
				assert.Empty(t, why)
			} else {
				assert.Contains(t, why, tc.why)
			}
		})
	}
	for _, s := range []string{"int8", "shared-grid", "simulate"} {
		e, err := passes.ParseEncoding(s)
		require.NoError(t, err)
		assert.Equal(t, passes.Encoding(s), e)
	}
	_, err := passes.ParseEncoding("int4")
	assert.ErrorContains(t, err, `"int4"`)
}

// chain4 is x -> c1 -> Relu -> c2 -> Relu -> c3 -> Add(., a2) -> c4 -> y:
// under FirstLast8 c1 and c4 stay 8-bit; c2 reads a Relu output no one
// else reads (its carrier can be its own grid), c3 reads one the Add reads
// too (it needs an 8-bit carrier and a requantization).
func chain4(g *graph.Graph) {
	weight(g, "w1", 0.5, 8, 3, 3, 3)
	weight(g, "w2", 0.1, 8, 8, 3, 3)
	weight(g, "w3", 0.1, 8, 8, 3, 3)
	weight(g, "w4", 0.1, 3, 8, 3, 3)
	node(g, "c1", "Conv", "x,w1", "a1", pad1)
	node(g, "relu1", "Relu", "a1", "r1")
	node(g, "c2", "Conv", "r1,w2", "a2", pad1)
	node(g, "relu2", "Relu", "a2", "r2")
	node(g, "c3", "Conv", "r2,w3", "a3", pad1)
	node(g, "add", "Add", "a3,r2", "s")
	node(g, "c4", "Conv", "s,w4", "y", pad1)
	outputs(g, "y")
}

func chain4Act(p *passes.Plan) map[string]qdq.Params {
	act := map[string]qdq.Params{}
	for _, v := range p.Values {
		act[v] = qdq.Asymmetric(-3, 3, 8)
	}
	act["x"] = qdq.Asymmetric(0, 1, 8)
	act["r1"] = qdq.Asymmetric(0, 3, 8)
	act["r2"] = qdq.Asymmetric(0, 3, 8)
	return act
}

func TestInsertConvInputsLowBit(t *testing.T) {
	g := newGraph(3)
	chain4(g)
	p, err := passes.PlanQDQ(g, passes.Policy{})
	require.NoError(t, err)
	assert.Equal(t, []string{"c1", "c4"}, wideNames(p))
	q2, q3 := mustUniform(t, 0, 2.5, 4), mustUniform(t, 0, 2, 4)
	ins := passes.InsertQDQ{Plan: p, Act: chain4Act(p), Weights: passes.WeightConfig{Bits: 4, PerChannel: true, Method: qdq.MinMax},
		ConvIn: map[string]qdq.Quantizer{"c2": q2, "c3": q3}}
	require.NoError(t, passes.Run(g, ins))
	assert.Equal(t, `DequantizeLinear(w1_quantized, w1_scale, w1_zero_point) -> w1_dequantized
DequantizeLinear(w2_quantized, w2_scale, w2_zero_point) -> w2_dequantized
DequantizeLinear(w3_quantized, w3_scale, w3_zero_point) -> w3_dequantized
DequantizeLinear(w4_quantized, w4_scale, w4_zero_point) -> w4_dequantized
QuantizeLinear(x, x_scale, x_zero_point) -> x_q
DequantizeLinear(x_q, x_scale, x_zero_point) -> x_dq
Conv(x_dq, w1_dequantized) -> r1
QuantizeLinear(r1, r1_scale, r1_zero_point) -> r1_q
Clip(r1_q, r1_code_min, r1_code_max) -> r1_q_clipped
DequantizeLinear(r1_q_clipped, r1_scale, r1_zero_point) -> r1_dq
Conv(r1_dq, w2_dequantized) -> r2
QuantizeLinear(r2, r2_scale, r2_zero_point) -> r2_q
DequantizeLinear(r2_q, r2_scale, r2_zero_point) -> r2_dq
DequantizeLinear(r2_q, c3_input_requantize_in_scale, c3_input_requantize_in_zero_point) -> c3_input_requantize_value
LeakyRelu(c3_input_requantize_value) -> c3_input_requantize_leaky
QuantizeLinear(c3_input_requantize_leaky, c3_input_requantize_out_scale, c3_input_requantize_out_zero_point) -> c3_input_requantize_out_q
Clip(c3_input_requantize_out_q, c3_input_code_min, c3_input_code_max) -> c3_input_q_clipped
DequantizeLinear(c3_input_q_clipped, c3_input_dq_scale, c3_input_dq_zero_point) -> c3_input_dq
Conv(c3_input_dq, w3_dequantized) -> a3
QuantizeLinear(a3, a3_scale, a3_zero_point) -> a3_q
DequantizeLinear(a3_q, a3_scale, a3_zero_point) -> a3_dq
Add(a3_dq, r2_dq) -> s
QuantizeLinear(s, s_scale, s_zero_point) -> s_q
DequantizeLinear(s_q, s_scale, s_zero_point) -> s_dq
Conv(s_dq, w4_dequantized) -> y_float
QuantizeLinear(y_float, y_scale, y_zero_point) -> y_q
DequantizeLinear(y_q, y_scale, y_zero_point) -> y
`, dump(g), "r1 carries c2's 4-bit grid; r2 keeps its 8-bit carrier for the Add, and a uint8 table (QLinearLeakyRelu) requantizes its codes for c3")

	// The carrier of r1 is q2 itself, its codes clipped to 16.
	s := g.Initializer("r1_scale")
	require.NotNil(t, s)
	sv, _ := s.Float32()
	assert.Equal(t, q2.Scale, sv[0])
	hi, _ := g.Initializer("r1_code_max").Uint8()
	assert.Equal(t, uint8(15), hi[0])
	// Weights: 4 bits in the middle, 8 at the edges.
	for name, bits := range map[string]int{"w1_quantized": 8, "w2_quantized": 4, "w3_quantized": 4, "w4_quantized": 8} {
		w, err := g.Initializer(name).Int8()
		require.NoError(t, err)
		var top int8
		for _, v := range w {
			top = max(top, v, -v)
		}
		assert.Equal(t, int8(1<<(bits-1)-1), top, name)
	}
}

func wideNames(p *passes.Plan) []string {
	var out []string
	for _, n := range p.Nodes {
		if p.Wide[n] {
			out = append(out, n.Name)
		}
	}
	return out
}

// TestConvInputFormsInORT runs each form in ONNX Runtime and checks that the
// Conv reads exactly the quantizer's levels: FormGrid, FormShared and
// FormFloat write the same function.
func TestConvInputFormsInORT(t *testing.T) {
	requireORT(t)
	d := mustDual(t, qdq.DualSpec{Lo: -40, Hi: 60, BP: 6, Bits: 4, Accounting: qdq.Reference})
	_, ok := d.Fine()
	require.True(t, ok)
	strict := mustDual(t, qdq.DualSpec{Lo: 0, Hi: 60, BP: 4, Bits: 3, Accounting: qdq.Strict})
	tests := []struct {
		name string
		q    qdq.Quantizer
		form passes.Form
	}{
		{"uniform grid", mustUniform(t, -5, 7, 3), passes.FormGrid},
		{"dual shared", d, passes.FormShared},
		{"dual float", d, passes.FormFloat},
		{"strict one-sided shared", strict, passes.FormShared},
	}
	r := rand.New(rand.NewPCG(4, 4))
	in := &ort.Tensor{Shape: []int64{1, 4, 16, 16}, Data: make([]float32, 4*16*16)}
	for i := range in.Data {
		switch r.IntN(4) {
		case 0: // tails
			in.Data[i] = float32(-50 + 120*r.Float64())
		default:
			in.Data[i] = float32(r.NormFloat64() * 4)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// x (read only by the Conv, so its carrier is the quantizer's
			// fine grid) -> relu -> c (1x1) -> y; the Conv's input is
			// exposed as a second output.
			g := newGraph(4)
			weight(g, "w", 0.2, 4, 4, 1, 1)
			node(g, "neg", "Neg", "x", "nx") // a float producer
			node(g, "c", "Conv", "nx,w", "y")
			outputs(g, "y")
			p, err := passes.PlanQDQ(g, passes.Policy{FirstLast: passes.FirstLastSame})
			require.NoError(t, err)
			act := map[string]qdq.Params{"nx": qdq.Asymmetric(-100, 100, 8), "y": qdq.Asymmetric(-100, 100, 8)}
			require.NoError(t, passes.Run(g, passes.InsertQDQ{Plan: p, Act: act, Weights: passes.WeightConfig{Bits: 8, PerChannel: true},
				ConvIn: map[string]qdq.Quantizer{"c": tc.q}, Forms: map[string]passes.Form{"c": tc.form}}))
			var conv *graph.Node
			for _, n := range g.Nodes {
				if n.OpType == "Conv" {
					conv = n
				}
			}
			g.Outputs = append(g.Outputs, &graph.Value{Name: conv.Inputs[0], DType: onnx.TensorProto_FLOAT})
			g.Invalidate()
			out := runORTAll(t, g, in)
			fine, _ := tc.q.Fine() // the carrier of nx
			for i, x := range in.Data {
				want := tc.q.FakeQuant(fine.FakeQuant(-x))
				got := out[1].Data[i]
				require.InDelta(t, want, got, 1e-4*math.Max(1, math.Abs(float64(want))), "x=%g", -x)
			}
		})
	}
}

// TestConvInputBiasScale: ORT's fused int8 Conv assumes the int32 bias is on
// the scale of the tensor the Conv reads times the weight scale. A Conv that
// requantizes its input (here c3, whose input the Add also reads at 8 bits)
// must have its bias on its own input grid, or the fused graph drifts from
// the QDQ graph's meaning; ORT's unoptimised run is that meaning.
func TestConvInputBiasScale(t *testing.T) {
	requireORT(t)
	g := newGraph(3)
	chain4(g)
	for i, n := range g.Nodes {
		if n.OpType == "Conv" {
			b := fmt.Sprintf("b%d", i)
			weight(g, b, 2, 8)
			if n.Name == "c4" {
				weight(g, b, 2, 3)
			}
			n.Inputs = append(n.Inputs, b)
		}
	}
	g.Invalidate()
	p, err := passes.PlanQDQ(g, passes.Policy{})
	require.NoError(t, err)
	act := map[string]qdq.Params{}
	for _, v := range p.Values {
		act[v] = qdq.Asymmetric(-12, 12, 8)
	}
	act["x"], act["r1"], act["r2"] = qdq.Asymmetric(0, 1, 8), qdq.Asymmetric(0, 12, 8), qdq.Asymmetric(0, 12, 8)
	q2, q3 := mustUniform(t, 0, 8, 4), mustDual(t, qdq.DualSpec{Lo: 0, Hi: 12, BP: 3, Bits: 4, Accounting: qdq.Reference})
	require.NoError(t, passes.Run(g, passes.InsertQDQ{Plan: p, Act: act, Weights: passes.WeightConfig{Bits: 4, PerChannel: true},
		ConvIn: map[string]qdq.Quantizer{"c2": q2, "c3": q3}}))
	data := serialize(t, g)
	in := randInput(3, 1, 3, 12, 12)
	var outs [2][]float32
	for i, lvl := range []string{"disable", "all"} {
		s, err := ort.NewSession(data, "test", ort.Options{Threads: 1, OptLevel: lvl})
		require.NoError(t, err)
		o, err := s.Run(in)
		require.NoError(t, err)
		require.NoError(t, s.Close())
		outs[i] = o[0].Data
	}
	// ORT's fused kernels round at near-ties differently from the float
	// reference (a step here and there); a bias on the wrong scale moves
	// outputs by many steps (about 10 here before the fix).
	step := float64(act["y"].Scale)
	for i := range outs[0] {
		d := math.Abs(float64(outs[0][i] - outs[1][i]))
		require.LessOrEqual(t, d, 1.01*step, "element %d: fused and unfused differ by more than one output step", i)
	}
}

// TestTwoBranchInORT: a dual-region quantizer too wide for one 8-bit grid
// runs as two int8 Convs (dense and tail) whose outputs a QLinearAdd sums;
// its output matches the float-ops form up to the 8-bit rounding of the two
// partial outputs and of the output itself.
func TestTwoBranchInORT(t *testing.T) {
	requireORT(t)
	d := mustDual(t, qdq.DualSpec{Lo: -200, Hi: 300, BP: 4, Bits: 6, Accounting: qdq.Reference})
	_, fits := d.Fine()
	require.False(t, fits, "%s", d)
	f, _, err := passes.ChooseForm(d, passes.EncodingInt8)
	require.NoError(t, err)
	require.Equal(t, passes.FormTwoBranch, f)
	r := rand.New(rand.NewPCG(5, 5))
	in := &ort.Tensor{Shape: []int64{1, 4, 16, 16}, Data: make([]float32, 4*16*16)}
	for i := range in.Data {
		in.Data[i] = float32(r.NormFloat64() * 3)
		if r.IntN(10) == 0 {
			in.Data[i] = float32(-200 + 500*r.Float64())
		}
	}
	build := func(form passes.Form) (*graph.Graph, map[string]int) {
		g := newGraph(4)
		weight(g, "w", 0.2, 4, 4, 3, 3)
		weight(g, "b", 1, 4)
		node(g, "neg", "Neg", "x", "nx")
		node(g, "c", "Conv", "nx,w,b", "y", pad1)
		outputs(g, "y")
		p, err := passes.PlanQDQ(g, passes.Policy{FirstLast: passes.FirstLastSame})
		require.NoError(t, err)
		act := map[string]qdq.Params{"nx": qdq.Asymmetric(-300, 200, 8), "y": qdq.Asymmetric(-700, 700, 8)}
		partial := [2]qdq.Params{qdq.Asymmetric(-300, 300, 8), qdq.Asymmetric(-700, 700, 8)}
		require.NoError(t, passes.Run(g, passes.InsertQDQ{Plan: p, Act: act, Weights: passes.WeightConfig{Bits: 8, PerChannel: true},
			ConvIn: map[string]qdq.Quantizer{"c": d}, Forms: map[string]passes.Form{"c": form},
			Partials: map[string][2]qdq.Params{"c": partial}}))
		return g, optimizedOps(t, serialize(t, g))
	}
	gt, ops := build(passes.FormTwoBranch)
	assert.Equal(t, 2, ops["QLinearConv"], "dense and tail branches on int8 kernels: %v", ops)
	assert.Equal(t, 1, ops["QLinearAdd"], "%v", ops)
	assert.Zero(t, ops["Conv"], "%v", ops)
	gf, ops := build(passes.FormFloat)
	assert.Zero(t, ops["QLinearConv"], "%v", ops)
	got, want := runORT(t, gt, in), runORT(t, gf, in)
	tol := float64(300+700+700) / 255 // half a step of each partial and of the output, twice over
	var worst float64
	for i := range want.Data {
		worst = max(worst, math.Abs(float64(got.Data[i]-want.Data[i])))
	}
	t.Logf("largest difference %.3f (output step %.3f)", worst, 1400.0/255)
	assert.LessOrEqual(t, worst, tol)
}

// optimizedOps counts the operators of the graph ORT optimizes model into.
func optimizedOps(t *testing.T, model []byte) map[string]int {
	t.Helper()
	g, err := graph.FromModel(orttest.Optimized(t, model))
	require.NoError(t, err)
	ops := map[string]int{}
	for _, n := range g.Nodes {
		ops[n.OpType]++
	}
	return ops
}
