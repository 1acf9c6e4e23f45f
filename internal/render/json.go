package render

import (
	"strconv"

	"krait/internal/secrets"
	"krait/internal/value"
)

// JSONValue is a Value prepared for encoding/json.
type JSONValue struct {
	// Type is TypeName(v).
	Type string `json:"type"`
	// Value is Repr(v, opt).
	Value string `json:"value"`
	// Address is the object's address in the target as "0x…" (lowercase
	// hex), absent when unknown.
	Address string `json:"address,omitempty"`
	// Truncated is set when only part of the contents was read.
	Truncated bool `json:"truncated,omitempty"`
	// Error is why the value, or part of it, could not be read.
	Error string `json:"error,omitempty"`
	// Length is the true number of items, pairs, characters or bytes of a
	// container, str or bytes: Value.Len, or what was read when that is
	// more (absent when zero).
	Length int `json:"length,omitempty"`
	// Attributes are an Object's instance attributes, each rendered the
	// same way (nested objects carry their own attributes).
	Attributes []JSONAttr `json:"attributes,omitempty"`
}

// JSONAttr is one instance attribute: its name, then the attribute's value
// as a JSONValue (type, value, address, …, attributes).
type JSONAttr struct {
	Name string `json:"name"`
	JSONValue
}

// ToJSON renders v and, for Objects, its attributes recursively. Each repr
// is cut to opt.MaxWidth on its own.
func ToJSON(v *value.Value, opt Options) JSONValue {
	return toJSON(v, opt, map[*value.Value]bool{})
}

// NamedJSON is ToJSON for a value held under a name (a local variable, an
// attribute): a name that looks secret gives <redacted> and nothing of the
// value but its type, unless opt.ShowSecrets. path may be nil.
func NamedJSON(name string, v *value.Value, opt Options, path map[*value.Value]bool) JSONValue {
	if !opt.ShowSecrets && secrets.IsSecret(name) {
		return JSONValue{Type: TypeName(v), Value: secrets.Redacted}
	}
	if path == nil {
		path = map[*value.Value]bool{}
	}
	return toJSON(v, opt, path)
}

func toJSON(v *value.Value, opt Options, path map[*value.Value]bool) JSONValue {
	j := JSONValue{Type: TypeName(v), Value: Repr(v, opt)}
	if v == nil {
		j.Error = "missing value"
		return j
	}
	if v.Addr != 0 {
		j.Address = "0x" + strconv.FormatUint(v.Addr, 16)
	}
	j.Truncated = v.Truncated
	j.Error = v.Err
	j.Length = v.Len
	switch v.Kind {
	case value.Str, value.Unicode:
		j.Length = max(j.Length, len(v.Runes))
	case value.Bytes:
		j.Length = max(j.Length, len(v.Bytes))
	case value.List, value.Tuple, value.Set, value.FrozenSet:
		j.Length = max(j.Length, len(v.Items))
	case value.Dict:
		j.Length = max(j.Length, len(v.Pairs))
	case value.Object:
		if path[v] {
			// A Go-level cycle: the attributes are already being shown.
			break
		}
		path[v] = true
		for _, a := range v.Attrs {
			j.Attributes = append(j.Attributes, JSONAttr{
				Name:      a.Name,
				JSONValue: NamedJSON(a.Name, a.Value, opt, path),
			})
		}
		delete(path, v)
	}
	return j
}
