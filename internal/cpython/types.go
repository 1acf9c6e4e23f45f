package cpython

import (
	"strings"
)

const (
	tpflagsHeapType = 1 << 9
)

// Builtin kinds krait renders exactly.
const (
	kindOther = iota
	kindNone
	kindBool
	kindInt
	kindLong
	kindFloat
	kindStr
	kindUnicode
	kindBytes
	kindList
	kindTuple
	kindDict
	kindSet
	kindFrozenSet
	kindCode
	kindCell
	kindModule
	kindSetDummy
	kindPy2Instance
	kindFunction
)

const tpflagsTypeSubclass = 1 << 31

// typeInfo is what krait keeps of one type object.
type typeInfo struct {
	addr       uint64
	name       string // tp_name
	qualname   string
	module     string
	flags      uint64
	basicsize  int64
	dictoffset int64
	cachedKeys uint64
	kind       int
	mro        []string // filled on first use (Ref.MRO)
}

var builtinKinds = map[string]int{
	"NoneType": kindNone, "bool": kindBool, "int": kindInt, "long": kindLong, "float": kindFloat,
	"list": kindList, "tuple": kindTuple, "dict": kindDict, "set": kindSet, "frozenset": kindFrozenSet,
	"code": kindCode, "cell": kindCell, "module": kindModule, "<dummy key> type": kindSetDummy,
	"instance": kindPy2Instance, "function": kindFunction,
}

// typeOf reads (and caches) the type of the object at addr.
func (py *Python) typeOf(obj uint64) (*typeInfo, error) {
	tp, err := py.m.u64(obj + uint64(py.L.ObType))
	if err != nil {
		return nil, err
	}
	return py.typeAt(tp)
}

func (py *Python) typeAt(tp uint64) (*typeInfo, error) {
	if t, ok := py.types[tp]; ok {
		return t, nil
	}
	L := py.L
	namePtr, err := py.m.u64(tp + uint64(L.TypeName))
	if err != nil {
		return nil, err
	}
	name, err := py.m.cstring(namePtr, 256)
	if err != nil {
		return nil, err
	}
	t := &typeInfo{addr: tp, name: name}
	if t.flags, err = py.m.u64(tp + uint64(L.TypeFlags)); err != nil {
		return nil, err
	}
	t.basicsize, _ = py.m.i64(tp + uint64(L.TypeBasicsize))
	t.dictoffset, _ = py.m.i64(tp + uint64(L.TypeDictoffset))
	// Cache before following the type's dict: garbage memory could make
	// the lookup come back to this type.
	py.types[tp] = t
	heap := t.flags&tpflagsHeapType != 0
	if heap {
		if L.HeapTypeCachedKeys >= 0 {
			t.cachedKeys, _ = py.m.u64(tp + uint64(L.HeapTypeCachedKeys))
		}
		t.qualname = name
		if L.HeapTypeQualname >= 0 {
			if q, err := py.m.u64(tp + uint64(L.HeapTypeQualname)); err == nil {
				if s, err := py.strValue(q, 256); err == nil {
					t.qualname = s
				}
			}
		}
		if d, err := py.m.u64(tp + uint64(L.TypeDict)); err == nil && d != 0 {
			if mod, ok := py.dictGetStr(d, "__module__"); ok {
				if s, err := py.strValue(mod, 256); err == nil {
					t.module = s
				}
			}
		}
	} else {
		t.kind = builtinKinds[name]
		switch name {
		case "str":
			if L.Py2 {
				t.kind = kindBytes
			} else {
				t.kind = kindStr
			}
		case "unicode":
			t.kind = kindUnicode
		case "bytes":
			t.kind = kindBytes
		}
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			t.module, t.qualname = name[:i], name[i+1:]
		} else {
			t.module, t.qualname = "builtins", name
		}
	}
	return t, nil
}
