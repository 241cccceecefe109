package onnx

import (
	"errors"
	"fmt"
	"strconv"
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
	var path wirePath
	if p := path.problem(data, md, 0); p != "" {
		return errors.New(p)
	}
	// Not located (should not happen); fall back to protobuf's words.
	return fmt.Errorf("not a valid ONNX model (corrupt protobuf: %s)", trimProtoPrefix(err.Error()))
}

// wirePath is the stack of fields ("graph", "node[3]", "name") leading to
// the message being walked. It is joined only when a problem is reported,
// so deep nesting costs no more than the walk itself.
type wirePath []string

func (p wirePath) String() string {
	if len(p) == 0 {
		return "the model"
	}
	return strings.Join(p, ".")
}

// problem walks b as an encoded md message and describes the first thing
// protobuf cannot decode: a bad tag, a field running past the end of its
// enclosing message (a truncated file), a packed array of the wrong length,
// or a string that is not UTF-8. base is b's offset in the file. It returns
// "" when b decodes.
func (p *wirePath) problem(b []byte, md protoreflect.MessageDescriptor, base int) string {
	if len(*p) > protowire.DefaultRecursionLimit {
		return fmt.Sprintf("corrupt: messages nest more than %d levels deep at byte %d", protowire.DefaultRecursionLimit, base)
	}
	counts := map[protowire.Number]int{}
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return fmt.Sprintf("truncated or corrupt: bad field tag at byte %d in %s: %s", base+off, p, wireError(n))
		}
		if !num.IsValid() {
			return fmt.Sprintf("truncated or corrupt: bad field tag at byte %d in %s: field number %d out of range", base+off, p, num)
		}
		fd := md.Fields().ByNumber(num)
		*p = append(*p, fieldName(fd, num, counts))
		off += n
		if msg := p.field(b, &off, fd, typ, num, base); msg != "" {
			return msg
		}
		*p = (*p)[:len(*p)-1]
	}
	return ""
}

// field checks the value of one field (its name already on the path)
// starting at b[*off], and advances *off past it.
func (p *wirePath) field(b []byte, off *int, fd protoreflect.FieldDescriptor, typ protowire.Type, num protowire.Number, base int) string {
	if typ != protowire.BytesType {
		vn := protowire.ConsumeFieldValue(num, typ, b[*off:])
		if vn < 0 {
			return fmt.Sprintf("truncated or corrupt: %s at byte %d: %s", p, base+*off, wireError(vn))
		}
		*off += vn
		return ""
	}
	l, ln := protowire.ConsumeVarint(b[*off:])
	if ln < 0 {
		return fmt.Sprintf("truncated or corrupt: length of %s at byte %d: %s", p, base+*off, wireError(ln))
	}
	*off += ln
	at := base + *off
	body := b[*off:]
	if l > uint64(len(body)) {
		// Dig into what is left of a truncated message to name the
		// innermost field that was cut.
		if fd != nil && fd.Message() != nil {
			if msg := p.problem(body, fd.Message(), at); msg != "" {
				return msg
			}
		}
		return fmt.Sprintf("truncated or corrupt: %s at byte %d declares %d bytes but only %d remain", p, at, l, len(body))
	}
	body = body[:l]
	*off += int(l)
	if fd == nil {
		return ""
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return p.problem(body, fd.Message(), at)
	case protoreflect.StringKind:
		if !utf8.Valid(body) {
			return fmt.Sprintf("invalid UTF-8 in string %s at byte %d (ONNX strings must be UTF-8)", p, at)
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
				return fmt.Sprintf("corrupt: packed %s at byte %d has %d bytes, not a multiple of %d", p, at, len(body), size)
			}
			return ""
		}
		for o := 0; o < len(body); {
			_, n := protowire.ConsumeVarint(body[o:])
			if n < 0 {
				return fmt.Sprintf("corrupt: packed %s at byte %d: %s", p, at+o, wireError(n))
			}
			o += n
		}
	}
	return ""
}

// fieldName is "name", "node[3]" (with the index of this occurrence for
// repeated fields) or "(unknown field 17)" for numbers the schema lacks.
func fieldName(fd protoreflect.FieldDescriptor, num protowire.Number, counts map[protowire.Number]int) string {
	switch {
	case fd == nil:
		return fmt.Sprintf("(unknown field %d)", num)
	case fd.IsList():
		i := counts[num]
		counts[num]++
		return string(fd.Name()) + "[" + strconv.Itoa(i) + "]"
	}
	return string(fd.Name())
}

// wireError is protowire's description of a negative Consume result,
// without its "proto:" prefix.
func wireError(n int) string {
	return trimProtoPrefix(protowire.ParseError(n).Error())
}

// trimProtoPrefix drops the "proto: " prefix of protobuf's errors (spelt
// with a regular or a non-breaking space, at random, on purpose).
func trimProtoPrefix(msg string) string {
	for _, p := range []string{"proto: ", "proto:\u00a0"} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
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
