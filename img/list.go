package img

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// List returns the .png, .jpg, .jpeg, .bmp and .webp files (any letter case)
// directly inside dir, sorted by name; sub-folders and dangling links are
// skipped. A folder without images is an error: calibrating or verifying on
// nothing would silently produce a useless model or pass any gate.
func List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read folder %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries { // ReadDir sorts by name
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".png", ".jpg", ".jpeg", ".bmp", ".webp":
		default:
			continue
		}
		p := filepath.Join(dir, e.Name())
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no .png/.jpg/.jpeg/.bmp/.webp files in folder %s", dir)
	}
	return out, nil
}
