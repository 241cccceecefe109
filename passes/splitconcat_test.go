package passes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/passes"
)

// TestSplitConcatConv: a 1x1 and a 3x3 Conv reading a Concat of three
// parts (a Conv output, a SiLU of it, the image) become one Conv per part
// and a chain of Adds, with the same output; a Conv named nowhere is left
// alone.
func TestSplitConcatConv(t *testing.T) {
	requireORT(t)
	for _, k := range []int64{1, 3} {
		g := newGraph(3)
		weight(g, "w1", 0.5, 8, 3, 3, 3)
		weight(g, "wc", 0.3, 5, 19, k, k)
		weight(g, "bc", 0.1, 5)
		node(g, "c1", "Conv", "x,w1", "a", pad1)
		node(g, "sig", "Sigmoid", "a", "s")
		node(g, "silu", "Mul", "a,s", "m")
		node(g, "cat", "Concat", "a,m,x", "cat", intAttr("axis", 1))
		attrs := []attr{}
		if k == 3 {
			attrs = append(attrs, pad1)
		}
		node(g, "cc", "Conv", "cat,wc,bc", "y", attrs...)
		outputs(g, "y")
		in := randInput(3, 1, 3, 10, 9)
		want := runORT(t, g, in)

		parts, ok := passes.ConcatParts(g, g.Producer("y"))
		require.True(t, ok)
		require.Len(t, parts, 3)
		assert.Equal(t, "m", parts[1].Value())

		split := map[string][]string{}
		require.NoError(t, passes.Run(g, passes.SplitConcatConv{Nodes: []string{"cc"}, Split: split}))
		assert.Equal(t, map[string]int{"Conv": 4, "Add": 2, "Sigmoid": 1, "Mul": 1}, ops(g), dump(g))
		assert.Len(t, split["cc"], 5, "three partial outputs and two sums")
		assert.Less(t, relDiff(t, want, runORT(t, g, in)), 1e-5)
	}
}
