package quant

import "github.com/srquant/srq/gtune"

// SetGradOptions makes gradient tuning run with edit applied to its
// options, until the returned function restores the defaults.
func SetGradOptions(edit func(*gtune.Options)) (restore func()) {
	old := gradOptionsHook
	gradOptionsHook = edit
	return func() { gradOptionsHook = old }
}
