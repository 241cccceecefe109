package img

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestList(t *testing.T) {
	paths, err := List("../testdata/images")
	require.NoError(t, err)
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	assert.Equal(t, []string{"brick.png", "chelsea.png", "rocket.jpg"}, names)

	dir := t.TempDir()
	for _, n := range []string{"b.JPEG", "a.Png", "c.bmp", "d.jpg", "f.WebP", "notes.txt", "e.gif", "e.png.bak", "noext"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644))
	}
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.png"), 0o755))
	require.NoError(t, os.Symlink("missing.png", filepath.Join(dir, "dangling.png")))
	require.NoError(t, os.Symlink("d.jpg", filepath.Join(dir, "link.jpg")))
	paths, err = List(dir)
	require.NoError(t, err)
	names = names[:0]
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	assert.Equal(t, []string{"a.Png", "b.JPEG", "c.bmp", "d.jpg", "f.WebP", "link.jpg"}, names)
}

func TestListErrors(t *testing.T) {
	empty := t.TempDir()
	noImages := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(noImages, "readme.txt"), []byte("hi"), 0o644))
	for _, dir := range []string{empty, noImages} {
		_, err := List(dir)
		assert.EqualError(t, err, "no .png/.jpg/.jpeg/.bmp/.webp files in folder "+dir)
	}
	_, err := List(filepath.Join(empty, "missing"))
	assert.ErrorContains(t, err, "cannot read folder "+filepath.Join(empty, "missing"))
}
