package onnx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"
)

// DefaultMaxBytes bounds what Load reads (model file plus external data)
// when LoadOptions.MaxBytes is zero: large enough for any SR model, small
// enough that a hostile or mistaken path cannot exhaust memory.
const DefaultMaxBytes int64 = 4 << 30

// LoadOptions tunes loading. The zero value is ready to use.
type LoadOptions struct {
	// MaxBytes bounds the model file plus all external data it pulls in;
	// 0 means DefaultMaxBytes.
	MaxBytes int64
}

func (o LoadOptions) maxBytes() int64 {
	if o.MaxBytes > 0 {
		return o.MaxBytes
	}
	return DefaultMaxBytes
}

// Load reads an ONNX model file with default options; see LoadOptions.Load.
func Load(path string) (*ModelProto, error) {
	return LoadOptions{}.Load(path)
}

// LoadBytes parses a model held in memory with default options; see
// LoadOptions.LoadBytes.
func LoadBytes(data []byte, name, baseDir string) (*ModelProto, error) {
	return LoadOptions{}.LoadBytes(data, name, baseDir)
}

// Load reads the model at path and inlines its external data from files in
// the model's folder, so the returned model is self-contained (no tensor has
// data_location EXTERNAL). Every error is one line that starts with path.
func (o LoadOptions) Load(path string) (*ModelProto, error) {
	data, err := readBounded(path, o.maxBytes())
	if err != nil {
		return nil, err
	}
	return o.LoadBytes(data, path, filepath.Dir(path))
}

// LoadBytes parses data as a model. name is used in error messages (usually
// the file path). External data files are resolved relative to baseDir;
// with baseDir "" a tensor stored externally is an error.
//
// Every tensor's declared size (dims × element size) is checked against the
// bytes present (inline fields, external length and file size) before
// anything is allocated for it, so hostile dims cannot exhaust memory.
func (o LoadOptions) LoadBytes(data []byte, name, baseDir string) (*ModelProto, error) {
	limit := o.maxBytes()
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: model is %d bytes, over the %d-byte limit (LoadOptions.MaxBytes)", name, len(data), limit)
	}
	m, err := decodeModel(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := inlineExternalData(m, baseDir, limit-int64(len(data))); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// readBounded reads a regular file of at most limit bytes, with errors that
// start with the path and say what is wrong in plain words.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(path, err)
	}
	switch {
	case fi.IsDir():
		return nil, fmt.Errorf("%s: is a directory, not an ONNX model file", path)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s: is not a regular file (%s)", path, fi.Mode().Type())
	case fi.Size() > limit:
		return nil, fmt.Errorf("%s: file is %d bytes, over the %d-byte limit (LoadOptions.MaxBytes)", path, fi.Size(), limit)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s: file changed while reading: %w", path, err)
	}
	return data, nil
}

// fileError turns an *fs.PathError into "path: cannot read: reason" without
// repeating the path, keeping the cause for errors.Is(err, fs.ErrNotExist).
func fileError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: no such file: %w", path, err)
	}
	return fmt.Errorf("%s: cannot read: %w", path, err)
}

// decodeModel unmarshals data after ruling out the common wrong inputs, and
// turns protobuf's terse parse errors into a located description.
func decodeModel(data []byte) (*ModelProto, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file, not an ONNX model")
	}
	if kind := sniffNonONNX(data); kind != "" {
		return nil, fmt.Errorf("is %s, not an ONNX model", kind)
	}
	m := &ModelProto{}
	err := proto.Unmarshal(data, m)
	empty := err == nil && m.GetIrVersion() == 0 && m.GetGraph() == nil && len(m.GetFunctions()) == 0
	if err != nil || empty {
		if kind := sniffAfterFailure(data); kind != "" {
			return nil, fmt.Errorf("is %s, not a binary ONNX model", kind)
		}
	}
	if err != nil {
		return nil, describeParseError(data, err)
	}
	if empty {
		return nil, errors.New("not an ONNX model: parses as protobuf but has no ir_version, graph or functions")
	}
	return m, nil
}

// magics are the leading bytes of files people mistake for models. None of
// them can start a valid ModelProto (each begins with a byte that is not a
// tag of a ModelProto field with a matching wire type).
var magics = []struct {
	prefix string
	kind   string
}{
	{"\x89PNG\r\n\x1a\n", "a PNG image"},
	{"\xff\xd8\xff", "a JPEG image"},
	{"GIF8", "a GIF image"},
	{"PK\x03\x04", "a ZIP archive (a PyTorch checkpoint or .npz?)"},
	{"\x1f\x8b", "a gzip-compressed file (decompress it first)"},
	{"\x7fELF", "an ELF executable or library"},
	{"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras model?)"},
	{"version https://git-lfs", "a Git LFS pointer, not the model itself (run git lfs pull)"},
}

func sniffNonONNX(data []byte) string {
	for _, m := range magics {
		if bytes.HasPrefix(data, []byte(m.prefix)) {
			return m.kind
		}
	}
	// FlatBuffers files (ORT format, TFLite) carry their identifier at 4..8.
	if len(data) >= 8 {
		switch string(data[4:8]) {
		case "ORTM":
			return "an ONNX Runtime (.ort) model, not an ONNX protobuf"
		case "TFL3":
			return "a TensorFlow Lite model"
		}
	}
	return ""
}

// sniffAfterFailure recognises text formats and pickles. It is consulted
// only when data is not a usable model, because their first bytes could also
// start valid protobuf.
func sniffAfterFailure(data []byte) string {
	if len(data) >= 2 && data[0] == 0x80 && data[1] >= 2 && data[1] <= 5 {
		return "a Python pickle (a PyTorch or NumPy file?)"
	}
	head := strings.TrimLeft(string(data[:min(len(data), 256)]), " \t\r\n\ufeff")
	switch {
	case strings.HasPrefix(head, "{") || strings.HasPrefix(head, "["):
		return "JSON text"
	case strings.HasPrefix(head, "<"):
		return "XML or HTML text (an error page from a download?)"
	case strings.HasPrefix(head, "ir_version") || strings.HasPrefix(head, "graph {"):
		return "a text-format protobuf"
	}
	return ""
}
