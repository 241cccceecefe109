package ort

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
	envLib := touch(t, filepath.Join(tmp, "env", "libonnxruntime.so.1"))
	repo := filepath.Join(tmp, "repo")
	repoLib := touch(t, filepath.Join(repo, ".ort", "libonnxruntime.so.1"))
	touch(t, filepath.Join(repo, ".ort", "libonnxruntime.so")) // make setup's link: .so.1 comes first
	deep := filepath.Join(repo, "a", "b")
	require.NoError(t, os.MkdirAll(deep, 0o755))
	devRepo := filepath.Join(tmp, "dev") // only the unversioned name
	devLib := touch(t, filepath.Join(devRepo, ".ort", "libonnxruntime.so"))
	empty := filepath.Join(tmp, "empty")
	require.NoError(t, os.MkdirAll(empty, 0o755))
	copied := filepath.Join(tmp, "copied") // a binary copied next to the library
	copiedLib := touch(t, filepath.Join(copied, "libonnxruntime.so"))
	binRepo := filepath.Join(tmp, "binrepo") // bin/srq of a checkout
	binLib := touch(t, filepath.Join(binRepo, ".ort", "libonnxruntime.so.1"))
	ldDir := filepath.Join(tmp, "ld")
	ldLib := touch(t, filepath.Join(ldDir, "libonnxruntime.so"))
	sysDir := filepath.Join(tmp, "usr", "lib")
	sysLib := touch(t, filepath.Join(sysDir, "libonnxruntime.so.1"))
	missing := filepath.Join(tmp, "nope", "libonnxruntime.so")
	nowhereExe := filepath.Join(empty, "srq") // cwd and executable folder overlap

	tests := []struct {
		name     string
		explicit string
		env      map[string]string
		dir      string
		exe      string
		system   []string
		want     string
		wantErr  []string
	}{
		{name: "explicit", explicit: flagLib, env: map[string]string{EnvLibrary: envLib}, dir: empty, want: flagLib},
		{name: "explicit folder", explicit: filepath.Dir(flagLib), dir: empty, want: flagLib},
		{name: "explicit missing", explicit: missing, env: map[string]string{EnvLibrary: envLib}, dir: deep, wantErr: []string{"library " + missing, "no such file"}},
		{name: "explicit folder without it", explicit: empty, dir: deep, wantErr: []string{"is a folder without libonnxruntime.so.1 or libonnxruntime.so"}},
		{name: "env", env: map[string]string{EnvLibrary: envLib}, dir: deep, want: envLib},
		{name: "env folder", env: map[string]string{EnvLibrary: filepath.Join(repo, ".ort")}, dir: empty, want: repoLib},
		{name: "env missing", env: map[string]string{EnvLibrary: missing}, dir: deep, wantErr: []string{"$" + EnvLibrary + "=" + missing, "no such file"}},
		{name: "repo root", dir: repo, want: repoLib},
		{name: "parent of cwd", dir: deep, want: repoLib},
		{name: "unversioned name", dir: devRepo, want: devLib},
		{name: "beside the executable", dir: empty, exe: filepath.Join(copied, "srq"), want: copiedLib},
		{name: "checkout of the executable", dir: empty, exe: filepath.Join(binRepo, "bin", "srq"), want: binLib},
		{name: "LD_LIBRARY_PATH", env: map[string]string{"LD_LIBRARY_PATH": "relative:" + empty + ":" + ldDir}, dir: empty, want: ldLib},
		{name: "system folder", dir: empty, system: []string{empty, sysDir}, want: sysLib},
		{name: "nowhere", dir: empty, exe: nowhereExe, env: map[string]string{"LD_LIBRARY_PATH": empty}, system: []string{empty}, wantErr: []string{
			filepath.Join(empty, ".ort") + ", ",
			"libonnxruntime.so.1 or libonnxruntime.so",
			"srq.Init", "$" + EnvLibrary, "--ort-lib PATH", "make setup",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exe := tc.exe
			if exe == "" {
				exe = filepath.Join(tmp, "elsewhere", "srq")
			}
			s := search{
				getwd:      func() (string, error) { return tc.dir, nil },
				executable: func() (string, error) { return exe, nil },
				getenv:     func(k string) string { return tc.env[k] },
				system:     tc.system,
			}
			got, err := s.find(tc.explicit)
			if tc.wantErr != nil {
				require.Error(t, err)
				for _, w := range tc.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				assert.NotContains(t, err.Error(), "\n")
				if _, list, ok := strings.Cut(err.Error(), " not found in "); ok {
					// Every folder is listed once, however many ways lead to it.
					list, _, _ = strings.Cut(list, ": ")
					assert.Equal(t, s.dirs(), strings.Split(list, ", "))
					assert.Equal(t, 1, strings.Count(list, filepath.Join(empty, ".ort")), list)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestFindLibraryProcess runs FindLibrary on the process itself: the
// environment variable and the working directory.
func TestFindLibraryProcess(t *testing.T) {
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	lib := touch(t, filepath.Join(repo, ".ort", "libonnxruntime.so.1"))
	link := filepath.Join(repo, ".ort", "libonnxruntime.so")
	require.NoError(t, os.Symlink("libonnxruntime.so.1", link))

	t.Setenv(EnvLibrary, link)
	got, err := FindLibrary("")
	require.NoError(t, err)
	assert.Equal(t, link, got)

	t.Setenv(EnvLibrary, "")
	t.Chdir(filepath.Join(repo))
	got, err = FindLibrary("")
	require.NoError(t, err)
	assert.Equal(t, lib, got)
}

// TestSearchDirs: the default search covers the system folders after the
// checkout and the executable's folder.
func TestSearchDirs(t *testing.T) {
	dirs := defaultSearch().dirs()
	exe, err := os.Executable()
	require.NoError(t, err)
	assert.Contains(t, dirs, filepath.Dir(exe))
	for _, d := range SystemDirs() {
		assert.Contains(t, dirs, d)
	}
	assert.Equal(t, SystemDirs(), dirs[len(dirs)-len(SystemDirs()):])
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

	// A link to the same file is the same library (make setup links
	// libonnxruntime.so to libonnxruntime.so.1): a no-op.
	link := filepath.Join(tmp, "libonnxruntime.so")
	require.NoError(t, os.Symlink(lib, link))
	require.NoError(t, Init(link))

	// Another library cannot be loaded a second time.
	err = Init(bogus)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already initialised")

	assert.Error(t, Init(""))
	assert.Regexp(t, regexp.MustCompile(`^\d+\.\d+\.\d+`), Version())
}
