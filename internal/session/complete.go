package session

import (
	"strconv"
	"strings"
	"unicode"
)

// Completion is one completion of what is typed in a stopped frame: Text
// replaces the text from the start Complete returns to the cursor.
type Completion struct {
	Text string
	Kind string // variable, attribute, key, function, module, class
}

// Complete completes the expression ending at byte offset cursor of text
// in the selected frame of the selected (stopped) thread: a bare name
// (locals, globals, builtins), NAME.partial (attributes), NAME['partial
// (a dict's str keys), NAME being a chain of names, attributes and items
// with literal keys (request.META, data.items[0], $2.lines). It returns where the
// completed word starts in text and the candidates, sorted. The agent
// walks the chain without running user code (no getattr, property,
// __getattr__ or __dir__); a chain it cannot walk that way, or text that
// ends in anything else, has no completions (not an error).
func (s *Session) Complete(text string, cursor int) (int, []Completion, error) {
	if cursor < 0 || cursor > len(text) {
		cursor = len(text)
	}
	ctx, ok := parseCompletion(text[:cursor])
	if !ok {
		return cursor, nil, nil
	}
	if err := s.needStopped(); err != nil {
		return cursor, nil, err
	}
	if root, ok := firstString(ctx.chain); ok && strings.HasPrefix(root, "$") {
		e, err := s.expandHistory(root) // __krait_h[N]
		n, aerr := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(e, "__krait_h["), "]"))
		if err != nil || aerr != nil {
			return cursor, nil, nil
		}
		ctx.chain[0] = []any{"h", n}
	} else if ctx.what == "name" && strings.HasPrefix(ctx.prefix, "$") {
		return cursor, nil, nil
	}
	r, err := s.call("complete", map[string]any{"thread": s.Thread, "frame": s.Frame, "chain": ctx.chain,
		"what": ctx.what, "prefix": ctx.prefix})
	if err != nil {
		return cursor, nil, nil // no completions (a chain the agent does not walk)
	}
	list, _ := r["items"].([]any)
	out := make([]Completion, 0, len(list))
	for _, it := range list {
		m, _ := it.(map[string]any)
		name := str(m, "name")
		if ctx.what == "key" && strings.ContainsRune(name, ctx.quote) {
			continue
		}
		out = append(out, Completion{Text: name, Kind: str(m, "kind")})
	}
	return ctx.start, out, nil
}

func firstString(chain []any) (string, bool) {
	if len(chain) == 0 {
		return "", false
	}
	s, ok := chain[0].(string)
	return s, ok
}

// completionContext is what the text before the cursor asks to complete.
type completionContext struct {
	chain  []any  // [] or [name, ["a", attr] | ["i", key]...]
	what   string // name, attr, key
	prefix string // the partial word
	start  int    // where prefix starts
	quote  rune   // key: the quote typed
}

// token is a lexical token of the text before the cursor.
type token struct {
	kind  byte // 'n' name, 'd' number, 's' string, 'u' unterminated string, 'p' punctuation
	text  string
	value any // a string's or a number's value
	start int
	end   int
}

func lexCompletion(text string) []token {
	var out []token
	for i := 0; i < len(text); {
		c := rune(text[i])
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '_' || unicode.IsLetter(c) || c >= 0x80:
			j := i
			for j < len(text) && (text[j] == '_' || text[j] >= 0x80 || unicode.IsLetter(rune(text[j])) || unicode.IsDigit(rune(text[j]))) {
				j++
			}
			out = append(out, token{kind: 'n', text: text[i:j], start: i, end: j})
			i = j
		case c == '$': // gdb's value history: $, $N, $$, $$N
			j := i + 1
			if j < len(text) && text[j] == '$' {
				j++
			}
			for j < len(text) && unicode.IsDigit(rune(text[j])) {
				j++
			}
			out = append(out, token{kind: 'n', text: text[i:j], start: i, end: j})
			i = j
		case unicode.IsDigit(c):
			j := i
			for j < len(text) && (unicode.IsDigit(rune(text[j])) || text[j] == '_') {
				j++
			}
			n, err := strconv.Atoi(strings.ReplaceAll(text[i:j], "_", ""))
			t := token{kind: 'd', text: text[i:j], start: i, end: j, value: n}
			if err != nil {
				t.kind = 'p'
			}
			out = append(out, t)
			i = j
		case c == '\'' || c == '"':
			j := i + 1
			var b strings.Builder
			closed := false
			for j < len(text) {
				if text[j] == '\\' && j+1 < len(text) {
					b.WriteByte(text[j+1]) // enough for keys: completion skips keys holding a backslash
					j += 2
					continue
				}
				if text[j] == byte(c) {
					closed = true
					j++
					break
				}
				b.WriteByte(text[j])
				j++
			}
			t := token{kind: 's', text: text[i:j], value: b.String(), start: i, end: j}
			if !closed {
				t.kind = 'u'
			}
			out = append(out, t)
			i = j
		default:
			out = append(out, token{kind: 'p', text: text[i : i+1], start: i, end: i + 1})
			i++
		}
	}
	return out
}

// parseCompletion finds what text (up to the cursor) ends with: a name
// being typed, an attribute after a chain's dot, a key after a chain's [
// and a quote.
func parseCompletion(text string) (completionContext, bool) {
	toks := lexCompletion(text)
	n := len(toks)
	var ctx completionContext
	last := func(i int) *token {
		if i < 0 || i >= n {
			return nil
		}
		return &toks[i]
	}
	var end int // the chain ends before toks[end]
	switch t := last(n - 1); {
	case t == nil || t.end < len(text): // nothing, or a space typed: every name
		if t != nil && (t.kind == 'n' || t.kind == 'd' || t.kind == 's' || t.text == ")" || t.text == "]") {
			return ctx, false // after a complete operand
		}
		ctx.what, ctx.start = "name", len(text)
		return ctx, true
	case t.kind == 'u':
		if p := last(n - 2); p == nil || p.text != "[" {
			return ctx, false
		}
		ctx.what, ctx.prefix, ctx.start, ctx.quote = "key", t.value.(string), t.start+1, rune(t.text[0])
		end = n - 2
	case t.kind == 'n':
		ctx.prefix, ctx.start = t.text, t.start
		if p := last(n - 2); p == nil || p.text != "." {
			if p != nil && p.end == t.start && p.kind == 'd' {
				return ctx, false
			}
			ctx.what = "name"
			return ctx, true
		}
		ctx.what, end = "attr", n-2
	case t.text == ".":
		ctx.what, ctx.start, end = "attr", len(text), n-1
	case t.kind == 'p' && t.text != ")" && t.text != "]":
		ctx.what, ctx.start = "name", len(text)
		return ctx, true
	default:
		return ctx, false
	}
	// The chain before toks[end], read backwards.
	var steps []any
	i := end - 1
	for {
		t := last(i)
		if t == nil {
			return ctx, false
		}
		if t.kind == 'n' {
			if p := last(i - 1); p != nil && p.text == "." {
				steps = append(steps, []any{"a", t.text})
				i -= 2
				continue
			}
			if p := last(i - 1); p != nil && p.kind == 'd' && p.end == t.start {
				return ctx, false
			}
			steps = append(steps, t.text)
			break
		}
		if t.text == "]" {
			k, o := last(i-1), last(i-2)
			if k == nil || o == nil || o.text != "[" || (k.kind != 's' && k.kind != 'd') {
				return ctx, false
			}
			steps = append(steps, []any{"i", k.value})
			i -= 3
			continue
		}
		return ctx, false
	}
	if p := last(i - 1); p != nil && p.text == "." {
		return ctx, false // a chain rooted in something else: (x).a, f().a
	}
	for l, r := 0, len(steps)-1; l < r; l, r = l+1, r-1 {
		steps[l], steps[r] = steps[r], steps[l]
	}
	if _, ok := steps[0].(string); !ok {
		return ctx, false
	}
	ctx.chain = steps
	return ctx, true
}
