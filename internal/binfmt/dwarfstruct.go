package binfmt

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"strings"
)

// StructIndex answers questions about C struct layouts from a binary's DWARF:
// member offsets (through nested members), struct sizes and bit-field
// positions. It is what the layout generator and its cross-check test use.
type StructIndex struct {
	d     *dwarf.Data
	named map[string]dwarf.Offset // struct/union tag or typedef name → entry
	cache map[string]dwarf.Type
}

// OpenStructIndex indexes the named types of an ELF file's DWARF.
func OpenStructIndex(path string) (*StructIndex, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("%s: no DWARF: %w", path, err)
	}
	ix := &StructIndex{d: d, named: map[string]dwarf.Offset{}, cache: map[string]dwarf.Type{}}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("%s: reading DWARF: %w", path, err)
		}
		if e == nil {
			break
		}
		switch e.Tag {
		case dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagTypedef, dwarf.TagBaseType:
			name, _ := e.Val(dwarf.AttrName).(string)
			if name == "" {
				continue
			}
			if decl, _ := e.Val(dwarf.AttrDeclaration).(bool); decl {
				continue
			}
			if _, ok := ix.named[name]; !ok {
				ix.named[name] = e.Offset
			}
		case dwarf.TagSubprogram:
			r.SkipChildren()
		}
	}
	return ix, nil
}

func (ix *StructIndex) typeNamed(name string) (dwarf.Type, error) {
	if t, ok := ix.cache[name]; ok {
		return t, nil
	}
	off, ok := ix.named[name]
	if !ok {
		return nil, fmt.Errorf("no type %q", name)
	}
	t, err := ix.d.Type(off)
	if err != nil {
		return nil, err
	}
	ix.cache[name] = t
	return t, nil
}

func strip(t dwarf.Type) dwarf.Type {
	for {
		switch x := t.(type) {
		case *dwarf.TypedefType:
			t = x.Type
		case *dwarf.QualType:
			t = x.Type
		default:
			return t
		}
	}
}

// findMember looks a member up by name, descending into anonymous struct and
// union members as C does.
func findMember(st *dwarf.StructType, name string) (*dwarf.StructField, int64, bool) {
	for _, f := range st.Field {
		if f.Name == name {
			return f, f.ByteOffset, true
		}
	}
	for _, f := range st.Field {
		if f.Name != "" {
			continue
		}
		if inner, ok := strip(f.Type).(*dwarf.StructType); ok {
			if m, off, ok := findMember(inner, name); ok {
				return m, f.ByteOffset + off, true
			}
		}
	}
	return nil, 0, false
}

// Member resolves "Type.a.b.c" to the byte offset of c from the start of
// Type, and returns the last member's DWARF field.
func (ix *StructIndex) Member(path string) (int64, *dwarf.StructField, error) {
	parts := strings.Split(path, ".")
	t, err := ix.typeNamed(parts[0])
	if err != nil {
		return 0, nil, err
	}
	var total int64
	var field *dwarf.StructField
	for _, p := range parts[1:] {
		st, ok := strip(t).(*dwarf.StructType)
		if !ok {
			return 0, nil, fmt.Errorf("%s: %s is not a struct", path, t)
		}
		if st.Incomplete {
			// A typedef of a struct declared here and defined in
			// another compilation unit.
			full, err := ix.typeNamed(st.StructName)
			if err != nil {
				return 0, nil, fmt.Errorf("%s: %s is incomplete", path, st.StructName)
			}
			if st, ok = strip(full).(*dwarf.StructType); !ok || st.Incomplete {
				return 0, nil, fmt.Errorf("%s: %s is incomplete", path, st.StructName)
			}
		}
		m, off, ok := findMember(st, p)
		if !ok {
			return 0, nil, fmt.Errorf("%s: no member %q", path, p)
		}
		total += off
		field = m
		t = m.Type
	}
	return total, field, nil
}

// Sizeof returns the byte size of a named type.
func (ix *StructIndex) Sizeof(name string) (int64, error) {
	t, err := ix.typeNamed(name)
	if err != nil {
		return 0, err
	}
	if st, ok := strip(t).(*dwarf.StructType); ok && st.Incomplete {
		return ix.Sizeof(st.StructName)
	}
	if t.Size() <= 0 {
		return 0, fmt.Errorf("%s has no size", name)
	}
	return t.Size(), nil
}

// BitOffset returns the bit position of a bit-field member within the struct
// that immediately contains it, e.g. "PyASCIIObject.state.kind" gives the bit
// offset of kind within the state bit-field struct.
func (ix *StructIndex) BitOffset(path string) (int64, error) {
	_, f, err := ix.Member(path)
	if err != nil {
		return 0, err
	}
	if f.BitSize == 0 {
		return 0, fmt.Errorf("%s is not a bit-field", path)
	}
	if f.DataBitOffset != 0 || f.ByteSize == 0 {
		return f.DataBitOffset, nil
	}
	// DWARF 2/3 style: BitOffset counts from the most significant bit of
	// the storage unit (little-endian targets only).
	return f.ByteOffset*8 + f.ByteSize*8 - f.BitOffset - f.BitSize, nil
}
