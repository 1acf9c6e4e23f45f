// Package dprintf is gdb's dynamic printf for Python values: the command's
// syntax (LOCATION,"FORMAT",ARG...), its C printf-style format, checked
// when the dprintf is set, and the line each crossing prints, from the
// values the agent sends (rendered in the target without running user
// code; see internal/agent/PROTOCOL.md, "Probe events").
package dprintf

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Spec is a parsed dprintf command.
type Spec struct {
	Location string
	Format   *Format
	Args     []string // Python expressions, one per directive that takes one
}

// Parse reads gdb's `dprintf LOCATION,"FORMAT",ARG...` (what follows the
// command's name), with gdb's errors.
func Parse(arg string) (*Spec, error) {
	arg = strings.TrimSpace(arg)
	i := strings.IndexByte(arg, ',')
	if arg == "" || i == 0 {
		return nil, errors.New("Format string required")
	}
	if i < 0 {
		return nil, errors.New("Format string required")
	}
	loc, rest := strings.TrimSpace(arg[:i]), strings.TrimSpace(arg[i+1:])
	if !strings.HasPrefix(rest, `"`) {
		return nil, errors.New("Bad format string")
	}
	text, n, err := unquote(rest)
	if err != nil {
		return nil, err
	}
	rest = strings.TrimSpace(rest[n:])
	var args []string
	if rest != "" {
		if rest[0] != ',' {
			return nil, errors.New("Invalid argument syntax")
		}
		if args, err = splitArgs(rest[1:]); err != nil {
			return nil, err
		}
	}
	f, err := ParseFormat(text)
	if err != nil {
		return nil, err
	}
	if f.NArgs() != len(args) {
		return nil, errors.New("Wrong number of arguments for specified format-string")
	}
	return &Spec{Location: loc, Format: f, Args: args}, nil
}

// unquote reads the C string literal s starts with and returns its value
// and length.
func unquote(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			i++
			if i >= len(s) {
				return "", 0, errors.New(`Bad format string, non-terminated '"'`)
			}
			switch e := s[i]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'v':
				b.WriteByte('\v')
			case 'e':
				b.WriteByte(0x1b)
			case '\\', '"', '\'':
				b.WriteByte(e)
			default:
				return "", 0, fmt.Errorf("Unrecognized escape character \\%c in format string.", e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New(`Bad format string, non-terminated '"'`)
}

// splitArgs splits Python expressions at the commas outside brackets and
// string literals.
func splitArgs(s string) ([]string, error) {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'':
			quote = c
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	out = append(out, strings.TrimSpace(s[start:]))
	for _, a := range out {
		if a == "" {
			return nil, errors.New("Invalid argument syntax")
		}
	}
	return out, nil
}

// Format is a parsed C printf format: literal text and directives.
type Format struct {
	Text  string
	parts []part
}

type part struct {
	lit   string // literal text (verb == 0)
	verb  byte   // d i u o x X c s f F e E g G r
	flags string // of "-+ #0"
	width int    // -1: none
	prec  int    // -1: none
}

// ParseFormat checks a format: every directive one gdb's printf knows
// for these values (d i u o x X c s f F e E g G, %% and, for Python, r:
// the value as print renders it), with flags, width and precision as
// numbers (a `*` is refused, as gdb does) and C length modifiers, which
// are ignored.
func ParseFormat(text string) (*Format, error) {
	f := &Format{Text: text}
	lit := strings.Builder{}
	for i := 0; i < len(text); i++ {
		if text[i] != '%' {
			lit.WriteByte(text[i])
			continue
		}
		i++
		if i < len(text) && text[i] == '%' {
			lit.WriteByte('%')
			continue
		}
		p := part{width: -1, prec: -1}
		for i < len(text) && strings.IndexByte("-+ #0'", text[i]) >= 0 {
			if text[i] != '\'' && !strings.ContainsRune(p.flags, rune(text[i])) {
				p.flags += string(text[i])
			}
			i++
		}
		num := func() int {
			j := i
			for i < len(text) && text[i] >= '0' && text[i] <= '9' {
				i++
			}
			if j == i {
				return -1
			}
			n, _ := strconv.Atoi(text[j:i])
			return min(n, 1000)
		}
		if i < len(text) && text[i] == '*' {
			return nil, errors.New("`*' not supported for precision or width in printf")
		}
		p.width = num()
		if i < len(text) && text[i] == '.' {
			i++
			if i < len(text) && text[i] == '*' {
				return nil, errors.New("`*' not supported for precision or width in printf")
			}
			if p.prec = num(); p.prec < 0 {
				p.prec = 0
			}
		}
		for i < len(text) && strings.IndexByte("hlLqjzt", text[i]) >= 0 {
			i++
		}
		if i >= len(text) {
			return nil, errors.New("Incomplete format specifier at end of format string")
		}
		c := text[i]
		if strings.IndexByte("diuoxXcsfFeEgGr", c) < 0 {
			return nil, fmt.Errorf("Unrecognized format specifier '%c' in printf", c)
		}
		p.verb = c
		if lit.Len() > 0 {
			f.parts = append(f.parts, part{lit: lit.String()})
			lit.Reset()
		}
		f.parts = append(f.parts, p)
	}
	if lit.Len() > 0 {
		f.parts = append(f.parts, part{lit: lit.String()})
	}
	return f, nil
}

// NArgs is how many arguments the format takes.
func (f *Format) NArgs() int {
	n := 0
	for _, p := range f.parts {
		if p.verb != 0 {
			n++
		}
	}
	return n
}

// Modes says, per argument, what the agent sends: "repr" for %r (the
// value as print renders it, a string quoted), else "value" (a string's
// own text, a number's digits).
func (f *Format) Modes() []string {
	var out []string
	for _, p := range f.parts {
		if p.verb == 'r' {
			out = append(out, "repr")
		} else if p.verb != 0 {
			out = append(out, "value")
		}
	}
	return out
}

// Value is one argument's value as the agent sends it: Kind "str" (Text
// the string itself), "int", "bool", "float" (Text its repr), "other" (the
// safe rendering) or "error" (Text "<error: …>"); Type its type's name
// (the event's "types").
type Value struct {
	Kind, Text, Type string
}

// Values reads an event's "values" and "types".
func Values(values, types any) []Value {
	list, _ := values.([]any)
	tl, _ := types.([]any)
	out := make([]Value, 0, len(list))
	for i, it := range list {
		pair, _ := it.([]any)
		var val Value
		if len(pair) >= 2 {
			val.Kind, _ = pair[0].(string)
			val.Text, _ = pair[1].(string)
		}
		if i < len(tl) {
			val.Type, _ = tl[i].(string)
		}
		out = append(out, val)
	}
	return out
}

// Sprint formats vals (one per directive; missing ones print as
// <missing>) as C's printf would the corresponding C values, Python's
// way where C has none: %s of any value is its rendering, %d of a float
// its integer part, %x of a bool 0 or 1; a value a directive cannot take
// prints as <error: …>.
func (f *Format) Sprint(vals []Value) string {
	var b strings.Builder
	k := 0
	for _, p := range f.parts {
		if p.verb == 0 {
			b.WriteString(p.lit)
			continue
		}
		v := Value{Kind: "error", Text: "<missing>"}
		if k < len(vals) {
			v = vals[k]
		}
		k++
		b.WriteString(p.format(v))
	}
	return b.String()
}

// goVerb is the Go directive with p's flags, width and precision.
func (p part) goVerb(verb byte, prec bool) string {
	s := "%" + p.flags
	if p.width >= 0 {
		s += strconv.Itoa(p.width)
	}
	if prec && p.prec >= 0 {
		s += "." + strconv.Itoa(p.prec)
	}
	return s + string(verb)
}

func (p part) format(v Value) string {
	if v.Kind == "error" {
		return v.Text
	}
	switch p.verb {
	case 's', 'r':
		return p.str(v.Text)
	case 'c':
		switch v.Kind {
		case "str":
			if utf8.RuneCountInString(v.Text) == 1 {
				return p.str(v.Text)
			}
		case "int", "bool":
			if n, ok := p.integer(v); ok && n.IsInt64() && n.Int64() >= 0 && n.Int64() <= utf8.MaxRune {
				return p.str(string(rune(n.Int64())))
			}
		}
		return fmt.Sprintf("<error: %%c requires an int or a one-character str, not %s>", kindName(v))
	case 'd', 'i', 'u', 'o', 'x', 'X':
		n, ok := p.integer(v)
		if !ok {
			return fmt.Sprintf("<error: %%%c format: a number is required, not %s>", p.verb, kindName(v))
		}
		verb := map[byte]byte{'i': 'd', 'u': 'd'}[p.verb]
		if verb == 0 {
			verb = p.verb
		}
		return fmt.Sprintf(p.goVerb(verb, true), n)
	default: // f F e E g G
		x, ok := p.float(v)
		if !ok {
			return fmt.Sprintf("<error: %%%c format: a number is required, not %s>", p.verb, kindName(v))
		}
		if math.IsInf(x, 0) || math.IsNaN(x) {
			s := "inf"
			if math.IsNaN(x) {
				s = "nan"
			} else if x < 0 {
				s = "-inf"
			} else if strings.Contains(p.flags, "+") {
				s = "+inf"
			}
			if p.verb >= 'A' && p.verb <= 'Z' {
				s = strings.ToUpper(s)
			}
			q := p
			q.prec = -1
			return q.str(s)
		}
		q := p
		if q.prec < 0 {
			q.prec = 6 // C's default (Go's %g would print the shortest form)
		}
		verb := p.verb
		if verb == 'F' {
			verb = 'f'
		}
		return fmt.Sprintf(q.goVerb(verb, true), x)
	}
}

// str pads (and, with a precision, truncates) text as C's %s does.
func (p part) str(text string) string {
	q := p
	q.flags = strings.Map(func(r rune) rune {
		if r == '-' {
			return r
		}
		return -1
	}, p.flags)
	return fmt.Sprintf(q.goVerb('s', true), text)
}

func (p part) integer(v Value) (*big.Int, bool) {
	switch v.Kind {
	case "int":
		n, ok := new(big.Int).SetString(v.Text, 10)
		return n, ok
	case "bool":
		if v.Text == "True" {
			return big.NewInt(1), true
		}
		return big.NewInt(0), true
	case "float":
		if p.verb != 'd' && p.verb != 'i' && p.verb != 'u' {
			return nil, false // as Python: %x of a float is an error
		}
		x, err := strconv.ParseFloat(v.Text, 64)
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, false
		}
		n, _ := big.NewFloat(math.Trunc(x)).Int(nil)
		return n, true
	}
	return nil, false
}

func (p part) float(v Value) (float64, bool) {
	switch v.Kind {
	case "int", "float":
		x, err := strconv.ParseFloat(v.Text, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, false
		}
		return x, true
	case "bool":
		if v.Text == "True" {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// kindName names a value's type for an error.
func kindName(v Value) string {
	if v.Type != "" {
		return v.Type
	}
	return v.Kind
}
