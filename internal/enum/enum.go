// Package enum parses srq's string-typed settings (a flag's method,
// encoding, policy, ...): one check and one error wording for all of them.
package enum

import (
	"fmt"
	"slices"
	"strings"
)

// Parse returns s as a T when it is one of allowed, else an error that
// names the setting and the allowed values: `method "x": want a, b or c`.
func Parse[T ~string](what, s string, allowed ...T) (T, error) {
	if slices.Contains(allowed, T(s)) {
		return T(s), nil
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	list := names[len(names)-1]
	if len(names) > 1 {
		list = strings.Join(names[:len(names)-1], ", ") + " or " + list
	}
	return "", fmt.Errorf("%s %q: want %s", what, s, list)
}
