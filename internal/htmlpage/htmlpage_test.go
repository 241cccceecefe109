package htmlpage

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const body = `{{define "title"}}t: {{.Name}}{{end}}{{define "body"}}<p>{{.Name}}</p><img {{src .PNG}} alt="{{.Name}}">{{end}}`

func TestRender(t *testing.T) {
	tmpl, err := New("test", body, nil)
	require.NoError(t, err)
	png := []byte{0x89, 'P', 'N', 'G', 0xfb, 0xff} // base64 with '+' and '/'
	page, err := Render(tmpl, map[string]any{"Name": `<b>"x"</b>`, "PNG": png})
	require.NoError(t, err)
	s := string(page)
	assert.Contains(t, s, `src="data:image/png;base64,`+base64.StdEncoding.EncodeToString(png)+`"`, "the data URI unescaped")
	assert.Contains(t, s, "<title>t: &lt;b&gt;&#34;x&#34;&lt;/b&gt;</title>")
	assert.Contains(t, s, "<p>&lt;b&gt;&#34;x&#34;&lt;/b&gt;</p>")
	assert.Contains(t, s, `<body data-images="pending">`)
	assert.Contains(t, s, "Content-Security-Policy")
	assert.Equal(t, 1, strings.Count(s, "<script>"))

	_, err = New("broken", `{{define "body"}}{{.X`, nil)
	assert.ErrorContains(t, err, "page broken")
	noBody, err := New("nobody", `{{define "title"}}x{{end}}`, nil)
	require.NoError(t, err)
	_, err = Render(noBody, nil)
	assert.ErrorContains(t, err, "page nobody")
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	p, err := Write(dir, []byte("<p>one</p>"))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, Index), p)
	p, err = Write(dir, []byte("<p>two</p>"))
	require.NoError(t, err)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "<p>two</p>", string(b), "replaced")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left")

	_, err = Write(p, []byte("x"))
	assert.ErrorContains(t, err, "not a folder")
}
