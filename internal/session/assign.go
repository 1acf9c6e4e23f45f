package session

import (
	"regexp"
	"strings"
)

// SplitAssign splits TARGET = EXPR at its assignment's "=" (outside
// brackets and strings; not ==, !=, <=, >=): TARGET a name, an attribute
// or an item, as SetVar takes them (gdb's set var and print TARGET =
// EXPR; a debug console's assignment).
func SplitAssign(s string) (target, expr string, ok bool) {
	depth := 0
	var quote rune
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		case c == '=' && depth == 0:
			if i+1 < len(rs) && rs[i+1] == '=' {
				return "", "", false
			}
			if i > 0 && strings.ContainsRune("=!<>:", rs[i-1]) {
				return "", "", false
			}
			target, expr = strings.TrimSpace(string(rs[:i])), strings.TrimSpace(string(rs[i+1:]))
			if !lvalue.MatchString(target) || expr == "" {
				return "", "", false
			}
			return target, expr, true
		}
	}
	return "", "", false
}

// lvalue: a name, then attributes and items (a.b, d['k'], a.b[0].c).
var lvalue = regexp.MustCompile(`^[A-Za-z_]\w*(\s*(\.\s*[A-Za-z_]\w*|\[.*\]))*$`)
