package passes

import (
	"fmt"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/internal/enum"
	"github.com/srquant/srq/qdq"
)

// Encoding is how a model writes the input quantizers of its low-bit and
// dual-region Convs (InsertQDQ.ConvIn); a user's --encoding.
type Encoding string

const (
	// EncodingInt8 writes every Conv input so that ORT runs the Conv on its
	// int8 kernels with the quantizer's exact levels, choosing per layer the
	// cheapest exact form: FormGrid for a uniform grid, FormShared when the
	// levels fit one 8-bit grid, else FormTwoBranch.
	EncodingInt8 Encoding = "int8"
	// EncodingShared asks for FormShared on every dual-region layer and
	// fails, naming the layer, where the levels do not fit one 8-bit grid.
	EncodingShared Encoding = "shared-grid"
	// EncodingSimulate writes exact fake-quant semantics with float ops
	// (FormFloat for dual-region layers): what a hardware toolchain
	// imports; ORT runs those Convs in float.
	EncodingSimulate Encoding = "simulate"
)

// ParseEncoding checks an --encoding value.
func ParseEncoding(s string) (Encoding, error) {
	return enum.Parse("encoding", s, EncodingInt8, EncodingShared, EncodingSimulate)
}

// Form is how one Conv's input quantizer is written.
type Form string

const (
	// FormGrid: QuantizeLinear → Clip (codes) → DequantizeLinear on a
	// uint8: a uniform grid (2^b codes of a b-bit setting) that ORT fuses
	// into its int8 Conv.
	FormGrid Form = "grid"
	// FormShared: the input's codes on the quantizer's fine grid
	// (qdq.Quantizer.Fine), on which every level is a code, rounded to the
	// levels by uint8 lookup tables that ORT runs as QLinearLeakyRelu (see
	// insertShared), then DequantizeLinear into ORT's int8 Conv: the exact
	// levels on int8 kernels throughout.
	FormShared Form = "shared-grid"
	// FormTwoBranch: the Conv runs twice on ORT's int8 kernels, on the
	// dense part (the input's codes on the dense grid) and, with the same
	// weights and no bias, on the tail part (the residual beyond the
	// breakpoints on the tail grid); QLinearAdd sums the two outputs, each
	// on its own 8-bit grid (InsertQDQ.Partials). Exact levels for any
	// range, for twice the MACs.
	FormTwoBranch Form = "two-branch"
	// FormFloat: the sum of the quantizer's parts, each Q → Clip → DQ, in
	// float; the Conv reads a float tensor and runs in float.
	FormFloat Form = "float"
)

// ChooseForm returns the form of a Conv input quantizer q under enc, with
// the reason when it is not the cheapest int8 form. Only EncodingShared can
// fail: a dual-region quantizer whose levels span more than 255 fine steps
// has no exact form on one 8-bit grid; EncodingInt8 writes it in two
// branches instead.
func ChooseForm(q qdq.Quantizer, enc Encoding) (Form, string, error) {
	if len(q.Parts()) == 1 {
		return FormGrid, "", nil
	}
	if enc == EncodingSimulate {
		return FormFloat, "", nil
	}
	if _, ok := q.Fine(); ok {
		return FormShared, "", nil
	}
	why := fmt.Sprintf("levels span %d fine steps, more than one 8-bit grid's 255", q.FineSpan())
	if enc == EncodingShared {
		return "", why, fmt.Errorf("cannot be exact on one 8-bit grid: %s", why)
	}
	return FormTwoBranch, why + ": dense and tail Convs summed", nil
}

// elideCarriers gives a value whose every quantized reader is a Conv with
// the same input quantizer q (through data-movement nodes) q's fine grid as
// its carrier, instead of an 8-bit carrier followed by q: the producing
// int8 kernel then writes q's grid directly (a 4-bit uniform Conv input
// costs no requantization), and for a dual-region q the rounding to the
// fine grid loses nothing in the dense region. A float reader of a value
// from a quantized producer would see the coarser carrier, so it keeps the
// value's own. It returns, per value whose carrier became q itself
// (uniform q), that q: its Convs need no further quantizer.
func (p InsertQDQ) elideCarriers(g *graph.Graph, params map[string]qdq.Params, quantized map[*graph.Node]bool) map[string]qdq.Quantizer {
	done := map[string]qdq.Quantizer{}
	if len(p.ConvIn) == 0 {
		return done
	}
	aliases := map[string][]string{}
	for v, src := range p.Plan.Shared {
		aliases[src] = append(aliases[src], v)
	}
	for _, v := range p.Plan.Values {
		prod := g.Producer(v)
		fromQuantized := prod != nil && quantized[prod]
		var q qdq.Quantizer
		ok := true
		for _, u := range append([]string{v}, aliases[v]...) {
			if g.IsGraphOutput(u) {
				ok = false
			}
			for _, c := range g.Consumers(u) {
				if !quantized[c] {
					if fromQuantized {
						ok = false
					}
					continue
				}
				if _, shared := p.Plan.Shared[p.Plan.OutputOf(c)]; shared {
					continue // data movement: its output is an alias of v
				}
				cq, has := p.ConvIn[c.Name]
				if !has || !isOp(c, "Conv") || c.Inputs[0] != u || slices.Contains(c.Inputs[1:], u) || (q != nil && cq != q) {
					ok = false
					continue
				}
				q = cq
			}
		}
		if !ok || q == nil {
			continue
		}
		fine, fits := q.Fine()
		if !fits {
			continue
		}
		params[v] = fine
		if len(q.Parts()) == 1 {
			done[v] = q
			for _, a := range aliases[v] {
				done[a] = q
			}
		}
	}
	return done
}

// inputGrid is the grid of the tensor a Conv reads when its input
// quantizer q is written in form f (carrier: the value's own): what the
// int32 bias must be scaled by.
func inputGrid(q qdq.Quantizer, f Form, carrier qdq.Params) qdq.Params {
	switch f {
	case FormGrid, FormTwoBranch:
		return q.Parts()[0].Params
	case FormShared:
		if fine, ok := q.Fine(); ok {
			return fine
		}
	}
	return carrier
}

// insertConvInput writes Conv n's input quantizer q in form f between the
// value it reads (the carrier's dequantized output) and n; partial holds the
// output quantizers of the two branches of FormTwoBranch.
func insertConvInput(g *graph.Graph, n *graph.Node, q qdq.Quantizer, f Form, partial [2]qdq.Params) error {
	parts := q.Parts()
	switch f {
	case FormTwoBranch:
		return insertTwoBranch(g, n, q, partial)
	case FormShared:
		return insertShared(g, n, q)
	case FormGrid:
		if len(parts) != 1 || parts[0].Residual {
			return fmt.Errorf("%s: form %s needs a single uniform part", q, f)
		}
		g.ReplaceInput(n, 0, requantize(g, n.Inputs[0], parts[0].Params, n.Name+"_input"))
		return nil
	case FormFloat:
	default:
		return fmt.Errorf("unknown form %q", f)
	}
	// The sum of the parts, each Q → Clip → DQ; residual parts read
	// x − Clip(x, Lo, Hi).
	x, base := n.Inputs[0], n.Name+"_input"
	var sum string
	for i, pt := range parts {
		name := fmt.Sprintf("%s_part%d", base, i)
		in := x
		if pt.Residual {
			in = g.UniqueName(name + "_residual")
			c := emitClip(g, x, pt.Lo, pt.Hi, name+"_clipped")
			g.AddNode(&graph.Node{Name: g.UniqueName(name + "_residual_Sub"), OpType: "Sub", Inputs: []string{x, c}, Outputs: []string{in}})
		}
		term := emitPart(g, in, pt.Params, name)
		if sum == "" {
			sum = term
			continue
		}
		s := g.UniqueName(base + "_sum")
		g.AddNode(&graph.Node{Name: g.UniqueName(base + "_sum_Add"), OpType: "Add", Inputs: []string{sum, term}, Outputs: []string{s}})
		sum = s
	}
	g.ReplaceInput(n, 0, sum)
	return nil
}

// insertShared writes FormShared for Conv n as a chain of uint8 lookup
// tables on the codes of the fine grid (q.Fine, q.FineTails: every code in
// [lo, hi], every k-th one beyond). Each table is DequantizeLinear →
// LeakyRelu → QuantizeLinear, which ORT fuses into one QLinearLeakyRelu:
// its kink, at the input zero point, sits on a breakpoint code, and the
// slopes on each side come from alpha and the two scales. With codes c on
// the fine grid of step s:
//
//	compress above hi:  DQ(s, hi) → LeakyRelu(k)   → Q(k·s, hi):  c → hi + round((c−hi)/k)
//	compress below lo:  DQ(s, lo) → LeakyRelu(1/k) → Q(s, lo):    c → lo + round((c−lo)/k)
//	expand below lo:    DQ(s, lo) → LeakyRelu(k)   → Q(s, lo):    c → lo + k·(c−lo)
//	expand above hi:    DQ(s, hi) → LeakyRelu(1/k) → Q(s/k, hi):  c → hi + k·(c−hi)
//
// each the identity on the other side of its kink, so the chain rounds the
// tails to every k-th code and leaves the dense codes alone: the
// quantizer's exact levels, in two to four byte-wide passes (measured on
// EDSR x4 W4A4: a third of the time of the same rounding in float ops).
// The carrier's codes are first requantized onto the fine grid by one more
// table (LeakyRelu with alpha 1) unless the carrier is the fine grid.
func insertShared(g *graph.Graph, n *graph.Node, q qdq.Quantizer) error {
	fine, ok := q.Fine()
	if !ok {
		return fmt.Errorf("%s: levels do not fit one 8-bit grid", q)
	}
	lo, hi, k := q.FineTails()
	base := n.Name + "_input"
	codes := requantizeCodes(g, n.Inputs[0], fine, base+"_fine")
	s, kf := fine.Scale, float32(k)
	upper, lower := k > 1 && hi < fine.QMax, k > 1 && lo > fine.QMin
	if upper {
		codes = emitLUT(g, codes, s, hi, kf, kf*s, hi, base+"_compress_upper")
	}
	if lower {
		codes = emitLUT(g, codes, s, lo, 1/kf, s, lo, base+"_compress_lower")
		codes = emitLUT(g, codes, s, lo, kf, s, lo, base+"_expand_lower")
	}
	if upper {
		codes = emitLUT(g, codes, s, hi, 1/kf, s/kf, hi, base+"_expand_upper")
	}
	scale, zp := quantInits(g, base+"_fine", fine)
	out := g.UniqueName(base + "_fine_dq")
	g.AddNode(&graph.Node{Name: g.UniqueName(base + "_fine_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{codes, scale, zp}, Outputs: []string{out}})
	g.ReplaceInput(n, 0, out)
	return nil
}

// requantize writes x on the uniform grid p (QuantizeLinear → Clip of the
// codes → DequantizeLinear) and returns the dequantized value.
func requantize(g *graph.Graph, x string, p qdq.Params, base string) string {
	codes := requantizeCodes(g, x, p, base)
	scale, zp := quantInits(g, base+"_dq", p)
	out := g.UniqueName(base + "_dq")
	g.AddNode(&graph.Node{Name: g.UniqueName(base + "_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{codes, scale, zp}, Outputs: []string{out}})
	return out
}

// requantizeCodes returns the codes of x on the uniform grid p, clipped to
// p's window. When x is the dequantized output of an 8-bit carrier, the
// carrier's codes are mapped onto p by one uint8 lookup table (QLinearLeakyRelu
// with alpha 1), one byte-wide pass instead of a float DequantizeLinear and
// QuantizeLinear; when the carrier is p already, its codes are reused.
func requantizeCodes(g *graph.Graph, x string, p qdq.Params, base string) string {
	codes, carrier, ok := dequantized(g, x)
	switch {
	case !ok: // a float input
		codes, _, _ = emitQ(g, x, p, base)
		return codes
	case carrier.Scale == p.Scale && carrier.ZeroPoint == p.ZeroPoint:
	default:
		codes = emitLUT(g, codes, carrier.Scale, carrier.ZeroPoint, 1, p.Scale, p.ZeroPoint, base+"_requantize")
	}
	return clipCodes(g, codes, p, base)
}

// dequantized returns the codes and parameters behind v when v is the
// output of a per-tensor uint8 DequantizeLinear with constant parameters.
func dequantized(g *graph.Graph, v string) (codes string, p qdq.Params, ok bool) {
	dq := g.Producer(v)
	if dq == nil || !isOp(dq, "DequantizeLinear") || len(dq.Inputs) != 3 || dq.AttrInt("axis", 1) != 1 {
		return "", p, false
	}
	st, ok1 := g.Const(dq.Inputs[1])
	zt, ok2 := g.Const(dq.Inputs[2])
	if !ok1 || !ok2 || st.NumElements() != 1 || zt.NumElements() != 1 {
		return "", p, false
	}
	sv, err1 := st.Float32()
	zv, err2 := zt.Uint8()
	if err1 != nil || err2 != nil {
		return "", p, false
	}
	return dq.Inputs[0], qdq.Params{Scale: sv[0], ZeroPoint: int32(zv[0]), QMin: 0, QMax: 255}, true
}

// emitQ adds QuantizeLinear(x) on p's grid, its codes clipped to p's
// window, and returns the codes and p's scale and zero-point initializers.
func emitQ(g *graph.Graph, x string, p qdq.Params, base string) (codes, scale, zp string) {
	scale, zp = quantInits(g, base, p)
	q := g.UniqueName(base + "_q")
	g.AddNode(&graph.Node{Name: g.UniqueName(base + "_QuantizeLinear"), OpType: "QuantizeLinear", Inputs: []string{x, scale, zp}, Outputs: []string{q}})
	return clipCodes(g, q, p, base), scale, zp
}

// emitLUT adds DequantizeLinear(codes, inS, inZ) → LeakyRelu(alpha) →
// QuantizeLinear(outS, outZ), a uint8 lookup table in ORT
// (QLinearLeakyRelu), and returns the new codes.
func emitLUT(g *graph.Graph, codes string, inS float32, inZ int32, alpha, outS float32, outZ int32, base string) string {
	in := qdq.Params{Scale: inS, ZeroPoint: inZ, QMin: 0, QMax: 255}
	out := qdq.Params{Scale: outS, ZeroPoint: outZ, QMin: 0, QMax: 255}
	is, iz := quantInits(g, base+"_in", in)
	v := g.UniqueName(base + "_value")
	g.AddNode(&graph.Node{Name: g.UniqueName(base + "_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{codes, is, iz}, Outputs: []string{v}})
	lr := &graph.Node{Name: g.UniqueName(base + "_LeakyRelu"), OpType: "LeakyRelu", Inputs: []string{v}, Outputs: []string{g.UniqueName(base + "_leaky")}}
	lr.SetAttrFloat("alpha", alpha)
	g.AddNode(lr)
	codes, _, _ = emitQ(g, lr.Outputs[0], out, base+"_out")
	return codes
}

// insertTwoBranch writes FormTwoBranch for Conv n: n reads the dense part
// of its input, a copy of n without bias reads the tail part, and a
// QDQ-wrapped Add of their outputs (partial[0], partial[1]) makes n's
// output, which keeps its own quantizer (and so an absorbed Relu).
func insertTwoBranch(g *graph.Graph, n *graph.Node, q qdq.Quantizer, partial [2]qdq.Params) error {
	parts := q.Parts()
	if len(parts) != 2 || parts[0].Residual || !parts[1].Residual {
		return fmt.Errorf("%s: form %s needs a dense part and a tail part", q, FormTwoBranch)
	}
	for i, p := range partial {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("%s output quantizer: %w", [2]string{"dense", "tail"}[i], err)
		}
	}
	x := n.Inputs[0]
	base := n.Name + "_input"
	dense := emitPart(g, x, parts[0].Params, base+"_dense")
	c := emitClip(g, x, parts[1].Lo, parts[1].Hi, base+"_clipped")
	r := g.UniqueName(base + "_residual")
	g.AddNode(&graph.Node{Name: g.UniqueName(base + "_residual_Sub"), OpType: "Sub", Inputs: []string{x, c}, Outputs: []string{r}})
	tail := emitPart(g, r, parts[1].Params, base+"_tail")

	out := n.Outputs[0]
	od, ot := g.UniqueName(out+"_dense"), g.UniqueName(out+"_tail")
	nt := &graph.Node{Name: g.UniqueName(n.Name + "_tail"), OpType: n.OpType, Domain: n.Domain,
		Inputs: []string{tail, n.Inputs[1]}, Outputs: []string{ot}, Attrs: slices.Clone(n.Attrs)}
	g.ReplaceInput(n, 0, dense)
	g.RemoveValueInfo(out)
	n.Outputs[0] = od
	g.Invalidate()
	g.AddNode(nt)
	sum := &graph.Node{Name: g.UniqueName(n.Name + "_branches_Add"), OpType: "Add",
		Inputs: []string{emitPart(g, od, partial[0], od), emitPart(g, ot, partial[1], ot)}, Outputs: []string{out}}
	g.AddNode(sum)
	return nil
}

// emitClip adds a float Clip(x, lo, hi) and returns its output.
func emitClip(g *graph.Graph, x string, lo, hi float32, base string) string {
	l, h := g.UniqueName(base+"_min"), g.UniqueName(base+"_max")
	g.SetInitializer(graph.NewFloat32(l, nil, []float32{lo}))
	g.SetInitializer(graph.NewFloat32(h, nil, []float32{hi}))
	out := g.UniqueName(base)
	g.AddNode(&graph.Node{Name: g.UniqueName(base + "_Clip"), OpType: "Clip", Inputs: []string{x, l, h}, Outputs: []string{out}})
	return out
}

// emitPart writes the uniform quantizer p on x: QuantizeLinear → Clip of the codes when the part's window is
// narrower than the uint8 → DequantizeLinear. It returns the dequantized
// value.
func emitPart(g *graph.Graph, x string, p qdq.Params, base string) string {
	q, scale, zp := emitQ(g, x, p, base)
	dq := g.UniqueName(base + "_dq")
	g.AddNode(&graph.Node{Name: g.UniqueName(base + "_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{q, scale, zp}, Outputs: []string{dq}})
	return dq
}

// clipCodes clips the uint8 codes q to p's window [QMin, QMax] when it is
// narrower than [0, 255] (a grid of fewer than 8 bits), and returns the
// clipped codes. ORT runs a uint8 Clip between a fused Q and DQ without
// breaking the int8 chain.
func clipCodes(g *graph.Graph, q string, p qdq.Params, base string) string {
	if p.QMin <= 0 && p.QMax >= 255 {
		return q
	}
	l, h := g.UniqueName(base+"_code_min"), g.UniqueName(base+"_code_max")
	g.SetInitializer(graph.NewUint8(l, nil, []uint8{uint8(max(p.QMin, 0))}))
	g.SetInitializer(graph.NewUint8(h, nil, []uint8{uint8(min(p.QMax, 255))}))
	out := g.UniqueName(base + "_q_clipped")
	g.AddNode(&graph.Node{Name: g.UniqueName(base + "_code_Clip"), OpType: "Clip", Inputs: []string{q, l, h}, Outputs: []string{out}})
	return out
}

// CalibrationSplit adds to the float graph g, for each Conv named in convs,
// the two partial Convs of FormTwoBranch computed in float (the same
// weights on the input clipped to the quantizer's dense region, with the
// bias, and on the residual beyond it, without), and returns their output
// values per Conv: calibrating them gives InsertQDQ.Partials. g is a copy
// made for calibration; its own outputs are untouched.
func CalibrationSplit(g *graph.Graph, convs map[string]qdq.Quantizer) (map[string][2]string, error) {
	out := map[string][2]string{}
	for _, n := range slices.Clone(g.Nodes) {
		q, ok := convs[n.Name]
		if !ok {
			continue
		}
		parts := q.Parts()
		if len(parts) != 2 || !parts[1].Residual || !isOp(n, "Conv") {
			return nil, fmt.Errorf("node %q: %s has no dense and tail parts to split", n.Name, q)
		}
		x, base := n.Inputs[0], n.Name+"_calibration"
		c := emitClip(g, x, parts[1].Lo, parts[1].Hi, base+"_clipped")
		r := g.UniqueName(base + "_residual")
		g.AddNode(&graph.Node{Name: g.UniqueName(base + "_residual_Sub"), OpType: "Sub", Inputs: []string{x, c}, Outputs: []string{r}})
		od, ot := g.UniqueName(base+"_dense"), g.UniqueName(base+"_tail")
		dense := &graph.Node{Name: g.UniqueName(base + "_dense_Conv"), OpType: n.OpType, Domain: n.Domain,
			Inputs: append([]string{c}, n.Inputs[1:]...), Outputs: []string{od}, Attrs: slices.Clone(n.Attrs)}
		tail := &graph.Node{Name: g.UniqueName(base + "_tail_Conv"), OpType: n.OpType, Domain: n.Domain,
			Inputs: []string{r, n.Inputs[1]}, Outputs: []string{ot}, Attrs: slices.Clone(n.Attrs)}
		g.AddNode(dense)
		g.AddNode(tail)
		out[n.Name] = [2]string{od, ot}
	}
	for name := range convs {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("no Conv named %q to split", name)
		}
	}
	return out, g.TopoSort()
}
