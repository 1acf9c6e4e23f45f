package render

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"unicode"
	"unicode/utf8"

	"krait/internal/value"
)

// TestAllCodePointsAgainstPython renders every code point, in strings of
// 4096, as Python 3 str and as Python 2 unicode and compares with the
// interpreters. A Python 3's printable set follows its Unicode database,
// so only interpreters on Go's Unicode version (unicode.Version) can agree
// on all of them; Python 2's unicode repr escapes all non-ASCII and does
// not depend on it.
func TestAllCodePointsAgainstPython(t *testing.T) {
	const chunk = 0x1000
	ran := false
	for _, p := range pythons(t) {
		if p.major == 3 && p.unidata != unicode.Version {
			t.Logf("%s skipped: Unicode %s, Go has %s", p, p.unidata, unicode.Version)
			continue
		}
		ran = true
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			var exprs []string
			var values []*value.Value
			for lo := rune(0); lo < 0x110000; lo += chunk {
				rs := runeRange(lo, lo+chunk-1)
				if p.major == 2 {
					exprs = append(exprs, fmt.Sprintf("u''.join(map(unichr, range(%d, %d)))", lo, lo+chunk))
					values = append(values, vUni(rs...))
				} else {
					exprs = append(exprs, fmt.Sprintf("''.join(map(chr, range(%d, %d)))", lo, lo+chunk))
					values = append(values, vRunes(rs...))
				}
			}
			for i, want := range p.reprs(t, exprs) {
				if got := Repr(values[i], Options{}); got != want {
					t.Errorf("code points %#x..: Repr differs from Python at %s", values[i].Runes[0], firstDiff(got, want))
				}
			}
		})
	}
	if !ran {
		t.Skip("no Python 2 and no Python 3 with Unicode " + unicode.Version)
	}
}

func firstDiff(a, b string) string {
	ra, rb := []rune(a), []rune(b)
	i := 0
	for i < len(ra) && i < len(rb) && ra[i] == rb[i] {
		i++
	}
	return fmt.Sprintf("rune %d: %q vs %q", i, string(ra[i:min(i+12, len(ra))]), string(rb[i:min(i+12, len(rb))]))
}

// fuzzRunes turns fuzz input into runes: mode 0 reads UTF-8, mode 1
// UTF-16 code units without pairing them (BMP characters and lone
// surrogates), mode 2 raw 32-bit values (any rune, valid or not).
func fuzzRunes(data []byte, mode int) []rune {
	var rs []rune
	switch mode {
	case 0:
		for len(data) > 0 {
			r, n := utf8.DecodeRune(data)
			rs = append(rs, r)
			data = data[n:]
		}
	case 1:
		for ; len(data) >= 2; data = data[2:] {
			rs = append(rs, rune(binary.LittleEndian.Uint16(data)))
		}
	default:
		for ; len(data) >= 4; data = data[4:] {
			rs = append(rs, rune(int32(binary.LittleEndian.Uint32(data))))
		}
	}
	return rs
}

func FuzzStrRepr(f *testing.F) {
	f.Add([]byte("hello"), uint8(0), uint16(0))
	f.Add([]byte(`it's "x" \ é 中 😀`), uint8(0), uint16(7))
	f.Add([]byte{0, 0xd8, 0x3d, 0xd8, 0x00, 0xde, '\'', 0}, uint8(1), uint16(3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0x11, 0}, uint8(2), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, width uint16) {
		rs := fuzzRunes(data, int(mode%3))
		check := func(v *value.Value, prefix string, want []rune, py2 bool) {
			t.Helper()
			s := Repr(v, Options{})
			if !utf8.ValidString(s) {
				t.Fatalf("%q: invalid UTF-8", s)
			}
			got, err := parsePyLiteral(s, prefix, py2)
			if err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			if string(got) != string(want) || len(got) != len(want) {
				t.Fatalf("%q reads back as %q, not %q", s, got, want)
			}
			if w := int(width % 64); w > 0 {
				cut := Repr(v, Options{MaxWidth: w})
				if !utf8.ValidString(cut) || utf8.RuneCountInString(cut) > w {
					t.Fatalf("MaxWidth %d: %q", w, cut)
				}
			}
		}
		check(vRunes(rs...), "", rs, false)
		check(vUni(rs...), "u", rs, true)
		bs := make([]rune, len(data))
		for i, c := range data {
			bs[i] = rune(c)
		}
		check(vBytes(string(data)), "b", bs, false)
		check(vPy2Str(string(data)), "", bs, true)
	})
}

// parsePyLiteral reads back a string repr made by Repr: prefix, then a
// quoted Python literal. It checks the quote rule, and that every
// character left unescaped had to be (printable, and ASCII for py2 and
// bytes).
func parsePyLiteral(s, prefix string, py2 bool) ([]rune, error) {
	if len(s) < len(prefix)+2 || s[:len(prefix)] != prefix {
		return nil, fmt.Errorf("no %q prefix", prefix)
	}
	s = s[len(prefix):]
	q := s[0]
	if (q != '\'' && q != '"') || s[len(s)-1] != q {
		return nil, fmt.Errorf("bad quotes")
	}
	body := []rune(s[1 : len(s)-1])
	asciiOnly := py2 || prefix == "b"
	var out []rune
	single, double := false, false
	for i := 0; i < len(body); i++ {
		r := body[i]
		if r != '\\' {
			switch {
			case r == rune(q):
				return nil, fmt.Errorf("unescaped quote at %d", i)
			case asciiOnly && (r < ' ' || r >= 0x7f):
				return nil, fmt.Errorf("unescaped %U", r)
			case !isPrintable(r):
				return nil, fmt.Errorf("unescaped %U", r)
			}
			out = append(out, r)
			single = single || r == '\''
			double = double || r == '"'
			continue
		}
		if i+1 >= len(body) {
			return nil, fmt.Errorf("trailing backslash")
		}
		i++
		n := 0
		switch body[i] {
		case '\\', '\'', '"':
			out = append(out, body[i])
			single = single || body[i] == '\''
			double = double || body[i] == '"'
			if body[i] != '\\' && body[i] != rune(q) {
				return nil, fmt.Errorf("needless escape of %q", body[i])
			}
		case 't':
			out = append(out, '\t')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 'x':
			n = 2
		case 'u':
			n = 4
		case 'U':
			n = 8
		default:
			return nil, fmt.Errorf("unknown escape \\%c", body[i])
		}
		if n == 0 {
			continue
		}
		if i+1+n > len(body) {
			return nil, fmt.Errorf("short \\%c escape", body[i])
		}
		x, err := strconv.ParseUint(string(body[i+1:i+1+n]), 16, 32)
		if err != nil {
			return nil, err
		}
		i += n
		out = append(out, rune(int32(uint32(x))))
	}
	if want := quoteFor(single, double); q != want {
		return nil, fmt.Errorf("quote %c, want %c", q, want)
	}
	return out, nil
}
