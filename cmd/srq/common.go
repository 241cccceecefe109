package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/sr"
)

// initORT finds and initialises the ONNX Runtime library once per process.
// A bad --ort-lib is named as the flag, so the user knows which path to fix.
func (a *app) initORT() error {
	lib, err := ort.FindLibrary(a.ortLib)
	if err != nil {
		if a.ortLib != "" {
			return fmt.Errorf("--ort-lib: %w", err)
		}
		return err
	}
	return ort.Init(lib)
}

// openSR opens a session on an SR model and probes (or takes) its scale and range.
func (a *app) openSR(model []byte, name string, o ort.Options, p sr.ProbeOptions) (*sr.Model, error) {
	if err := a.initORT(); err != nil {
		return nil, err
	}
	return sr.Open(model, name, o, p)
}

// probeFlags are the overrides every command that runs a model accepts.
type probeFlags struct {
	scale int
	rng   float32
}

// register adds --scale and --input-range; of names whose model(s) they
// describe in the help text.
func (p *probeFlags) register(fs *pflag.FlagSet, of string) {
	fs.IntVar(&p.scale, "scale", 0, "upscale factor"+of+" (default: detected)")
	fs.Float32Var(&p.rng, "input-range", 0, "input range"+of+", 1 or 255 (default: detected)")
}

func (p *probeFlags) options() (sr.ProbeOptions, error) {
	if p.rng != 0 && p.rng != 1 && p.rng != 255 {
		return sr.ProbeOptions{}, fmt.Errorf("--input-range %g: want 1 or 255", p.rng)
	}
	if p.scale < 0 {
		return sr.ProbeOptions{}, fmt.Errorf("--scale %d: want a positive integer", p.scale)
	}
	return sr.ProbeOptions{Scale: p.scale, Range: p.rng}, nil
}

// calibImages lists a calibration folder (img.List), naming its role in errors.
func calibImages(dir string) ([]string, error) {
	paths, err := img.List(dir)
	if err != nil {
		return nil, fmt.Errorf("calibration images: %w", err)
	}
	return paths, nil
}
