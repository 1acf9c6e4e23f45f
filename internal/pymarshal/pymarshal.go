// Package pymarshal decodes data written by Python's marshal module
// (format version 4, Python 3.4 and later) into the values encoding/json
// gives for the same data: nil, bool, float64, string, []any and
// map[string]any. krait's agent sends probe events this way: marshal.dumps
// is many times cheaper than json.dumps in the target, whose CPU is the
// application's.
//
// Only the types marshal writes for plain data are read: None, booleans,
// int, float, complex (as [real, imag]), str, bytes (as a string), tuple,
// list, dict, set and frozenset (as lists), and references. Code objects
// and anything else are an error. The input is untrusted: sizes are
// checked against what is left of it before anything is allocated, and
// nesting is limited.
package pymarshal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrFormat marks input that is not marshal data krait reads.
var ErrFormat = errors.New("pymarshal: bad or unsupported data")

// maxDepth bounds nesting (marshal itself writes at most 2000 levels).
const maxDepth = 2000

const flagRef = 0x80

// Decode reads one value, which must take all of data.
func Decode(data []byte) (any, error) {
	d := &decoder{data: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(d.data) {
		return nil, fmt.Errorf("%w: %d bytes after the value", ErrFormat, len(d.data)-d.pos)
	}
	return v, nil
}

type decoder struct {
	data []byte
	pos  int
	refs []any
	// filled[i]: refs[i] holds its value (a reference to a container
	// still being read, which only a cycle makes, is an error).
	filled []bool
}

func (d *decoder) fail(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrFormat, d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) take(n int) ([]byte, error) {
	if n < 0 || n > len(d.data)-d.pos {
		return nil, d.fail("%d bytes wanted, %d left", n, len(d.data)-d.pos)
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *decoder) byte() (byte, error) {
	b, err := d.take(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) int32() (int32, error) {
	b, err := d.take(4)
	if err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(b)), nil
}

// size reads a 32-bit count of items each taking at least min bytes.
func (d *decoder) size(min int) (int, error) {
	n, err := d.int32()
	if err != nil {
		return 0, err
	}
	if n < 0 || int(n) > (len(d.data)-d.pos)/min {
		return 0, d.fail("size %d exceeds the data", n)
	}
	return int(n), nil
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, d.fail("nested deeper than %d", maxDepth)
	}
	code, err := d.byte()
	if err != nil {
		return nil, err
	}
	ref := -1
	if code&flagRef != 0 {
		code &^= flagRef
		ref = len(d.refs)
		d.refs = append(d.refs, nil)
		d.filled = append(d.filled, false)
	}
	v, err := d.body(code, depth)
	if err != nil {
		return nil, err
	}
	if ref >= 0 {
		d.refs[ref], d.filled[ref] = v, true
	}
	return v, nil
}

func (d *decoder) body(code byte, depth int) (any, error) {
	switch code {
	case 'N':
		return nil, nil
	case 'T':
		return true, nil
	case 'F':
		return false, nil
	case 'i':
		n, err := d.int32()
		return float64(n), err
	case 'l':
		return d.long()
	case 'g':
		return d.float()
	case 'y':
		re, err := d.float()
		if err != nil {
			return nil, err
		}
		im, err := d.float()
		return []any{re, im}, err
	case 'z', 'Z': // short ASCII
		n, err := d.byte()
		if err != nil {
			return nil, err
		}
		return d.str(int(n))
	case 'a', 'A', 'u', 't', 's': // ASCII, UTF-8, bytes
		n, err := d.size(1)
		if err != nil {
			return nil, err
		}
		return d.str(n)
	case ')':
		n, err := d.byte()
		if err != nil {
			return nil, err
		}
		return d.items(int(n), depth)
	case '(', '[', '<', '>':
		n, err := d.size(1)
		if err != nil {
			return nil, err
		}
		return d.items(n, depth)
	case '{':
		return d.dict(depth)
	case 'r':
		i, err := d.int32()
		if err != nil {
			return nil, err
		}
		if i < 0 || int(i) >= len(d.refs) || !d.filled[i] {
			return nil, d.fail("reference %d to nothing read", i)
		}
		return d.refs[i], nil
	}
	return nil, d.fail("type code %q not supported", code)
}

// long reads an int of any size (15-bit digits), as float64 as JSON would.
func (d *decoder) long() (any, error) {
	n, err := d.int32()
	if err != nil {
		return nil, err
	}
	neg := n < 0
	if neg {
		n = -n
	}
	if n < 0 || int(n) > (len(d.data)-d.pos)/2 {
		return nil, d.fail("int of %d digits exceeds the data", n)
	}
	b, _ := d.take(2 * int(n))
	var v float64
	for i := int(n) - 1; i >= 0; i-- {
		v = v*32768 + float64(binary.LittleEndian.Uint16(b[2*i:]))
	}
	if neg {
		v = -v
	}
	return v, nil
}

// float reads a binary double; NaN and the infinities, which JSON cannot
// hold, are nil.
func (d *decoder) float() (any, error) {
	b, err := d.take(8)
	if err != nil {
		return nil, err
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(b))
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, nil
	}
	return f, nil
}

// str reads n bytes of text. Python writes a str's lone surrogates as
// their 3-byte (invalid) UTF-8 forms: they become what encoding/json makes
// of json.dumps's \uXXXX escapes for them (U+FFFD each; a high and a low
// one in a row, the character they pair to). Other invalid bytes (a bytes
// value) are U+FFFD each.
func (d *decoder) str(n int) (any, error) {
	b, err := d.take(n)
	if err != nil {
		return nil, err
	}
	if utf8.Valid(b) {
		return string(b), nil
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			hi, ok := surrogate(b)
			if !ok {
				sb.WriteRune(utf8.RuneError)
				b = b[1:]
				continue
			}
			b = b[3:]
			if lo, ok := surrogate(b); ok && utf16.IsSurrogate(hi) && hi < 0xdc00 && lo >= 0xdc00 {
				sb.WriteRune(utf16.DecodeRune(hi, lo))
				b = b[3:]
				continue
			}
			sb.WriteRune(utf8.RuneError)
			continue
		}
		sb.Write(b[:size])
		b = b[size:]
	}
	return sb.String(), nil
}

// surrogate reads a surrogate code point written as UTF-8 (ED A0–BF 80–BF).
func surrogate(b []byte) (rune, bool) {
	if len(b) < 3 || b[0] != 0xed || b[1] < 0xa0 || b[1] > 0xbf || b[2] < 0x80 || b[2] > 0xbf {
		return 0, false
	}
	return 0xd000 | rune(b[1]&0x3f)<<6 | rune(b[2]&0x3f), true
}

func (d *decoder) items(n, depth int) (any, error) {
	out := make([]any, 0, n)
	for i := 0; i < n; i++ {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// dict reads key, value pairs up to the null code; keys that are not
// strings are named as JSON names them (json.dumps: None → "null", a
// number as written).
func (d *decoder) dict(depth int) (any, error) {
	out := map[string]any{}
	for {
		if d.pos < len(d.data) && d.data[d.pos] == '0' {
			d.pos++
			return out, nil
		}
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out[keyName(k)] = v
	}
}

func keyName(k any) string {
	switch x := k.(type) {
	case string:
		return x
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(k)
}
