package calib

import (
	"fmt"
	"slices"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
)

// CaptureOptions configures activation capture.
type CaptureOptions struct {
	// Batch is the number of patches per ORT run: it bounds memory, since
	// every captured tensor of a batch is held at once (EDSR x4 at 64x64
	// patches: about 60 MB per patch).
	Batch int
	// Bins is the histogram size of each tensor's Stats (0: DefaultBins).
	Bins int
	// Session configures the ORT session (threads, provider).
	Session ort.Options
	// Progress, if set, is called after each batch with the patches done.
	Progress func(done, total int)
}

// Capture runs the float graph g in ONNX Runtime on the input batches and
// returns streaming statistics of each named value. The values become extra
// graph outputs of a copy of g; a value that is a graph input is measured
// from the input itself. inputs are NCHW float32 batches of equal-size
// patches already scaled to the model's input range (see Batch).
func Capture(g *graph.Graph, values []string, patches [][]float32, shape [3]int, o CaptureOptions) (map[string]*Stats, error) {
	if len(g.Inputs) != 1 {
		return nil, fmt.Errorf("capture: model has %d inputs, want 1", len(g.Inputs))
	}
	if o.Batch <= 0 {
		o.Batch = 8
	}
	if o.Bins <= 0 {
		o.Bins = DefaultBins
	}
	input := g.Inputs[0].Name
	stats := make(map[string]*Stats, len(values))
	var outs []string
	for _, v := range values {
		stats[v] = NewStats(o.Bins)
		if v != input && !slices.Contains(outs, v) {
			outs = append(outs, v)
		}
	}
	c := g.Clone()
	c.Outputs = nil
	for _, v := range outs {
		c.Outputs = append(c.Outputs, &graph.Value{Name: v, DType: onnx.TensorProto_FLOAT})
	}
	c.RemoveDead()
	m, err := c.ToModel()
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	data, err := onnx.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	var sess *ort.Session
	if len(outs) > 0 {
		sess, err = ort.NewSession(data, "calibration model", o.Session)
		if err != nil {
			return nil, err
		}
		defer sess.Close()
	}
	per := shape[0] * shape[1] * shape[2]
	buf := make([]float32, 0, o.Batch*per)
	for start := 0; start < len(patches); start += o.Batch {
		end := min(start+o.Batch, len(patches))
		buf = buf[:0]
		for _, p := range patches[start:end] {
			if len(p) != per {
				return nil, fmt.Errorf("capture: patch of %d values, want %d (%dx%dx%d)", len(p), per, shape[0], shape[1], shape[2])
			}
			buf = append(buf, p...)
		}
		if s, ok := stats[input]; ok {
			s.Add(buf)
		}
		if sess != nil {
			res, err := sess.Run(&ort.Tensor{Shape: []int64{int64(end - start), int64(shape[0]), int64(shape[1]), int64(shape[2])}, Data: buf})
			if err != nil {
				return nil, fmt.Errorf("capture: %w", err)
			}
			for i, v := range outs {
				stats[v].Add(res[i].Data)
			}
		}
		if o.Progress != nil {
			o.Progress(end, len(patches))
		}
	}
	return stats, nil
}
