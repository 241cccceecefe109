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
// library when no --ort-lib flag is given.
const EnvLibrary = "SRQ_ORT_LIB"

// libDir and libName locate the library that `make setup`
// (scripts/setup-ort.sh) installs at the repository root.
const (
	libDir  = ".ort"
	libName = "libonnxruntime.so.1"
)

// FindLibrary returns the path of the ONNX Runtime shared library to load. It
// tries, in order: flagPath (the --ort-lib flag), the SRQ_ORT_LIB environment
// variable, then .ort/libonnxruntime.so.1 in the current directory and each of
// its parents (so tests and the CLI work from anywhere inside the checkout),
// then beside the executable (dir/../.ort and dir/.ort). An explicit flag or
// environment path that does not exist is an error rather than a reason to
// keep looking, because silently loading another library hides typos.
func FindLibrary(flagPath string) (string, error) {
	if flagPath != "" {
		if err := checkFile(flagPath); err != nil {
			return "", fmt.Errorf("ort: --ort-lib %s: %w", flagPath, err)
		}
		return flagPath, nil
	}
	if env := os.Getenv(EnvLibrary); env != "" {
		if err := checkFile(env); err != nil {
			return "", fmt.Errorf("ort: %s=%s: %w", EnvLibrary, env, err)
		}
		return env, nil
	}
	var tried []string
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, libDir, libName)
			if checkFile(p) == nil {
				return p, nil
			}
			tried = append(tried, p)
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		for _, p := range []string{
			filepath.Join(dir, "..", libDir, libName),
			filepath.Join(dir, libDir, libName),
		} {
			p = filepath.Clean(p)
			if checkFile(p) == nil {
				return p, nil
			}
			tried = append(tried, p)
		}
	}
	return "", fmt.Errorf("ort: ONNX Runtime library not found (looked for --ort-lib, $%s, %s): run `make setup` or pass --ort-lib",
		EnvLibrary, strings.Join(tried, ", "))
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
// ORT environment. It is idempotent: calling it again with the same library is
// a no-op, while a different library is an error (ORT cannot be loaded twice
// into one process). A failed Init may be retried.
func Init(libPath string) error {
	if libPath == "" {
		return errors.New("ort: empty library path: run `make setup` or pass --ort-lib")
	}
	abs, err := filepath.Abs(libPath)
	if err != nil {
		return fmt.Errorf("ort: library %s: %w", libPath, err)
	}
	if err := checkFile(abs); err != nil {
		return fmt.Errorf("ort: library %s: %w: run `make setup` or pass --ort-lib", abs, err)
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.path != "" {
		if env.path == abs {
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
