package ort

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireORT initialises ORT from the repository's .ort install (or
// SRQ_ORT_LIB) and skips the test when no library is installed.
func requireORT(t *testing.T) string {
	t.Helper()
	lib, err := FindLibrary("")
	if err != nil {
		t.Skipf("ONNX Runtime library not installed (run `make setup`): %v", err)
	}
	require.NoError(t, Init(lib))
	return lib
}

// touch creates an empty file (and its parent directories) and returns its path.
func touch(t *testing.T, p string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	return p
}

func TestFindLibrary(t *testing.T) {
	tmp := t.TempDir()
	flagLib := touch(t, filepath.Join(tmp, "flag", "libonnxruntime.so"))
	envLib := touch(t, filepath.Join(tmp, "env", "libonnxruntime.so"))
	repo := filepath.Join(tmp, "repo")
	repoLib := touch(t, filepath.Join(repo, ".ort", "libonnxruntime.so.1"))
	deep := filepath.Join(repo, "a", "b")
	require.NoError(t, os.MkdirAll(deep, 0o755))
	empty := filepath.Join(tmp, "empty")
	require.NoError(t, os.MkdirAll(empty, 0o755))
	missing := filepath.Join(tmp, "nope", "libonnxruntime.so")

	tests := []struct {
		name    string
		flag    string
		env     string
		dir     string
		want    string
		wantErr []string
	}{
		{name: "flag", flag: flagLib, env: envLib, dir: empty, want: flagLib},
		{name: "flag missing", flag: missing, env: envLib, dir: deep, wantErr: []string{"--ort-lib " + missing, "no such file"}},
		{name: "flag is a directory", flag: tmp, dir: empty, wantErr: []string{"is a directory"}},
		{name: "env", env: envLib, dir: deep, want: envLib},
		{name: "env missing", env: missing, dir: deep, wantErr: []string{EnvLibrary + "=" + missing, "no such file"}},
		{name: "repo root", dir: repo, want: repoLib},
		{name: "parent of cwd", dir: deep, want: repoLib},
		{name: "nowhere", dir: empty, wantErr: []string{
			filepath.Join(empty, ".ort", "libonnxruntime.so.1"),
			"run `make setup` or pass --ort-lib",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvLibrary, tc.env)
			t.Chdir(tc.dir)
			got, err := FindLibrary(tc.flag)
			if tc.wantErr != nil {
				require.Error(t, err)
				for _, s := range tc.wantErr {
					assert.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestInit(t *testing.T) {
	tmp := t.TempDir()
	// Not a shared library: dlopen fails (or, if another test already
	// initialised ORT, the second-library rule does); either way the error
	// names the file.
	bogus := touch(t, filepath.Join(tmp, "bogus.so"))
	err := Init(bogus)
	require.Error(t, err)
	assert.Contains(t, err.Error(), bogus)
	t.Log(err)

	lib := requireORT(t)

	// Same library again: a no-op.
	require.NoError(t, Init(lib))

	missing := filepath.Join(tmp, "libonnxruntime.so.1")
	err = Init(missing)
	require.Error(t, err)
	assert.Contains(t, err.Error(), missing)
	assert.Contains(t, err.Error(), "no such file")

	// Another path, even to the same file, cannot be loaded a second time.
	link := filepath.Join(tmp, "other.so")
	require.NoError(t, os.Symlink(lib, link))
	err = Init(link)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already initialised")

	assert.Error(t, Init(""))
	assert.Regexp(t, regexp.MustCompile(`^\d+\.\d+\.\d+`), Version())
}
