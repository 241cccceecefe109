package onnx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzLoad checks that no input makes LoadBytes (or Validate on what it
// returns) panic, that every error is one line starting with the name, and
// that every model it accepts marshals and reloads to an equal model.
// External data resolves against a folder holding one small data file, so
// the fuzzer can reach the external-data paths.
//
// Long run (the lead's 5 minutes): go test -run XXX -fuzz FuzzLoad -fuzztime 5m ./onnx
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), rampRaw(300), 0o644); err != nil {
		f.Fatal(err)
	}
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	opts := LoadOptions{MaxBytes: 64 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := opts.LoadBytes(data, "fuzz.onnx", dir)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "fuzz.onnx: ") {
				t.Fatalf("error not one line starting with the name: %q", msg)
			}
			if strings.Contains(err.Error(), "corrupt protobuf:") {
				t.Fatalf("parse error not located by the wire walker: %v", err)
			}
			return
		}
		if err := Validate(m); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("Validate error spans lines: %q", err)
		}
		b, err := Marshal(m)
		if err != nil {
			t.Fatalf("loaded model does not marshal: %v", err)
		}
		m2, err := opts.LoadBytes(b, "fuzz2.onnx", "")
		if err != nil {
			t.Fatalf("marshalled model does not reload: %v", err)
		}
		if !proto.Equal(m, m2) {
			t.Fatal("model changed in a marshal round trip")
		}
	})
}

// fuzzSeeds returns valid models (the operator-test models in testdata/, an
// EDSR with its weights shrunk to one element, the tiny model), a truncated
// EDSR, and hostile variants: lying sizes, external data inside and outside
// the folder, invalid UTF-8, other file types.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	add := func(m *ModelProto) {
		b, err := Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	paths, _ := filepath.Glob("testdata/*.onnx")
	if len(paths) == 0 {
		f.Fatal("no seed models in testdata/")
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	if edsr, err := os.ReadFile(repoEDSR); err == nil {
		seeds = append(seeds, edsr[:4096])
		if m, err := LoadBytes(edsr, repoEDSR, ""); err == nil {
			for _, t := range m.Graph.Initializer {
				t.Dims, t.RawData = []int64{1}, make([]byte, 4)
			}
			add(m) // the real graph structure in a few kilobytes
		}
	}
	add(tinyModel())

	external := func(location, offset, length string) *ModelProto {
		m := tinyModel()
		w := m.Graph.Initializer[0]
		w.RawData, w.DataLocation = nil, TensorProto_EXTERNAL
		w.ExternalData = []*StringStringEntryProto{{Key: "location", Value: location}, {Key: "offset", Value: offset}}
		if length != "" {
			w.ExternalData = append(w.ExternalData, &StringStringEntryProto{Key: "length", Value: length})
		}
		return m
	}
	add(external("w.bin", "0", "432"))
	add(external("w.bin", "400", ""))
	add(external("../w.bin", "0", ""))
	add(external("/etc/passwd", "0", ""))
	add(external("w.bin", "9223372036854775807", ""))

	huge := tinyModel()
	huge.Graph.Initializer[0].Dims = []int64{1 << 40, 1 << 40}
	add(huge)
	negative := tinyModel()
	negative.Graph.Initializer[1].Dims = []int64{-1}
	add(negative)
	int4 := tinyModel()
	int4.Graph.Initializer = append(int4.Graph.Initializer, &TensorProto{Name: "q", DataType: int32(TensorProto_INT4), Dims: []int64{5}, RawData: []byte{1, 2, 3}})
	add(int4)

	utf8 := tinyModel()
	utf8.Graph.Node[0].Name = "NODENAME"
	b, err := Marshal(utf8)
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, []byte(strings.Replace(string(b), "NODENAME", "NODE\xffAME", 1)))

	seeds = append(seeds, nil, []byte("\x89PNG\r\n\x1a\n"), []byte(`{"irVersion": "8"}`), []byte{0x08, 0x08, 0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	return seeds
}
