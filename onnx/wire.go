package onnx

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// describeParseError explains why proto.Unmarshal rejected data. protobuf's
// own errors ("cannot parse invalid wire-format data", "string field
// contains invalid UTF-8") name neither the field nor the offset, so the wire
// format is walked again, with the schema, to find the first problem.
func describeParseError(data []byte, err error) error {
	md := (&ModelProto{}).ProtoReflect().Descriptor()
	if p := wireProblem(data, md, "", 0, 0); p != "" {
		return errors.New(p)
	}
	// Not located (should not happen); fall back to protobuf's words
	// without its "proto:" prefix.
	msg := err.Error()
	for _, sp := range []string{"proto: ", "proto:\u00a0"} {
		msg = strings.TrimPrefix(msg, sp)
	}
	return fmt.Errorf("not a valid ONNX model (corrupt protobuf: %s)", msg)
}

// wireProblem walks b as an encoded md message and describes the first
// thing protobuf cannot decode: a bad tag, a field running past the end of
// its enclosing message (a truncated file), a packed array of the wrong
// length, or a string that is not UTF-8. path names the message ("" for the
// model), base is b's offset in the file. It returns "" when b decodes.
func wireProblem(b []byte, md protoreflect.MessageDescriptor, path string, base, depth int) string {
	if depth > protowire.DefaultRecursionLimit {
		return fmt.Sprintf("corrupt: %s nests messages more than %d deep", orModel(path), protowire.DefaultRecursionLimit)
	}
	counts := map[protowire.Number]int{}
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return fmt.Sprintf("truncated or corrupt: bad field tag at byte %d in %s: %v", base+off, orModel(path), protowire.ParseError(n))
		}
		fd := md.Fields().ByNumber(num)
		name := fieldPath(path, fd, num, counts)
		off += n
		if typ != protowire.BytesType {
			vn := protowire.ConsumeFieldValue(num, typ, b[off:])
			if vn < 0 {
				return fmt.Sprintf("truncated or corrupt: %s at byte %d: %v", name, base+off, protowire.ParseError(vn))
			}
			off += vn
			continue
		}
		l, ln := protowire.ConsumeVarint(b[off:])
		if ln < 0 {
			return fmt.Sprintf("truncated or corrupt: length of %s at byte %d: %v", name, base+off, protowire.ParseError(ln))
		}
		off += ln
		body := b[off:]
		if l > uint64(len(body)) {
			// Dig into what is left of a truncated message to name the
			// innermost field that was cut.
			if fd != nil && fd.Message() != nil {
				if p := wireProblem(body, fd.Message(), name, base+off, depth+1); p != "" {
					return p
				}
			}
			return fmt.Sprintf("truncated or corrupt: %s at byte %d declares %d bytes but only %d remain", name, base+off, l, len(body))
		}
		body = body[:l]
		if fd != nil {
			if p := checkLengthDelimited(body, fd, name, base+off, depth); p != "" {
				return p
			}
		}
		off += int(l)
	}
	return ""
}

// checkLengthDelimited checks the payload of one length-delimited field.
func checkLengthDelimited(body []byte, fd protoreflect.FieldDescriptor, name string, at, depth int) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return wireProblem(body, fd.Message(), name, at, depth+1)
	case protoreflect.StringKind:
		if !utf8.Valid(body) {
			return fmt.Sprintf("invalid UTF-8 in string %s at byte %d (ONNX strings must be UTF-8)", name, at)
		}
	case protoreflect.BytesKind:
	default: // a packed repeated scalar
		if !fd.IsList() {
			return "" // wrong wire type: protobuf keeps it as an unknown field
		}
		size := 0
		switch fd.Kind() {
		case protoreflect.FloatKind, protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
			size = 4
		case protoreflect.DoubleKind, protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
			size = 8
		}
		if size > 0 {
			if len(body)%size != 0 {
				return fmt.Sprintf("corrupt: packed %s at byte %d has %d bytes, not a multiple of %d", name, at, len(body), size)
			}
			return ""
		}
		for off := 0; off < len(body); {
			_, n := protowire.ConsumeVarint(body[off:])
			if n < 0 {
				return fmt.Sprintf("corrupt: packed %s at byte %d: %v", name, at+off, protowire.ParseError(n))
			}
			off += n
		}
	}
	return ""
}

// fieldPath is "graph.node[3].name": the field name, with the index of this
// occurrence for repeated fields, or "field 17" for numbers the schema
// does not know.
func fieldPath(parent string, fd protoreflect.FieldDescriptor, num protowire.Number, counts map[protowire.Number]int) string {
	var name string
	switch {
	case fd == nil:
		name = fmt.Sprintf("(unknown field %d)", num)
	case fd.IsList():
		name = fmt.Sprintf("%s[%d]", fd.Name(), counts[num])
		counts[num]++
	default:
		name = string(fd.Name())
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func orModel(path string) string {
	if path == "" {
		return "the model"
	}
	return path
}

// findInvalidUTF8 returns the path of the first string field of m that is
// not valid UTF-8 (which proto3 refuses to marshal), or "".
func findInvalidUTF8(m protoreflect.Message, path string) string {
	var found string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		if path != "" {
			name = path + "." + name
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && found == ""; i++ {
				found = checkValueUTF8(fd, l.Get(i), fmt.Sprintf("%s[%d]", name, i))
			}
		case fd.IsMap():
			// ONNX has no map fields.
		default:
			found = checkValueUTF8(fd, v, name)
		}
		return found == ""
	})
	return found
}

func checkValueUTF8(fd protoreflect.FieldDescriptor, v protoreflect.Value, name string) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			return name
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return findInvalidUTF8(v.Message(), name)
	}
	return ""
}
