// Package render turns a value.Value tree, as read from a target Python
// process, into the text CPython's own repr() would print for the same
// object, and into a JSON-friendly form. It never touches target memory.
//
// The reprs follow CPython 3 (object.c, unicodeobject.c, bytesobject.c,
// floatobject.c, listobject.c, tupleobject.c, dictobject.c, setobject.c)
// and, for values marked Py2, CPython 2.7. A few krait-only forms have no
// CPython counterpart: unreadable values, truncated contents and the
// MaxWidth cut.
package render

import (
	"strconv"
	"unicode/utf8"

	"krait/internal/secrets"
	"krait/internal/value"
)

// SecretKey says whether a dict key is a str (or bytes) whose text looks
// secret.
func SecretKey(k *value.Value) bool {
	if k == nil {
		return false
	}
	switch k.Kind {
	case value.Str, value.Unicode:
		return secrets.IsSecret(string(k.Runes))
	case value.Bytes:
		return secrets.IsSecret(string(k.Bytes))
	}
	return false
}

// Options controls rendering.
type Options struct {
	// MaxWidth is the largest number of runes a repr may take; a longer
	// one is cut so that it takes exactly MaxWidth runes, the last three
	// being "...". Zero or negative means unlimited.
	MaxWidth int
	// ShowSecrets shows the values of dict keys and attributes that look
	// secret (secrets.IsSecret); by default they render as <redacted>.
	ShowSecrets bool
}

// ellipsis ends a repr cut by Options.MaxWidth.
const ellipsis = "..."

// Repr returns v as CPython's repr() would print it, cut to opt.MaxWidth.
//
// A nil v renders as an unreadable value. A Go-level cycle in the tree
// (which the readers should have marked with value.Recursive) renders as
// the Recursive marker of the container met again.
func Repr(v *value.Value, opt Options) string {
	w := writer{max: opt.MaxWidth, redact: !opt.ShowSecrets}
	if w.max > 0 {
		// Stop rendering as soon as the cut is certain.
		w.stop = w.max + 1
	}
	w.value(v)
	return w.result()
}

// TypeName returns the Python type name to show for v: v.Type when the
// reader filled it in, else the name of the builtin type v's Kind stands
// for ("NoneType", "int", "long", "str", "unicode", "bytes", …; a Bytes
// value read from Python 2 is a "str"). Unreadable values with no Type
// give "unreadable" and other values of unknown type "object".
func TypeName(v *value.Value) string {
	if v == nil {
		return "unreadable"
	}
	if v.Type != "" {
		return v.Type
	}
	switch v.Kind {
	case value.Unreadable:
		return "unreadable"
	case value.None:
		return "NoneType"
	case value.Bool:
		return "bool"
	case value.Int:
		return "int"
	case value.Long:
		return "long"
	case value.Float:
		return "float"
	case value.Str:
		return "str"
	case value.Unicode:
		return "unicode"
	case value.Bytes:
		if v.Py2 {
			return "str"
		}
		return "bytes"
	case value.List:
		return "list"
	case value.Tuple:
		return "tuple"
	case value.Set:
		return "set"
	case value.FrozenSet:
		return "frozenset"
	case value.Dict:
		return "dict"
	}
	return "object"
}

// writer accumulates a repr. With stop > 0 it stops accepting text once it
// holds stop runes, and every rendering loop checks full() to give up
// early, so a huge tree costs no more than MaxWidth runes of work.
type writer struct {
	buf   []byte
	runes int
	max   int
	stop  int
	// path holds the containers being rendered, to catch Go-level cycles.
	path map[*value.Value]bool
	// redact: values under secret-looking keys render as <redacted>.
	redact bool
}

func (w *writer) full() bool { return w.stop > 0 && w.runes >= w.stop }

func (w *writer) str(s string) {
	if w.full() {
		return
	}
	w.buf = append(w.buf, s...)
	w.runes += utf8.RuneCountInString(s)
}

// ascii writes a byte below 0x80.
func (w *writer) ascii(c byte) {
	if w.full() {
		return
	}
	w.buf = append(w.buf, c)
	w.runes++
}

// rune writes a valid, non-surrogate rune.
func (w *writer) rune(r rune) {
	if w.full() {
		return
	}
	w.buf = utf8.AppendRune(w.buf, r)
	w.runes++
}

// hex writes 0x followed by n in lowercase hex, as CPython's %p does on
// Linux.
func (w *writer) hex(n uint64) {
	w.str("0x")
	w.str(strconv.FormatUint(n, 16))
}

func (w *writer) result() string {
	if w.max <= 0 || w.runes <= w.max {
		return string(w.buf)
	}
	keep := w.max - len(ellipsis)
	if keep < 0 {
		return ellipsis[:w.max]
	}
	// Cut after keep runes; the buffer only ever holds whole runes.
	i := 0
	for n := 0; n < keep; n++ {
		_, size := utf8.DecodeRune(w.buf[i:])
		i += size
	}
	return string(w.buf[:i]) + ellipsis
}

func (w *writer) value(v *value.Value) {
	if v == nil {
		w.str("<unreadable 0x0: missing value>")
		return
	}
	switch v.Kind {
	case value.Unreadable:
		w.unreadable(v.Addr, v.Err)
	case value.None:
		w.str("None")
	case value.Bool:
		if v.Bool {
			w.str("True")
		} else {
			w.str("False")
		}
	case value.Int, value.Long:
		if v.Int == nil {
			w.unreadable(v.Addr, "int without value")
			return
		}
		w.str(v.Int.String())
		if v.Kind == value.Long {
			w.ascii('L')
		}
	case value.Float:
		w.str(floatRepr(v.Float))
	case value.Str:
		w.runesRepr(v.Runes, false)
		w.truncatedText(v)
	case value.Unicode:
		w.ascii('u')
		w.runesRepr(v.Runes, true)
		w.truncatedText(v)
	case value.Bytes:
		if !v.Py2 {
			w.ascii('b')
		}
		w.bytesRepr(v.Bytes)
		w.truncatedText(v)
	case value.List, value.Tuple, value.Set, value.FrozenSet, value.Dict:
		if w.path[v] {
			w.recursive(v.Kind, "")
			return
		}
		if w.path == nil {
			w.path = make(map[*value.Value]bool)
		}
		w.path[v] = true
		w.container(v)
		delete(w.path, v)
	case value.Object:
		w.object(v)
	case value.Recursive:
		w.recursive(value.Recursive, v.Type)
	default:
		w.unreadable(v.Addr, "unknown kind "+strconv.Itoa(int(v.Kind)))
	}
}

func (w *writer) unreadable(addr uint64, reason string) {
	w.str("<unreadable ")
	w.hex(addr)
	if reason != "" {
		w.str(": ")
		w.str(reason)
	}
	w.ascii('>')
}

// truncatedText marks a str, unicode or bytes value of which only a prefix
// was read: 'abcd'...
func (w *writer) truncatedText(v *value.Value) {
	if v.Truncated {
		w.str("...")
	}
}

// recursive writes the marker CPython's Py_ReprEnter guard prints for a
// container met again inside itself. kind is the container's Kind when
// known (a Go-level cycle), else value.Recursive and typ names it.
func (w *writer) recursive(kind value.Kind, typ string) {
	switch {
	case kind == value.List || kind == value.Recursive && typ == "list":
		w.str("[...]")
	case kind == value.Dict || kind == value.Recursive && typ == "dict":
		w.str("{...}")
	case kind == value.Tuple || kind == value.Recursive && typ == "tuple":
		w.str("(...)")
	default:
		w.str("...")
	}
}

// object writes object.__repr__'s <module.qualname object at 0x…>. The
// module is left out for builtins ("builtins" in Python 3, "__builtin__"
// in Python 2, or empty).
func (w *writer) object(v *value.Value) {
	if v.Summary != "" {
		w.str(v.Summary)
		return
	}
	w.ascii('<')
	switch v.Module {
	case "", "builtins", "__builtin__":
	default:
		w.str(v.Module)
		w.ascii('.')
	}
	if v.Type != "" {
		w.str(v.Type)
	} else {
		w.str("object")
	}
	if v.OldStyle {
		w.str(" instance at ")
	} else {
		w.str(" object at ")
	}
	w.hex(v.Addr)
	w.ascii('>')
}

// container writes lists, tuples, sets, frozensets and dicts.
func (w *writer) container(v *value.Value) {
	n := len(v.Items)
	if v.Kind == value.Dict {
		n = len(v.Pairs)
	}
	empty := n == 0 && !v.Truncated
	var open, close string
	switch v.Kind {
	case value.List:
		open, close = "[", "]"
	case value.Tuple:
		open, close = "(", ")"
		if n == 1 && !v.Truncated {
			close = ",)"
		}
	case value.Dict:
		open, close = "{", "}"
	case value.Set, value.FrozenSet:
		name := v.Type
		if name == "" {
			name = "set"
			if v.Kind == value.FrozenSet {
				name = "frozenset"
			}
		}
		switch {
		case v.Py2:
			// Python 2: set([1, 2]), set([]), frozenset([1]).
			open, close = name+"([", "])"
		case empty:
			// Python 3: set(), frozenset(), MySet().
			w.str(name)
			w.str("()")
			return
		case name == "set" && v.Kind == value.Set:
			open, close = "{", "}"
		default:
			// frozenset({1, 2}), MySet({1, 2}).
			open, close = name+"({", "})"
		}
	}
	w.str(open)
	for i := 0; i < n && !w.full(); i++ {
		if i > 0 {
			w.str(", ")
		}
		if v.Kind == value.Dict {
			p := v.Pairs[i]
			w.value(p.Key)
			w.str(": ")
			if w.redact && SecretKey(p.Key) {
				w.str(secrets.Redacted)
				continue
			}
			w.value(p.Value)
		} else if i == 1 && n == 2 && v.Kind == value.Tuple && w.redact && SecretKey(v.Items[0]) {
			// A (name, value) pair: a header list's ('Cookie', …).
			w.str(secrets.Redacted)
		} else {
			w.value(v.Items[i])
		}
	}
	if v.Truncated {
		if n > 0 {
			w.str(", ")
		}
		w.str("...")
	}
	w.str(close)
}
