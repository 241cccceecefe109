// Package grad is reverse-mode differentiation of the networks srq
// quantizes: float32 NCHW tensors, the ops SR graphs contain (Conv with
// stride, padding, groups and dilation; Add, Sub, Mul with broadcasting;
// Relu, LeakyRelu, PRelu, Sigmoid; Concat, Split, DepthToSpace, Pad,
// nearest and bilinear Resize; GlobalAveragePool, ReduceMean, MaxPool; MatMul, Softmax,
// LayerNormalization) and srq's fake quantizers (uniform by step or by
// range, the dual-region quantizer by its breakpoint, AdaRound's soft
// rounding), so that a tuner can fine-tune a quantized network end to end
// rather than layer by layer (DESIGN.md, "Tuning with gradients, on ORT").
//
// # The tape
//
// Ops are methods of a Tape. Each computes its output at once and, when
// any input needs a gradient (a Param, or a value computed from one),
// records a closure that adds the output's gradient, pulled back through
// the op, into the inputs' Grad. Backward seeds the loss's gradient and
// runs the closures in reverse order. A closure list rather than a graph
// of nodes: the network is straight-line code in the caller (a Go
// function over the ONNX nodes), so there is nothing to schedule, and the
// closures keep exactly what their op's backward needs (an argmax, a
// normalised input) and nothing else.
//
// Ownership: an op reads its inputs' Data and never writes it; outputs are
// fresh. Backward only writes Grad, lazily allocated; a Param's Grad
// accumulates across Backward calls until ZeroGrad. Ops return errors for
// shapes they cannot take; they do not panic on them.
//
// # Networks
//
// Net runs a whole ONNX graph on a Tape — the QDQ model srq writes, so that
// a tuner differentiates exactly the graph ORT runs. Chains of element-wise
// steps with constant parameters (QuantizeLinear → Clip →
// DequantizeLinear, the dual-region quantizer's LeakyRelu compress/expand
// pairs) run as one Pointwise op that keeps its derivative from the
// forward pass; DequantizeLinear of an initializer is folded to a
// constant the caller may replace (package gtune puts soft-rounded weights
// or learnable biases there). On EDSR x2 W8A8 it agrees with ORT at level
// basic within one output level; every op agrees exactly but for Conv's
// float32 summation order, which at 4 bits now and then tips a code that
// later layers carry (TestNetMatchesORT).
//
// # Quantizers
//
// The fake quantizers compute exactly qdq's (ORT's) float32 numbers
// forward, and straight-through (STE) gradients backward; quant.go states
// the rule and every formula.
//
// # Which executor the tuner runs on (measured, issue #17)
//
// BenchmarkConvBackward (package grad/ortconv) times the backward pass (dX and dW) of an EDSR
// body Conv, 64→64, 3×3, pad 1, on 16 patches of 48² (5.4 GFLOP), here
// in Go and as ONNX graphs in ORT 1.24.1 (CPU provider): dX as
// ConvTranspose, dW either as DESIGN.md's swapped Conv or as one Gemm per
// kernel tap. Machine: 2 vCPUs of an AMD EPYC (AVX-512 with avx512_vnni
// and avx512_bf16, no AMX), shared with another engineer's job (load
// average 3.5 to 6 during the runs, so times vary by up to 1.5×). Ranges
// are over two sessions of repeated runs: -bench ConvBackward -benchtime
// 3x -count 3 for two threads, -cpu 1 -benchtime 2x -count 2 for one;
// GOMAXPROCS and ORT's intra-op threads equal:
//
//	                            1 thread        2 threads
//	Go (im2col + scalar GEMM)   1030–1130 ms    1020–1690 ms
//	ORT, dX + dW swapped Conv    126–187 ms      260–590 ms
//	ORT, dX + dW per-tap Gemm     80–106 ms      155–221 ms
//	  of which dX (ConvTranspose)                103–152 ms
//	  dW swapped Conv alone                      181–427 ms
//	  dW per-tap Gemm alone                       87–121 ms
//
// Two threads never beat one here: the other job holds about a core.
//
// Both give the same numbers: max |Go − ORT| is 1.4e-6 on dX (values up
// to 6.7) and 9e-4 on dW (values up to 810, a sum of 36864 products),
// float32 summation order; ortconv's TestKernelsMatchGo checks it on
// strided, padded, dilated, grouped and output_padding cases.
//
// Decision: build the end-to-end tuner on ORT. ORT is 7–13× faster (the
// medians at two threads and at one) on the op that is nearly all of an
// SR network's work, and Go cannot close that gap without SIMD: the Go
// kernel runs at 3.2–5.3 GFLOP/s, and even the scalar peak of two cores
// (2 × 3 GHz × 4 flops a cycle, 24 GFLOP/s, which no Go loop reaches)
// would take 225 ms, against ORT's 80 ms on one thread. (Go 1.26's
// simd/archsimd, behind GOEXPERIMENT=simd, is the only route to vector
// code in Go; not tried.) Two findings for that work: write dW as per-tap
// Gemms (a Slice of the padded, N↔C-swapped input, then Gemm with transB
// against dY reshaped to [M, N·P]), not as the swapped Conv, which is
// 2–3.5× slower in ORT (presumably its im2col GEMM has only 9 output
// columns, the 3×3 result; not profiled); and on this loaded machine one
// ORT thread beat two, so the thread count is worth measuring where the
// tuner runs.
//
// This package stays the reference: every op's backward is checked
// against central differences and every forward against ORT here, and the
// ONNX backward graphs are to be checked against it op by op, as
// ortconv's TestKernelsMatchGo does for Conv.
//
// # Conv on ORT
//
// Conv's three products (forward, dX, dW) go through a Tape's Kernels, a
// ConvKernels: nil runs GoConv, ortconv.New runs them as cached one-op ORT
// sessions (dW as per-tap Gemms, groups included). BenchmarkTapeConv
// (ortconv) times Conv+Relu forward and backward, 64→64 3×3 on 4×64×48²,
// on a quiet moment of the same machine (load 0.5–0.7): Go 250–430 ms,
// ORT at one thread 48–51 ms, at two 70–94 ms; one thread is ortconv's
// default.
package grad
