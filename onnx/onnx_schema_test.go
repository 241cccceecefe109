package onnx

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

// TestAttributeKeepsZeroValues pins the one place where proto3's missing
// field presence would change a model's meaning: an attribute explicitly set
// to 0 (Flatten axis=0, Concat axis=0, LeakyRelu alpha=0) differs from an
// absent one, whose default may be non-zero. f, i and s are declared
// optional in onnx.proto so the zero is written back.
func TestAttributeKeepsZeroValues(t *testing.T) {
	for _, a := range []*AttributeProto{
		{Name: "axis", Type: AttributeProto_INT, I: proto.Int64(0)},
		{Name: "alpha", Type: AttributeProto_FLOAT, F: proto.Float32(0)},
		{Name: "mode", Type: AttributeProto_STRING, S: []byte{}},
	} {
		b, err := proto.Marshal(a)
		require.NoError(t, err)
		var back AttributeProto
		require.NoError(t, proto.Unmarshal(b, &back))
		require.True(t, proto.Equal(a, &back), "%s: %v != %v", a.Name, a, &back)
		unset := &AttributeProto{Name: a.Name, Type: a.Type}
		u, err := proto.Marshal(unset)
		require.NoError(t, err)
		require.Greater(t, len(b), len(u), "%s: explicit zero must be on the wire", a.Name)
	}
}
