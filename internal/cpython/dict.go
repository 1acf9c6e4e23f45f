package cpython

import (
	"fmt"

	"krait/internal/cpython/layout"
)

// dictEntry is one key/value pair by address.
type dictEntry struct{ key, value uint64 }

// maxDictScan bounds how many slots krait walks in one dict.
const maxDictScan = 1 << 20

// dictItems returns up to limit entries of the dict at addr, in iteration
// order, and the dict's length.
func (py *Python) dictItems(addr uint64, limit int) ([]dictEntry, int, error) {
	L := py.L
	used, err := py.m.i64(addr + uint64(L.DictUsed))
	if err != nil {
		return nil, 0, err
	}
	if used < 0 || used > maxDictScan {
		return nil, 0, fmt.Errorf("implausible dict size %d", used)
	}
	if L.Py2 {
		return py.dictItemsPy2(addr, int(used), limit)
	}
	keys, err := py.m.u64(addr + uint64(L.DictKeys))
	if err != nil {
		return nil, 0, err
	}
	values, err := py.m.u64(addr + uint64(L.DictValues))
	if err != nil {
		return nil, 0, err
	}
	out, err := py.keysItems(keys, values, limit)
	return out, int(used), err
}

func (py *Python) dictItemsPy2(addr uint64, used, limit int) ([]dictEntry, int, error) {
	L := py.L
	mask, err := py.m.i64(addr + uint64(L.DictMask))
	if err != nil {
		return nil, 0, err
	}
	table, err := py.m.u64(addr + uint64(L.DictTable))
	if err != nil {
		return nil, 0, err
	}
	if mask < 0 || mask > maxDictScan {
		return nil, 0, fmt.Errorf("implausible dict mask %d", mask)
	}
	n := int(mask + 1)
	raw, err := py.m.bytes(table, n*int(L.DictEntrySize))
	if err != nil {
		return nil, 0, err
	}
	var out []dictEntry
	for i := 0; i < n && len(out) < limit; i++ {
		e := raw[i*int(L.DictEntrySize):]
		k, v := le64(e[8:]), le64(e[16:])
		if v != 0 {
			out = append(out, dictEntry{k, v})
		}
	}
	return out, used, nil
}

// keysItems walks a dict keys object; values, when not 0, is the split
// table's (or an object's inline) values.
func (py *Python) keysItems(keys, values uint64, limit int) ([]dictEntry, error) {
	L := py.L
	var ixBytes, nentries int64
	var entrySize, keyOff, valOff int64 = 24, 8, 16
	var err error
	if nentries, err = py.m.i64(keys + uint64(L.KeysNentries)); err != nil {
		return nil, err
	}
	switch L.Dict {
	case layout.DictKeys36:
		size, err := py.m.i64(keys + uint64(L.KeysSize))
		if err != nil {
			return nil, err
		}
		switch {
		case size <= 0xff:
			ixBytes = size
		case size <= 0xffff:
			ixBytes = 2 * size
		case size <= 0xffffffff:
			ixBytes = 4 * size
		default:
			ixBytes = 8 * size
		}
	default: // layout.DictKeys311
		hdr, err := py.m.bytes(keys+uint64(L.KeysLog2Size), 3)
		if err != nil {
			return nil, err
		}
		log2ix, kind := hdr[L.KeysLog2IndexBytes-L.KeysLog2Size], hdr[L.KeysKind-L.KeysLog2Size]
		if log2ix > 40 {
			return nil, fmt.Errorf("implausible dict keys (log2 index bytes %d)", log2ix)
		}
		ixBytes = 1 << log2ix
		if kind != L.DictKindGeneral {
			entrySize, keyOff, valOff = L.UnicodeEntrySize, 0, 8
		}
	}
	if nentries < 0 || nentries > maxDictScan {
		return nil, fmt.Errorf("implausible dict entry count %d", nentries)
	}
	entries := keys + uint64(L.KeysIndices) + uint64(ixBytes)
	raw, err := py.m.bytes(entries, int(nentries*entrySize))
	if err != nil {
		return nil, err
	}
	var out []dictEntry
	if values == 0 {
		for i := int64(0); i < nentries && len(out) < limit; i++ {
			e := raw[i*entrySize:]
			if v := le64(e[valOff:]); v != 0 {
				out = append(out, dictEntry{le64(e[keyOff:]), v})
			}
		}
		return out, nil
	}
	// Split table: keys here, values in the values array.
	vals := values
	if L.ValuesValues > 0 { // ≤3.10: ma_values is the array itself
		vals += uint64(L.ValuesValues)
	}
	order, err := py.splitOrder(values, nentries)
	if err != nil {
		return nil, err
	}
	for _, ix := range order {
		if len(out) >= limit {
			break
		}
		if int64(ix) >= nentries {
			continue
		}
		v, err := py.m.u64(vals + 8*uint64(ix))
		if err != nil {
			return nil, err
		}
		if v != 0 {
			out = append(out, dictEntry{le64(raw[int64(ix)*entrySize+keyOff:]), v})
		}
	}
	return out, nil
}

// splitOrder gives the insertion order of a split table's values.
func (py *Python) splitOrder(values uint64, nentries int64) ([]int, error) {
	L := py.L
	switch {
	case L.SplitOrderPrefix:
		// 3.11, 3.12: size at values[-2], order at values[-3-i].
		n, err := py.m.u8(values - 2)
		if err != nil {
			return nil, err
		}
		raw, err := py.m.bytes(values-2-uint64(n), int(n))
		if err != nil {
			return nil, err
		}
		out := make([]int, n)
		for i := range out {
			out[i] = int(raw[int(n)-1-i])
		}
		return out, nil
	case L.OrderAfterValues:
		hdr, err := py.m.bytes(values+uint64(L.ValuesCapacity), 2)
		if err != nil {
			return nil, err
		}
		capacity, size := hdr[0], hdr[1]
		raw, err := py.m.bytes(values+uint64(L.ValuesValues)+8*uint64(capacity), int(size))
		if err != nil {
			return nil, err
		}
		out := make([]int, size)
		for i := range out {
			out[i] = int(raw[i])
		}
		return out, nil
	default:
		out := make([]int, nentries)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
}

// dictGetStr looks a str key up in a dict by walking it (krait cannot
// hash in the target's way for every version, and dicts it asks are small).
func (py *Python) dictGetStr(dict uint64, key string) (uint64, bool) {
	items, _, err := py.dictItems(dict, maxDictScan)
	if err != nil {
		return 0, false
	}
	for _, e := range items {
		if s, err := py.strValue(e.key, len(key)+1); err == nil && s == key {
			return e.value, true
		}
	}
	return 0, false
}

// instanceDictItems returns an instance's attributes, wherever this
// version keeps them: a __dict__ at tp_dictoffset, a managed dict, or
// values stored inline with the type's shared keys.
func (py *Python) instanceDictItems(obj uint64, t *typeInfo, limit int) ([]dictEntry, bool, error) {
	L := py.L
	word := func(off int64) uint64 {
		v, _ := py.m.u64(uint64(int64(obj) + off))
		return v
	}
	managed := t.flags&L.FlagManagedDict != 0 && L.FlagManagedDict != 0
	switch {
	case L.Managed == layout.Managed311 && managed:
		if d := word(-24); d != 0 {
			it, _, err := py.dictItems(d, limit)
			return it, true, err
		}
		if v := word(-32); v != 0 && t.cachedKeys != 0 {
			it, err := py.keysItems(t.cachedKeys, v, limit)
			return it, true, err
		}
		return nil, true, nil
	case L.Managed == layout.Managed312 && managed:
		dorv := word(-24)
		if dorv&1 != 0 && t.cachedKeys != 0 {
			// Stored as values-1, so the low bit tags it.
			it, err := py.keysItems(t.cachedKeys, dorv+1, limit)
			return it, true, err
		}
		if dorv != 0 {
			it, _, err := py.dictItems(dorv, limit)
			return it, true, err
		}
		return nil, true, nil
	case L.Managed == layout.Managed313 && (managed || t.flags&L.FlagInlineValues != 0):
		if d := word(-24); d != 0 && managed {
			it, _, err := py.dictItems(d, limit)
			return it, true, err
		}
		if t.flags&L.FlagInlineValues != 0 && t.cachedKeys != 0 {
			values := obj + uint64(t.basicsize)
			valid, err := py.m.u8(values + uint64(L.ValuesValid))
			if err == nil && valid != 0 {
				it, err := py.keysItems(t.cachedKeys, values, limit)
				return it, true, err
			}
		}
		return nil, true, nil
	}
	if t.dictoffset > 0 {
		d := word(t.dictoffset)
		if d == 0 {
			return nil, true, nil
		}
		it, _, err := py.dictItems(d, limit)
		return it, true, err
	}
	return nil, false, nil
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
