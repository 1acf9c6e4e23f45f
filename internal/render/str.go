package render

import "unicode"

const hexDigits = "0123456789abcdef"

// quoteFor is the quote rule every CPython string repr shares: single
// quotes, unless the text holds a single quote and no double quote.
func quoteFor(single, double bool) byte {
	if single && !double {
		return '"'
	}
	return '\''
}

// isPrintable is CPython 3's Py_UNICODE_ISPRINTABLE: every character but
// those of categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs, except that the
// ASCII space is printable. Go's unicode.IsPrint draws the same line, from
// the Unicode version of the Go release that built krait (see the package
// tests for how that matches the target's).
func isPrintable(r rune) bool {
	return r == ' ' || unicode.IsPrint(r)
}

// runesRepr writes the quoted repr of a Python 3 str (unicode_repr) or,
// with py2, of a Python 2 unicode without its u prefix
// (unicodeescape_string with quotes): \\, \t, \n, \r and the chosen quote
// are backslash-escaped, other characters below 0x20 and 0x7f become \xhh,
// and non-ASCII characters are kept when printable (Python 3 only) or
// escaped as \xhh, \uhhhh or \Uhhhhhhhh by size. Lone surrogates are
// never printable. Runes outside 0..0x10FFFF, which no Python string
// holds, come out as \U and the rune's 32 bits.
func (w *writer) runesRepr(rs []rune, py2 bool) {
	single, double := false, false
	for _, r := range rs {
		switch r {
		case '\'':
			single = true
		case '"':
			double = true
		}
	}
	q := quoteFor(single, double)
	w.ascii(q)
	for _, r := range rs {
		if w.full() {
			return
		}
		switch {
		case r == rune(q) || r == '\\':
			w.ascii('\\')
			w.ascii(byte(r))
		case r == '\t':
			w.str(`\t`)
		case r == '\n':
			w.str(`\n`)
		case r == '\r':
			w.str(`\r`)
		case r >= ' ' && r < 0x7f:
			w.ascii(byte(r))
		case r >= 0 && r < ' ' || r == 0x7f:
			w.escape('x', uint32(r), 2)
		case !py2 && isPrintable(r):
			w.rune(r)
		case r >= 0 && r <= 0xff:
			w.escape('x', uint32(r), 2)
		case r >= 0 && r <= 0xffff:
			w.escape('u', uint32(r), 4)
		default:
			w.escape('U', uint32(r), 8)
		}
	}
	w.ascii(q)
}

// bytesRepr writes the quoted repr of a Python 3 bytes without its b
// prefix (bytes_repr), which is also a Python 2 str's (PyString_Repr):
// \\, \t, \n, \r and the chosen quote are backslash-escaped, bytes below
// 0x20 or from 0x7f up become \xhh.
func (w *writer) bytesRepr(bs []byte) {
	single, double := false, false
	for _, c := range bs {
		switch c {
		case '\'':
			single = true
		case '"':
			double = true
		}
	}
	q := quoteFor(single, double)
	w.ascii(q)
	for _, c := range bs {
		if w.full() {
			return
		}
		switch {
		case c == q || c == '\\':
			w.ascii('\\')
			w.ascii(c)
		case c == '\t':
			w.str(`\t`)
		case c == '\n':
			w.str(`\n`)
		case c == '\r':
			w.str(`\r`)
		case c < ' ' || c >= 0x7f:
			w.escape('x', uint32(c), 2)
		default:
			w.ascii(c)
		}
	}
	w.ascii(q)
}

// escape writes \<letter> and the low n hex digits of x.
func (w *writer) escape(letter byte, x uint32, n int) {
	var b [10]byte
	b[0] = '\\'
	b[1] = letter
	for i := n - 1; i >= 0; i-- {
		b[2+i] = hexDigits[x&0xf]
		x >>= 4
	}
	w.str(string(b[:2+n]))
}
