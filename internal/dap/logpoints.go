package dap

import (
	"fmt"
	"strings"

	"krait/internal/session"
)

// logpoint is a breakpoint with a logMessage: a dprintf in the agent
// whose values the adapter puts into the message's text.
type logpoint struct {
	parts []string // the text around the expressions: len(exprs)+1
	exprs []string
	path  string // the editor's path, line: where it is
	line  int
}

// parseLog splits a logMessage into its text and its {expressions}: {{ and
// }} are braces; an expression runs to the } that closes it (brackets and
// braces inside it nest, strings are skipped).
func parseLog(msg string) (parts, exprs []string, err error) {
	var cur strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		switch {
		case c == '{' && i+1 < len(msg) && msg[i+1] == '{', c == '}' && i+1 < len(msg) && msg[i+1] == '}':
			cur.WriteByte(c)
			i++
		case c == '{':
			end, err := exprEnd(msg, i+1)
			if err != nil {
				return nil, nil, err
			}
			e := strings.TrimSpace(msg[i+1 : end])
			if e == "" {
				return nil, nil, fmt.Errorf("empty {} in log message %q", msg)
			}
			parts, exprs = append(parts, cur.String()), append(exprs, e)
			cur.Reset()
			i = end
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String()), exprs, nil
}

// exprEnd is the index of the } that closes an expression starting at i.
func exprEnd(s string, i int) (int, error) {
	depth := 0
	for ; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', '"':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			i = j
		case '(', '[', '{':
			depth++
		case ')', ']':
			depth--
		case '}':
			if depth == 0 {
				return i, nil
			}
			depth--
		}
	}
	return 0, fmt.Errorf("unclosed { in log message %q", s)
}

// format is a logpoint's message with the values the agent sent: a
// string as itself, anything else as its safe rendering.
func (lp *logpoint) format(ev map[string]any) string {
	if e, _ := ev["cond_error"].(string); e != "" {
		return fmt.Sprintf("<error in the logpoint's condition: %s>", e)
	}
	vals, _ := ev["values"].([]any)
	var b strings.Builder
	for i, p := range lp.parts {
		b.WriteString(p)
		if i == len(lp.parts)-1 {
			break
		}
		text := "<no value>"
		if i < len(vals) {
			if pair, _ := vals[i].([]any); len(pair) == 2 {
				text, _ = pair[1].(string)
			}
		}
		b.WriteString(text)
	}
	return b.String()
}

// logs turns the processes' dprintf events into output events, each
// with the logpoint's source and line (a dprintf event's bp is the
// group's number, as the logpoints are keyed).
func (sv *Server) logs(probes <-chan session.ProbeBatch) {
	for {
		var batch session.ProbeBatch
		select {
		case <-sv.done:
			return
		case batch = <-probes:
		}
		if batch.Inf == nil {
			continue // a flush marker
		}
		sv.mu.Lock()
		for _, ev := range batch.Events {
			if k, _ := ev["kind"].(string); k != "dprintf" {
				continue
			}
			id, _ := ev["bp"].(float64)
			lp := sv.logpoints[int(id)]
			if lp == nil {
				continue // deleted since
			}
			sv.outputAt(lp.format(ev), lp.path, lp.line)
		}
		if d := batch.Dropped["dprintf"]; d > 0 {
			sv.output("console", fmt.Sprintf("krait: %d logpoint messages dropped (the process logged faster than they could be sent)", d))
		}
		sv.mu.Unlock()
	}
}
