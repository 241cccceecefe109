package onnx

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// debianPython is Debian's interpreter, which has python3-onnx (ONNX 1.12);
// the python3 first on PATH may be another one without it.
const debianPython = "/usr/bin/python3"

// peerScript runs in one Python process for all files. It prints one JSON
// line with ONNX's own schema (every message's fields: number, type,
// cardinality, message/enum type; every enum's values), then one line per
// model with json_format.MessageToDict of the parsed model (the dict that
// MessageToJson serialises). raw_data is replaced by its SHA-256 on both
// sides, which keeps the dump small and still compares the bytes.
const peerScript = `
import sys, json, hashlib
from google.protobuf import json_format
import onnx
from onnx import onnx_ml_pb2 as pb

schema, enums = {}, {}
def add_enum(e):
    enums[e.full_name] = {v.name: v.number for v in e.values}
def add(d):
    schema[d.full_name] = {f.name: [f.number, f.type, f.label,
        f.message_type.full_name if f.message_type else (f.enum_type.full_name if f.enum_type else "")]
        for f in d.fields}
    for e in d.enum_types: add_enum(e)
    for n in d.nested_types: add(n)
for d in pb.DESCRIPTOR.message_types_by_name.values(): add(d)
for e in pb.DESCRIPTOR.enum_types_by_name.values(): add_enum(e)
print(json.dumps({"schema": schema, "enums": enums}))

def hash_raw(m):
    for fd, v in m.ListFields():
        if fd.type == fd.TYPE_MESSAGE:
            for x in (v if fd.label == fd.LABEL_REPEATED else [v]):
                hash_raw(x)
    if m.DESCRIPTOR.full_name == "onnx.TensorProto" and m.HasField("raw_data"):
        m.raw_data = hashlib.sha256(m.raw_data).digest()

for p in sys.stdin.read().split("\n"):
    if not p: continue
    m = onnx.ModelProto()
    with open(p, "rb") as f:
        m.ParseFromString(f.read())
    hash_raw(m)
    print(json.dumps({"path": p, "json": json_format.MessageToDict(m)}))
`

// TestPeerPythonONNX compares our parse of real models with ONNX's own
// (Debian's python3-onnx): first the schema (every field ONNX 1.12 defines
// must exist in our onnx.proto with the same number, type and cardinality;
// ours may have newer fields), then the JSON dump of ~60 models: the SR
// models in ../shared/models and every 20th libonnx-testdata model.
//
// Normalisation (normaliseJSON): python's proto2 classes print scalars that
// were explicitly set to their default (0, "", false, enum value 0) while
// our proto3 types drop them (and a oneof member set to 0 is printed by
// both), so default-valued scalar keys are dropped on both sides. Numbers
// are compared by value, and float32 values printed with different digits
// are equal when they round to the same float32 (python prints 1.0, Go 1).
// int64/uint64 are strings in both (proto3 JSON mapping).
func TestPeerPythonONNX(t *testing.T) {
	if testing.Short() {
		t.Skip("peer comparison with python3-onnx is slow-ish; skipped in -short mode")
	}
	if _, err := os.Stat(debianPython); err != nil {
		t.Skipf("%s absent: cannot compare with python3-onnx", debianPython)
	}
	if out, err := exec.Command(debianPython, "-c", "import onnx").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import onnx (install python3-onnx): %v: %s", debianPython, err, bytes.TrimSpace(out))
	}
	var paths []string
	if p, _ := filepath.Glob(filepath.Join(sharedModels, "*.onnx")); len(p) > 0 {
		paths = append(paths, p...)
	} else {
		t.Logf("no models in %s; comparing libonnx-testdata models only", sharedModels)
	}
	if _, err := os.Stat(libonnxTestdata); err == nil {
		all := testdataModels(t)
		for i := 0; i < len(all); i += 20 {
			paths = append(paths, all[i])
		}
	}
	if len(paths) == 0 {
		t.Skip("neither ../shared/models nor libonnx-testdata is present: nothing to compare")
	}
	for i, p := range paths {
		abs, err := filepath.Abs(p)
		require.NoError(t, err)
		paths[i] = abs
	}

	cmd := exec.Command(debianPython, "-c", peerScript)
	cmd.Stdin = bytes.NewBufferString(joinLines(paths))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "python: %s", stderr.String())

	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<30)
	require.True(t, sc.Scan(), "no schema line from python")
	var schema struct {
		Schema map[string]map[string][4]any
		Enums  map[string]map[string]int
	}
	require.NoError(t, json.Unmarshal(sc.Bytes(), &schema))
	compareSchema(t, schema.Schema, schema.Enums)

	compared := 0
	for sc.Scan() {
		var line struct {
			Path string
			JSON json.RawMessage
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		m, err := Load(line.Path)
		require.NoError(t, err, line.Path)
		hashRawData(m.ProtoReflect())
		ours, err := protojson.Marshal(m)
		require.NoError(t, err)
		var a, b any
		require.NoError(t, json.Unmarshal(ours, &a))
		require.NoError(t, json.Unmarshal(line.JSON, &b))
		a, b = normaliseJSON(a), normaliseJSON(b)
		if diff := jsonDiff(a, b, ""); diff != "" {
			t.Errorf("%s: our JSON differs from python3-onnx at %s", line.Path, diff)
		}
		compared++
	}
	require.NoError(t, sc.Err())
	t.Logf("python3-onnx agrees on the schema (%d messages) and on %d models", len(schema.Schema), compared)
	assert.Equal(t, len(paths), compared)
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for _, x := range s {
		b.WriteString(x)
		b.WriteByte('\n')
	}
	return b.String()
}

// compareSchema checks every field and enum value of ONNX's schema against
// our generated descriptors.
func compareSchema(t *testing.T, msgs map[string]map[string][4]any, enums map[string]map[string]int) {
	t.Helper()
	names := make([]string, 0, len(msgs))
	for n := range msgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if !assert.NoError(t, err, "message %s missing from onnx.proto", name) {
			continue
		}
		md := d.(protoreflect.MessageDescriptor)
		for field, info := range msgs[name] {
			fd := md.Fields().ByName(protoreflect.Name(field))
			if !assert.NotNil(t, fd, "%s.%s missing from onnx.proto", name, field) {
				continue
			}
			assert.EqualValues(t, info[0], fd.Number(), "%s.%s field number", name, field)
			assert.EqualValues(t, info[1], fd.Kind(), "%s.%s type", name, field)
			assert.EqualValues(t, info[2], fd.Cardinality(), "%s.%s cardinality", name, field)
			var typeName string
			if fd.Message() != nil {
				typeName = string(fd.Message().FullName())
			} else if fd.Enum() != nil {
				typeName = string(fd.Enum().FullName())
			}
			assert.Equal(t, info[3], typeName, "%s.%s message/enum type", name, field)
		}
	}
	for name, values := range enums {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if !assert.NoError(t, err, "enum %s missing from onnx.proto", name) {
			continue
		}
		ed := d.(protoreflect.EnumDescriptor)
		for v, num := range values {
			if name == "onnx.Version" && v == "IR_VERSION" {
				continue // alias of the newest version: 8 in ONNX 1.12, 10 in ours
			}
			ev := ed.Values().ByName(protoreflect.Name(v))
			if assert.NotNil(t, ev, "%s.%s missing", name, v) {
				assert.EqualValues(t, num, ev.Number(), "%s.%s value", name, v)
			}
		}
	}
}

// hashRawData replaces every TensorProto.raw_data under m by its SHA-256,
// as peerScript does. It walks messages generically (not with our tensor
// walker) so that it cannot miss what python sees.
func hashRawData(m protoreflect.Message) {
	if t, ok := m.Interface().(*TensorProto); ok && len(t.RawData) > 0 {
		sum := sha256.Sum256(t.RawData)
		t.RawData = sum[:]
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			for i := 0; i < v.List().Len(); i++ {
				hashRawData(v.List().Get(i).Message())
			}
		} else {
			hashRawData(v.Message())
		}
		return true
	})
}

// normaliseJSON drops default-valued scalars (see TestPeerPythonONNX).
func normaliseJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			switch e {
			case "", "0", 0.0, false, "UNDEFINED", "DEFAULT":
				continue
			}
			out[k] = normaliseJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normaliseJSON(e)
		}
		return out
	}
	return v
}

// jsonDiff returns the path of the first difference between a (ours) and
// b (python), or "".
func jsonDiff(a, b any, path string) string {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: object vs %T", path, b)
		}
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range y {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			xv, inX := x[k]
			yv, inY := y[k]
			switch {
			case !inX:
				return fmt.Sprintf("%s.%s: only python has it (%.80v)", path, k, yv)
			case !inY:
				return fmt.Sprintf("%s.%s: only ours has it (%.80v)", path, k, xv)
			}
			if d := jsonDiff(xv, yv, path+"."+k); d != "" {
				return d
			}
		}
		return ""
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return fmt.Sprintf("%s: list of %d vs %.80v", path, len(x), b)
		}
		for i := range x {
			if d := jsonDiff(x[i], y[i], fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
		return ""
	case float64:
		if y, ok := b.(float64); ok && sameNumber(x, y) {
			return ""
		}
	case string:
		// int64s and non-finite floats ("NaN") are strings in both.
		if y, ok := b.(string); ok && x == y {
			return ""
		}
	default:
		if reflect.DeepEqual(a, b) {
			return ""
		}
	}
	return fmt.Sprintf("%s: %.80v (ours) vs %.80v (python)", path, a, b)
}

// sameNumber accepts equal values and float32 values printed with other
// digits (both round to the same float32).
func sameNumber(x, y float64) bool {
	return x == y || (float32(x) == float32(y) && !math.IsInf(float64(float32(x)), 0))
}
