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
	// MedianUS is the median time of one call: on a shared machine a
	// node's total is dominated by the runs another job interrupted, its
	// median much less so.
	MedianUS float64 `json:"median_us"`
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
		sort.Float64s(d)
		nt.MedianUS = d[len(d)/2]
		if len(d)%2 == 0 {
			nt.MedianUS = (d[len(d)/2-1] + d[len(d)/2]) / 2
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
