package passes_test

import (
	"strconv"
	"strings"
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

// tokens returns an empty opset-17 graph whose input x is a token tensor
// [1, n, c] with n symbolic, as a window transformer's linear layers read.
func tokens(c int64) *graph.Graph {
	g := graph.New("test", map[string]int64{"": 17})
	g.Inputs = append(g.Inputs, &graph.Value{Name: "x", DType: onnx.TensorProto_FLOAT,
		Shape: graph.Shape{{Value: 1}, {Value: -1, Param: "n"}, {Value: c}}})
	return g
}

// slice1 adds a Slice of v along the last axis, [start, end).
func slice1(g *graph.Graph, name, v, out string, start, end int64) {
	for k, x := range map[string]int64{"_s": start, "_e": end, "_a": -1} {
		g.SetInitializer(graph.NewInt64(name+k, []int64{1}, []int64{x}))
	}
	node(g, name, "Slice", v+","+name+"_s,"+name+"_e,"+name+"_a", out)
}

// attention builds one attention block on 8 features, CRAFT's pattern in
// miniature: a qkv linear layer (MatMul, bias Add), q, k and v sliced out,
// Q·Kᵀ, Softmax, attention·V, a projection linear layer and the residual
// Add.
func attention(g *graph.Graph) {
	weight(g, "w_qkv", 0.5, 8, 24)
	weight(g, "b_qkv", 0.1, 24)
	weight(g, "w_proj", 0.5, 8, 8)
	weight(g, "b_proj", 0.1, 8)
	node(g, "qkv", "MatMul", "x,w_qkv", "qkv_mm")
	node(g, "qkv_bias", "Add", "qkv_mm,b_qkv", "h")
	slice1(g, "q", "h", "q", 0, 8)
	slice1(g, "k", "h", "k", 8, 16)
	slice1(g, "v", "h", "v", 16, 24)
	node(g, "kt", "Transpose", "k", "kt", ints("perm", 0, 2, 1))
	node(g, "qk", "MatMul", "q,kt", "s")
	node(g, "softmax", "Softmax", "s", "a", intAttr("axis", -1))
	node(g, "av", "MatMul", "a,v", "o")
	node(g, "proj", "MatMul", "o,w_proj", "p_mm")
	node(g, "proj_bias", "Add", "b_proj,p_mm", "p")
	node(g, "res", "Add", "x,p", "y")
	outputs(g, "y")
}

// mlp builds a linear layer, an exported GELU and a second linear layer
// whose output is the model's: x → fc1 (+bias) → GELU → fc2 → y.
func mlp(g *graph.Graph) {
	weight(g, "w1", 0.5, 8, 16)
	weight(g, "b1", 0.1, 16)
	weight(g, "w2", 0.5, 16, 8)
	g.SetInitializer(graph.NewFloat32("sqrt2", nil, []float32{1.4142135}))
	g.SetInitializer(graph.NewFloat32("one", nil, []float32{1}))
	g.SetInitializer(graph.NewFloat32("half", nil, []float32{0.5}))
	node(g, "fc1", "MatMul", "x,w1", "f_mm")
	node(g, "fc1_bias", "Add", "f_mm,b1", "f")
	node(g, "div", "Div", "f,sqrt2", "d")
	node(g, "erf", "Erf", "d", "e")
	node(g, "erf1", "Add", "e,one", "e1")
	node(g, "gelu", "Mul", "f,e1", "m")
	node(g, "gelu_half", "Mul", "m,half", "gl")
	node(g, "fc2", "MatMul", "gl,w2", "y")
	outputs(g, "y")
}

// residual builds x → linear layer lin → residual Add res (x + lin) →
// norm → linear layer fc → y. norm "ln" is a LayerNormalization; else it
// is r − ReduceMean(r) over the comma-separated axes norm names.
func residual(g *graph.Graph, norm string) {
	weight(g, "w_lin", 0.5, 8, 8)
	weight(g, "w_fc", 0.5, 8, 8)
	node(g, "lin", "MatMul", "x,w_lin", "l")
	node(g, "res", "Add", "x,l", "r")
	if norm == "ln" {
		weight(g, "gamma", 1, 8)
		weight(g, "beta", 0.1, 8)
		node(g, "ln", "LayerNormalization", "r,gamma,beta", "z", intAttr("axis", -1))
	} else {
		var axes []int64
		for _, a := range strings.Split(norm, ",") {
			v, err := strconv.ParseInt(a, 10, 64)
			if err != nil {
				panic(err)
			}
			axes = append(axes, v)
		}
		node(g, "mean", "ReduceMean", "r", "m", ints("axes", axes...))
		node(g, "centre", "Sub", "r,m", "z")
	}
	node(g, "fc", "MatMul", "z,w_fc", "y")
	outputs(g, "y")
}

func TestPlanQDQMatMul(t *testing.T) {
	tests := []struct {
		name  string
		build func(g *graph.Graph)
		// want: quantized nodes, calibrated values, shared values, bias
		// Adds absorbed (MatMul -> Add), MatMuls with a float output,
		// skipped nodes (name -> reason).
		nodes, values []string
		shared        map[string]string
		biases        map[string]string
		floatOut      []string
		skipped       map[string]string
	}{
		{
			name:  "attention: linear layers, Q·Kᵀ and attention·V",
			build: attention,
			nodes: []string{"qkv", "q", "k", "v", "kt", "qk", "av", "proj", "res"},
			// h is the qkv layer's output after its bias, a the Softmax
			// output attention·V reads, o its output the projection reads.
			values:   []string{"x", "h", "a", "o", "p", "y"},
			shared:   map[string]string{"q": "h", "k": "h", "v": "h", "kt": "h"},
			biases:   map[string]string{"qkv": "qkv_bias", "proj": "proj_bias"},
			floatOut: []string{"qk"}, // Softmax reads it in float
		},
		{
			name:  "mlp: GELU float, fc1's output float, fc2 reads the GELU quantized",
			build: mlp,
			nodes: []string{"fc1", "fc2"},
			// fc2 writes the model output, which no quantized node reads:
			// float, as fc1's.
			values:   []string{"x", "gl"},
			floatOut: []string{"fc1", "fc2"},
			skipped:  map[string]string{"gelu": "GELU kept float"},
		},
		{
			name:  "residual Add read by a LayerNormalization stays float",
			build: func(g *graph.Graph) { residual(g, "ln") },
			nodes: []string{"lin", "fc"},
			// lin's output is read by the float residual Add only.
			values:   []string{"x", "z"},
			floatOut: []string{"lin", "fc"},
			skipped:  map[string]string{"res": "residual stream of a normalization kept float"},
		},
		{
			name:     "residual Add read by a norm spelled out (x − mean over the features) stays float",
			build:    func(g *graph.Graph) { residual(g, "-1") },
			nodes:    []string{"lin", "fc"},
			values:   []string{"x", "z"},
			floatOut: []string{"lin", "fc"},
			skipped:  map[string]string{"res": "residual stream of a normalization kept float"},
		},
		{
			name:  "an Add read by a mean over several axes is no residual stream",
			build: func(g *graph.Graph) { residual(g, "1,2") },
			nodes: []string{"lin", "res", "fc"},
			// res is int8, and so is lin's output it reads.
			values:   []string{"x", "l", "r", "z"},
			floatOut: []string{"fc"},
		},
		{
			name: "constant first input and batched weights stay float",
			build: func(g *graph.Graph) {
				weight(g, "a", 0.5, 4, 1)
				weight(g, "w3", 0.5, 1, 8, 8)
				node(g, "left", "MatMul", "a,x", "l")
				node(g, "batched", "MatMul", "x,w3", "b")
				node(g, "sum", "Add", "l,b", "y")
				outputs(g, "y")
			},
			// The Add of their float outputs is quantized on its own.
			nodes:   []string{"sum"},
			values:  []string{"l", "b", "y"},
			skipped: map[string]string{"left": "MatMul with a constant first input", "batched": "MatMul weight is not a float matrix"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tokens(8)
			tt.build(g)
			p, err := passes.PlanQDQ(g, passes.Policy{})
			require.NoError(t, err)
			assert.Equal(t, tt.nodes, nodeNames(p.Nodes))
			assert.Equal(t, tt.values, p.Values)
			shared := map[string]string{}
			for k, v := range p.Shared {
				shared[k] = v
			}
			if tt.shared == nil {
				tt.shared = map[string]string{}
			}
			assert.Equal(t, tt.shared, shared)
			biases := map[string]string{}
			for mm, add := range p.BiasOf {
				biases[mm.Name] = add.Name
			}
			if tt.biases == nil {
				tt.biases = map[string]string{}
			}
			assert.Equal(t, tt.biases, biases)
			var floatOut []string
			for _, n := range p.Nodes {
				if p.FloatOut[n] {
					floatOut = append(floatOut, n.Name)
				}
			}
			assert.Equal(t, tt.floatOut, floatOut)
			skipped := map[string]string{}
			for n, why := range p.Skipped {
				skipped[n.Name] = why
			}
			if tt.skipped == nil {
				tt.skipped = map[string]string{}
			}
			assert.Equal(t, tt.skipped, skipped)
		})
	}
}

// The written model runs in ORT close to the float graph, its linear
// layers' weights are int8 per output column, and ORT's optimized graph
// runs every MatMul on an int8 kernel: MatMulIntegerToFloat where the
// output stays float (Q·Kᵀ before Softmax, a linear layer before its float
// bias Add), QLinearMatMul where the int8 chain goes on (attention·V into
// the projection; fc2's output, the model's, stays float). No float MatMul
// is left.
func TestInsertQDQMatMulRunsInt8(t *testing.T) {
	tests := []struct {
		name  string
		build func(g *graph.Graph)
		// ORT's int8 matrix products and the float ones left, by op type.
		int8    map[string]int
		columns map[string]int64 // weight initializer -> scales (axis 1)
	}{
		{"attention", attention, map[string]int{"MatMulIntegerToFloat": 3, "QLinearMatMul": 1}, map[string]int64{"w_qkv": 24, "w_proj": 8}},
		{"mlp", mlp, map[string]int{"MatMulIntegerToFloat": 2}, map[string]int64{"w1": 16, "w2": 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireORT(t)
			g := tokens(8)
			tt.build(g)
			in := randTokens(3, 32, 8)
			want := runORT(t, g, in)
			p, err := passes.PlanQDQ(g, passes.Policy{})
			require.NoError(t, err)
			act := map[string]qdq.Params{}
			for _, v := range p.Values {
				act[v] = qdq.Asymmetric(-6, 6, 8)
			}
			act["a"] = qdq.Asymmetric(0, 1, 8) // Softmax: 0..1
			require.NoError(t, passes.Run(g, passes.InsertQDQ{Plan: p, Act: act, Weights: passes.WeightConfig{Bits: 8, PerChannel: true, Method: qdq.MinMax}}))

			for w, cols := range tt.columns {
				dq := g.Producer(w + "_dequantized")
				require.NotNil(t, dq, "weight %s behind a DequantizeLinear", w)
				assert.Equal(t, int64(1), dq.AttrInt("axis", 0), "per column")
				s, ok := g.Const(dq.Inputs[1])
				require.True(t, ok)
				assert.Equal(t, []int64{cols}, s.Dims)
			}

			got := runORT(t, g, in)
			rel := relDiff(t, want, got)
			t.Logf("max error relative to the output's range: %.4f", rel)
			assert.Less(t, rel, 0.08, "a few steps of the ±6 grids (step 0.047)")

			opt := orttest.Summarize(orttest.Optimized(t, serialize(t, g)))
			int8 := map[string]int{}
			for op, n := range opt.Ops {
				switch op {
				case "QLinearMatMul", "MatMulIntegerToFloat", "QGemm":
					int8[op] = n
				case "MatMul", "FusedMatMul", "Gemm":
					t.Errorf("%d %s left float in ORT's optimized graph", n, op)
				}
			}
			assert.Equal(t, tt.int8, int8)
		})
	}
}

// randTokens is a [1, n, c] tensor with values uniform in [-1, 1).
func randTokens(seed uint64, n, c int64) *ort.Tensor {
	t := randInput(seed, 1, n, c)
	for i := range t.Data {
		t.Data[i] = 2*t.Data[i] - 1
	}
	return t
}
