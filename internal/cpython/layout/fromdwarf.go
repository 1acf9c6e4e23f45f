package layout

import (
	"fmt"
	"reflect"
	"strings"

	"krait/internal/binfmt"
)

// FromDWARF resolves every field of Offsets against one build's DWARF: its
// libpython's (ix), then that of extension modules (more: _asyncio). A
// field none of whose alternatives exists in that build is -1. It also
// returns where, inside _Py_DebugOffsets, each `dbg` field is published
// (empty before 3.13; only the fields that version publishes).
func FromDWARF(ix *binfmt.StructIndex, more ...*binfmt.StructIndex) (Offsets, map[string]int64, error) {
	var o Offsets
	v := reflect.ValueOf(&o).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		val := int64(-1)
	alts:
		for _, alt := range strings.Split(t.Field(i).Tag.Get("c"), "|") {
			for _, x := range append([]*binfmt.StructIndex{ix}, more...) {
				if n, err := resolve(x, alt); err == nil {
					val = n
					break alts
				}
			}
		}
		v.Field(i).SetInt(val)
	}
	dbg := map[string]int64{}
	if _, err := ix.Sizeof("_Py_DebugOffsets"); err == nil {
		off, _, err := ix.Member("_Py_DebugOffsets.version")
		if err != nil {
			return o, nil, fmt.Errorf("_Py_DebugOffsets: %w", err)
		}
		dbg["version"] = off
		for _, path := range DebugOffsetFields() {
			// Fields a version does not publish yet (3.13 has no
			// debugger_support) keep their DWARF value.
			if off, _, err := ix.Member("_Py_DebugOffsets." + path); err == nil {
				dbg[path] = off
			}
		}
	}
	return o, dbg, nil
}

func resolve(ix *binfmt.StructIndex, spec string) (int64, error) {
	switch {
	case strings.HasPrefix(spec, "sizeof(") && strings.HasSuffix(spec, ")"):
		return ix.Sizeof(spec[len("sizeof(") : len(spec)-1])
	case strings.HasPrefix(spec, "bit(") && strings.HasSuffix(spec, ")"):
		return ix.BitOffset(spec[len("bit(") : len(spec)-1])
	default:
		off, _, err := ix.Member(spec)
		return off, err
	}
}

// DebugOffsetFields lists the _Py_DebugOffsets members krait reads, in the
// order of Offsets.
func DebugOffsetFields() []string {
	var out []string
	t := reflect.TypeOf(Offsets{})
	for i := 0; i < t.NumField(); i++ {
		if d := t.Field(i).Tag.Get("dbg"); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// debugFieldPointers maps each published _Py_DebugOffsets field to the
// Offsets field it sets.
func (l *Layout) debugFieldPointers() map[string]*int64 {
	out := map[string]*int64{}
	v := reflect.ValueOf(&l.Offsets).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if d := t.Field(i).Tag.Get("dbg"); d != "" {
			out[d] = v.Field(i).Addr().Interface().(*int64)
		}
	}
	return out
}
