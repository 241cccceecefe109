package graph

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/srquant/srq/onnx"
)

// libonnxData is where Debian's libonnx-testdata puts ONNX's backend test
// models: node/ (one per operator case), pytorch-converted/,
// pytorch-operator/ and simple/, each dir a model.onnx plus test_data_set_*.
const libonnxData = "/usr/share/libonnx-testdata/data"

// TestLibonnxNodeModels round-trips ONNX's own operator test models, which
// exercise attribute kinds, optional inputs, subgraphs (If/Loop/Scan),
// typed-field tensors and opset/IR variety that the SR models lack:
// FromModel -> ToModel -> Marshal -> Unmarshal must work and keep node and
// initializer counts; where no initializer uses typed fields (which come
// back as raw_data) the model must come back exactly.
func TestLibonnxNodeModels(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(libonnxData, "*", "*", "model.onnx"))
	require.NoError(t, err)
	if len(paths) == 0 {
		t.Skipf("no models under %s (install Debian's libonnx-testdata)", libonnxData)
	}
	if testing.Short() && len(paths) > 300 {
		paths = paths[:300]
	}
	ok, rejected, exact, withInits, withSubgraphs := 0, 0, 0, 0, 0
	for _, path := range paths {
		name, _ := filepath.Rel(libonnxData, filepath.Dir(path))
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		m := &onnx.ModelProto{}
		require.NoError(t, proto.Unmarshal(b, m), name)

		g, err := FromModel(m)
		if !assert.NoError(t, err, name) {
			rejected++
			continue
		}
		out, err := g.ToModel()
		if !assert.NoError(t, err, name) {
			continue
		}
		wire, err := proto.Marshal(out)
		require.NoError(t, err, name)
		back := &onnx.ModelProto{}
		require.NoError(t, proto.Unmarshal(wire, back), name)
		assert.Len(t, back.Graph.Node, len(m.Graph.Node), "%s: node count", name)
		if assert.Len(t, back.Graph.Initializer, len(m.Graph.Initializer), "%s: initializer count", name) {
			for i, tp := range back.Graph.Initializer {
				src := m.Graph.Initializer[i]
				assert.Equal(t, src.Name, tp.Name, name)
				assert.Equal(t, src.DataType, tp.DataType, name)
				assert.Equal(t, src.Dims, tp.Dims, name)
			}
		}
		assert.Equal(t, len(m.Graph.Input), len(back.Graph.Input), "%s: input count", name)
		assert.Equal(t, len(m.Graph.Output), len(back.Graph.Output), "%s: output count", name)
		ok++
		if len(m.Graph.Initializer) > 0 {
			withInits++
		}
		if hasSubgraph(g) {
			withSubgraphs++
		}
		// Typed-field initializers come back as raw_data; everything else
		// must be exactly as it was.
		if allRaw(m.Graph.Initializer) {
			if assert.True(t, proto.Equal(m, back), "%s: round trip changed the model", name) {
				exact++
			}
		}
	}
	t.Logf("libonnx node models: %d round-tripped (%d exactly equal, %d with initializers, %d with subgraphs), %d rejected, of %d",
		ok, exact, withInits, withSubgraphs, rejected, len(paths))
}

func allRaw(ts []*onnx.TensorProto) bool {
	for _, tp := range ts {
		if len(tp.RawData) == 0 && hasTypedData(tp) {
			return false
		}
	}
	return true
}

func hasSubgraph(g *Graph) bool {
	for _, n := range g.Nodes {
		if n.hasSubgraphs() {
			return true
		}
	}
	return false
}

// TestLibonnxTensorFiles decodes the input/output tensors ONNX's test
// generator wrote next to each model (test_data_set_0/{input,output}_N.pb),
// in whatever layout it chose (raw_data or typed fields), wherever the
// model declares that argument as a tensor.
func TestLibonnxTensorFiles(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(libonnxData, "*", "*", "model.onnx"))
	require.NoError(t, err)
	if len(paths) == 0 {
		t.Skipf("no models under %s (install Debian's libonnx-testdata)", libonnxData)
	}
	layouts := map[string]int{}
	for _, path := range paths {
		dir := filepath.Dir(path)
		m := loadModel(t, path)
		g := mustGraph(t, m)
		var args []*Value
		for _, v := range g.Inputs {
			if g.Initializer(v.Name) == nil {
				args = append(args, v)
			}
		}
		check := func(kind string, i int, v *Value) {
			if v.orig.GetType().GetTensorType() == nil {
				return // sequence, optional, map: not a TensorProto file
			}
			file := filepath.Join(dir, "test_data_set_0", fmt.Sprintf("%s_%d.pb", kind, i))
			b, err := os.ReadFile(file)
			if os.IsNotExist(err) {
				return
			}
			require.NoError(t, err)
			tp := &onnx.TensorProto{}
			require.NoError(t, proto.Unmarshal(b, tp), file)
			tt, err := TensorFromProto(tp)
			if !assert.NoError(t, err, file) {
				return
			}
			if v.DType == onnx.TensorProto_BFLOAT16 && tt.DType == onnx.TensorProto_UINT16 {
				// Old ONNX test generators wrote bfloat16 data as uint16
				// (numpy has no bfloat16), shapes included loosely.
				layouts["bfloat16 stored as UINT16"]++
				return
			}
			assert.Equal(t, v.DType, tt.DType, file)
			layout := "raw_data"
			if len(tp.RawData) == 0 {
				layout = "typed " + dtypeName(tt.DType)
				if tt.DType == onnx.TensorProto_FLOAT && tt.NumElements() > 0 {
					f, err := tt.Float32()
					require.NoError(t, err)
					assert.Equal(t, tp.FloatData, f, file)
				}
			}
			layouts[layout]++
		}
		for i, v := range args {
			check("input", i, v)
		}
		for i, v := range g.Outputs {
			check("output", i, v)
		}
	}
	t.Logf("decoded tensor files by layout: %v", layouts)
	assert.Greater(t, layouts["raw_data"], 1000)
}
