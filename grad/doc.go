// Package grad is reverse-mode differentiation of the networks srq
// quantizes: float32 NCHW tensors, the ops SR graphs contain (Conv with
// stride, padding, groups and dilation; Add, Sub, Mul with broadcasting;
// Relu, LeakyRelu, PRelu, Sigmoid; Concat, Split, DepthToSpace, Pad, nearest
// Resize; GlobalAveragePool, ReduceMean, MaxPool; MatMul, Softmax,
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
// # Quantizers
//
// The fake quantizers compute exactly qdq's (ORT's) float32 numbers
// forward, and straight-through (STE) gradients backward; quant.go states
// the rule and every formula.
package grad
