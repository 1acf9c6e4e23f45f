package render

import (
	"math/big"
	"strings"
	"testing"

	"krait/internal/value"
)

func s(x string) *value.Value { return &value.Value{Kind: value.Str, Runes: []rune(x), Len: len(x)} }

// TestRedact: values under secret-looking dict keys (str or bytes), the
// second item of a ('Cookie', …) pair and secret-looking attributes and
// names render as <redacted>, unless ShowSecrets.
func TestRedact(t *testing.T) {
	dict := &value.Value{Kind: value.Dict, Len: 4, Pairs: []value.Pair{
		{Key: s("PASSWORD"), Value: s("hunter2")},
		{Key: s("user"), Value: s("bob")},
		{Key: &value.Value{Kind: value.Bytes, Bytes: []byte("SECRET_KEY"), Len: 10}, Value: s("sk")},
		{Key: s("HTTP_COOKIE"), Value: &value.Value{Kind: value.Int, Int: big.NewInt(7)}},
	}}
	want := `{'PASSWORD': <redacted>, 'user': 'bob', b'SECRET_KEY': <redacted>, 'HTTP_COOKIE': <redacted>}`
	if got := Repr(dict, Options{}); got != want {
		t.Errorf("Repr = %s, want %s", got, want)
	}
	if got := Repr(dict, Options{ShowSecrets: true}); strings.Contains(got, "redacted") || !strings.Contains(got, "hunter2") {
		t.Errorf("Repr with ShowSecrets = %s", got)
	}
	headers := &value.Value{Kind: value.List, Len: 2, Items: []*value.Value{
		{Kind: value.Tuple, Len: 2, Items: []*value.Value{s("Cookie"), s("sessionid=x")}},
		{Kind: value.Tuple, Len: 2, Items: []*value.Value{s("Host"), s("example.com")}},
	}}
	if got, want := Repr(headers, Options{}), `[('Cookie', <redacted>), ('Host', 'example.com')]`; got != want {
		t.Errorf("Repr = %s, want %s", got, want)
	}
	obj := &value.Value{Kind: value.Object, Type: "Settings", Module: "django.conf", Addr: 0x10, Attrs: []value.Attr{
		{Name: "SECRET_KEY", Value: s("sk")}, {Name: "DEBUG", Value: &value.Value{Kind: value.Bool}},
	}}
	j := ToJSON(obj, Options{})
	if j.Attributes[0].Value != "<redacted>" || j.Attributes[0].Type != "str" || j.Attributes[1].Value != "False" {
		t.Errorf("ToJSON attributes = %+v", j.Attributes)
	}
	if j := ToJSON(obj, Options{ShowSecrets: true}); j.Attributes[0].Value != "'sk'" {
		t.Errorf("ToJSON with ShowSecrets: SECRET_KEY = %s", j.Attributes[0].Value)
	}
	if j := NamedJSON("password", s("pw"), Options{}, nil); j.Value != "<redacted>" || j.Length != 0 {
		t.Errorf("NamedJSON(password) = %+v", j)
	}
	if j := NamedJSON("key", s("k"), Options{}, nil); j.Value != "'k'" {
		t.Errorf("NamedJSON(key) = %+v", j)
	}
}
