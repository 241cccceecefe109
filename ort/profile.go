package ort

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// NodeTime is the time ORT's profiler measured in one node over all profiled
// runs.
type NodeTime struct {
	Node    string  `json:"node"`
	Op      string  `json:"op"`
	Calls   int     `json:"calls"`
	TotalUS float64 `json:"total_us"`
	// SteadyUS is the mean time of one call after the first (which
	// allocates and fills caches): what a node costs in a session that
	// keeps running. Not the median: on a machine other jobs share, a
	// short kernel is interrupted less often than a long one, so medians
	// favour models of many short kernels (an int8 IMDN's node medians
	// summed to 114 ms of its 220 ms runs, its FP32 model's to 442 of
	// 555), while means keep every kernel's share of the run.
	SteadyUS float64 `json:"steady_us"`
}

// profileEvent is one entry of ORT's profile (Chrome trace format).
type profileEvent struct {
	Cat  string  `json:"cat"`
	Name string  `json:"name"`
	Dur  float64 `json:"dur"` // microseconds
	Args struct {
		OpName string `json:"op_name"`
	} `json:"args"`
}

// ParseProfile reads the JSON profile ORT wrote for a session with
// Options.ProfilePrefix and returns the kernel time of every node, largest
// first. Session setup events are left out.
func ParseProfile(path string) ([]NodeTime, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ORT profile: %w", err)
	}
	var events []profileEvent
	if err := json.Unmarshal(b, &events); err != nil {
		return nil, fmt.Errorf("ORT profile %s: %w", path, err)
	}
	byNode := map[string]*NodeTime{}
	durs := map[string][]float64{}
	for _, e := range events {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") {
			continue
		}
		name := strings.TrimSuffix(e.Name, "_kernel_time")
		nt, ok := byNode[name]
		if !ok {
			nt = &NodeTime{Node: name, Op: e.Args.OpName}
			byNode[name] = nt
		}
		nt.Calls++
		nt.TotalUS += e.Dur
		durs[name] = append(durs[name], e.Dur)
	}
	out := make([]NodeTime, 0, len(byNode))
	for name, nt := range byNode {
		d := durs[name]
		nt.SteadyUS = d[0]
		if len(d) > 1 {
			var s float64
			for _, v := range d[1:] {
				s += v
			}
			nt.SteadyUS = s / float64(len(d)-1)
		}
		out = append(out, *nt)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].TotalUS != out[j].TotalUS {
			return out[i].TotalUS > out[j].TotalUS
		}
		return out[i].Node < out[j].Node
	})
	return out, nil
}
