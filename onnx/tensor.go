package onnx

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// tensorLayout is what a TensorProto declares about its data, computed from
// dims and data_type alone so that it can be trusted before anything is
// allocated or read.
type tensorLayout struct {
	elems int64 // product of dims
	bytes int64 // size in raw_data / external data; 0 for STRING
	// external is set when data_location is EXTERNAL.
	external *externalRef
}

// externalRef is a parsed external_data list: a file relative to the model's
// folder and the byte range of the tensor in it.
type externalRef struct {
	location string // as written in the model, checked to be local
	offset   int64
	length   int64 // -1 when the key is absent
}

// checkTensor compares what t declares (dims × element size) with the data
// it carries and returns the layout. It only does arithmetic on lengths, so
// it is safe on hostile input: negative dims, products that overflow int64,
// missing or surplus data, data in the field of another type and malformed
// external_data entries are all errors. Messages do not name the tensor;
// callers prefix where it lives.
func checkTensor(t *TensorProto) (tensorLayout, error) {
	var lay tensorLayout
	dt := t.GetDataType()
	if dt == int32(TensorProto_UNDEFINED) {
		return lay, fmt.Errorf("has no data type (UNDEFINED)")
	}
	if !knownDataType(dt) {
		return lay, fmt.Errorf("has unknown data type %d (srq reads ONNX IR v10 types 1..22)", dt)
	}
	n, err := elementCount(t.GetDims())
	if err != nil {
		return lay, err
	}
	lay.elems = n
	elemBits, fixed := DataTypeSize(TensorProto_DataType(dt))
	if fixed {
		if lay.bytes, err = byteSize(n, elemBits); err != nil {
			return lay, err
		}
	}
	if t.GetSegment() != nil {
		return lay, fmt.Errorf("is a segment of a larger tensor (segment field), which srq does not support")
	}
	fields := presentDataFields(t)
	switch t.GetDataLocation() {
	case TensorProto_DEFAULT:
	case TensorProto_EXTERNAL:
		if !fixed {
			return lay, fmt.Errorf("is a %s tensor stored as external data, which ONNX does not allow", dataTypeName(dt))
		}
		if len(fields) > 0 {
			return lay, fmt.Errorf("is marked EXTERNAL but also has inline %s", fields[0])
		}
		ref, err := parseExternalData(t.GetExternalData())
		if err != nil {
			return lay, err
		}
		if ref.length >= 0 && ref.length != lay.bytes {
			return lay, fmt.Errorf("declares %s but external data length is %d bytes", declared(lay, dt), ref.length)
		}
		lay.external = &ref
		return lay, nil
	default:
		return lay, fmt.Errorf("has unknown data_location %d", t.GetDataLocation())
	}

	switch len(fields) {
	case 0:
		if n != 0 {
			return lay, fmt.Errorf("declares %s but has no data", declared(lay, dt))
		}
		return lay, nil
	case 1:
	default:
		return lay, fmt.Errorf("has both %s and %s; exactly one may hold the data", fields[0], fields[1])
	}
	if fields[0] == "raw_data" {
		if !fixed {
			return lay, fmt.Errorf("is a %s tensor with raw_data; strings must use string_data", dataTypeName(dt))
		}
		if got := int64(len(t.GetRawData())); got != lay.bytes {
			return lay, fmt.Errorf("declares %s but raw_data has %d bytes", declared(lay, dt), got)
		}
		return lay, nil
	}
	want, per := typedField(TensorProto_DataType(dt))
	if fields[0] != want {
		return lay, fmt.Errorf("holds %s values in %s; ONNX stores them in %s or raw_data", dataTypeName(dt), fields[0], want)
	}
	var wantLen int64
	switch per {
	case 2: // COMPLEX: real and imaginary part per element
		if n > (1<<62)-1 {
			return lay, fmt.Errorf("declares %d complex values, too many", n)
		}
		wantLen = 2 * n
	case -2: // packed 4-bit: two elements per int32
		wantLen = (n + 1) / 2
	default:
		wantLen = n
	}
	if got := typedLen(t, want); got != wantLen {
		return lay, fmt.Errorf("declares %d %s values but %s has %d entries (want %d)", n, dataTypeName(dt), want, got, wantLen)
	}
	return lay, nil
}

// declared formats "1728 float values (6912 bytes)".
func declared(lay tensorLayout, dt int32) string {
	return fmt.Sprintf("%d %s values (%d bytes)", lay.elems, dataTypeName(dt), lay.bytes)
}

// presentDataFields lists the non-empty data fields of t, in field order.
func presentDataFields(t *TensorProto) []string {
	var f []string
	add := func(nonEmpty bool, name string) {
		if nonEmpty {
			f = append(f, name)
		}
	}
	add(len(t.GetRawData()) > 0, "raw_data")
	add(len(t.GetFloatData()) > 0, "float_data")
	add(len(t.GetInt32Data()) > 0, "int32_data")
	add(len(t.GetStringData()) > 0, "string_data")
	add(len(t.GetInt64Data()) > 0, "int64_data")
	add(len(t.GetDoubleData()) > 0, "double_data")
	add(len(t.GetUint64Data()) > 0, "uint64_data")
	return f
}

// typedField names the typed field that holds dt's values (ONNX IR spec,
// TensorProto comments) and how many entries one element takes: 1, 2 for
// complex types, -2 for 4-bit types packed two to an int32.
func typedField(dt TensorProto_DataType) (field string, per int) {
	switch dt {
	case TensorProto_FLOAT:
		return "float_data", 1
	case TensorProto_COMPLEX64:
		return "float_data", 2
	case TensorProto_DOUBLE:
		return "double_data", 1
	case TensorProto_COMPLEX128:
		return "double_data", 2
	case TensorProto_INT64:
		return "int64_data", 1
	case TensorProto_UINT32, TensorProto_UINT64:
		return "uint64_data", 1
	case TensorProto_STRING:
		return "string_data", 1
	case TensorProto_INT4, TensorProto_UINT4:
		return "int32_data", -2
	}
	return "int32_data", 1
}

func typedLen(t *TensorProto, field string) int64 {
	switch field {
	case "float_data":
		return int64(len(t.GetFloatData()))
	case "double_data":
		return int64(len(t.GetDoubleData()))
	case "int64_data":
		return int64(len(t.GetInt64Data()))
	case "uint64_data":
		return int64(len(t.GetUint64Data()))
	case "string_data":
		return int64(len(t.GetStringData()))
	}
	return int64(len(t.GetInt32Data()))
}

// parseExternalData reads the external_data key/value list (keys location,
// offset, length, checksum; ONNX IR spec "External Tensor Data") and checks
// that location stays inside the model's folder: absolute paths and ".."
// escapes are rejected here, symlinks when the file is opened.
func parseExternalData(kv []*StringStringEntryProto) (externalRef, error) {
	ref := externalRef{length: -1}
	seen := map[string]bool{}
	for _, e := range kv {
		k, v := e.GetKey(), e.GetValue()
		if seen[k] {
			return ref, fmt.Errorf("repeats external_data key %q", k)
		}
		seen[k] = true
		switch k {
		case "location":
			ref.location = v
		case "offset", "length":
			x, err := strconv.ParseInt(v, 10, 64)
			if err != nil || x < 0 {
				return ref, fmt.Errorf("has external_data %s %q, not a non-negative integer", k, v)
			}
			if k == "offset" {
				ref.offset = x
			} else {
				ref.length = x
			}
		case "checksum":
			// Optional SHA-1 of the data; neither ONNX nor ORT verifies it.
		default:
			return ref, fmt.Errorf("has unknown external_data key %q (want location, offset, length, checksum)", k)
		}
	}
	if !seen["location"] || ref.location == "" {
		return ref, fmt.Errorf("is marked EXTERNAL but external_data has no location")
	}
	if err := checkLocation(ref.location); err != nil {
		return ref, err
	}
	return ref, nil
}

// checkLocation rejects external data paths that are not plain relative
// paths inside the model's folder.
func checkLocation(loc string) error {
	if filepath.IsAbs(loc) || strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, `\`) {
		return fmt.Errorf("has external data location %q, an absolute path; ONNX requires a path relative to the model's folder", loc)
	}
	if strings.ContainsRune(loc, 0) {
		return fmt.Errorf("has external data location %q containing a NUL byte", loc)
	}
	if !filepath.IsLocal(loc) {
		return fmt.Errorf("has external data location %q, which leaves the model's folder", loc)
	}
	return nil
}
