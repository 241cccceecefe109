// Command srq quantizes ONNX image super-resolution models after training and
// verifies the result with ONNX Runtime. Run `srq help` for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/srquant/srq/internal/version"
	"github.com/srquant/srq/ort"
)

// Exit codes are part of the CLI contract: CI pipelines gate on them.
const (
	exitOK          = 0
	exitGate        = 1   // the command ran but a quality gate (e.g. --min-psnr) failed
	exitFailure     = 2   // bad input, bad usage or a failure to run
	exitInterrupted = 130 // stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it)
)

// command is one subcommand: its flags are parsed by run before body is called.
type command struct {
	name, args, summary string
	flags               func(fs *pflag.FlagSet) func(app *app, args []string) error
}

// app carries what every command needs: where to write and the common flags.
type app struct {
	ctx            context.Context // ends on SIGINT/SIGTERM
	stdout, stderr io.Writer
	ortLib         string
}

// gateError marks a failed quality gate (exit code 1) as opposed to a failure to run.
type gateError struct{ msg string }

func (e *gateError) Error() string { return e.msg }

var commands = []command{
	{"inspect", "MODEL", "show a model's structure, scale and input range", inspectFlags},
	{"upscale", "IN OUT", "upscale an image with an FP32 or quantized model (OUT: .png, .jpg or .bmp)", upscaleFlags},
	{"quantize", "--model M --calib DIR --out Q", "quantize a model to int8 QDQ form", quantizeFlags},
	{"verify", "--model M --quantized Q --images DIR", "compare a quantized model with its FP32 original", verifyFlags},
	{"sensitivity", "--model M --calib DIR", "measure how much quantizing each layer alone costs", sensitivityFlags},
	{"bench", "", "benchmark models x methods and write BENCHMARKS.md", benchFlags},
	{"doctor", "", "check this machine's ONNX Runtime int8 kernels against their QDQ graphs", doctorFlags},
	{"version", "", "print srq's version and, if it can be found, ONNX Runtime's", versionFlags},
}

func main() {
	// Ctrl-C or SIGTERM ends the context: the running ONNX Runtime call is
	// abandoned, sessions close, temporary files are removed, and srq exits
	// with exitInterrupted, writing nothing.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI and returns its exit code; tests call it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext runs the CLI. `srq` alone is a usage error (the usage goes to
// stderr, exit 2), as a script that forgot its command should fail; `srq
// help`, -h and --help print it to stdout. `srq help CMD` is `srq CMD
// --help`, and `srq --version` is `srq version`.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		usage(stderr)
		return exitFailure
	case len(args) == 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help"):
		usage(stdout)
		return exitOK
	case args[0] == "help":
		if len(args) > 2 {
			fmt.Fprintf(stderr, "srq help: expected one COMMAND, got %d (run `srq help`)\n", len(args)-1)
			return exitFailure
		}
		args = []string{args[1], "--help"}
	case args[0] == "--version" || args[0] == "-version":
		args = append([]string{"version"}, args[1:]...)
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "srq: unknown command %q (run `srq help`)\n", args[0])
		return exitFailure
	}
	fs := pflag.NewFlagSet("srq "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a := &app{ctx: ctx, stdout: stdout, stderr: stderr}
	fs.StringVar(&a.ortLib, "ort-lib", "", "ONNX Runtime library to load: `PATH` of libonnxruntime.so or libonnxruntime.so.1, or a folder holding one (default: $SRQ_ORT_LIB, then .ort/ from make setup in this folder or above, the binary's folder, $LD_LIBRARY_PATH and the system library folders)")
	body := cmd.flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(stdout, "usage: srq %s [flags] %s\n\n%s\n\nflags:\n%s", cmd.name, cmd.args, cmd.summary, fs.FlagUsages())
			return exitOK
		}
		fmt.Fprintf(stderr, "srq %s: %v (see `srq %s --help`)\n", cmd.name, err, cmd.name)
		return exitFailure
	}
	if err := body(a, fs.Args()); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			fmt.Fprintf(stderr, "srq %s: interrupted, nothing written\n", cmd.name)
			return exitInterrupted
		}
		fmt.Fprintf(stderr, "srq %s: %s\n", cmd.name, oneLine(err.Error()))
		var g *gateError
		if errors.As(err, &g) {
			return exitGate
		}
		return exitFailure
	}
	return exitOK
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "srq quantizes ONNX super-resolution models after training and verifies them with ONNX Runtime.")
	fmt.Fprintln(w, "\nusage: srq COMMAND [flags] ARGS   (srq COMMAND --help for flags)\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %-36s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(w, "\nsrq help COMMAND is srq COMMAND --help; srq --version is srq version.")
	fmt.Fprintln(w, "exit codes: 0 ok, 1 a quality gate failed, 2 bad input or failure, 130 interrupted")
}

// versionFlags is `srq version` (and `srq --version`): srq's release and
// revision, then ONNX Runtime's version and library when one is found
// (--ort-lib, $SRQ_ORT_LIB, the usual places). A missing library is
// reported, not an error: the version question has an answer without it.
func versionFlags(fs *pflag.FlagSet) func(*app, []string) error {
	return func(a *app, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, version.String())
		lib, err := ort.FindLibrary(a.ortLib)
		if err == nil {
			err = ort.Init(lib)
		}
		if err != nil {
			fmt.Fprintf(a.stdout, "ONNX Runtime: not loaded: %s\n", oneLine(err.Error()))
			return nil
		}
		abs, _ := filepath.Abs(lib)
		fmt.Fprintf(a.stdout, "ONNX Runtime %s (%s)\n", ort.Version(), abs)
		return nil
	}
}

// oneLine keeps every error message on one line, as scripts expect.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// wantArgs checks the number of positional arguments.
func wantArgs(args []string, n int, what string) error {
	if len(args) != n {
		return fmt.Errorf("expected %s, got %d argument(s)", what, len(args))
	}
	return nil
}
