// Package ort is srq's thin wrapper over ONNX Runtime (through
// github.com/yalue/onnxruntime_go): it finds and loads the shared library once
// per process, opens sessions on a chosen execution provider, and moves float32
// tensors in and out as plain Go slices so that callers (calib, verify, sr)
// never touch cgo-backed values or have to remember to free them.
package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"
)

// EnvLibrary is the environment variable that names the ONNX Runtime shared
// library (or a folder holding it) when no path is given explicitly.
const EnvLibrary = "SRQ_ORT_LIB"

// libDir is the folder `make setup` (scripts/setup-ort.sh) installs the
// library into, at the root of the srq checkout.
const libDir = ".ort"

// LibraryNames are the file names FindLibrary looks for in each folder, in
// order: the versioned name that ORT's release archives and the npm
// package ship (and that `make setup` installs), then the unversioned
// development name that distribution packages and `make setup`'s link
// provide. Either works as an explicit path too.
func LibraryNames() []string { return []string{"libonnxruntime.so.1", "libonnxruntime.so"} }

// SystemDirs are the library folders FindLibrary searches after the
// checkout, the executable's folder and $LD_LIBRARY_PATH: where
// distribution packages and `make install` of ORT put the library.
func SystemDirs() []string {
	return []string{"/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib"}
}

// FindLibrary returns the path of the ONNX Runtime shared library to load.
// explicit, if not empty, is the path the caller was given (srq.Init's
// argument, the CLI's --ort-lib); else $SRQ_ORT_LIB; else the first of
// LibraryNames found in, in order:
//
//   - .ort/ in the working directory and in each of its parents, so tests
//     and the CLI work from anywhere inside the checkout;
//   - the executable's own folder, and .ort/ in it and in its parent, so a
//     binary copied next to the library (or into bin/ of the checkout)
//     finds it;
//   - each folder of $LD_LIBRARY_PATH, then SystemDirs.
//
// An explicit or environment path may name the library file (either name)
// or a folder holding it. One that does not exist is an error rather than a
// reason to keep looking, because silently loading another library hides
// typos. When nothing is found, the error lists every folder searched, each
// once, and what the caller can do.
func FindLibrary(explicit string) (string, error) {
	return defaultSearch().find(explicit)
}

// search is where FindLibrary looks: the process's working directory,
// executable, environment and system folders, as fields so that tests can
// stand in for them without touching the process.
type search struct {
	getwd      func() (string, error)
	executable func() (string, error)
	getenv     func(string) string
	system     []string
}

func defaultSearch() search {
	return search{getwd: os.Getwd, executable: os.Executable, getenv: os.Getenv, system: SystemDirs()}
}

func (s search) find(explicit string) (string, error) {
	if explicit != "" {
		p, err := resolveLibrary(explicit)
		if err != nil {
			return "", fmt.Errorf("ort: library %s: %w", explicit, err)
		}
		return p, nil
	}
	if env := s.getenv(EnvLibrary); env != "" {
		p, err := resolveLibrary(env)
		if err != nil {
			return "", fmt.Errorf("ort: $%s=%s: %w", EnvLibrary, env, err)
		}
		return p, nil
	}
	dirs := s.dirs()
	for _, dir := range dirs {
		if p, ok := inDir(dir); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("ort: ONNX Runtime library (%s) not found in %s: "+
		"pass its path to srq.Init, set $%s, or give the srq command --ort-lib PATH "+
		"(`make setup` installs it into .ort/ of the srq checkout)",
		strings.Join(LibraryNames(), " or "), strings.Join(dirs, ", "), EnvLibrary)
}

// dirs lists the folders to search, in order, each once.
func (s search) dirs() []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if d == "" {
			return
		}
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	if wd, err := s.getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			add(filepath.Join(dir, libDir))
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if exe, err := s.executable(); err == nil {
		dir := filepath.Dir(exe)
		add(dir)
		add(filepath.Join(dir, libDir))
		add(filepath.Join(dir, "..", libDir))
	}
	for _, d := range filepath.SplitList(s.getenv("LD_LIBRARY_PATH")) {
		if filepath.IsAbs(d) { // a relative entry means nothing stable to a Go program
			add(d)
		}
	}
	for _, d := range s.system {
		add(d)
	}
	return dirs
}

// inDir returns the first of LibraryNames that is a file in dir.
func inDir(dir string) (string, bool) {
	for _, n := range LibraryNames() {
		p := filepath.Join(dir, n)
		if checkFile(p) == nil {
			return p, true
		}
	}
	return "", false
}

// resolveLibrary checks a path the user gave: the library file itself
// (under any name) or a folder holding one of LibraryNames.
func resolveLibrary(p string) (string, error) {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", errors.New("no such file")
	}
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return p, nil
	}
	if lib, ok := inDir(p); ok {
		return lib, nil
	}
	return "", fmt.Errorf("is a folder without %s in it; give the shared library file", strings.Join(LibraryNames(), " or "))
}

// checkFile reports whether p names an existing regular file (or a link to
// one), with a short reason when it does not.
func checkFile(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return errors.New("no such file")
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory, want the libonnxruntime shared library file")
	}
	return nil
}

// env is the one piece of process-wide state srq allows: ONNX Runtime has a
// single environment per process, and onnxruntime_go keeps it in package
// globals, so we record which library it was created from.
var env struct {
	mu   sync.Mutex
	path string // absolute path of the loaded library; "" until Init succeeds
}

// Init loads the ONNX Runtime library at libPath and creates the process-wide
// ORT environment. It is idempotent: calling it again with the same library
// file, under any path or link (libonnxruntime.so and the .so.1 it points
// to), is a no-op, while a different library is an error (ORT cannot be
// loaded twice into one process). A failed Init may be retried.
func Init(libPath string) error {
	if libPath == "" {
		return errors.New("ort: Init needs the library's path (FindLibrary finds one)")
	}
	abs, err := filepath.Abs(libPath)
	if err != nil {
		return fmt.Errorf("ort: library %s: %w", libPath, err)
	}
	if err := checkFile(abs); err != nil {
		return fmt.Errorf("ort: library %s: %w", abs, err)
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.path != "" {
		if env.path == abs || sameFile(env.path, abs) {
			return nil
		}
		return fmt.Errorf("ort: already initialised with %s, cannot also load %s", env.path, abs)
	}
	ortgo.SetSharedLibraryPath(abs)
	if err := ortgo.InitializeEnvironment(); err != nil {
		return fmt.Errorf("ort: load %s: %s", abs, oneLine(err))
	}
	env.path = abs
	return nil
}

// sameFile reports whether a and b name the same file (through links).
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// libraryPath returns the library Init loaded, or "" before Init.
func libraryPath() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.path
}

// Version returns the ONNX Runtime version string of the loaded library, or ""
// before Init.
func Version() string {
	if libraryPath() == "" {
		return ""
	}
	return ortgo.GetVersion()
}

// oneLine flattens ORT messages, which sometimes span several lines, so that
// every srq error stays one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Library returns the path of the library Init loaded, or "" before Init.
func Library() string { return libraryPath() }

// Providers lists the execution providers the loaded library can use,
// among those srq runs on ("cpu", "cuda", "tensorrt"): ORT loads the GPU
// providers from libonnxruntime_providers_<name>.so beside the library, so
// a provider is listed when that file is there (whether a GPU and its
// drivers are present is found only when a session starts on it).
func Providers() []string {
	lib := libraryPath()
	if lib == "" {
		return nil
	}
	out := []string{"cpu"}
	for _, ep := range []string{"cuda", "tensorrt"} {
		if checkFile(filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_"+ep+".so")) == nil {
			out = append(out, ep)
		}
	}
	return out
}
