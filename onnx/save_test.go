package onnx

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

func TestSaveAndReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tiny.onnx")
	m := tinyModel()
	require.NoError(t, Save(path, m, SaveOptions{}))
	assert.Equal(t, []string{"tiny.onnx"}, dirNames(t, dir))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	got, err := Load(path)
	require.NoError(t, err)
	assert.True(t, proto.Equal(m, got))

	// Overwriting keeps the permissions of the replaced file.
	require.NoError(t, os.Chmod(path, 0o600))
	m.ProducerName = "second"
	require.NoError(t, Save(path, m, SaveOptions{}))
	fi, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	got, err = Load(path)
	require.NoError(t, err)
	assert.Equal(t, "second", got.ProducerName)
	assert.Equal(t, []string{"tiny.onnx"}, dirNames(t, dir))
}

func TestMarshalDeterministic(t *testing.T) {
	m := tinyModel()
	m.MetadataProps = []*StringStringEntryProto{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}}
	a, err := Marshal(m)
	require.NoError(t, err)
	for range 5 {
		b, err := Marshal(proto.Clone(m).(*ModelProto))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(a, b))
	}
	_, err = Marshal(nil)
	assert.Error(t, err)
}

// TestSaveFailuresLeaveNothing checks that a failed Save leaves neither a
// temporary file nor a partial model (the test runs as root here, so an
// unwritable folder cannot be simulated; failures are provoked otherwise).
func TestSaveFailuresLeaveNothing(t *testing.T) {
	bad := tinyModel()
	bad.Graph.Node[0].Name = "conv\xff"
	ext := tinyModel()
	ext.Graph.Initializer[0].DataLocation = TensorProto_EXTERNAL

	tests := []struct {
		name  string
		setup func(dir string) (path string)
		m     *ModelProto
		opts  SaveOptions
		want  string
	}{
		{"invalid UTF-8", func(dir string) string { return filepath.Join(dir, "m.onnx") }, bad, SaveOptions{},
			`string graph.node[0].name is not valid UTF-8, which ONNX requires`},
		{"invalid UTF-8 with external data", func(dir string) string { return filepath.Join(dir, "m.onnx") }, bad,
			SaveOptions{ExternalData: true, ExternalThreshold: 1}, `string graph.node[0].name is not valid UTF-8`},
		{"target is a directory", func(dir string) string {
			require.NoError(t, os.Mkdir(filepath.Join(dir, "m.onnx"), 0o755))
			return filepath.Join(dir, "m.onnx")
		}, tinyModel(), SaveOptions{}, "is a directory; refusing to replace it"},
		{"data file is a directory", func(dir string) string {
			require.NoError(t, os.Mkdir(filepath.Join(dir, "m.onnx.data"), 0o755))
			return filepath.Join(dir, "m.onnx")
		}, tinyModel(), SaveOptions{ExternalData: true, ExternalThreshold: 1}, "m.onnx.data: is a directory; refusing to replace it"},
		{"missing folder", func(dir string) string { return filepath.Join(dir, "no", "m.onnx") }, tinyModel(), SaveOptions{},
			"create temporary file"},
		{"external reference", func(dir string) string { return filepath.Join(dir, "m.onnx") }, ext, SaveOptions{},
			`tensor "w": still refers to external data`},
		{"location escapes", func(dir string) string { return filepath.Join(dir, "m.onnx") }, tinyModel(),
			SaveOptions{ExternalData: true, ExternalLocation: "../w.bin"}, "SaveOptions.ExternalLocation"},
		{"location absolute", func(dir string) string { return filepath.Join(dir, "m.onnx") }, tinyModel(),
			SaveOptions{ExternalData: true, ExternalLocation: "/tmp/w.bin"}, "an absolute path"},
		{"location is the model", func(dir string) string { return filepath.Join(dir, "m.onnx") }, tinyModel(),
			SaveOptions{ExternalData: true, ExternalLocation: "./m.onnx"}, "is the model file itself"},
		{"nil model", func(dir string) string { return filepath.Join(dir, "m.onnx") }, nil, SaveOptions{}, "nil model"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tc.setup(dir)
			before := dirNames(t, dir)
			err := Save(path, tc.m, tc.opts)
			requireOneLine(t, err, path)
			assert.ErrorContains(t, err, tc.want)
			assert.Equal(t, before, dirNames(t, dir), "a failed Save must leave the folder as it was")
		})
	}
}

func TestSameFile(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.onnx")
	b := filepath.Join(dir, "b.onnx")
	require.NoError(t, os.WriteFile(a, []byte("a"), 0o644))
	require.NoError(t, os.WriteFile(b, []byte("a"), 0o644))
	require.NoError(t, os.Symlink("a.onnx", filepath.Join(dir, "link.onnx")))
	require.NoError(t, os.Link(a, filepath.Join(dir, "hard.onnx")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))

	assert.True(t, SameFile(a, a))
	assert.True(t, SameFile(a, filepath.Join(dir, "sub", "..", "a.onnx")))
	assert.True(t, SameFile(a, filepath.Join(dir, "link.onnx")))
	assert.True(t, SameFile(a, filepath.Join(dir, "hard.onnx")))
	assert.False(t, SameFile(a, b), "equal content is not the same file")
	assert.False(t, SameFile(a, filepath.Join(dir, "absent.onnx")))
	assert.False(t, SameFile(filepath.Join(dir, "absent.onnx"), filepath.Join(dir, "absent.onnx")))
}

// TestCloneSharingBytes checks the copy Save works on: equal to the
// original, sharing raw_data, and independent in structure.
func TestCloneSharingBytes(t *testing.T) {
	m := tinyModel()
	c := cloneSharingBytes(m.ProtoReflect()).Interface().(*ModelProto)
	require.True(t, proto.Equal(m, c))
	assert.Same(t, &m.Graph.Initializer[0].RawData[0], &c.Graph.Initializer[0].RawData[0], "raw_data must be shared, not copied")
	c.Graph.Initializer[0].RawData = nil
	c.Graph.Node[0].Name = "changed"
	assert.Len(t, m.Graph.Initializer[0].RawData, 432)
	assert.Equal(t, "conv", m.Graph.Node[0].Name)
}
