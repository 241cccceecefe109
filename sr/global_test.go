package sr

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
)

// int64Raw is an INT64 initializer stored in raw_data, as exporters write.
func int64Raw(name string, v ...int64) *onnx.TensorProto {
	raw := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
	}
	return &onnx.TensorProto{Name: name, Dims: []int64{int64(len(v))}, DataType: int32(onnx.TensorProto_INT64), RawData: raw}
}

func TestGlobalReductions(t *testing.T) {
	reduce := func(attrs ...*onnx.AttributeProto) *onnx.NodeProto {
		return &onnx.NodeProto{Name: "r", OpType: "ReduceMean", Input: []string{"x"}, Output: []string{"y"}, Attribute: attrs}
	}
	reduce18 := func(axes string) *onnx.NodeProto {
		return &onnx.NodeProto{Name: "r", OpType: "ReduceMean", Input: []string{"x", axes}, Output: []string{"y"}}
	}
	axesConst := &onnx.NodeProto{OpType: "Constant", Output: []string{"c"}, Attribute: []*onnx.AttributeProto{
		{Name: "value", Type: onnx.AttributeProto_TENSOR, T: &onnx.TensorProto{DataType: int32(onnx.TensorProto_INT64), Dims: []int64{1}, Int64Data: []int64{1}}}}}
	shape := &onnx.NodeProto{OpType: "Shape", Input: []string{"x"}, Output: []string{"computed"}}
	tests := []struct {
		name  string
		inits []*onnx.TensorProto
		nodes []*onnx.NodeProto
		want  []string
	}{
		{"global average pool", nil, []*onnx.NodeProto{{Name: "ca/pool", OpType: "GlobalAveragePool"}}, []string{"ca/pool"}},
		{"global max pool, unnamed", nil, []*onnx.NodeProto{{OpType: "Conv"}, {OpType: "GlobalMaxPool"}}, []string{"GlobalMaxPool #1"}},
		{"other domain", nil, []*onnx.NodeProto{{OpType: "GlobalAveragePool", Domain: "com.example"}}, nil},
		{"conv only", nil, []*onnx.NodeProto{{OpType: "Conv"}, {OpType: "MaxPool"}}, nil},
		{"axes H, W", nil, []*onnx.NodeProto{reduce(intsAttr("axes", 2, 3))}, []string{"r"}},
		{"axes W from the end", nil, []*onnx.NodeProto{reduce(intsAttr("axes", -1))}, []string{"r"}},
		{"axes channels", nil, []*onnx.NodeProto{reduce(intsAttr("axes", 1))}, nil},
		{"no axes: all", nil, []*onnx.NodeProto{reduce()}, []string{"r"}},
		{"no axes, noop", nil, []*onnx.NodeProto{reduce(intAttr("noop_with_empty_axes", 1))}, nil},
		{"opset 18 axes H, W", []*onnx.TensorProto{int64Raw("axes", 2, 3)}, []*onnx.NodeProto{reduce18("axes")}, []string{"r"}},
		{"opset 18 axes channels", []*onnx.TensorProto{int64Raw("axes", 1)}, []*onnx.NodeProto{reduce18("axes")}, nil},
		{"opset 18 axes from a Constant", nil, []*onnx.NodeProto{axesConst, reduce18("c")}, nil},
		{"opset 18 computed axes", nil, []*onnx.NodeProto{shape, reduce18("computed")}, []string{"r"}},
		{"reduce max over W", nil, []*onnx.NodeProto{{Name: "m", OpType: "ReduceMax", Attribute: []*onnx.AttributeProto{intsAttr("axes", 3)}}}, []string{"m"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &onnx.ModelProto{Graph: &onnx.GraphProto{Node: tc.nodes, Initializer: tc.inits}}
			assert.Equal(t, tc.want, GlobalReductions(m))
		})
	}
	assert.Nil(t, GlobalReductions(&onnx.ModelProto{}))
}

// attentionModel is a toy x2 SR network with a channel attention: the
// image is scaled by its own per-channel mean (GlobalAveragePool, Mul)
// before a conv and a pixel shuffle, as RCAN's blocks do.
func attentionModel(t *testing.T) []byte {
	n, w := conv3("up", "a", "up", 3, 12)
	return build(t, vi("x", sym, 3, sym, sym), vi("y", sym, 3, sym, sym), []*onnx.TensorProto{w},
		&onnx.NodeProto{Name: "attention/pool", OpType: "GlobalAveragePool", Input: []string{"x"}, Output: []string{"p"}},
		&onnx.NodeProto{OpType: "Mul", Input: []string{"x", "p"}, Output: []string{"a"}},
		n,
		&onnx.NodeProto{OpType: "DepthToSpace", Input: []string{"up"}, Output: []string{"y"},
			Attribute: []*onnx.AttributeProto{intAttr("blocksize", 2), {Name: "mode", Type: onnx.AttributeProto_STRING, S: []byte("CRD")}}})
}

// TestCheckTiling: a network that pools globally gets a measured
// difference; a plain CNN, no tiling or one tile run nothing.
func TestCheckTiling(t *testing.T) {
	requireORT(t)
	ctx := context.Background()
	im := synthImage(37, 29)
	att := open(t, attentionModel(t), "attention.onnx", ProbeOptions{Range: 1, Scale: 2})
	assert.Equal(t, []string{"attention/pool"}, att.Reductions)

	c, err := att.CheckTiling(ctx, im, 8, 4)
	require.NoError(t, err)
	require.NotNil(t, c)
	assert.Equal(t, TileCheck{Reductions: []string{"attention/pool"}, Tile: 8, Overlap: 4, X: 2, Y: 6, W: 24, H: 24,
		MaxDiff: c.MaxDiff, PSNR: c.PSNR}, *c)
	assert.Greater(t, c.MaxDiff, 0)
	assert.Less(t, c.PSNR, float64(MaxPSNR))
	assert.Contains(t, c.String(), "reduces over the whole image (attention/pool)")
	assert.Contains(t, c.String(), "24x24 LR crop at (2,6)")
	t.Log(c)

	// The measurement is what Upscale does on that crop.
	crop := img.Crop(im, 2, 6, 24, 24)
	whole, err := att.Upscale(ctx, crop, 0, 0)
	require.NoError(t, err)
	tiled, err := att.Upscale(ctx, crop, 8, 4)
	require.NoError(t, err)
	assert.InDelta(t, float64(c.MaxDiff), 255*maxAbsDiff(t, whole, tiled), 1)

	for _, tc := range []struct {
		name          string
		m             *Model
		tile, overlap int
	}{
		{"plain CNN", open(t, convSRModel(t, 2), "toy.onnx", ProbeOptions{Range: 1}), 8, 4},
		{"no tiling", att, 0, 4},
		{"one tile", att, 37, 4},
		{"windows cover the image", att, 8, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.m.CheckTiling(ctx, im, tc.tile, tc.overlap)
			require.NoError(t, err)
			assert.Nil(t, c)
		})
	}
}
