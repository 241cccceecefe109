package onnx

import (
	"bytes"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func mkfifo(t *testing.T, path string) string {
	t.Helper()
	require.NoError(t, syscall.Mkfifo(path, 0o644))
	return path
}

// readEDSR returns the repository's EDSR x2 fixture (always committed).
func readEDSR(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(repoEDSR)
	require.NoError(t, err, "the repository fixture %s must exist", repoEDSR)
	return data
}

// requireOneLine checks the error style every user-facing error follows:
// one line, starting with the file name.
func requireOneLine(t *testing.T, err error, name string) {
	t.Helper()
	require.Error(t, err)
	msg := err.Error()
	assert.NotContains(t, msg, "\n", "error must be one line")
	assert.True(t, strings.HasPrefix(msg, name+": "), "error %q must start with %q", msg, name)
}

func TestLoadRealModels(t *testing.T) {
	paths := []string{repoEDSR}
	if p, _ := filepath.Glob(filepath.Join(sharedModels, "*.onnx")); len(p) > 0 {
		paths = append(paths, p...)
	} else {
		t.Logf("no models in %s; checking the repository fixture only", sharedModels)
	}
	for _, p := range paths {
		m, err := Load(p)
		require.NoError(t, err, p)
		assert.Empty(t, unknownFieldPaths(m.ProtoReflect(), ""), p)
		assert.NoError(t, Validate(m), p)
		assert.NotEmpty(t, m.GetGraph().GetInitializer(), p)
		b, err := Marshal(m)
		require.NoError(t, err)
		m2, err := LoadBytes(b, p, "")
		require.NoError(t, err)
		assert.True(t, proto.Equal(m, m2), p)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		return p
	}
	edsr := readEDSR(t)

	// A model whose node name is not UTF-8: patch a marshalled name.
	m := tinyModel()
	m.Graph.Node[0].Name = "NODENAME1"
	good, err := Marshal(m)
	require.NoError(t, err)
	badUTF8 := bytes.Replace(good, []byte("NODENAME1"), []byte("NODE\xffAME1"), 1)

	// Valid protobuf, but nothing ONNX: one unknown varint field.
	unknownOnly := protowire.AppendVarint(protowire.AppendTag(nil, 10, protowire.VarintType), 1)

	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}

	tests := []struct {
		name string
		path string
		want string
	}{
		{"absent", filepath.Join(dir, "absent.onnx"), "absent.onnx: no such file or directory"},
		{"fifo", mkfifo(t, filepath.Join(dir, "pipe.onnx")), "is not a regular file (p---------)"},
		{"directory", dir, "is a directory, not an ONNX model file"},
		{"empty", write("empty.onnx", nil), "empty file, not an ONNX model"},
		{"png", "../testdata/images/brick.png", "is a PNG image, not an ONNX model"},
		{"jpeg", "../testdata/images/rocket.jpg", "is a JPEG image, not an ONNX model"},
		{"zip", write("ckpt.onnx", []byte("PK\x03\x04rest of a zip")), "is a ZIP archive"},
		{"lfs pointer", write("lfs.onnx", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 5495594\n")), "Git LFS pointer"},
		{"json", write("model.json", []byte(`{"irVersion": "8", "graph": {}}`)), "is JSON text, not a binary ONNX model"},
		{"html", write("page.onnx", []byte("<!DOCTYPE html><html>Not found</html>")), "HTML"},
		{"pickle", write("w.pt", []byte("\x80\x02}q\x00(X\x06\x00\x00\x00weight")), "is a Python pickle"},
		{"ort format", write("m.ort", []byte("\x1c\x00\x00\x00ORTM\x00\x00\x00\x00")), "ONNX Runtime format (.ort)"},
		{"truncated", write("trunc.onnx", edsr[:len(edsr)/2]), "truncated or corrupt: graph.initializer["},
		{"truncated header", write("trunc2.onnx", edsr[:3]), "truncated or corrupt"},
		{"random", write("random.onnx", random), ""},
		{"invalid utf8", write("utf8.onnx", badUTF8), "invalid UTF-8 in string graph.node[0].name at byte"},
		{"not onnx", write("unknown.onnx", unknownOnly), "parses as protobuf but has no ir_version, graph or functions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path)
			requireOneLine(t, err, tc.path)
			assert.ErrorContains(t, err, tc.want)
			t.Log(err)
		})
	}
	_, err = Load(filepath.Join(dir, "absent.onnx"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestLoadLimit(t *testing.T) {
	_, err := LoadOptions{MaxBytes: 1000}.Load(repoEDSR)
	requireOneLine(t, err, repoEDSR)
	assert.ErrorContains(t, err, "over the 1000-byte limit")

	_, err = LoadOptions{MaxBytes: 1000}.LoadBytes(make([]byte, 1001), "mem", "")
	requireOneLine(t, err, "mem")
	assert.ErrorContains(t, err, "over the 1000-byte limit")
}

// TestLoadHostileTensors feeds models whose tensors lie about their size:
// every one must be rejected from the declared numbers alone, without
// allocating what they declare.
func TestLoadHostileTensors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *ModelProto)
		want   string
	}{
		{"raw_data short", func(m *ModelProto) { m.Graph.Initializer[0].RawData = m.Graph.Initializer[0].RawData[:100] },
			`tensor "w": declares 108 float values (432 bytes) but raw_data has 100 bytes`},
		{"huge dims", func(m *ModelProto) { m.Graph.Initializer[0].Dims = []int64{1 << 30, 1 << 20} },
			`tensor "w": declares 1125899906842624 float values (4503599627370496 bytes) but raw_data has 432 bytes`},
		{"overflowing dims", func(m *ModelProto) { m.Graph.Initializer[0].Dims = []int64{1 << 40, 1 << 40} },
			`tensor "w": dims [1099511627776 1099511627776] overflow int64 elements`},
		{"negative dims", func(m *ModelProto) { m.Graph.Initializer[1].Dims = []int64{-4} },
			`tensor "b": dimension 0 is negative (-4)`},
		{"constant attribute", func(m *ModelProto) {
			m.Graph.Node = append(m.Graph.Node, &NodeProto{OpType: "Constant", Output: []string{"k"}, Attribute: []*AttributeProto{
				{Name: "value", Type: AttributeProto_TENSOR, T: &TensorProto{DataType: int32(TensorProto_INT64), Dims: []int64{3}, Int64Data: []int64{1}}}}})
		}, `node #2 (Constant) attribute "value": unnamed tensor: declares 3 int64 values but int64_data has 1 entries (want 3)`},
		{"subgraph initializer", func(m *ModelProto) {
			body := &GraphProto{Initializer: []*TensorProto{{Name: "inner", DataType: int32(TensorProto_FLOAT), Dims: []int64{1 << 30}}}}
			m.Graph.Node = append(m.Graph.Node, &NodeProto{Name: "if", OpType: "If", Input: []string{"y"}, Output: []string{"z"}, Attribute: []*AttributeProto{
				{Name: "then_branch", Type: AttributeProto_GRAPH, G: body}}})
		}, `node "if" (If) attribute "then_branch": tensor "inner": declares 1073741824 float values (4294967296 bytes) but has no data`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyModel()
			tc.mutate(m)
			b, err := Marshal(m)
			require.NoError(t, err)
			_, err = LoadBytes(b, "model.onnx", "")
			requireOneLine(t, err, "model.onnx")
			assert.EqualError(t, err, "model.onnx: "+tc.want)
			// Validate reports the same problem for in-memory models.
			assert.EqualError(t, Validate(m), tc.want)
		})
	}
}

// TestParseErrorLocation checks that truncation inside a nested field is
// located at the innermost cut field, with the file offset.
func TestParseErrorLocation(t *testing.T) {
	m := tinyModel()
	b, err := Marshal(m)
	require.NoError(t, err)
	raw := m.Graph.Initializer[0].RawData
	at := bytes.Index(b, raw)
	require.Positive(t, at)
	_, err = LoadBytes(b[:at+10], "cut.onnx", "")
	assert.EqualError(t, err, "cut.onnx: truncated or corrupt: graph.initializer[0].raw_data at byte "+
		strconv.Itoa(at)+" declares 432 bytes but only 10 remain")
}
