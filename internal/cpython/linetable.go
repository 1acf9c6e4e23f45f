package cpython

import "krait/internal/cpython/layout"

// lineForOffset maps a bytecode offset (in bytes) to a source line using
// the code object's line table in the given format.
func lineForOffset(format int, table []byte, firstLine int, offset int) int {
	switch format {
	case layout.Lnotab:
		return lnotabLine(table, firstLine, offset)
	case layout.LnotabUnsigned:
		return lnotabLinePy2(table, firstLine, offset)
	case layout.Linetable310:
		return linetable310Line(table, firstLine, offset)
	default:
		return locationsLine(table, firstLine, offset/2)
	}
}

// lnotabLine: pairs of (bytecode increment, line increment); line
// increments are signed from 3.6 on (Python 2 only ever adds).
func lnotabLine(tab []byte, line, offset int) int {
	addr := 0
	for i := 0; i+1 < len(tab); i += 2 {
		addr += int(tab[i])
		if addr > offset {
			break
		}
		line += int(int8(tab[i+1]))
	}
	return line
}

// lnotabLinePy2 is lnotabLine with unsigned line increments.
func lnotabLinePy2(tab []byte, line, offset int) int {
	addr := 0
	for i := 0; i+1 < len(tab); i += 2 {
		addr += int(tab[i])
		if addr > offset {
			break
		}
		line += int(tab[i+1])
	}
	return line
}

// linetable310Line: pairs of (bytecode length, signed line delta), a delta
// of -128 meaning "no line" (3.10).
func linetable310Line(tab []byte, line, offset int) int {
	end := 0
	for i := 0; i+1 < len(tab); i += 2 {
		sdelta, ldelta := int(tab[i]), int(int8(tab[i+1]))
		cur := -1
		if ldelta != -128 {
			line += ldelta
			cur = line
		}
		start := end
		end += sdelta
		if sdelta > 0 && offset >= start && offset < end {
			return cur
		}
	}
	return -1
}

// locationsLine walks the 3.11+ location table (PEP 626/657) to the entry
// covering the given code unit.
func locationsLine(tab []byte, line, unit int) int {
	if unit < 0 {
		return line
	}
	addr := 0
	i := 0
	for i < len(tab) {
		b := tab[i]
		if b&0x80 == 0 {
			return -1 // not at an entry start: corrupt table
		}
		code := int(b>>3) & 15
		length := int(b&7) + 1
		i++
		delta := 0
		noLine := false
		switch {
		case code == 15: // no location
			noLine = true
		case code == 14: // long form
			var d int
			d, i = svarint(tab, i)
			delta = d
			_, i = uvarint(tab, i) // end line delta
			_, i = uvarint(tab, i) // column + 1
			_, i = uvarint(tab, i) // end column + 1
		case code == 13: // no column
			delta, i = svarint(tab, i)
		case code >= 10: // one-line forms
			delta = code - 10
			i += 2
		default: // short form
			i++
		}
		line += delta
		if unit >= addr && unit < addr+length {
			if noLine {
				return -1
			}
			return line
		}
		addr += length
	}
	return -1
}

func uvarint(tab []byte, i int) (int, int) {
	if i >= len(tab) {
		return 0, i
	}
	b := tab[i]
	i++
	v := int(b & 63)
	shift := 0
	for b&64 != 0 && i < len(tab) && shift < 56 {
		b = tab[i]
		i++
		shift += 6
		v |= int(b&63) << shift
	}
	return v, i
}

func svarint(tab []byte, i int) (int, int) {
	u, i := uvarint(tab, i)
	if u&1 != 0 {
		return -(u >> 1), i
	}
	return u >> 1, i
}
