package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/passes"
	"github.com/srquant/srq/qdq"
)

// TestFakeQuantConvHalves: a nil input quantizer or zero weight bits leave
// that side float, so the weights' and the inputs' shares of a setting's
// error can be measured apart.
func TestFakeQuantConvHalves(t *testing.T) {
	in, err := qdq.NewUniform(-1, 1, 4)
	require.NoError(t, err)
	w4 := passes.WeightConfig{Bits: 4, PerChannel: true}
	for _, tc := range []struct {
		name          string
		p             passes.FakeQuantConv
		weights, ops  bool // weights rounded; quantizer ops inserted
		roundedLevels int  // at most this many distinct weights per output channel
	}{
		{"both", passes.FakeQuantConv{Conv: "c", Input: in, Weights: w4}, true, true, 16},
		{"weights alone", passes.FakeQuantConv{Conv: "c", Weights: w4}, true, false, 16},
		{"input alone", passes.FakeQuantConv{Conv: "c", Input: in}, false, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph(4)
			w := weight(g, "w", 0.5, 8, 4, 3, 3)
			node(g, "c", "Conv", "x,w", "y", pad1)
			outputs(g, "y")
			before := len(g.Nodes)
			require.NoError(t, passes.Run(g, tc.p))
			c := g.Nodes[len(g.Nodes)-1]
			assert.Equal(t, "c", c.Name)
			wt, ok := g.Const(c.Inputs[1])
			require.True(t, ok)
			got, err := wt.Float32()
			require.NoError(t, err)
			assert.Equal(t, tc.weights, c.Inputs[1] != "w", "weights replaced")
			if tc.weights {
				for o := range 8 {
					levels := map[float32]bool{}
					for _, v := range got[o*36 : (o+1)*36] {
						levels[v] = true
					}
					assert.LessOrEqual(t, len(levels), tc.roundedLevels)
				}
			} else {
				assert.Equal(t, w, got)
			}
			assert.Equal(t, tc.ops, len(g.Nodes) > before, "input quantizer written")
			assert.Equal(t, tc.ops, c.Inputs[0] != "x")
		})
	}
}
