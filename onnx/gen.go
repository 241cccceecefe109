// Package onnx owns srq's ONNX protobuf types and model file I/O: loading from
// files or bytes with external data, atomic saving, and structural checks that
// turn malformed files into clear errors instead of panics or huge allocations.
package onnx

//go:generate protoc --go_out=. --go_opt=paths=source_relative onnx.proto
