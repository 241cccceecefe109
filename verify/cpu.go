package verify

import (
	"bufio"
	"io"
	"os"
	"strings"
)

// CPU identifies the processor a latency was measured on. Int8 speed-ups
// depend on it more than on anything srq does: VNNI (AVX512-VNNI or
// AVX-VNNI) and AMX run u8×s8 dot products in one instruction, plain AVX2
// needs three.
type CPU struct {
	Model string `json:"model"`
	// Flags lists which of InterestingFlags the CPU has, in that order.
	Flags []string `json:"flags"`
}

// InterestingFlags are the /proc/cpuinfo flags that decide how fast ORT's
// int8 (and float) kernels can be.
var InterestingFlags = []string{"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}

// HostCPU reads /proc/cpuinfo; where it is missing (not Linux) the model is
// empty and no flags are listed.
func HostCPU() CPU {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return CPU{Flags: []string{}}
	}
	defer f.Close()
	return parseCPUInfo(f)
}

// parseCPUInfo reads the first processor's "model name" and "flags" lines.
func parseCPUInfo(r io.Reader) CPU {
	c := CPU{Flags: []string{}}
	var flags map[string]bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20) // flags lines are long
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch {
		case key == "model name" && c.Model == "":
			c.Model = val
		case key == "flags" && flags == nil:
			flags = map[string]bool{}
			for _, f := range strings.Fields(val) {
				flags[f] = true
			}
		}
		if c.Model != "" && flags != nil {
			break
		}
	}
	for _, f := range InterestingFlags {
		if flags[f] {
			c.Flags = append(c.Flags, f)
		}
	}
	return c
}

// String is the model and its int8-relevant flags, for tables and messages:
// "AMD EPYC (avx2 avx512f avx512_vnni)".
func (c CPU) String() string {
	m := c.Model
	if m == "" {
		m = "unknown CPU"
	}
	if len(c.Flags) == 0 {
		return m + " (no VNNI or AMX flags)"
	}
	return m + " (" + strings.Join(c.Flags, " ") + ")"
}
