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
// start with the path and say what is wrong in plain words. It stats before
// opening because opening a FIFO would block until someone writes to it.
func readBounded(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
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
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	defer f.Close()
	if ofi, err := f.Stat(); err != nil || !os.SameFile(fi, ofi) {
		return nil, fmt.Errorf("%s: file was replaced while opening it", path)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s: file changed while reading: %w", path, err)
	}
	return data, nil
}

// fileError turns an *fs.PathError into "path: reason" without repeating
// the path or the operation, keeping the cause for errors.Is (e.g.
// fs.ErrNotExist).
func fileError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// decodeModel unmarshals data after ruling out the common wrong inputs, and
// turns protobuf's terse parse errors into a located description.
func decodeModel(data []byte) (*ModelProto, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file, not an ONNX model")
	}
	if what := sniffNonONNX(data); what != "" {
		return nil, errors.New(what)
	}
	m := &ModelProto{}
	err := proto.Unmarshal(data, m)
	empty := err == nil && m.GetIrVersion() == 0 && m.GetGraph() == nil && len(m.GetFunctions()) == 0
	if err != nil || empty {
		if what := sniffAfterFailure(data); what != "" {
			return nil, errors.New(what)
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

// magics are the leading bytes of files people mistake for models. No model
// ONNX writes starts with them (a model starts with the tag of ir_version or
// another ModelProto field; most of these are not even valid tags), so they
// are checked before parsing.
var magics = []struct {
	prefix string
	what   string
}{
	{"\x89PNG\r\n\x1a\n", "is a PNG image, not an ONNX model"},
	{"\xff\xd8\xff", "is a JPEG image, not an ONNX model"},
	{"GIF8", "is a GIF image, not an ONNX model"},
	{"PK\x03\x04", "is a ZIP archive (a PyTorch checkpoint or .npz?), not an ONNX model"},
	{"\x1f\x8b", "is gzip-compressed; decompress it first"},
	{"\x7fELF", "is an ELF executable or library, not an ONNX model"},
	{"\x89HDF\r\n\x1a\n", "is an HDF5 file (a Keras model?), not an ONNX model"},
	{"version https://git-lfs", "is a Git LFS pointer, not the model itself (run git lfs pull)"},
}

// sniffNonONNX describes data when it starts with one of magics.
func sniffNonONNX(data []byte) string {
	for _, m := range magics {
		if bytes.HasPrefix(data, []byte(m.prefix)) {
			return m.what
		}
	}
	return ""
}

// sniffAfterFailure recognises FlatBuffers models, pickles and text
// formats. It is consulted only when data is not a usable model, because
// their first bytes could also start valid protobuf.
func sniffAfterFailure(data []byte) string {
	// FlatBuffers files carry their identifier at bytes 4..8.
	if len(data) >= 8 {
		switch string(data[4:8]) {
		case "ORTM":
			return "is an ONNX Runtime format (.ort) model, not an ONNX protobuf model"
		case "TFL3":
			return "is a TensorFlow Lite model, not an ONNX model"
		}
	}
	if len(data) >= 2 && data[0] == 0x80 && data[1] >= 2 && data[1] <= 5 {
		return "is a Python pickle (a PyTorch or NumPy file?), not an ONNX model"
	}
	head := strings.TrimLeft(string(data[:min(len(data), 256)]), " \t\r\n\ufeff")
	switch {
	case strings.HasPrefix(head, "{") || strings.HasPrefix(head, "["):
		return "is JSON text, not a binary ONNX model"
	case strings.HasPrefix(head, "<"):
		return "is XML or HTML text (an error page from a download?), not an ONNX model"
	case strings.HasPrefix(head, "ir_version") || strings.HasPrefix(head, "graph {"):
		return "is a text-format protobuf, not a binary ONNX model"
	}
	return ""
}
