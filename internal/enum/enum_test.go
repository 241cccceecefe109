package enum

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type color string

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		s, allowed []string
		in, want   string
	}{
		{allowed: []string{"red", "green", "blue"}, in: "green", want: ""},
		{allowed: []string{"red", "green", "blue"}, in: "Green", want: `color "Green": want red, green or blue`},
		{allowed: []string{"red", "blue"}, in: "", want: `color "": want red or blue`},
		{allowed: []string{"red"}, in: "x", want: `color "x": want red`},
	} {
		allowed := make([]color, len(tc.allowed))
		for i, a := range tc.allowed {
			allowed[i] = color(a)
		}
		got, err := Parse("color", tc.in, allowed...)
		if tc.want == "" {
			require.NoError(t, err)
			assert.Equal(t, color(tc.in), got)
			continue
		}
		assert.EqualError(t, err, tc.want)
		assert.Empty(t, got)
	}
}
