package passes

import (
	"fmt"
	"slices"

	"github.com/srquant/srq/graph"
)

// LongSkip is the policy for the long skip of an SR network: the head conv's
// output h, which bypasses the body and is added back to it right before
// the upsampler (EDSR, RCAN, RDN...).
//
// h carries the image itself, colour outliers included: on EDSR x2 it
// spans about ±300 with a standard deviation of 33, so one 8-bit grid over
// it has a step of 2. Measured on Set5 (fake-quant, one tensor at a time),
// that rounding of h cost 0.032 dB, the rounding of the long-skip sum that
// feeds the upsampler 0.018 dB and the rounding of the mean-shifted input
// 0.018 dB (FoldInputShift's job): more than half of EDSR x2's whole W8A8
// loss, in three tensors that cost little to keep precise.
type LongSkip string

const (
	// LongSkipPrecise keeps the long skip at full precision: a float copy
	// of the head feeds the Add that closes the skip, that Add runs in
	// float, and the upsampler conv reads its sum in a two-part int8
	// encoding (see PreciseLongSkip and Plan.Split). Every other conv,
	// the upsampler included, still runs on int8 kernels.
	LongSkipPrecise LongSkip = "precise"
	// LongSkipInt8 quantizes the long skip like any other tensor.
	LongSkipInt8 LongSkip = "int8"
)

// ParseLongSkip checks a --long-skip value.
func ParseLongSkip(s string) (LongSkip, error) {
	switch l := LongSkip(s); l {
	case LongSkipPrecise, LongSkipInt8:
		return l, nil
	}
	return "", fmt.Errorf("long-skip policy %q: want precise or int8", s)
}

// minLongSkipConvs is how many Convs must lie between the head and an Add
// that reads the head's output for that Add to close a long skip rather
// than a residual block (which has two).
const minLongSkipConvs = 4

// LongSkipPath is the float path PreciseLongSkip builds.
type LongSkipPath struct {
	// Float names the nodes that must stay float: the copy of the head
	// and the Add that closes the skip.
	Float []string
	// Sum is the closing Add's output, which the upsampler reads; PlanQDQ
	// gives it the two-part encoding (Plan.Split).
	Sum string
}

// PreciseLongSkip rewrites g for LongSkipPrecise when g has a long skip:
// the head conv (the first spatial conv) is copied, and the Add that closes
// the long skip reads the copy's output instead of h. The original head
// still feeds the body and is quantized like the rest; the copy and the
// closing Add stay float, so the skip path carries the exact head output for
// the cost of one float head conv (3 input channels: a few percent of one
// body conv). Keeping the body's own head in int8 matters for speed: a
// float value feeding the body's residual Adds stops ORT from running the
// residual stream channels-last and costs a Transpose pair per conv.
//
// The skip is closed by the last Add (in graph order) that reads the head's
// output with at least minLongSkipConvs Convs between them. Without one,
// PreciseLongSkip returns nil and leaves g alone.
func PreciseLongSkip(g *graph.Graph) (*LongSkipPath, error) {
	first, _ := firstLast(g)
	if len(first) == 0 {
		return nil, nil
	}
	head := first[len(first)-1]
	h := head.Outputs[0]
	if isPointwiseConv(head) || g.IsGraphOutput(h) {
		return nil, nil
	}
	var closing *graph.Node
	for _, c := range g.Consumers(h) {
		if isOp(c, "Add") {
			closing = c // Consumers are in graph order
		}
	}
	if closing == nil {
		return nil, nil
	}
	convs := 0
	for _, n := range g.Nodes[slices.Index(g.Nodes, head)+1 : slices.Index(g.Nodes, closing)] {
		if isOp(n, "Conv") {
			convs++
		}
	}
	if convs < minLongSkipConvs {
		return nil, nil
	}
	out := g.UniqueName(h + "_skip")
	c := &graph.Node{Name: g.UniqueName(head.Name + "_skip"), OpType: head.OpType, Domain: head.Domain,
		Inputs: slices.Clone(head.Inputs), Outputs: []string{out}, Attrs: slices.Clone(head.Attrs)}
	g.AddNode(c)
	for i, x := range closing.Inputs {
		if x == h {
			g.ReplaceInput(closing, i, out)
		}
	}
	if err := g.TopoSort(); err != nil {
		return nil, err
	}
	return &LongSkipPath{Float: []string{c.Name, closing.Name}, Sum: closing.Outputs[0]}, nil
}

// MaxSplitGain bounds the gain k of the two-part encoding (see Plan.Split):
// the residual branch resolves a value to 1/k of its 8-bit step, while its
// weights W/k share the per-channel weight scale of W, so a larger k trades
// activation rounding for weight rounding. At 16 the residual branch is
// 12-bit precise and its weight error stays below that of the main branch.
const MaxSplitGain = 16

// SplitGain returns the gain k of the two-part encoding for a value
// quantized with zero point zp on [qmin, qmax]: the largest power of two up
// to MaxSplitGain for which the residual, k·r with |r| ≤ step/2, stays on
// the grid (k/2 levels on each side of the zero point). Below 2 the value
// cannot be split.
func SplitGain(zp, qmin, qmax int32) int {
	room := min(zp-qmin, qmax-zp)
	k := 1
	for k*2 <= MaxSplitGain && int32(k) <= room {
		k *= 2
	}
	return k
}
