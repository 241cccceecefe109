// Package htmlpage renders srq's HTML reports (srq verify --report, srq
// bench --report) as single self-contained files: CSS inline, every image a
// data: URI, no font, script or style fetched from anywhere — a
// Content-Security-Policy in the page forbids the browser to — so a report
// can be mailed, attached to a CI run or opened offline and shows the same.
// Pages are html/template templates, whose contextual escaping keeps names
// from a model (which can contain anything) inert. One small inline script
// records on <body data-images="loaded/total"> how many images the browser
// decoded, which a headless-browser test reads.
package htmlpage

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"os"
	"path/filepath"

	"github.com/srquant/srq/internal/atomicfile"
)

// Index is the file a report folder holds.
const Index = "index.html"

//go:embed layout.html
var layout string

// New parses a page: the shared layout (head, CSS, load check) around body,
// which must define the templates "title" (plain text) and "body". Every
// page has the function src (PNG bytes to a src="data:..." attribute, as in
// <img {{src .PNG}} alt="...">); funcs adds more.
func New(name, body string, funcs template.FuncMap) (*template.Template, error) {
	t := template.New(name).Funcs(template.FuncMap{"src": Src})
	if funcs != nil {
		t = t.Funcs(funcs)
	}
	if _, err := t.Parse(layout); err != nil {
		return nil, fmt.Errorf("page layout: %w", err)
	}
	if _, err := t.Parse(body); err != nil {
		return nil, fmt.Errorf("page %s: %w", name, err)
	}
	return t, nil
}

// Render executes the page t with data.
func Render(t *template.Template, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "page", data); err != nil {
		return nil, fmt.Errorf("page %s: %w", t.Name(), err)
	}
	return b.Bytes(), nil
}

// Src returns the attribute src="data:image/png;base64,..." for PNG bytes.
// html/template rewrites a data: URL given as a string to "#ZgotmplZ", and
// one given as template.URL has every '+' of its base64 written as "&#43;"
// (6% more bytes); this attribute is made here from bytes, and base64 holds
// no quote, so it is safe to mark as an attribute.
func Src(b []byte) template.HTMLAttr {
	return template.HTMLAttr(`src="data:image/png;base64,` + base64.StdEncoding.EncodeToString(b) + `"`)
}

// Write writes page into dir/index.html atomically (atomicfile), creating
// dir and its parents if missing, and returns the file's path. Errors name
// the path.
func Write(dir string, page []byte) (string, error) {
	if err := CheckDir(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("%s: %w", dir, err)
	}
	p := filepath.Join(dir, Index)
	if err := atomicfile.WriteBytes(p, page); err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return p, nil
}

// CheckDir says, before any work, whether Write can write a report into
// dir: dir is a folder, or does not exist and can be created
// (atomicfile.CheckDir); an index.html already there is a regular file (it
// is replaced). It creates nothing. Errors name dir.
func CheckDir(dir string) error {
	if dir == "" {
		return errors.New("report folder: empty path")
	}
	if err := atomicfile.CheckDir(dir); err != nil {
		return err
	}
	idx := filepath.Join(dir, Index)
	if fi, err := os.Stat(idx); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file; refusing to replace it", idx)
	}
	return nil
}
