package render

// Shorthands that build value.Value trees in tests, and pyExpr, which
// writes the Python expression that builds the same object.

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"krait/internal/value"
)

func vNone() *value.Value { return &value.Value{Kind: value.None, Type: "NoneType"} }

func vBool(b bool) *value.Value { return &value.Value{Kind: value.Bool, Type: "bool", Bool: b} }

func vInt(n int64) *value.Value {
	return &value.Value{Kind: value.Int, Type: "int", Int: big.NewInt(n)}
}

func bigInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic("bad int " + s)
	}
	return n
}

func vBig(s string) *value.Value { return &value.Value{Kind: value.Int, Type: "int", Int: bigInt(s)} }

// vLong is a Python 2 long.
func vLong(s string) *value.Value {
	return &value.Value{Kind: value.Long, Type: "long", Int: bigInt(s), Py2: true}
}

func vFloat(f float64) *value.Value { return &value.Value{Kind: value.Float, Type: "float", Float: f} }

func vStr(s string) *value.Value { return vRunes([]rune(s)...) }

func vRunes(rs ...rune) *value.Value {
	return &value.Value{Kind: value.Str, Type: "str", Runes: rs, Len: len(rs)}
}

// vUni is a Python 2 unicode.
func vUni(rs ...rune) *value.Value {
	return &value.Value{Kind: value.Unicode, Type: "unicode", Runes: rs, Len: len(rs), Py2: true}
}

func vBytes(s string) *value.Value {
	return &value.Value{Kind: value.Bytes, Type: "bytes", Bytes: []byte(s), Len: len(s)}
}

// vPy2Str is a Python 2 str.
func vPy2Str(s string) *value.Value {
	return &value.Value{Kind: value.Bytes, Type: "str", Bytes: []byte(s), Len: len(s), Py2: true}
}

func vSeq(kind value.Kind, typ string, items []*value.Value) *value.Value {
	return &value.Value{Kind: kind, Type: typ, Items: items, Len: len(items)}
}

func vList(items ...*value.Value) *value.Value  { return vSeq(value.List, "list", items) }
func vTuple(items ...*value.Value) *value.Value { return vSeq(value.Tuple, "tuple", items) }
func vSet(items ...*value.Value) *value.Value   { return vSeq(value.Set, "set", items) }
func vFrozen(items ...*value.Value) *value.Value {
	return vSeq(value.FrozenSet, "frozenset", items)
}

// vDict takes keys and values alternately.
func vDict(kv ...*value.Value) *value.Value {
	d := &value.Value{Kind: value.Dict, Type: "dict"}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Pairs = append(d.Pairs, value.Pair{Key: kv[i], Value: kv[i+1]})
	}
	d.Len = len(d.Pairs)
	return d
}

func vObj(module, typ string, addr uint64, attrs ...value.Attr) *value.Value {
	return &value.Value{Kind: value.Object, Module: module, Type: typ, Addr: addr, Attrs: attrs}
}

func vRec(typ string) *value.Value { return &value.Value{Kind: value.Recursive, Type: typ} }

// typed sets v's Type (for subclasses).
func typed(typ string, v *value.Value) *value.Value {
	v.Type = typ
	return v
}

// truncated marks v as a prefix of something of length n.
func truncated(n int, v *value.Value) *value.Value {
	v.Truncated = true
	v.Len = n
	return v
}

// py2 marks every value of the tree as read from Python 2.
func py2(v *value.Value) *value.Value {
	if v == nil {
		return v
	}
	v.Py2 = true
	if v.Kind == value.Bytes && v.Type == "bytes" {
		v.Type = "str"
	}
	for _, it := range v.Items {
		py2(it)
	}
	for _, p := range v.Pairs {
		py2(p.Key)
		py2(p.Value)
	}
	for _, a := range v.Attrs {
		py2(a.Value)
	}
	return v
}

func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "float('nan')"
	case math.IsInf(f, 1):
		return "float('inf')"
	case math.IsInf(f, -1):
		return "float('-inf')"
	}
	return "float.fromhex('" + strconv.FormatFloat(f, 'x', -1, 64) + "')"
}

// pyExpr returns a Python expression that builds the object v stands for,
// for the interpreter family v was marked for (Py2 or not), or false when
// v has no Python counterpart (unreadable, truncated, recursive).
func pyExpr(v *value.Value) (string, bool) {
	if v == nil || v.Truncated {
		return "", false
	}
	list := func(items []*value.Value) (string, bool) {
		parts := make([]string, len(items))
		for i, it := range items {
			e, ok := pyExpr(it)
			if !ok {
				return "", false
			}
			parts[i] = e
		}
		return strings.Join(parts, ", "), true
	}
	switch v.Kind {
	case value.None:
		return "None", true
	case value.Bool:
		if v.Bool {
			return "True", true
		}
		return "False", true
	case value.Int, value.Long:
		if v.Int == nil {
			return "", false
		}
		if v.Kind == value.Long {
			return "long(" + v.Int.String() + ")", true
		}
		return v.Int.String(), true
	case value.Float:
		return pyFloat(v.Float), true
	case value.Str, value.Unicode:
		for _, r := range v.Runes {
			if r < 0 || r > 0x10ffff {
				return "", false
			}
		}
		if v.Kind == value.Unicode {
			return pyStrLiteral("u", v.Runes), true
		}
		return pyStrLiteral("", v.Runes), true
	case value.Bytes:
		rs := make([]rune, len(v.Bytes))
		for i, c := range v.Bytes {
			rs[i] = rune(c)
		}
		return pyStrLiteral("b", rs), true
	case value.List:
		s, ok := list(v.Items)
		return "[" + s + "]", ok
	case value.Tuple:
		s, ok := list(v.Items)
		if len(v.Items) == 1 {
			s += ","
		}
		return "(" + s + ")", ok
	case value.Set, value.FrozenSet:
		s, ok := list(v.Items)
		return TypeName(v) + "([" + s + "])", ok
	case value.Dict:
		parts := make([]string, len(v.Pairs))
		for i, p := range v.Pairs {
			k, ok1 := pyExpr(p.Key)
			x, ok2 := pyExpr(p.Value)
			if !ok1 || !ok2 {
				return "", false
			}
			parts[i] = k + ": " + x
		}
		return "{" + strings.Join(parts, ", ") + "}", true
	case value.Object:
		module := v.Module
		if module == "" {
			module = "builtins"
			if v.Py2 {
				module = "__builtin__"
			}
		}
		if v.OldStyle {
			return fmt.Sprintf("oldobj(%q, %q, 0x%x)", v.Type, module, v.Addr), true
		}
		return fmt.Sprintf("obj(%q, %q, 0x%x)", v.Type, module, v.Addr), true
	}
	return "", false
}
