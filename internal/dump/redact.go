package dump

import (
	"regexp"
	"strings"

	"krait/internal/value"
)

// krait's own code in a target: the agent (<krait-agent>), its loader
// (<krait-loader>) and the PEP 768 bootstrap in the agent's directory.
var kraitCode = regexp.MustCompile(`^(<krait-agent>|<krait-loader>|/tmp/krait-[0-9a-f]{16}/.*)$`)

// IsKraitFrame says whether a frame of file runs krait's own code.
func IsKraitFrame(file string) bool { return kraitCode.MatchString(file) }

// secretHex is what a session token looks like (32 hex digits), alone or
// inside the agent's configuration or a request.
var secretHex = regexp.MustCompile(`(?i)[0-9a-f]{32}`)

// Redacted is how a value that holds a session's token is shown.
const Redacted = "<redacted>"

// redact returns v with every value that could hold a session's token
// shown as <redacted>: a str or bytes with 32 hex digits in it or the word
// "token" (so a value cut short is caught too), and any dict entry or
// attribute named token. It is for the values of krait's own frames, whose
// token anyone who can read the dump would otherwise see. v itself is never
// changed (values are shared): what needs redacting is copied.
func redact(v *value.Value) *value.Value {
	return redactDepth(v, 0)
}

func redactDepth(v *value.Value, depth int) *value.Value {
	if v == nil || depth > 64 {
		return v
	}
	switch v.Kind {
	case value.Str, value.Unicode:
		if secret(string(v.Runes)) {
			return hidden(v)
		}
	case value.Bytes:
		if secret(string(v.Bytes)) {
			return hidden(v)
		}
	case value.List, value.Tuple, value.Set, value.FrozenSet:
		var items []*value.Value
		for i, it := range v.Items {
			r := redactDepth(it, depth+1)
			if r != it && items == nil {
				items = append([]*value.Value{}, v.Items...)
			}
			if items != nil {
				items[i] = r
			}
		}
		if items != nil {
			c := *v
			c.Items = items
			return &c
		}
	case value.Dict:
		var pairs []value.Pair
		for i, p := range v.Pairs {
			r := redactDepth(p.Value, depth+1)
			if isTokenName(p.Key) {
				r = hidden(p.Value)
			}
			k := p.Key
			if !isTokenName(k) {
				k = redactDepth(k, depth+1)
			}
			if (r != p.Value || k != p.Key) && pairs == nil {
				pairs = append([]value.Pair{}, v.Pairs...)
			}
			if pairs != nil {
				pairs[i] = value.Pair{Key: k, Value: r}
			}
		}
		if pairs != nil {
			c := *v
			c.Pairs = pairs
			return &c
		}
	case value.Object:
		var attrs []value.Attr
		for i, a := range v.Attrs {
			r := redactDepth(a.Value, depth+1)
			if strings.EqualFold(a.Name, "token") {
				r = hidden(a.Value)
			}
			if r != a.Value && attrs == nil {
				attrs = append([]value.Attr{}, v.Attrs...)
			}
			if attrs != nil {
				attrs[i] = value.Attr{Name: a.Name, Value: r}
			}
		}
		if attrs != nil {
			c := *v
			c.Attrs = attrs
			return &c
		}
	}
	return v
}

func secret(s string) bool {
	return secretHex.MatchString(s) || strings.Contains(strings.ToLower(s), "token")
}

// isTokenName says whether a dict key is the name "token".
func isTokenName(k *value.Value) bool {
	if k == nil {
		return false
	}
	switch k.Kind {
	case value.Str, value.Unicode:
		return strings.EqualFold(string(k.Runes), "token")
	case value.Bytes:
		return strings.EqualFold(string(k.Bytes), "token")
	}
	return false
}

// hidden stands for v, a value not to be shown.
func hidden(v *value.Value) *value.Value {
	typ := "str"
	if v != nil {
		switch {
		case v.Type != "":
			typ = v.Type
		case v.Kind == value.Bytes:
			typ = "bytes"
		}
	}
	return &value.Value{Kind: value.Object, Type: typ, Summary: Redacted}
}
