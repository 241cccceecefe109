package onnx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// pendingRead is one external tensor whose size and byte range have been
// checked and which is ready to be read.
type pendingRead struct {
	where string
	t     *TensorProto
	file  *externalFile
	ref   externalRef
	size  int64
}

// externalFile is an open external data file, shared by all tensors in it.
type externalFile struct {
	f    *os.File
	size int64
}

// inlineExternalData checks every tensor of m and reads the external ones
// into raw_data. It works in two passes so that nothing is allocated until
// every tensor's declared size has been checked against the bytes present:
// first sizes, paths and byte ranges (and the total against budget), then
// the reads. Files are opened through an os.Root on baseDir, so neither
// ".." nor a symlink can reach outside the model's folder.
func inlineExternalData(m *ModelProto, baseDir string, budget int64) error {
	var (
		pending []pendingRead
		total   int64
		root    *os.Root
		files   = map[string]*externalFile{}
	)
	defer func() {
		for _, f := range files {
			f.f.Close()
		}
		if root != nil {
			root.Close()
		}
	}()
	err := visitModelTensors(m, func(where string, t *TensorProto) error {
		lay, err := checkTensor(t)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if lay.external == nil {
			return nil
		}
		ref := *lay.external
		if baseDir == "" {
			return fmt.Errorf("%s: stored in external file %q, but the model was read from memory without a folder to resolve it", where, ref.location)
		}
		if root == nil {
			if root, err = os.OpenRoot(baseDir); err != nil {
				return fmt.Errorf("%s: cannot open the model's folder for external data: %w", where, err)
			}
		}
		key := filepath.Clean(ref.location)
		ef := files[key]
		if ef == nil {
			if ef, err = openExternal(root, baseDir, ref.location); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			files[key] = ef
		}
		if ref.offset > ef.size || lay.bytes > ef.size-ref.offset {
			return fmt.Errorf("%s: declares %s at offset %d of external file %q, which has only %d bytes",
				where, declared(lay, t.GetDataType()), ref.offset, ref.location, ef.size)
		}
		total += lay.bytes
		if total > budget {
			return fmt.Errorf("%s: external data brings the model past the %d-byte limit (LoadOptions.MaxBytes)", where, budget)
		}
		pending = append(pending, pendingRead{where: where, t: t, file: ef, ref: ref, size: lay.bytes})
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range pending {
		buf := make([]byte, p.size)
		if n, err := p.file.f.ReadAt(buf, p.ref.offset); n < len(buf) {
			return fmt.Errorf("%s: reading external file %q (did it shrink?): %w", p.where, p.ref.location, err)
		}
		p.t.RawData = buf
		p.t.DataLocation = TensorProto_DEFAULT
		p.t.ExternalData = nil
	}
	return nil
}

// openExternal opens loc (already checked to be a local path) inside root
// and makes sure it is a regular file. Errors from os.Root are translated:
// its "path escapes from parent" means a symlink leading out of the folder.
func openExternal(root *os.Root, baseDir, loc string) (*externalFile, error) {
	fi, err := root.Stat(loc)
	if err != nil {
		return nil, externalOpenError(baseDir, loc, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("external data %q is not a regular file (%s)", loc, fi.Mode().Type())
	}
	f, err := root.Open(loc)
	if err != nil {
		return nil, externalOpenError(baseDir, loc, err)
	}
	// Stat the open file: the one we read is the one we checked.
	fi, err = f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("external data %q is not a regular file", loc)
	}
	return &externalFile{f: f, size: fi.Size()}, nil
}

func externalOpenError(baseDir, loc string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("external data file %q not found in the model's folder %s: %w", loc, baseDir, err)
	case escapesFolder(baseDir, loc):
		return fmt.Errorf("external data location %q leaves the model's folder through a symlink", loc)
	}
	return fmt.Errorf("cannot open external data file %q: %w", loc, err)
}

// escapesFolder reports whether loc, resolved with symlinks, lies outside
// baseDir. Used only to word an error os.Root already raised.
func escapesFolder(baseDir, loc string) bool {
	dir, err1 := filepath.EvalSymlinks(baseDir)
	target, err2 := filepath.EvalSymlinks(filepath.Join(baseDir, loc))
	if err1 != nil || err2 != nil {
		return false // cannot tell
	}
	rel, err := filepath.Rel(dir, target)
	return err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
