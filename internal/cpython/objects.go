package cpython

import (
	"fmt"
	"math/big"
	"unicode/utf16"

	"krait/internal/value"
)

// Limits bound how much of an object graph krait reads for one value.
type Limits struct {
	Items int // container items, dict pairs and attributes per object
	Chars int // characters of a str, bytes of a bytes
	Depth int // nesting of containers
	// AttrDepth bounds the nesting at which objects' attributes are read
	// (attributes of attributes of locals, at the default).
	AttrDepth int
}

// DefaultLimits are used by dump --locals.
var DefaultLimits = Limits{Items: 100, Chars: 4096, Depth: 4, AttrDepth: 2}

// reader reads one value tree under limits, guarding against cycles.
type reader struct {
	py     *Python
	lim    Limits
	onPath map[uint64]bool
	// cyclic is set while reading a subtree that met one of its ancestors:
	// such a subtree depends on its path and is not cached.
	cyclic bool
}

// valueKey identifies a decoded value within one snapshot: the same object
// read with the same limits at the same depth decodes the same.
type valueKey struct {
	addr  uint64
	depth int
	lim   Limits
}

// Value reads the object at addr into a value tree. Within one snapshot
// (until Reset), objects met again — the same argument in every frame of a
// deep recursion — are decoded once and shared.
func (py *Python) Value(addr uint64, lim Limits) *value.Value {
	r := &reader{py: py, lim: lim, onPath: map[uint64]bool{}}
	return r.read(addr, 0)
}

func (r *reader) read(addr uint64, depth int) *value.Value {
	key := valueKey{addr, depth, r.lim}
	if v, ok := r.py.values[key]; ok {
		return v
	}
	outer := r.cyclic
	r.cyclic = false
	v := r.decode(addr, depth)
	if !r.cyclic {
		r.py.values[key] = v
	}
	r.cyclic = r.cyclic || outer
	return v
}

func unreadable(addr uint64, err error) *value.Value {
	return &value.Value{Kind: value.Unreadable, Addr: addr, Err: err.Error()}
}

func (r *reader) decode(addr uint64, depth int) *value.Value {
	py := r.py
	L := py.L
	if addr == 0 {
		return &value.Value{Kind: value.Unreadable, Err: "NULL pointer"}
	}
	t, err := py.typeOf(addr)
	if err != nil {
		return unreadable(addr, err)
	}
	v := &value.Value{Addr: addr, Type: t.qualname, Py2: L.Py2}
	if t.module != "builtins" && t.module != "__builtin__" {
		v.Module = t.module
	}
	if r.onPath[addr] {
		r.cyclic = true
		v.Kind = value.Recursive
		v.Type = t.name
		return v
	}
	fail := func(err error) *value.Value {
		u := unreadable(addr, err)
		u.Type = v.Type
		return u
	}
	switch t.kind {
	case kindNone:
		v.Kind = value.None
	case kindBool:
		n, err := r.intValue(addr, !L.Py2)
		if err != nil {
			return fail(err)
		}
		v.Kind, v.Bool = value.Bool, n.Sign() != 0
	case kindInt:
		n, err := r.intValue(addr, !L.Py2)
		if err != nil {
			return fail(err)
		}
		v.Kind, v.Int = value.Int, n
	case kindLong:
		n, err := r.intValue(addr, true)
		if err != nil {
			return fail(err)
		}
		v.Kind, v.Int = value.Long, n
	case kindFloat:
		f, err := py.m.f64(addr + uint64(L.FloatValue))
		if err != nil {
			return fail(err)
		}
		v.Kind, v.Float = value.Float, f
	case kindStr, kindUnicode:
		runes, n, err := py.unicodeRunes(addr, r.lim.Chars)
		if err != nil {
			return fail(err)
		}
		v.Kind, v.Runes, v.Len, v.Truncated = value.Str, runes, n, n > len(runes)
		if t.kind == kindUnicode {
			v.Kind = value.Unicode
		}
	case kindBytes:
		b, n, err := py.bytesValue(addr, r.lim.Chars)
		if err != nil {
			return fail(err)
		}
		v.Kind, v.Bytes, v.Len, v.Truncated = value.Bytes, b, n, n > len(b)
	case kindList, kindTuple:
		items, n, err := r.seqItems(addr, t.kind == kindList)
		if err != nil {
			return fail(err)
		}
		v.Kind = value.List
		if t.kind == kindTuple {
			v.Kind = value.Tuple
		}
		v.Len = n
		r.children(v, depth, items, func(c *value.Value) { v.Items = append(v.Items, c) })
	case kindSet, kindFrozenSet:
		items, n, err := r.setItems(addr)
		if err != nil {
			return fail(err)
		}
		v.Kind = value.Set
		if t.kind == kindFrozenSet {
			v.Kind = value.FrozenSet
		}
		v.Len = n
		r.children(v, depth, items, func(c *value.Value) { v.Items = append(v.Items, c) })
	case kindDict:
		items, n, err := py.dictItems(addr, r.lim.Items)
		if err != nil {
			return fail(err)
		}
		v.Kind, v.Len = value.Dict, n
		if depth >= r.lim.Depth && n > 0 {
			v.Truncated = true
			return v
		}
		r.onPath[addr] = true
		for _, e := range items {
			v.Pairs = append(v.Pairs, value.Pair{Key: r.read(e.key, depth+1), Value: r.read(e.value, depth+1)})
		}
		delete(r.onPath, addr)
		v.Truncated = n > len(v.Pairs)
	case kindPy2Instance:
		v.Kind, v.OldStyle = value.Object, true
		r.py2Instance(v, addr, depth)
	case kindFunction:
		v.Kind = value.Object
		name := ""
		if L.FuncQualname >= 0 {
			name, _ = py.strAt(addr + uint64(L.FuncQualname))
		}
		if name == "" && L.FuncName >= 0 {
			name, _ = py.strAt(addr + uint64(L.FuncName))
		}
		if name != "" {
			v.Summary = fmt.Sprintf("<function %s at 0x%x>", name, addr)
		}
	case kindModule:
		v.Kind = value.Object
		if md, err := py.m.u64(addr + uint64(L.ModuleDict)); err == nil && md != 0 {
			name, file := "?", ""
			if p, ok := py.dictGetStr(md, "__name__"); ok {
				name, _ = py.strValue(p, 256)
			}
			if p, ok := py.dictGetStr(md, "__file__"); ok {
				file, _ = py.strValue(p, 1024)
			}
			if file != "" {
				v.Summary = fmt.Sprintf("<module '%s' from '%s'>", name, file)
			} else {
				v.Summary = fmt.Sprintf("<module '%s' (built-in)>", name)
			}
		}
	default:
		v.Kind = value.Object
		if t.flags&tpflagsTypeSubclass != 0 {
			// A class: <class 'module.Qualname'> (Python 2 builtins:
			// <type 'int'>).
			ct, err := py.typeAt(addr)
			if err == nil {
				name := ct.qualname
				if ct.module != "" && ct.module != "builtins" && ct.module != "__builtin__" {
					name = ct.module + "." + name
				}
				word := "class"
				if L.Py2 && ct.flags&tpflagsHeapType == 0 {
					word = "type"
				}
				v.Summary = fmt.Sprintf("<%s '%s'>", word, name)
			}
			break
		}
		for _, d := range py.describers {
			if s, ok := d(Ref{py: py, Addr: addr}); ok {
				v.Summary = s
				break
			}
		}
		if depth < r.lim.Depth && depth < r.lim.AttrDepth {
			if items, ok, err := py.instanceDictItems(addr, t, r.lim.Items); ok && err == nil {
				r.onPath[addr] = true
				for _, e := range items {
					name, err := py.strValue(e.key, 256)
					if err != nil {
						continue
					}
					v.Attrs = append(v.Attrs, value.Attr{Name: name, Value: r.read(e.value, depth+1)})
				}
				delete(r.onPath, addr)
			}
		}
	}
	return v
}

// strAt reads the str that the pointer at addr points to.
func (py *Python) strAt(addr uint64) (string, error) {
	p, err := py.m.u64(addr)
	if err != nil {
		return "", err
	}
	return py.strValue(p, 256)
}

// children reads container items under the depth limit.
func (r *reader) children(v *value.Value, depth int, items []uint64, add func(*value.Value)) {
	if depth >= r.lim.Depth && v.Len > 0 {
		v.Truncated = true
		return
	}
	r.onPath[v.Addr] = true
	for _, it := range items {
		add(r.read(it, depth+1))
	}
	delete(r.onPath, v.Addr)
	v.Truncated = v.Len > len(items)
}

func (r *reader) py2Instance(v *value.Value, addr uint64, depth int) {
	py, L := r.py, r.py.L
	cls, err := py.m.u64(addr + uint64(L.InstanceClass))
	if err != nil {
		return
	}
	if n, err := py.m.u64(cls + uint64(L.ClassName)); err == nil {
		if s, err := py.strValue(n, 256); err == nil {
			v.Type = s
		}
	}
	if cd, err := py.m.u64(cls + uint64(L.ClassDict)); err == nil {
		if mod, ok := py.dictGetStr(cd, "__module__"); ok {
			if s, err := py.strValue(mod, 256); err == nil {
				v.Module = s
			}
		}
	}
	if depth >= r.lim.Depth || depth >= r.lim.AttrDepth {
		return
	}
	d, err := py.m.u64(addr + uint64(L.InstanceDict))
	if err != nil || d == 0 {
		return
	}
	items, _, err := py.dictItems(d, r.lim.Items)
	if err != nil {
		return
	}
	r.onPath[addr] = true
	for _, e := range items {
		if name, err := py.strValue(e.key, 256); err == nil {
			v.Attrs = append(v.Attrs, value.Attr{Name: name, Value: r.read(e.value, depth+1)})
		}
	}
	delete(r.onPath, addr)
}

// intValue reads an int (or Python 2 long when digits is set; a Python 2
// int otherwise).
func (r *reader) intValue(addr uint64, digits bool) (*big.Int, error) {
	py, L := r.py, r.py.L
	if !digits {
		n, err := py.m.i64(addr + uint64(L.IntIval))
		return big.NewInt(n), err
	}
	var ndigits int64
	negative := false
	if L.LongTag >= 0 {
		tag, err := py.m.u64(addr + uint64(L.LongTag))
		if err != nil {
			return nil, err
		}
		ndigits = int64(tag >> 3)
		negative = tag&3 == 2
	} else {
		size, err := py.m.i64(addr + uint64(L.ObSize))
		if err != nil {
			return nil, err
		}
		ndigits = size
		if size < 0 {
			ndigits, negative = -size, true
		}
	}
	if ndigits > 1<<16 {
		return nil, fmt.Errorf("implausible int of %d digits", ndigits)
	}
	ds := L.DigitSize
	raw, err := py.m.bytes(addr+uint64(L.LongDigits), int(ndigits*ds))
	if err != nil {
		return nil, err
	}
	shift := uint(30)
	if ds == 2 {
		shift = 15
	}
	n := new(big.Int)
	for i := ndigits - 1; i >= 0; i-- {
		var d uint64
		if ds == 2 {
			d = uint64(raw[i*2]) | uint64(raw[i*2+1])<<8
		} else {
			d = uint64(raw[i*4]) | uint64(raw[i*4+1])<<8 | uint64(raw[i*4+2])<<16 | uint64(raw[i*4+3])<<24
		}
		n.Lsh(n, shift)
		n.Or(n, new(big.Int).SetUint64(d))
	}
	if negative {
		n.Neg(n)
	}
	return n, nil
}

// strValue reads a str (or Python 2 str/unicode) as a Go string of at most
// max characters.
func (py *Python) strValue(addr uint64, max int) (string, error) {
	t, err := py.typeOf(addr)
	if err != nil {
		return "", err
	}
	switch t.kind {
	case kindStr, kindUnicode:
		r, _, err := py.unicodeRunes(addr, max)
		return string(r), err
	case kindBytes:
		b, _, err := py.bytesValue(addr, max)
		return string(b), err
	}
	return "", fmt.Errorf("not a str but %s", t.name)
}

// unicodeRunes reads up to max characters of a str (PEP 393) or Python 2
// unicode, returning them and the full length.
func (py *Python) unicodeRunes(addr uint64, max int) ([]rune, int, error) {
	L := py.L
	if L.Py2 {
		n, err := py.m.i64(addr + uint64(L.Py2UnicodeLength))
		if err != nil {
			return nil, 0, err
		}
		data, err := py.m.u64(addr + uint64(L.Py2UnicodeStr))
		if err != nil {
			return nil, 0, err
		}
		return py.codeUnits(data, int(L.Py2UnicodeSize), n, max)
	}
	n, err := py.m.i64(addr + uint64(L.ASCIILength))
	if err != nil {
		return nil, 0, err
	}
	state, err := py.m.u32(addr + uint64(L.ASCIIState))
	if err != nil {
		return nil, 0, err
	}
	kind := int(state>>uint(L.StateKindBit)) & 7
	compact := state>>uint(L.StateCompactBit)&1 != 0
	ascii := state>>uint(L.StateASCIIBit)&1 != 0
	var data uint64
	switch {
	case compact && ascii:
		data = addr + uint64(L.ASCIISize)
	case compact:
		data = addr + uint64(L.CompactSize)
	default:
		if data, err = py.m.u64(addr + uint64(L.UnicodeData)); err != nil {
			return nil, 0, err
		}
	}
	if kind != 1 && kind != 2 && kind != 4 {
		return nil, 0, fmt.Errorf("str with unknown kind %d", kind)
	}
	return py.codeUnits(data, kind, n, max)
}

func (py *Python) codeUnits(data uint64, unit int, n int64, max int) ([]rune, int, error) {
	if n < 0 || n > 1<<40 {
		return nil, 0, fmt.Errorf("implausible string length %d", n)
	}
	count := int(n)
	if count > max {
		count = max
	}
	raw, err := py.m.bytes(data, count*unit)
	if err != nil {
		return nil, 0, err
	}
	out := make([]rune, count)
	for i := range out {
		switch unit {
		case 1:
			out[i] = rune(raw[i])
		case 2:
			out[i] = rune(uint16(raw[2*i]) | uint16(raw[2*i+1])<<8)
		default:
			out[i] = rune(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
		}
	}
	if unit == 2 && py.L.Py2 {
		// UCS-2 Python 2 builds store astral characters as surrogate pairs.
		out = []rune(string(utf16.Decode(runesToU16(out))))
	}
	return out, int(n), nil
}

func runesToU16(r []rune) []uint16 {
	out := make([]uint16, len(r))
	for i, c := range r {
		out[i] = uint16(c)
	}
	return out
}

func (py *Python) bytesValue(addr uint64, max int) ([]byte, int, error) {
	L := py.L
	n, err := py.m.i64(addr + uint64(L.ObSize))
	if err != nil {
		return nil, 0, err
	}
	if n < 0 || n > 1<<40 {
		return nil, 0, fmt.Errorf("implausible bytes length %d", n)
	}
	count := int(n)
	if count > max {
		count = max
	}
	b, err := py.m.bytes(addr+uint64(L.BytesData), count)
	return b, int(n), err
}

// seqItems returns up to the item limit of a list's or tuple's item
// pointers, and its length.
func (r *reader) seqItems(addr uint64, list bool) ([]uint64, int, error) {
	py, L := r.py, r.py.L
	n, err := py.m.i64(addr + uint64(L.ObSize))
	if err != nil {
		return nil, 0, err
	}
	if n < 0 || n > 1<<32 {
		return nil, 0, fmt.Errorf("implausible length %d", n)
	}
	base := addr + uint64(L.TupleItems)
	if list {
		if base, err = py.m.u64(addr + uint64(L.ListItems)); err != nil {
			return nil, 0, err
		}
	}
	count := int(n)
	if count > r.lim.Items {
		count = r.lim.Items
	}
	raw, err := py.m.bytes(base, count*8)
	if err != nil {
		return nil, 0, err
	}
	out := make([]uint64, count)
	for i := range out {
		out[i] = le64(raw[8*i:])
	}
	return out, int(n), nil
}

// setItems returns up to the item limit of a set's keys in table order.
func (r *reader) setItems(addr uint64) ([]uint64, int, error) {
	py, L := r.py, r.py.L
	used, err := py.m.i64(addr + uint64(L.SetUsed))
	if err != nil {
		return nil, 0, err
	}
	mask, err := py.m.i64(addr + uint64(L.SetMask))
	if err != nil {
		return nil, 0, err
	}
	table, err := py.m.u64(addr + uint64(L.SetTable))
	if err != nil {
		return nil, 0, err
	}
	if mask < 0 || mask > maxDictScan || used < 0 || used > mask+1 {
		return nil, 0, fmt.Errorf("implausible set (mask %d, used %d)", mask, used)
	}
	es := int(L.SetEntrySize)
	raw, err := py.m.bytes(table, int(mask+1)*es)
	if err != nil {
		return nil, 0, err
	}
	var out []uint64
	for i := 0; i <= int(mask) && len(out) < r.lim.Items; i++ {
		k := le64(raw[i*es+int(L.SetEntryKey):])
		if k == 0 || py.isSetDummy(k) {
			continue
		}
		out = append(out, k)
	}
	return out, int(used), nil
}

func (py *Python) isSetDummy(k uint64) bool {
	t, err := py.typeOf(k)
	if err != nil {
		return true
	}
	if t.kind == kindSetDummy {
		return true
	}
	if py.L.Py2 && t.kind == kindBytes {
		s, err := py.strValue(k, 16)
		return err == nil && s == "<dummy key>"
	}
	return false
}

// cellContents reads a cell's referent.
func (py *Python) cellContents(cell uint64) (uint64, error) {
	return py.m.u64(cell + uint64(py.L.CellRef))
}
