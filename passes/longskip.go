package passes

import (
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/internal/enum"
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
	return enum.Parse("long-skip policy", s, LongSkipPrecise, LongSkipInt8)
}

// minLongSkipConvs is how many Convs must lie between the head and an Add
// that reads the head's output for that Add to close a long skip rather
// than a residual block (which has two).
const minLongSkipConvs = 4

// LongSkipPath is the float path PreciseLongSkip builds.
type LongSkipPath struct {
	// Float names the nodes that must stay float: the copy of the head
	// and the Adds that close long skips from it.
	Float []string
	// Head is the model's head conv and Copy the float copy of it that
	// PreciseLongSkip added (also in Float): a node of srq's, not of the
	// model, which summaries report as such.
	Head, Copy string
	// Sum is the closing Add's output, which the upsampler reads; PlanQDQ
	// gives it the two-part encoding (Plan.Split).
	Sum string
}

// PreciseLongSkip rewrites g for LongSkipPrecise when g has a long skip:
// the head conv (the first spatial conv) is copied, and the Adds that close
// long skips from the head read the copy's output instead of h. The
// original head still feeds the body and is quantized like the rest; the
// copy and those Adds stay float, so the skip paths carry the exact head
// output for the cost of one float head conv (3 input channels: a few
// percent of one body conv). The body's own head stays int8, and so do
// the Adds of residual blocks that read h: a float value feeding the
// residual stream stops ORT from running it channels-last and costs a
// Transpose pair per conv (25% on EDSR x2).
//
// Among the Adds that read h, the long skip is closed by the last one (in
// graph order) if at least minLongSkipConvs Convs lie between the head and
// it; the upsampler reads its sum (LongSkipPath.Sum). Other Adds that read
// h across more than twice the Convs of the shortest one (RCAN's group
// skips, beside its residual blocks) are long skips too and also read the
// copy; on RCAN x4 that gained 0.007 dB on Set5 for about 2% of speed.
// Without a long skip PreciseLongSkip returns nil and leaves g alone.
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
	pos := map[*graph.Node]int{}
	for i, n := range g.Nodes {
		pos[n] = i
	}
	convsBefore := make([]int, len(g.Nodes)+1) // Convs among g.Nodes[:i]
	for i, n := range g.Nodes {
		convsBefore[i+1] = convsBefore[i]
		if isOp(n, "Conv") {
			convsBefore[i+1]++
		}
	}
	var adds []*graph.Node
	var spans []int
	for _, c := range g.Consumers(h) { // in graph order
		if isOp(c, "Add") {
			adds = append(adds, c)
			spans = append(spans, convsBefore[pos[c]]-convsBefore[pos[head]+1])
		}
	}
	if len(adds) == 0 || spans[len(spans)-1] < minLongSkipConvs {
		return nil, nil
	}
	closing := adds[len(adds)-1]
	out := g.UniqueName(h + "_skip")
	c := &graph.Node{Name: g.UniqueName(head.Name + "_skip"), OpType: head.OpType, Domain: head.Domain,
		Inputs: slices.Clone(head.Inputs), Outputs: []string{out}, Attrs: slices.Clone(head.Attrs)}
	g.AddNode(c)
	path := &LongSkipPath{Float: []string{c.Name}, Head: head.Name, Copy: c.Name, Sum: closing.Outputs[0]}
	shortest := slices.Min(spans)
	for i, a := range adds {
		if a != closing && (spans[i] < minLongSkipConvs || spans[i] <= 2*shortest) {
			continue
		}
		path.Float = append(path.Float, a.Name)
		for j, x := range a.Inputs {
			if x == h {
				g.ReplaceInput(a, j, out)
			}
		}
	}
	if err := g.TopoSort(); err != nil {
		return nil, err
	}
	return path, nil
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
