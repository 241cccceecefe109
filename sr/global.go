package sr

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
)

// globalOps are the operators whose output summarises whole spatial axes
// of their input whatever their attributes.
var globalOps = []string{"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}

// reduceOps are the operators that reduce over the axes they are given.
var reduceOps = []string{"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceSumSquare",
	"ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"}

// GlobalReductions lists the nodes of m's main graph (by name, or op type
// and index when unnamed) that reduce over a spatial axis of the image:
// global pooling (GlobalAveragePool, GlobalMaxPool, GlobalLpPool) and the
// Reduce operators whose axes include H or W (2, 3, −2 or −1 of an NCHW
// tensor) or that reduce over every axis. RCAN's channel attention
// (GlobalAveragePool) and IMDN's contrast attention (ReduceMean over H, W)
// are such nodes. Their output at any pixel depends on the whole image, so
// no overlap makes a tiled run (Model.Upscale with tile > 0) equal the
// untiled one: every tile is normalised by its own statistics. Axes that
// come from a tensor that is neither an initializer nor a Constant are
// counted as spatial, since they may be.
func GlobalReductions(m *onnx.ModelProto) []string {
	g := m.GetGraph()
	if g == nil {
		return nil
	}
	consts := map[string]*onnx.TensorProto{}
	for _, t := range g.GetInitializer() {
		consts[t.GetName()] = t
	}
	for _, n := range g.GetNode() {
		if n.GetOpType() == "Constant" && len(n.GetOutput()) == 1 {
			for _, a := range n.GetAttribute() {
				if a.GetName() == "value" && a.GetT() != nil {
					consts[n.GetOutput()[0]] = a.GetT()
				}
			}
		}
	}
	var out []string
	for i, n := range g.GetNode() {
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			continue
		}
		op := n.GetOpType()
		global := slices.Contains(globalOps, op)
		if !global && slices.Contains(reduceOps, op) {
			global = reducesSpatially(n, consts)
		}
		if !global {
			continue
		}
		name := n.GetName()
		if name == "" {
			name = fmt.Sprintf("%s #%d", op, i)
		}
		out = append(out, name)
	}
	return out
}

// reducesSpatially reports whether a Reduce node n reduces over H or W:
// its axes (the attribute up to opset 17, the second input from 18, or
// every axis when neither is given and noop_with_empty_axes is not set)
// include 2, 3, −2 or −1.
func reducesSpatially(n *onnx.NodeProto, consts map[string]*onnx.TensorProto) bool {
	var axes []int64
	given, noop := false, false
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "axes":
			axes, given = a.GetInts(), true
		case "noop_with_empty_axes":
			noop = a.GetI() != 0
		}
	}
	if in := n.GetInput(); !given && len(in) > 1 && in[1] != "" {
		t, ok := consts[in[1]]
		if !ok {
			return true // computed axes: may be spatial
		}
		if axes, ok = int64s(t); !ok {
			return true
		}
		given = len(axes) > 0
	}
	if !given {
		return !noop // no axes: every axis, or none with noop_with_empty_axes
	}
	for _, a := range axes {
		if a == 2 || a == 3 || a == -1 || a == -2 {
			return true
		}
	}
	return false
}

// int64s reads an INT64 tensor's values from int64_data or raw_data.
func int64s(t *onnx.TensorProto) ([]int64, bool) {
	if t.GetDataType() != int32(onnx.TensorProto_INT64) {
		return nil, false
	}
	if len(t.GetInt64Data()) > 0 {
		return t.GetInt64Data(), true
	}
	raw := t.GetRawData()
	if len(raw)%8 != 0 {
		return nil, false
	}
	v := make([]int64, len(raw)/8)
	for i := range v {
		v[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return v, true
}

// TileCheck is what CheckTiling measured: how far a tiled upscale of an
// image crop is from the untiled one for a network with GlobalReductions.
type TileCheck struct {
	// Reductions are the nodes that reduce over the image
	// (GlobalReductions).
	Reductions []string `json:"reductions"`
	// Tile and Overlap are the tiling measured, in LR pixels.
	Tile    int `json:"tile"`
	Overlap int `json:"overlap"`
	// X, Y, W, H is the LR crop it was measured on: the centre of the
	// image, at most 2·(Tile + Overlap) pixels a side.
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
	// MaxDiff is the largest difference between the tiled and the untiled
	// output, in 8-bit levels of any colour channel.
	MaxDiff int `json:"max_diff_levels"`
	// PSNR is the tiled output's PSNR against the untiled one on the 8-bit
	// RGB values, dB; MaxPSNR when they are equal.
	PSNR float64 `json:"psnr_db"`
}

// MaxPSNR stands for an infinite PSNR (identical 8-bit outputs) in a
// TileCheck, as verify.MaxPSNR does in reports: JSON has no Inf.
const MaxPSNR = 999

// CheckTiling measures, when the network has GlobalReductions and the
// tiling really cuts im (tile > 0, and a tile's window, tile + 2·overlap,
// smaller than im on some side), how much Upscale with this tile and
// overlap changes the output: it upscales a crop of the centre of im,
// 2·(tile + overlap) pixels a side at most, both whole and tiled, and
// compares the 8-bit outputs. That costs one untiled run of the crop
// (about three windows' memory) and one tiled run; it is an estimate, as
// the statistics of a crop differ from the whole image's, but of the right
// size, and it is the number to show the user with a warning. Otherwise
// (no reductions, no tiling, windows that cover the image) it returns nil
// and runs nothing. overlap < 0 means DefaultOverlap.
func (m *Model) CheckTiling(ctx context.Context, im *img.Image, tile, overlap int) (*TileCheck, error) {
	if overlap < 0 {
		overlap = DefaultOverlap
	}
	win := tile + 2*overlap
	if len(m.Reductions) == 0 || tile <= 0 || im == nil || (im.W <= win && im.H <= win) {
		return nil, nil
	}
	side := 2 * (tile + overlap)
	c := &TileCheck{Reductions: m.Reductions, Tile: tile, Overlap: overlap, W: min(im.W, side), H: min(im.H, side)}
	c.X, c.Y = (im.W-c.W)/2, (im.H-c.H)/2
	crop := img.Crop(im, c.X, c.Y, c.W, c.H)
	whole, err := m.Upscale(ctx, crop, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("tiling check: %w", err)
	}
	tiled, err := m.Upscale(ctx, crop, tile, overlap)
	if err != nil {
		return nil, fmt.Errorf("tiling check: %w", err)
	}
	var se float64
	for i, v := range whole.Pix {
		d := int(img.Quantize8(tiled.Pix[i])) - int(img.Quantize8(v))
		c.MaxDiff = max(c.MaxDiff, d, -d)
		se += float64(d * d)
	}
	c.PSNR = MaxPSNR
	if se > 0 {
		c.PSNR = math.Round(100*10*math.Log10(255*255*float64(len(whole.Pix))/se)) / 100
	}
	return c, nil
}

// String says what the check found, in one line for a warning.
func (c *TileCheck) String() string {
	nodes := c.Reductions
	more := ""
	if len(nodes) > 2 {
		nodes, more = nodes[:2], fmt.Sprintf(" and %d more", len(c.Reductions)-2)
	}
	levels := "levels"
	if c.MaxDiff == 1 {
		levels = "level"
	}
	what := fmt.Sprintf("max difference %d %s (8-bit RGB), PSNR %.2f dB", c.MaxDiff, levels, c.PSNR)
	if c.MaxDiff == 0 {
		what = "no 8-bit difference there"
	}
	return fmt.Sprintf("the network reduces over the whole image (%s%s), so each %d-pixel tile sees its own statistics and the tiled output differs from the untiled one; measured on a %dx%d LR crop at (%d,%d), tiled against untiled: %s",
		strings.Join(nodes, ", "), more, c.Tile, c.W, c.H, c.X, c.Y, what)
}
