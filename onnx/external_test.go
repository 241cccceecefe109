package onnx

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

// dirNames lists the names in dir, to check that no temporary file is left.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestExternalDataRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := tinyModel()
	// A subgraph initializer large enough to go external too.
	body := &GraphProto{
		Output:      []*ValueInfoProto{{Name: "inner"}},
		Initializer: []*TensorProto{{Name: "inner", DataType: int32(TensorProto_FLOAT), Dims: []int64{300}, RawData: rampRaw(300)}},
	}
	m.Graph.Node = append(m.Graph.Node, &NodeProto{Name: "if", OpType: "If", Input: []string{"cond"}, Output: []string{"z"},
		Attribute: []*AttributeProto{{Name: "then_branch", Type: AttributeProto_GRAPH, G: body},
			{Name: "else_branch", Type: AttributeProto_GRAPH, G: body}}})
	m.Graph.Input = append(m.Graph.Input, &ValueInfoProto{Name: "cond"})
	require.NoError(t, Validate(m))
	before := proto.Clone(m)

	path := filepath.Join(dir, "model.onnx")
	require.NoError(t, Save(path, m, SaveOptions{ExternalData: true, ExternalThreshold: 400}))
	assert.True(t, proto.Equal(before, m), "Save must not modify the model")
	assert.ElementsMatch(t, []string{"model.onnx", "model.onnx.data"}, dirNames(t, dir))

	// The saved model refers to the data file by relative path, at
	// page-aligned offsets: w (432 bytes) at 0, then two copies of inner
	// (1200 bytes) at 4096 and 8192; the bias (float_data) stays inline.
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	saved := &ModelProto{}
	require.NoError(t, proto.Unmarshal(raw, saved))
	var refs []string
	require.NoError(t, visitModelTensors(saved, func(where string, tp *TensorProto) error {
		if tp.GetDataLocation() == TensorProto_EXTERNAL {
			lay, err := checkTensor(tp)
			require.NoError(t, err)
			refs = append(refs, lay.external.location+"@"+strconv.FormatInt(lay.external.offset, 10)+"+"+strconv.FormatInt(lay.external.length, 10))
		}
		return nil
	}))
	assert.Equal(t, []string{"model.onnx.data@0+432", "model.onnx.data@4096+1200", "model.onnx.data@8192+1200"}, refs)
	fi, err := os.Stat(filepath.Join(dir, "model.onnx.data"))
	require.NoError(t, err)
	assert.EqualValues(t, 8192+1200, fi.Size())

	loaded, err := Load(path)
	require.NoError(t, err)
	assert.True(t, proto.Equal(m, loaded), "reloaded model differs")
	require.NoError(t, Validate(loaded))
}

func TestExternalDataRealModel(t *testing.T) {
	m, err := Load(repoEDSR)
	require.NoError(t, err)
	dir := t.TempDir()
	path := filepath.Join(dir, "edsr.onnx")
	require.NoError(t, Save(path, m, SaveOptions{ExternalData: true, ExternalLocation: "weights.bin"}))
	assert.ElementsMatch(t, []string{"edsr.onnx", "weights.bin"}, dirNames(t, dir))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Less(t, fi.Size(), int64(100_000), "weights must have moved out of the model file")
	loaded, err := Load(path)
	require.NoError(t, err)
	assert.True(t, proto.Equal(m, loaded))
}

// externalModel writes, in dir, a model whose weight w is stored at
// location (offset 0, no length key) and returns its path.
func externalModel(t *testing.T, dir, location string) string {
	t.Helper()
	m := tinyModel()
	w := m.Graph.Initializer[0]
	w.RawData = nil
	w.DataLocation = TensorProto_EXTERNAL
	w.ExternalData = []*StringStringEntryProto{{Key: "location", Value: location}}
	b, err := Marshal(m)
	require.NoError(t, err)
	path := filepath.Join(dir, "model.onnx")
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return path
}

func TestExternalDataPaths(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(root, "outside.bin")
	require.NoError(t, os.WriteFile(outside, rampRaw(108), 0o644))

	tests := []struct {
		name     string
		location string
		setup    func(dir string)
		want     string // "" means the load succeeds
	}{
		{"plain file", "w.bin", func(dir string) { write(t, dir, "w.bin", rampRaw(108)) }, ""},
		{"subfolder", "sub/w.bin", func(dir string) { write(t, dir, "sub/w.bin", rampRaw(108)) }, ""},
		{"longer file", "w.bin", func(dir string) { write(t, dir, "w.bin", rampRaw(200)) }, ""},
		{"symlink inside folder", "alias.bin", func(dir string) {
			write(t, dir, "real.bin", rampRaw(108))
			require.NoError(t, os.Symlink("real.bin", filepath.Join(dir, "alias.bin")))
		}, ""},
		{"dotdot", "../outside.bin", nil, `has external data location "../outside.bin", which leaves the model's folder`},
		{"absolute", outside, nil, "an absolute path; ONNX requires a path relative to the model's folder"},
		{"symlink out", "link.bin", func(dir string) {
			require.NoError(t, os.Symlink(outside, filepath.Join(dir, "link.bin")))
		}, `external data location "link.bin" leaves the model's folder through a symlink`},
		{"relative symlink out", "link.bin", func(dir string) {
			require.NoError(t, os.Symlink("../outside.bin", filepath.Join(dir, "link.bin")))
		}, `external data location "link.bin" leaves the model's folder through a symlink`},
		{"symlinked folder out", "up/outside.bin", func(dir string) {
			require.NoError(t, os.Symlink("..", filepath.Join(dir, "up")))
		}, `external data location "up/outside.bin" leaves the model's folder through a symlink`},
		{"missing", "gone.bin", nil, `external data file "gone.bin" not found in the model's folder`},
		{"short file", "w.bin", func(dir string) { write(t, dir, "w.bin", rampRaw(100)) },
			`tensor "w": declares 108 float values (432 bytes) at offset 0 of external file "w.bin", which has only 400 bytes`},
		{"directory", "sub", func(dir string) { require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755)) },
			`external data "sub" is not a regular file`},
		{"fifo", "pipe", func(dir string) { require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644)) },
			`external data "pipe" is not a regular file`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(root, "m"+strconv.Itoa(i))
			require.NoError(t, os.Mkdir(dir, 0o755))
			if tc.setup != nil {
				tc.setup(dir)
			}
			path := externalModel(t, dir, tc.location)
			m, err := Load(path)
			if tc.want == "" {
				require.NoError(t, err)
				w := m.Graph.Initializer[0]
				assert.Equal(t, rampRaw(108), w.RawData)
				assert.Equal(t, TensorProto_DEFAULT, w.DataLocation)
				assert.Empty(t, w.ExternalData)
				return
			}
			requireOneLine(t, err, path)
			assert.ErrorContains(t, err, tc.want)
			assert.ErrorContains(t, err, `tensor "w"`)
		})
	}
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, data, 0o644))
}

func TestExternalDataFromMemory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "w.bin", rampRaw(108))
	path := externalModel(t, dir, "w.bin")
	data, err := os.ReadFile(path)
	require.NoError(t, err)

	_, err = LoadBytes(data, "upload", "")
	requireOneLine(t, err, "upload")
	assert.ErrorContains(t, err, `tensor "w": stored in external file "w.bin", but the model was read from memory without a folder to resolve it`)

	m, err := LoadBytes(data, "upload", dir)
	require.NoError(t, err)
	assert.Equal(t, rampRaw(108), m.Graph.Initializer[0].RawData)
}

func TestExternalDataLimit(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "w.bin", rampRaw(108))
	path := externalModel(t, dir, "w.bin")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	_, err = LoadOptions{MaxBytes: fi.Size() + 431}.Load(path)
	requireOneLine(t, err, path)
	assert.ErrorContains(t, err, "external data brings the model past the")
	_, err = LoadOptions{MaxBytes: fi.Size() + 432}.Load(path)
	assert.NoError(t, err)
}
