package onnx

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/srquant/srq/internal/atomicfile"
)

// DefaultExternalThreshold is the raw_data size (bytes) from which Save
// moves an initializer to the external data file when
// SaveOptions.ExternalThreshold is zero; the same value ONNX's Python
// helpers use.
const DefaultExternalThreshold = 1024

// externalAlign is the alignment of every tensor in an external data file:
// a page, so that ONNX Runtime can memory-map weights in place.
const externalAlign = 4096

// maxProtoBytes is the largest message protobuf readers (ONNX, ORT, C++)
// accept; larger models need external data.
const maxProtoBytes = math.MaxInt32

// SaveOptions controls how Save lays a model out on disk.
type SaveOptions struct {
	// ExternalData moves large initializers (of the main graph and of
	// subgraphs) into one external data file beside the model.
	ExternalData bool
	// ExternalThreshold is the raw_data size in bytes from which an
	// initializer goes external; 0 means DefaultExternalThreshold.
	ExternalThreshold int
	// ExternalLocation is the data file's path relative to the model's
	// folder; "" means the model's file name plus ".data".
	ExternalLocation string
}

// Marshal encodes m deterministically (same model, same bytes), which makes
// saved files comparable and cacheable.
func Marshal(m *ModelProto) ([]byte, error) {
	if m == nil {
		return nil, errors.New("cannot marshal a nil model")
	}
	if size := proto.Size(m); size > maxProtoBytes {
		return nil, fmt.Errorf("model is %d bytes, over protobuf's 2 GiB limit; save it with external data", size)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		if p := findInvalidUTF8(m.ProtoReflect(), ""); p != "" {
			return nil, fmt.Errorf("string %s is not valid UTF-8, which ONNX requires", p)
		}
		return nil, fmt.Errorf("marshal model: %w", err)
	}
	return b, nil
}

// Save writes m to path atomically: the bytes go to a temporary file in the
// same folder, which is synced and renamed over path, so readers see either
// the old file or the complete new one, never a partial file; on error the
// temporary file is removed. With opts.ExternalData the external data file
// is written the same way, before the model that refers to it. m itself is
// never modified.
//
// Models whose tensors still point at external files are refused: the
// references would be wrong relative to the new folder (Load inlines them).
// Callers that must not overwrite their input compare paths with SameFile.
func Save(path string, m *ModelProto, opts SaveOptions) error {
	if err := save(path, m, opts); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func save(path string, m *ModelProto, opts SaveOptions) error {
	if m == nil {
		return errors.New("cannot save a nil model")
	}
	err := visitModelTensors(m, func(where string, t *TensorProto) error {
		if t.GetDataLocation() == TensorProto_EXTERNAL {
			return fmt.Errorf("%s: still refers to external data; load the model with Load to inline it before saving", where)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := checkTarget(path); err != nil {
		return err
	}
	if !opts.ExternalData {
		b, err := Marshal(m)
		if err != nil {
			return err
		}
		return atomicfile.Write(path, func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		})
	}

	loc := opts.ExternalLocation
	if loc == "" {
		loc = filepath.Base(path) + ".data"
	}
	if err := checkLocation(loc); err != nil {
		return fmt.Errorf("SaveOptions.ExternalLocation: %w", err)
	}
	dataPath := filepath.Join(filepath.Dir(path), loc)
	if filepath.Clean(dataPath) == filepath.Clean(path) || SameFile(dataPath, path) {
		return fmt.Errorf("external data location %q is the model file itself", loc)
	}
	threshold := opts.ExternalThreshold
	if threshold <= 0 {
		threshold = DefaultExternalThreshold
	}

	// Work on a copy that shares the tensors' bytes with m: only the
	// messages are new, so the copy costs metadata, not weights.
	c := cloneSharingBytes(m.ProtoReflect()).Interface().(*ModelProto)
	var chunks [][]byte
	var offset int64
	visitModelInitializers(c, func(t *TensorProto) {
		raw := t.GetRawData()
		if len(raw) < threshold || len(raw) == 0 {
			return
		}
		offset = (offset + externalAlign - 1) / externalAlign * externalAlign
		t.RawData = nil
		t.DataLocation = TensorProto_EXTERNAL
		t.ExternalData = []*StringStringEntryProto{
			{Key: "location", Value: filepath.ToSlash(loc)},
			{Key: "offset", Value: strconv.FormatInt(offset, 10)},
			{Key: "length", Value: strconv.Itoa(len(raw))},
		}
		chunks = append(chunks, raw)
		offset += int64(len(raw))
	})
	b, err := Marshal(c)
	if err != nil {
		return err
	}
	if len(chunks) > 0 {
		if err := checkTarget(dataPath); err != nil {
			return fmt.Errorf("external data file %s: %w", dataPath, err)
		}
		err := atomicfile.Write(dataPath, func(w io.Writer) error {
			var at int64
			for _, raw := range chunks {
				pad := (at+externalAlign-1)/externalAlign*externalAlign - at
				if _, err := w.Write(make([]byte, pad)); err != nil {
					return err
				}
				if _, err := w.Write(raw); err != nil {
					return err
				}
				at += pad + int64(len(raw))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("external data file %s: %w", dataPath, err)
		}
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// visitModelInitializers calls fn for the initializers of the main graph and
// of every subgraph (If/Loop/Scan bodies): the tensors ONNX Runtime reads
// from external data.
func visitModelInitializers(m *ModelProto, fn func(t *TensorProto)) {
	var walk func(g *GraphProto)
	walk = func(g *GraphProto) {
		for _, t := range g.GetInitializer() {
			fn(t)
		}
		for _, n := range g.GetNode() {
			for _, a := range n.GetAttribute() {
				if a.GetG() != nil {
					walk(a.GetG())
				}
				for _, sg := range a.GetGraphs() {
					walk(sg)
				}
			}
		}
	}
	if g := m.GetGraph(); g != nil {
		walk(g)
	}
}

// checkTarget refuses to replace something that is not a regular file:
// renaming over a directory fails anyway, and over a device or socket would
// silently replace it.
func checkTarget(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil // absent (or unreadable: the write will say)
	}
	switch {
	case fi.IsDir():
		return errors.New("is a directory; refusing to replace it")
	case fi.Mode()&os.ModeSymlink != 0:
		return nil // the link is replaced by the new file, its target kept
	case !fi.Mode().IsRegular():
		return fmt.Errorf("is not a regular file (%s); refusing to replace it", fi.Mode().Type())
	}
	return nil
}

// SameFile reports whether a and b name the same existing file (through
// links, different spellings or hard links). The CLI uses it to refuse
// writing its output over its input. Absent files are never the same.
func SameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(fa, fb)
}

// cloneSharingBytes deep-copies the message structure of src but shares
// bytes values and scalar lists with it (protoreflect's Set may alias them),
// so a copy of a model with gigabytes of raw_data costs only its metadata.
// The copy must be treated as read-only except for replacing whole fields.
func cloneSharingBytes(src protoreflect.Message) protoreflect.Message {
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			sl, dl := v.List(), dst.Mutable(fd).List()
			for i := 0; i < sl.Len(); i++ {
				dl.Append(protoreflect.ValueOfMessage(cloneSharingBytes(sl.Get(i).Message())))
			}
		case fd.IsMap():
			dst.Set(fd, v) // ONNX has no maps; never reached
		case fd.Message() != nil:
			dst.Set(fd, protoreflect.ValueOfMessage(cloneSharingBytes(v.Message())))
		default:
			dst.Set(fd, v)
		}
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(append(protoreflect.RawFields(nil), u...))
	}
	return dst
}
