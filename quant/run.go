package quant

import (
	"context"
	"fmt"

	"github.com/srquant/srq/graph"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/verify"
)

// meanPSNRY is the mean PSNR-Y of outputs against their references (each
// capped at verify.MaxPSNR, so one identical patch does not dominate),
// scale pixels shaved: how tuning and sensitivity score a candidate.
func meanPSNRY(outs, ref []*img.Image, scale int) (float64, error) {
	var psnr float64
	for i, o := range outs {
		p, err := verify.PSNRY(o, ref[i], scale)
		if err != nil {
			return 0, err
		}
		psnr += min(p, verify.MaxPSNR) / float64(len(outs))
	}
	return psnr, nil
}

// runPatches runs graph g in ONNX Runtime on calibration patches (CHW
// float32, one shape, in the model's input range) in batches and returns
// the outputs as images in 0..1 (divided by rng, unclipped), as verify
// compares them. Tuning and sensitivity score candidate models with it.
func runPatches(ctx context.Context, g *graph.Graph, batches [][]float32, shape [3]int, rng float32, cfg Config) ([]*img.Image, error) {
	s, err := graphSession(g, "candidate model", cfg.Threads)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	per := shape[0] * shape[1] * shape[2]
	batch := max(cfg.Batch, 1)
	var out []*img.Image
	buf := make([]float32, 0, batch*per)
	for start := 0; start < len(batches); start += batch {
		end := min(start+batch, len(batches))
		buf = buf[:0]
		for _, p := range batches[start:end] {
			buf = append(buf, p...)
		}
		res, err := s.RunContext(ctx, &ort.Tensor{Shape: []int64{int64(end - start), int64(shape[0]), int64(shape[1]), int64(shape[2])}, Data: buf})
		if err != nil {
			return nil, err
		}
		o := res[0]
		if len(o.Shape) != 4 || int(o.Shape[0]) != end-start {
			return nil, fmt.Errorf("output of shape %v for %d patches", o.Shape, end-start)
		}
		n := len(o.Data) / (end - start)
		for i := range end - start {
			pix := make([]float32, n)
			for j, v := range o.Data[i*n : (i+1)*n] {
				pix[j] = v / rng
			}
			out = append(out, &img.Image{C: int(o.Shape[1]), H: int(o.Shape[2]), W: int(o.Shape[3]), Pix: pix})
		}
	}
	return out, nil
}

// graphSession opens an ONNX Runtime session of graph g (name says which
// model in ORT's errors).
func graphSession(g *graph.Graph, name string, threads int) (*ort.Session, error) {
	m, err := g.ToModel()
	if err != nil {
		return nil, err
	}
	data, err := onnx.Marshal(m)
	if err != nil {
		return nil, err
	}
	return ort.NewSession(data, name, ort.Options{Threads: threads})
}
