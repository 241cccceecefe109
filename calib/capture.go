package calib

import (
	"context"
	"fmt"
	"math"
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
	// MaxBytes, if positive, bounds the memory of one batch's captured
	// tensors: when Batch patches would need more, fewer are run at once
	// (measured on one patch first). A window transformer captures
	// hundreds of tensors, and CRAFT's 870 at Batch 8 held 10 GB.
	MaxBytes int64
}

// Capture runs the float graph g in ONNX Runtime on the patches and returns
// streaming statistics of each named value; it stops with ctx's error when
// ctx ends. The values become extra graph
// outputs of a copy of g; a value that is a graph input is measured from the
// input itself. Patches are CHW float32 slices of one shape, already scaled
// to the model's input range.
func Capture(ctx context.Context, g *graph.Graph, values []string, patches [][]float32, shape [3]int, o CaptureOptions) (map[string]*Stats, error) {
	if o.Bins <= 0 {
		o.Bins = DefaultBins
	}
	stats := make(map[string]*Stats, len(values))
	for _, v := range values {
		stats[v] = NewStats(o.Bins)
	}
	err := capture(ctx, g, values, patches, shape, o, func(v string, _ []int64, data []float32) {
		stats[v].Add(data)
	})
	return stats, err
}

// CaptureChannelMax is Capture for per-channel extremes: for each value (an
// NCHW tensor) it returns max |x| of every channel over all patches.
func CaptureChannelMax(ctx context.Context, g *graph.Graph, values []string, patches [][]float32, shape [3]int, o CaptureOptions) (map[string][]float32, error) {
	out := make(map[string][]float32, len(values))
	err := capture(ctx, g, values, patches, shape, o, func(v string, dims []int64, data []float32) {
		if len(dims) < 2 {
			return
		}
		n, c := int(dims[0]), int(dims[1])
		m := out[v]
		if m == nil {
			m = make([]float32, c)
			out[v] = m
		}
		if len(m) != c || n*c == 0 {
			return
		}
		hw := len(data) / (n * c)
		for i := range n {
			for ch := range c {
				top := m[ch]
				for _, x := range data[(i*c+ch)*hw : (i*c+ch+1)*hw] {
					top = max(top, float32(math.Abs(float64(x))))
				}
				m[ch] = top
			}
		}
	})
	return out, err
}

// capture runs g on the patches in batches with the values as outputs and
// hands every captured tensor to visit, which must not keep dims or data
// after it returns: the next batch of the same size is written over them.
func capture(ctx context.Context, g *graph.Graph, values []string, patches [][]float32, shape [3]int, o CaptureOptions, visit func(v string, dims []int64, data []float32)) error {
	if len(g.Inputs) != 1 {
		return fmt.Errorf("capture: model has %d inputs, want 1", len(g.Inputs))
	}
	if o.Batch <= 0 {
		o.Batch = 8
	}
	input := g.Inputs[0].Name
	var outs []string
	wantInput := false
	for _, v := range values {
		if v == input {
			wantInput = true
		} else if !slices.Contains(outs, v) {
			outs = append(outs, v)
		}
	}
	var sess *ort.Session
	if len(outs) > 0 {
		c := g.Clone()
		c.Outputs = nil
		for _, v := range outs {
			c.Outputs = append(c.Outputs, &graph.Value{Name: v, DType: onnx.TensorProto_FLOAT})
		}
		c.RemoveDead()
		m, err := c.ToModel()
		if err != nil {
			return fmt.Errorf("capture: %w", err)
		}
		data, err := onnx.Marshal(m)
		if err != nil {
			return fmt.Errorf("capture: %w", err)
		}
		if sess, err = ort.NewSession(data, "calibration model", o.Session); err != nil {
			return err
		}
		defer sess.Close()
	}
	per := shape[0] * shape[1] * shape[2]
	if sess != nil && o.MaxBytes > 0 && o.Batch > 1 && len(patches) > 1 {
		// One patch alone tells how much a patch's tensors take.
		if len(patches[0]) != per {
			return fmt.Errorf("capture: patch of %d values, want %d (%dx%dx%d)", len(patches[0]), per, shape[0], shape[1], shape[2])
		}
		res, err := sess.RunContext(ctx, &ort.Tensor{Shape: []int64{1, int64(shape[0]), int64(shape[1]), int64(shape[2])}, Data: patches[0]})
		if err != nil {
			return fmt.Errorf("capture: %w", err)
		}
		var bytes int64
		for _, t := range res {
			bytes += 4 * int64(len(t.Data))
		}
		if bytes > 0 {
			o.Batch = int(min(int64(o.Batch), max(1, o.MaxBytes/bytes)))
		}
	}
	buf := make([]float32, 0, o.Batch*per)
	var last []*ort.Tensor
	var lastDims []int64
	for start := 0; start < len(patches); start += o.Batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(start+o.Batch, len(patches))
		buf = buf[:0]
		for _, p := range patches[start:end] {
			if len(p) != per {
				return fmt.Errorf("capture: patch of %d values, want %d (%dx%dx%d)", len(p), per, shape[0], shape[1], shape[2])
			}
			buf = append(buf, p...)
		}
		dims := []int64{int64(end - start), int64(shape[0]), int64(shape[1]), int64(shape[2])}
		if wantInput {
			visit(input, dims, buf)
		}
		if sess != nil {
			// A batch of the last one's size writes where the last one did.
			var reuse []*ort.Tensor
			if slices.Equal(dims, lastDims) {
				reuse = last
			}
			res, err := sess.RunReuse(ctx, reuse, &ort.Tensor{Shape: dims, Data: buf})
			if err != nil {
				return fmt.Errorf("capture: %w", err)
			}
			last, lastDims = res, dims
			for i, v := range outs {
				visit(v, res[i].Shape, res[i].Data)
			}
		}
		if o.Progress != nil {
			o.Progress(end, len(patches))
		}
	}
	return nil
}

// Shapes runs g on the first patch and returns the dims of each named
// value: what a static count of the work (MACs) needs, whatever the graph
// does to spatial sizes (pixel shuffles, strides).
func Shapes(ctx context.Context, g *graph.Graph, values []string, patches [][]float32, shape [3]int, o CaptureOptions) (map[string][]int64, error) {
	out := map[string][]int64{}
	o.Batch, o.Progress = 1, nil
	err := capture(ctx, g, values, patches[:min(1, len(patches))], shape, o, func(v string, dims []int64, _ []float32) {
		out[v] = slices.Clone(dims)
	})
	return out, err
}
