package cache

import (
	"strings"
	"unicode"
)

// Tables says which tables a SQL statement reads (SELECT, and the FROM and
// JOIN clauses of any statement) and writes (INSERT INTO, UPDATE, DELETE
// FROM, TRUNCATE). Names are unquoted, without their schema, and lower
// case unless they were quoted. FROM inside a function call
// (EXTRACT(year FROM x), SUBSTRING(s FROM 2)) is not a table.
func Tables(sql string) (read, written []string) {
	toks := tokenize(sql)
	// selects[d]: a SELECT or DELETE opened a FROM clause at paren depth d.
	selects := map[int]bool{}
	depth := 0
	addTo := func(list *[]string, name string) {
		for _, x := range *list {
			if x == name {
				return
			}
		}
		*list = append(*list, name)
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == '(':
			depth++
			delete(selects, depth)
			continue
		case t.kind == ')':
			delete(selects, depth)
			if depth > 0 {
				depth--
			}
			continue
		case t.kind != 'w':
			continue
		}
		switch strings.ToUpper(t.text) {
		case "SELECT":
			selects[depth] = true
		case "FROM":
			if !selects[depth] {
				continue
			}
			// A list of table references: name [AS] [alias] [, ...].
			for j := i + 1; j < len(toks); {
				name, next, ok := tableRef(toks, j)
				if !ok {
					break
				}
				addTo(&read, name)
				j = skipAlias(toks, next)
				if j < len(toks) && toks[j].kind == ',' {
					j++
					continue
				}
				break
			}
		case "JOIN":
			if !selects[depth] {
				continue
			}
			j := i + 1
			if j < len(toks) && toks[j].kind == 'w' && strings.EqualFold(toks[j].text, "LATERAL") {
				j++
			}
			if name, _, ok := tableRef(toks, j); ok {
				addTo(&read, name)
			}
		case "INTO":
			if i > 0 && toks[i-1].kind == 'w' && strings.EqualFold(toks[i-1].text, "INSERT") {
				if name, _, ok := tableRef(toks, i+1); ok {
					addTo(&written, name)
				}
			}
		case "UPDATE":
			// Not "FOR UPDATE", not "ON CONFLICT ... DO UPDATE".
			if i > 0 && toks[i-1].kind == 'w' && (strings.EqualFold(toks[i-1].text, "FOR") || strings.EqualFold(toks[i-1].text, "DO")) {
				continue
			}
			j := i + 1
			if j < len(toks) && toks[j].kind == 'w' && strings.EqualFold(toks[j].text, "ONLY") {
				j++
			}
			if name, next, ok := tableRef(toks, j); ok {
				addTo(&written, name)
				// UPDATE t SET ... FROM other: other is read.
				_ = next
				selects[depth] = true
			}
		case "DELETE":
			j := i + 1
			if j < len(toks) && toks[j].kind == 'w' && strings.EqualFold(toks[j].text, "FROM") {
				j++
				if j < len(toks) && toks[j].kind == 'w' && strings.EqualFold(toks[j].text, "ONLY") {
					j++
				}
				if name, next, ok := tableRef(toks, j); ok {
					addTo(&written, name)
					i = next - 1
					selects[depth] = true // DELETE ... USING / subqueries read
				}
			}
		case "TRUNCATE":
			j := i + 1
			if j < len(toks) && toks[j].kind == 'w' && strings.EqualFold(toks[j].text, "TABLE") {
				j++
			}
			if j < len(toks) && toks[j].kind == 'w' && strings.EqualFold(toks[j].text, "ONLY") {
				j++
			}
			for j < len(toks) {
				name, next, ok := tableRef(toks, j)
				if !ok {
					break
				}
				addTo(&written, name)
				j = next
				if j < len(toks) && toks[j].kind == ',' {
					j++
					continue
				}
				break
			}
		}
	}
	return read, written
}

// IsWrite says whether the statement changes a table.
func IsWrite(sql string) bool {
	_, w := Tables(sql)
	return len(w) > 0
}

type token struct {
	kind byte // 'w' word or identifier, 'q' quoted identifier, 's' string, '(' ')' ',' '.', 'o' other
	text string
}

var reserved = map[string]bool{
	"WHERE": true, "JOIN": true, "INNER": true, "LEFT": true, "RIGHT": true, "FULL": true, "CROSS": true,
	"OUTER": true, "ON": true, "USING": true, "GROUP": true, "ORDER": true, "LIMIT": true, "OFFSET": true,
	"HAVING": true, "UNION": true, "EXCEPT": true, "INTERSECT": true, "FOR": true, "SET": true, "VALUES": true,
	"RETURNING": true, "NATURAL": true, "WINDOW": true, "FETCH": true, "SELECT": true, "AS": true, "CASCADE": true,
	"RESTRICT": true, "RESTART": true, "CONTINUE": true, "LATERAL": true, "ONLY": true,
}

// tableRef reads a table name at toks[i] (schema.name, quoted or not):
// the bare name, and where what follows begins. A '(' (a subquery) is no
// table.
func tableRef(toks []token, i int) (string, int, bool) {
	if i >= len(toks) {
		return "", i, false
	}
	name, ok := ident(toks[i])
	if !ok {
		return "", i, false
	}
	i++
	for i+1 < len(toks) && toks[i].kind == '.' {
		n, ok := ident(toks[i+1])
		if !ok {
			break
		}
		name = n
		i += 2
	}
	return name, i, true
}

func ident(t token) (string, bool) {
	switch t.kind {
	case 'q':
		return t.text, true
	case 'w':
		if reserved[strings.ToUpper(t.text)] {
			return "", false
		}
		return strings.ToLower(t.text), true
	}
	return "", false
}

// skipAlias skips "[AS] alias" after a table reference.
func skipAlias(toks []token, i int) int {
	if i < len(toks) && toks[i].kind == 'w' && strings.EqualFold(toks[i].text, "AS") {
		i++
	}
	if i < len(toks) && (toks[i].kind == 'q' || toks[i].kind == 'w' && !reserved[strings.ToUpper(toks[i].text)]) {
		i++
	}
	return i
}

// tokenize splits SQL into words, quoted identifiers ("x", `x`, [x]),
// strings, punctuation; comments are dropped.
func tokenize(s string) []token {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return out
			}
			i += end + 4
		case c == '"' || c == '`':
			j := i + 1
			var b strings.Builder
			for j < len(s) {
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c { // doubled quote
						b.WriteByte(c)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			out = append(out, token{'q', b.String()})
			i = j + 1
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return out
			}
			out = append(out, token{'q', s[i+1 : i+end]})
			i += end + 1
		case c == '\'':
			j := i + 1
			for j < len(s) {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			out = append(out, token{'s', ""})
			i = j + 1
		case c == '(' || c == ')' || c == ',' || c == '.':
			out = append(out, token{c, string(c)})
			i++
		case c == '_' || c == '$' || c < 0x80 && unicode.IsLetter(rune(c)) || c >= 0x80:
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] >= 0x80 || s[j] < 0x80 && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])))) {
				j++
			}
			out = append(out, token{'w', s[i:j]})
			i = j
		case unicode.IsSpace(rune(c)):
			i++
		default:
			j := i + 1
			if c >= '0' && c <= '9' {
				for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
					j++
				}
			}
			out = append(out, token{'o', s[i:j]})
			i = j
		}
	}
	return out
}
