package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txt")
	require.NoError(t, WriteBytes(p, []byte("one")))
	require.NoError(t, os.Chmod(p, 0o600))
	require.NoError(t, WriteBytes(p, []byte("two")))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "two", string(b))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a replaced file keeps its permissions")

	// A failing writer leaves the old file and no temporary file behind.
	err = Write(p, func(w io.Writer) error {
		w.Write(make([]byte, 3<<20)) // past the buffer: the temporary file has data
		return errors.New("boom")
	})
	require.EqualError(t, err, "boom")
	b, err = os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "two", string(b))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)

	// A folder is never replaced, a missing folder is an error.
	assert.ErrorContains(t, WriteBytes(dir, []byte("x")), "not a regular file")
	assert.Error(t, WriteBytes(filepath.Join(dir, "no", "such"), []byte("x")))
}

func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	tests := []struct {
		name, dir, wantErr string
	}{
		{"existing folder", dir, ""},
		{"new folder", filepath.Join(dir, "a"), ""},
		{"new folders", filepath.Join(dir, "a", "b", "c"), ""},
		{"a file", file, file + ": not a folder"},
		{"under a file", filepath.Join(file, "x", "y"), filepath.Join(file, "x", "y") + ": cannot create it: " + file + " is not a folder"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDir(tc.dir)
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, tc.wantErr)
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "CheckDir creates nothing")
}
