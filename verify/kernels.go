package verify

import (
	"context"
	"fmt"

	"github.com/srquant/srq/img"
	"github.com/srquant/srq/kernelcheck"
	"github.com/srquant/srq/onnx"
)

// KernelCheckSize is the LR side of the input the kernel check runs every
// fused group on: large enough that every kernel's blocking and edge
// handling is exercised (the known AMX defect shows on about a third of a
// 24×24 output), small enough to cost a fraction of a second.
const KernelCheckSize = 32

// checkKernels runs kernelcheck.Check on a KernelCheckSize crop of lr.
func checkKernels(ctx context.Context, q Source, lr *img.Image, rng float32, ep string, threads int) (*kernelcheck.Report, error) {
	m, err := onnx.LoadBytes(q.Data, q.Path, "")
	if err != nil {
		return nil, err
	}
	in, err := LatencyInput(lr, KernelCheckSize, rng)
	if err != nil {
		return nil, err
	}
	rep, err := kernelcheck.Check(ctx, m, in, kernelcheck.Options{Threads: threads, EP: ep, Range: rng})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Path, err)
	}
	return rep, nil
}

// KernelsMeta is the JSON of MetaKernels: the runtime and CPU on which srq
// quantize checked every fused int8 group of the model against its QDQ
// graph, what it found, and which Convs were padded so that ORT's int8
// kernel runs a shape it computes right.
type KernelsMeta struct {
	ORTVersion  string   `json:"ort_version"`
	CPU         string   `json:"cpu"`
	Groups      int      `json:"groups"`
	MaxCodeDiff int      `json:"max_code_diff"`
	Padded      []string `json:"padded,omitempty"`
}
