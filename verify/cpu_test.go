package verify

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseCPUInfo(t *testing.T) {
	tests := []struct {
		name, in string
		want     CPU
	}{
		{"two processors, first wins", `processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse2 avx2 avx512f avx512_vnni amx_int8 amx_tile

processor	: 1
model name	: something else
flags		: fpu
`, CPU{Model: "Intel(R) Xeon(R) Platinum 8480+", Flags: []string{"avx2", "avx512f", "avx512_vnni", "amx_int8"}}},
		{"AVX-VNNI client core", "model name : 12th Gen Intel(R) Core(TM) i7-1260P\nflags : avx avx2 avx_vnni\n",
			CPU{Model: "12th Gen Intel(R) Core(TM) i7-1260P", Flags: []string{"avx2", "avx_vnni"}}},
		{"ARM has neither", "processor : 0\nFeatures : fp asimd\nCPU part : 0xd0c\n", CPU{Flags: []string{}}},
		{"empty", "", CPU{Flags: []string{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, parseCPUInfo(strings.NewReader(tc.in)))
		})
	}
}

func TestHostCPUNeverNil(t *testing.T) {
	c := HostCPU()
	assert.NotNil(t, c.Flags, "flags must marshal as [] not null")
}
