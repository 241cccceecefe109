// Package version says which srq wrote a model or a report: the release
// number, and the VCS revision the binary was built from when Go recorded
// it (go build in a git checkout does).
package version

import (
	"runtime/debug"
	"sync"
)

// Release is srq's version number.
const Release = "0.4.0"

var (
	once sync.Once
	full string
)

// String returns "srq 0.4.0", with " (rev 0123456789ab, modified)" when the
// build recorded its git revision (and uncommitted changes).
func String() string { return "srq " + Number() }

// Number returns String without the leading "srq ": "0.4.0 (rev
// 0123456789ab)", what a model's producer_version holds next to
// producer_name "srq".
func Number() string {
	once.Do(func() {
		full = Release
		info, ok := debug.ReadBuildInfo()
		if !ok {
			return
		}
		var rev, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
		if rev != "" {
			full += " (rev " + rev[:min(12, len(rev))] + modified + ")"
		}
	})
	return full
}
