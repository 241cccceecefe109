package ort

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestParseProfile reads a profile in ORT's Chrome trace format: kernel
// events only, per node the calls, the total and the mean of the calls
// after the first (warm-up).
func TestParseProfile(t *testing.T) {
	const trace = `[
 {"cat":"Session","name":"model_loading_uri","dur":900},
 {"cat":"Node","name":"conv_fence_before","dur":1},
 {"cat":"Node","name":"conv_kernel_time","dur":10,"args":{"op_name":"QLinearConv"}},
 {"cat":"Node","name":"conv_kernel_time","dur":12,"args":{"op_name":"QLinearConv"}},
 {"cat":"Node","name":"conv_kernel_time","dur":300,"args":{"op_name":"QLinearConv"}},
 {"cat":"Node","name":"add_kernel_time","dur":4,"args":{"op_name":"QLinearAdd"}},
 {"cat":"Node","name":"add_kernel_time","dur":6,"args":{"op_name":"QLinearAdd"}}
]`
	p := filepath.Join(t.TempDir(), "p.json")
	require.NoError(t, os.WriteFile(p, []byte(trace), 0o644))
	got, err := ParseProfile(p)
	require.NoError(t, err)
	assert.Equal(t, []NodeTime{
		{Node: "conv", Op: "QLinearConv", Calls: 3, TotalUS: 322, SteadyUS: 156},
		{Node: "add", Op: "QLinearAdd", Calls: 2, TotalUS: 10, SteadyUS: 6},
	}, got)
}
