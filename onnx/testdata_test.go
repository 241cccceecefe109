package onnx

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// validateExceptions lists libonnx-testdata models that are legal for ONNX
// Runtime but that Validate rejects, with the reason. Loading, saving and
// the unknown-field checks run on every model regardless.
var validateExceptions = map[string]string{}

// TestLibONNXTestdata loads every model of Debian's libonnx-testdata (the
// ONNX backend test suite: ~1070 operator and small real models), checks
// that no message carries unknown fields (a wrong field number in
// onnx.proto would show up here, not in a proto.Equal round trip), that the
// model validates, saves and reloads to an equal model, and that every
// test_data_set_*/*.pb parses with no unknown fields either.
func TestLibONNXTestdata(t *testing.T) {
	paths := testdataModels(t)
	dataTypes := dataProtoTypes(t)
	tmp := t.TempDir()
	var models, dataFiles, tensorFiles int
	for _, path := range paths {
		rel, _ := filepath.Rel(libonnxTestdata, filepath.Dir(path))
		m, err := Load(path)
		if !assert.NoError(t, err, rel) {
			continue
		}
		assert.Empty(t, unknownFieldPaths(m.ProtoReflect(), ""), "%s: unknown fields", rel)
		assert.Equal(t, countTensorMessages(m.ProtoReflect()), countVisited(t, m), "%s: tensor walker missed tensors", rel)
		if reason, ok := validateExceptions[rel]; ok {
			assert.Error(t, Validate(m), "%s is listed as an exception (%s) but validates: remove it", rel, reason)
		} else {
			assert.NoError(t, Validate(m), rel)
		}

		out := filepath.Join(tmp, "model.onnx")
		require.NoError(t, Save(out, m, SaveOptions{}), rel)
		m2, err := Load(out)
		require.NoError(t, err, rel)
		assert.True(t, proto.Equal(m, m2), "%s: saved model differs after reload", rel)
		models++

		sets, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "test_data_set_*", "*.pb"))
		for _, pb := range sets {
			isTensor, err := checkTestDataFile(pb, m.GetGraph(), dataTypes)
			assert.NoError(t, err, "%s/%s", rel, filepath.Base(filepath.Dir(pb))+"/"+filepath.Base(pb))
			dataFiles++
			if isTensor {
				tensorFiles++
			}
		}
	}
	t.Logf("libonnx-testdata: %d models loaded, validated, saved and reloaded; %d test_data_set files parsed (%d as TensorProto); %d Validate exceptions",
		models, dataFiles, tensorFiles, len(validateExceptions))
	assert.Greater(t, models, 1000, "expected the full libonnx-testdata suite")
	assert.Greater(t, tensorFiles, 2500)
}

// checkTestDataFile parses one input_N.pb/output_N.pb as the type of the
// graph's N-th input or output, as ONNX's backend test runner does:
// TensorProto, or SequenceProto/OptionalProto/MapProto (dynamic messages)
// for the few tests on those types. It reports whether it was a tensor.
func checkTestDataFile(path string, g *GraphProto, dataTypes map[string]protoreflect.MessageDescriptor) (bool, error) {
	base := filepath.Base(path)
	var values []*ValueInfoProto
	var index int
	switch {
	case strings.HasPrefix(base, "input_"):
		values = g.GetInput()
		_, err := fmt.Sscanf(base, "input_%d.pb", &index)
		if err != nil {
			return false, err
		}
	case strings.HasPrefix(base, "output_"):
		values = g.GetOutput()
		if _, err := fmt.Sscanf(base, "output_%d.pb", &index); err != nil {
			return false, err
		}
	default:
		return false, fmt.Errorf("unexpected file name %s", base)
	}
	if index >= len(values) {
		return false, fmt.Errorf("%s: graph has only %d such values", base, len(values))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var msg protoreflect.Message
	tp := values[index].GetType()
	switch {
	case tp.GetSequenceType() != nil:
		msg = dynamicpb.NewMessage(dataTypes["SequenceProto"])
	case tp.GetOptionalType() != nil:
		msg = dynamicpb.NewMessage(dataTypes["OptionalProto"])
	case tp.GetMapType() != nil:
		msg = dynamicpb.NewMessage(dataTypes["MapProto"])
	default:
		tensor := &TensorProto{}
		if err := proto.Unmarshal(data, tensor); err != nil {
			return false, err
		}
		if u := unknownFieldPaths(tensor.ProtoReflect(), ""); len(u) > 0 {
			return false, fmt.Errorf("unknown fields in %v", u)
		}
		if _, err := checkTensor(tensor); err != nil {
			return false, fmt.Errorf("tensor %q: %w", tensor.GetName(), err)
		}
		return true, nil
	}
	if err := proto.Unmarshal(data, msg.Interface()); err != nil {
		return false, err
	}
	if u := unknownFieldPaths(msg, ""); len(u) > 0 {
		return false, fmt.Errorf("unknown fields in %v", u)
	}
	return false, nil
}
