// Package sr runs an image super-resolution ONNX model on images: it checks
// that a model looks like an SR network, detects its scale and the value
// range it expects (0..1 or 0..255, both exist among published models), and
// upscales images whole or in overlapping tiles so memory stays bounded;
// for networks that pool over the whole image, where tiles cannot be
// exact, it finds the pooling nodes and measures what tiling changes.
package sr

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
)

// Model is an SR network ready to run: one NCHW 3-channel float input, an
// output Scale times larger, taking pixel values in 0..Range.
type Model struct {
	Session       *ort.Session
	Input, Output string
	Scale         int
	// Range is the value of a white pixel at the model's input and output:
	// 1 (models trained on 0..1 tensors) or 255 (EDSR/RCAN-style models with a
	// built-in mean shift).
	Range float32
	// Reductions are the nodes that reduce over the whole image
	// (GlobalReductions): with any of them, a tiled Upscale differs from
	// the untiled one (see CheckTiling).
	Reductions []string

	name string
}

// ProbeOptions overrides what Open would otherwise detect.
type ProbeOptions struct {
	Scale int     // 0 = detect from the output size
	Range float32 // 0 = detect; else 1 or 255
}

// MetaIO is the metadata key under which srq records, in the models it
// writes, the scale and input range it quantized the model for (IO, JSON).
// Open takes them from there instead of detecting them: a quantized model
// whose input Conv stays float (accuracy control widened it) feeds a
// 255× input through float layers into saturating int8 ones, and probing
// it took IMDN x4 (0..1) for a 0..255 model.
const MetaIO = "srq.io"

// IO is MetaIO's value.
type IO struct {
	Scale      int     `json:"scale"`
	InputRange float32 `json:"input_range"`
}

// ReadIO returns the IO recorded in m's metadata, if any; a malformed
// record is an error.
func ReadIO(m *onnx.ModelProto) (IO, bool, error) {
	for _, kv := range m.GetMetadataProps() {
		if kv.GetKey() != MetaIO {
			continue
		}
		var io IO
		if err := json.Unmarshal([]byte(kv.GetValue()), &io); err != nil {
			return IO{}, false, fmt.Errorf("metadata %s: %w", MetaIO, err)
		}
		if io.Scale < 1 || io.InputRange != 1 && io.InputRange != 255 {
			return IO{}, false, fmt.Errorf("metadata %s: scale %d, input range %g: want a positive scale and a range of 1 or 255", MetaIO, io.Scale, io.InputRange)
		}
		return io, true, nil
	}
	return IO{}, false, nil
}

// Open creates a session for the model and probes it (see probe.go). name
// (usually the file path) prefixes every error. The caller closes the Model.
func Open(model []byte, name string, o ort.Options, p ProbeOptions) (*Model, error) {
	if p.Scale < 0 {
		return nil, fmt.Errorf("%s: scale %d: want 0 (detect) or a positive integer", name, p.Scale)
	}
	if p.Range != 0 && p.Range != 1 && p.Range != 255 {
		return nil, fmt.Errorf("%s: input range %g: want 1 or 255 (or 0 to detect)", name, p.Range)
	}
	mp, err := onnx.LoadBytes(model, name, "")
	if err != nil {
		return nil, err
	}
	if p.Scale == 0 || p.Range == 0 {
		if io, ok, err := ReadIO(mp); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		} else if ok {
			p.Scale = cmp.Or(p.Scale, io.Scale)
			p.Range = cmp.Or(p.Range, io.InputRange)
		}
	}
	s, err := ort.NewSession(model, name, o)
	if err != nil {
		return nil, err
	}
	m, err := newModel(s, name)
	if err == nil {
		m.Reductions = GlobalReductions(mp)
	}
	if err == nil {
		err = m.probe(p)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return m, nil
}

// newModel checks the session's IO signature: exactly one float input of
// shape [N, 3, H, W] (any of N, H, W may be symbolic) and a float first
// output; further outputs are ignored.
func newModel(s *ort.Session, name string) (*Model, error) {
	ins, outs := s.Inputs(), s.Outputs()
	if len(ins) != 1 {
		names := make([]string, len(ins))
		for i, in := range ins {
			names[i] = fmt.Sprintf("%q", in.Name)
		}
		return nil, fmt.Errorf("%s: has %d inputs (%s): an SR model takes one NCHW 3-channel image", name, len(ins), strings.Join(names, ", "))
	}
	in := ins[0]
	if in.Type != "float" {
		return nil, fmt.Errorf("%s: input %q is %s: want a float NCHW 3-channel image input", name, in.Name, in.Type)
	}
	if len(in.Dims) != 4 || (in.Dims[1] != 3 && in.Dims[1] != -1) {
		return nil, fmt.Errorf("%s: input %q has shape %s: not an NCHW 3-channel image input", name, in.Name, fmtDims(in.Dims))
	}
	if len(outs) == 0 {
		return nil, fmt.Errorf("%s: has no outputs", name)
	}
	if outs[0].Type != "float" {
		return nil, fmt.Errorf("%s: output %q is %s: want a float image output", name, outs[0].Name, outs[0].Type)
	}
	return &Model{Session: s, Input: in.Name, Output: outs[0].Name, name: name}, nil
}

// Close frees the model's session.
func (m *Model) Close() error { return m.Session.Close() }

// Run runs a batch of n images of h×w already scaled to the model's range
// (NCHW, len 3·n·h·w) and returns the output, n×3×(h·Scale)×(w·Scale), in the
// model's range and unclipped. Calibration uses it to feed patches directly.
func (m *Model) Run(ctx context.Context, batch []float32, n, h, w int) ([]float32, error) {
	out, shape, err := m.run(ctx, batch, n, h, w)
	if err != nil {
		return nil, err
	}
	s := int64(m.Scale)
	want := []int64{int64(n), 3, int64(h) * s, int64(w) * s}
	if !slices.Equal(shape, want) {
		return nil, fmt.Errorf("%s: output %q has shape %s for input %s, want %s", m.name, m.Output, fmtDims(shape), fmtDims([]int64{int64(n), 3, int64(h), int64(w)}), fmtDims(want))
	}
	return out, nil
}

// run feeds one batch and returns the first output with its shape, without
// checking the shape against Scale (the probe has no Scale yet).
func (m *Model) run(ctx context.Context, batch []float32, n, h, w int) ([]float32, []int64, error) {
	if n <= 0 || h <= 0 || w <= 0 {
		return nil, nil, fmt.Errorf("%s: batch %dx3x%dx%d: sizes must be positive", m.name, n, h, w)
	}
	if len(batch) != n*3*h*w {
		return nil, nil, fmt.Errorf("%s: batch %dx3x%dx%d needs %d values, got %d", m.name, n, h, w, n*3*h*w, len(batch))
	}
	outs, err := m.Session.RunContext(ctx, &ort.Tensor{Shape: []int64{int64(n), 3, int64(h), int64(w)}, Data: batch})
	if err != nil {
		return nil, nil, err
	}
	if len(outs) == 0 {
		return nil, nil, errors.New(m.name + ": model returned no outputs")
	}
	return outs[0].Data, outs[0].Shape, nil
}

// fmtDims prints a shape like [1 3 ? ?], with ? for symbolic dimensions.
func fmtDims(d []int64) string {
	parts := make([]string, len(d))
	for i, v := range d {
		if v < 0 {
			parts[i] = "?"
		} else {
			parts[i] = fmt.Sprint(v)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}
