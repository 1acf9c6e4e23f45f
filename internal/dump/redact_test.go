package dump

import (
	"strings"
	"testing"

	"krait/internal/render"
	"krait/internal/value"
)

func str(s string) *value.Value { return &value.Value{Kind: value.Str, Runes: []rune(s), Len: len(s)} }

// TestRedact: in krait's own frames, every value that holds a token (or
// could: cut short, or named token) shows as <redacted>; other values,
// and the values redacted copies were made from, are unchanged.
func TestRedact(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef"
	cfg := str(`{"dir": "/tmp/krait-0123456789abcdef", "token": "` + tok + `", "trace": null}`)
	plain := str("/tmp/krait-0123456789abcdef")
	agent := &value.Value{Kind: value.Object, Type: "Agent", Module: "__krait_agent__", Addr: 0x1000, Attrs: []value.Attr{
		{Name: "dir", Value: plain},
		{Name: "token", Value: str(tok)},
		{Name: "cfg", Value: &value.Value{Kind: value.Dict, Pairs: []value.Pair{
			{Key: str("token"), Value: str("cut short: 0123")},
			{Key: str("dir"), Value: plain},
		}}},
		{Name: "buf", Value: &value.Value{Kind: value.Bytes, Bytes: []byte(`{"id": 1, "cmd": "hello", "token": "` + tok[:10])}},
		{Name: "calls", Value: &value.Value{Kind: value.List, Items: []*value.Value{str("x"), str(tok)}}},
	}}
	for _, c := range []struct {
		name string
		v    *value.Value
		want string
	}{
		{"the configuration string", cfg, "<redacted>"},
		{"a plain string", plain, `'/tmp/krait-0123456789abcdef'`},
		{"a short hex string", str("deadbeef"), `'deadbeef'`},
	} {
		if got := render.Repr(redact(c.v), render.Options{}); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	if redact(plain) != plain {
		t.Error("a value with nothing to hide was copied")
	}
	j := render.ToJSON(redact(agent), render.Options{ShowSecrets: true}) // the token is hidden even then
	got := map[string]string{}
	for _, a := range j.Attributes {
		got[a.Name] = a.Value
	}
	want := map[string]string{
		"dir":   `'/tmp/krait-0123456789abcdef'`,
		"token": "<redacted>",
		"cfg":   `{'token': <redacted>, 'dir': '/tmp/krait-0123456789abcdef'}`,
		"buf":   "<redacted>",
		"calls": `['x', <redacted>]`,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("attribute %s: %s, want %s", k, got[k], w)
		}
	}
	if j.Attributes[1].Type != "str" || j.Attributes[3].Type != "bytes" {
		t.Errorf("redacted values keep their type: %s, %s", j.Attributes[1].Type, j.Attributes[3].Type)
	}
	// The original tree is untouched (values are shared between frames).
	if orig := render.ToJSON(agent, render.Options{ShowSecrets: true}); !strings.Contains(orig.Attributes[1].Value, tok) {
		t.Errorf("redact changed the value it was given: %s", orig.Attributes[1].Value)
	}
	for _, f := range []struct {
		file string
		mine bool
	}{{"<krait-agent>", true}, {"<krait-loader>", true}, {"/tmp/krait-0123456789abcdef/bootstrap.py", true},
		{"<string>", false}, {"/srv/app/krait-agent.py", false}, {"/tmp/krait-e2e-1/x.py", false}} {
		if IsKraitFrame(f.file) != f.mine {
			t.Errorf("IsKraitFrame(%q) = %v", f.file, !f.mine)
		}
	}
}
