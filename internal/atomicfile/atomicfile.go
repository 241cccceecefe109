// Package atomicfile writes files so that a reader (or a crash) never sees a
// partial one: every file srq writes — models, external data, images, JSON
// reports, BENCHMARKS.md — goes through here.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Write creates or replaces path with what write produces, through a
// temporary file in the same folder: write, chmod, fsync, rename, then fsync
// the folder so the rename survives a crash. The new file keeps the
// permissions of the file it replaces (0644 for a new one). A path that
// exists and is not a regular file is refused. On any error the temporary
// file is removed and path is untouched. Errors do not repeat path: callers
// add it.
func Write(path string, write func(w io.Writer) error) (err error) {
	perm := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("is not a regular file (%s); refusing to replace it", fi.Mode().Type())
		}
		perm = fi.Mode().Perm()
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: not every file system syncs directories
		d.Close()
	}
	return nil
}

// WriteBytes is Write for data already in memory.
func WriteBytes(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// CheckDir says, before any work, whether files can be written into the
// output folder dir: it is a folder, or it does not exist and its nearest
// existing parent is one, so os.MkdirAll can create it. It creates
// nothing, so that a run that fails later leaves no empty folder behind.
// Errors name dir.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s: not a folder", dir)
	case err == nil:
		return nil
	case !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s: %w", dir, err)
	}
	for p := filepath.Dir(filepath.Clean(dir)); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s: cannot create it: %s is not a folder", dir, p)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("%s: cannot create it: %w", dir, err)
		}
		if p == filepath.Dir(p) {
			return fmt.Errorf("%s: cannot create it", dir)
		}
	}
}
