// Package graph is srq's editable in-memory form of an ONNX model.
//
// Rewriting passes (QDQ insertion, folding) and inspection work on a Graph
// rather than on the protobuf types, because the protobuf form has no
// producer/consumer links, keeps weights in several encodings and makes every
// edit a slice surgery on repeated fields. FromModel builds a Graph from a
// ModelProto; ToModel writes it back, keeping every part of the model the IR
// does not model (metadata, functions, doc strings, sparse initializers,
// quantization annotations, unknown fields) so that an unedited round trip
// reproduces the input.
//
// Weights are not copied: initializer Data and node attributes alias the
// ModelProto they came from, and ToModel's result aliases the Graph. Treat
// tensor Data and attribute protos as immutable and replace them (SetInitializer,
// Node.SetAttr*) instead of editing them in place; Clone gives a Graph whose
// data may be edited freely.
//
// Producer/consumer indexes are kept current by the editing methods (AddNode,
// RemoveNode, ReplaceInput, ReplaceUses, SetInitializer, ...). Code that edits
// Node.Inputs, Node.Outputs, Graph.Nodes, Graph.Inputs or Graph.Outputs
// directly must call Invalidate afterwards; the indexes are then rebuilt on
// the next query.
package graph
