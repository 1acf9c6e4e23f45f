package cpython

import (
	"krait/internal/value"
)

// Ref is a lazy handle on one object in the target, for recognisers of
// library types (Django's QuerySet, request, model instances) that need to
// look deeper than a value tree goes. Every method reads memory on demand
// and reports failure instead of guessing.
type Ref struct {
	py   *Python
	Addr uint64
}

// Describer gives a one-line rendering for objects it recognises (for
// example `<QuerySet shop.Order: not evaluated>`), or ok=false.
type Describer func(r Ref) (summary string, ok bool)

// AddDescriber registers a recogniser used whenever objects are read.
func (py *Python) AddDescriber(d Describer) { py.describers = append(py.describers, d) }

// Ref returns a handle on the object at addr.
func (py *Python) Ref(addr uint64) Ref { return Ref{py: py, Addr: addr} }

func (r Ref) typ() *typeInfo {
	if r.Addr == 0 {
		return nil
	}
	t, err := r.py.typeOf(r.Addr)
	if err != nil {
		return nil
	}
	return t
}

// Type returns the object's type as module and qualified name.
func (r Ref) Type() (module, qualname string) {
	if t := r.typ(); t != nil {
		return t.module, t.qualname
	}
	return "", ""
}

// IsNone says whether the object is None.
func (r Ref) IsNone() bool {
	t := r.typ()
	return t != nil && t.kind == kindNone
}

// IsType says whether the object is a class.
func (r Ref) IsType() bool {
	t := r.typ()
	return t != nil && t.flags&(1<<31) != 0 // Py_TPFLAGS_TYPE_SUBCLASS
}

// ClassName returns "module.qualname" of a class object.
func (r Ref) ClassName() string {
	t, err := r.py.typeAt(r.Addr)
	if err != nil {
		return ""
	}
	if t.module == "" || t.module == "builtins" {
		return t.qualname
	}
	return t.module + "." + t.qualname
}

// MRO lists "module.qualname" of the object's type and its bases, in
// method resolution order.
func (r Ref) MRO() []string {
	t := r.typ()
	if t == nil {
		return nil
	}
	if t.mro != nil {
		return t.mro
	}
	t.mro = []string{}
	L := r.py.L
	if L.TypeMro < 0 {
		return t.mro
	}
	tup, err := r.py.m.u64(t.addr + uint64(L.TypeMro))
	if err != nil || tup == 0 {
		return t.mro
	}
	items, _, err := (&reader{py: r.py, lim: Limits{Items: 64}}).seqItems(tup, false)
	if err != nil {
		return t.mro
	}
	for _, it := range items {
		t.mro = append(t.mro, Ref{py: r.py, Addr: it}.ClassName())
	}
	return t.mro
}

// Inherits says whether the object's type is or derives from the class
// named "module.qualname".
func (r Ref) Inherits(class string) bool {
	for _, c := range r.MRO() {
		if c == class {
			return true
		}
	}
	return false
}

// Attr reads an instance attribute from the object's __dict__ (or inline
// values); class attributes are not consulted.
func (r Ref) Attr(name string) (Ref, bool) {
	t := r.typ()
	if t == nil {
		return Ref{}, false
	}
	items, _, err := r.py.instanceDictItems(r.Addr, t, maxDictScan)
	if err != nil {
		return Ref{}, false
	}
	for _, e := range items {
		if s, err := r.py.strValue(e.key, len(name)+1); err == nil && s == name {
			return Ref{py: r.py, Addr: e.value}, true
		}
	}
	return Ref{}, false
}

// Path follows a chain of attributes.
func (r Ref) Path(names ...string) (Ref, bool) {
	cur := r
	for _, n := range names {
		var ok bool
		if cur, ok = cur.Attr(n); !ok {
			return Ref{}, false
		}
	}
	return cur, true
}

// DictGet looks a str key up in a dict object.
func (r Ref) DictGet(key string) (Ref, bool) {
	t := r.typ()
	if t == nil || t.kind != kindDict {
		return Ref{}, false
	}
	v, ok := r.py.dictGetStr(r.Addr, key)
	return Ref{py: r.py, Addr: v}, ok
}

// Str reads a str (or bytes) object.
func (r Ref) Str() (string, bool) {
	s, err := r.py.strValue(r.Addr, 1<<16)
	return s, err == nil
}

// Int reads an int object that fits 64 bits.
func (r Ref) Int() (int64, bool) {
	t := r.typ()
	if t == nil || (t.kind != kindInt && t.kind != kindLong && t.kind != kindBool) {
		return 0, false
	}
	n, err := (&reader{py: r.py}).intValue(r.Addr, !r.py.L.Py2 || t.kind == kindLong)
	if err != nil || !n.IsInt64() {
		return 0, false
	}
	return n.Int64(), true
}

// Len returns the length of a list, tuple, dict or set.
func (r Ref) Len() (int, bool) {
	t := r.typ()
	if t == nil {
		return 0, false
	}
	L := r.py.L
	switch t.kind {
	case kindList, kindTuple:
		n, err := r.py.m.i64(r.Addr + uint64(L.ObSize))
		return int(n), err == nil
	case kindDict:
		n, err := r.py.m.i64(r.Addr + uint64(L.DictUsed))
		return int(n), err == nil
	case kindSet, kindFrozenSet:
		n, err := r.py.m.i64(r.Addr + uint64(L.SetUsed))
		return int(n), err == nil
	}
	return 0, false
}

// Items returns up to max items of a list or tuple.
func (r Ref) Items(max int) []Ref {
	t := r.typ()
	if t == nil || (t.kind != kindList && t.kind != kindTuple) {
		return nil
	}
	items, _, err := (&reader{py: r.py, lim: Limits{Items: max}}).seqItems(r.Addr, t.kind == kindList)
	if err != nil {
		return nil
	}
	out := make([]Ref, len(items))
	for i, it := range items {
		out[i] = Ref{py: r.py, Addr: it}
	}
	return out
}

// Value reads the object as a value tree.
func (r Ref) Value(lim Limits) *value.Value { return r.py.Value(r.Addr, lim) }

// ClassAttr looks a name up in a class object's own __dict__ and then in
// those of its bases (its MRO), as attribute lookup on a class does for
// plain class attributes.
func (r Ref) ClassAttr(name string) (Ref, bool) {
	L := r.py.L
	t, err := r.py.typeAt(r.Addr)
	if err != nil {
		return Ref{}, false
	}
	classes := []uint64{t.addr}
	if L.TypeMro >= 0 {
		if tup, err := r.py.m.u64(t.addr + uint64(L.TypeMro)); err == nil && tup != 0 {
			if items, _, err := (&reader{py: r.py, lim: Limits{Items: 64}}).seqItems(tup, false); err == nil {
				classes = items
			}
		}
	}
	for _, c := range classes {
		d, err := r.py.m.u64(c + uint64(L.TypeDict))
		if err != nil || d == 0 {
			continue
		}
		if v, ok := r.py.dictGetStr(d, name); ok {
			return Ref{py: r.py, Addr: v}, true
		}
	}
	return Ref{}, false
}

// TypeRef returns the object's class.
func (r Ref) TypeRef() Ref {
	t := r.typ()
	if t == nil {
		return Ref{}
	}
	return Ref{py: r.py, Addr: t.addr}
}

// Modules returns sys.modules of an interpreter.
func (py *Python) Modules(in *Interpreter) (Ref, bool) {
	m, err := py.m.u64(in.Addr + uint64(py.L.InterpModules))
	if err != nil || m == 0 {
		return Ref{}, false
	}
	return Ref{py: py, Addr: m}, true
}

// FuncName returns a function object's __module__ and __qualname__.
func (r Ref) FuncName() (module, qualname string, ok bool) {
	t := r.typ()
	if t == nil || t.kind != kindFunction {
		return "", "", false
	}
	L := r.py.L
	if L.FuncQualname >= 0 {
		qualname, _ = r.py.strAt(r.Addr + uint64(L.FuncQualname))
	}
	if qualname == "" && L.FuncName >= 0 {
		qualname, _ = r.py.strAt(r.Addr + uint64(L.FuncName))
	}
	if L.FuncModule >= 0 {
		module, _ = r.py.strAt(r.Addr + uint64(L.FuncModule))
	}
	return module, qualname, qualname != ""
}
