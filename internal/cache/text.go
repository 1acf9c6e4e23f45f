package cache

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Short shortens a path for display (the part after site-packages, or the
// last three components).
func Short(p string) string {
	for _, m := range []string{"/site-packages/", "/dist-packages/"} {
		if i := strings.LastIndex(p, m); i >= 0 {
			return p[i+len(m):]
		}
	}
	parts := strings.Split(p, "/")
	if len(parts) > 3 {
		return strings.Join(parts[len(parts)-3:], "/")
	}
	return p
}

func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

// WriteText writes the report as krait cache prints it: the stale entries,
// then the summary per key pattern.
func WriteText(w io.Writer, r *Report) {
	if len(r.Stale) == 0 {
		fmt.Fprintf(w, "No stale cache entry seen.\n")
	}
	for i, s := range r.Stale {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "STALE %s  (alias %s, %s)\n", s.Key, s.Alias, lastDot(s.Backend))
		if s.StandsFor != "" {
			fmt.Fprintf(w, "  stands for   %s\n", s.StandsFor)
		}
		loc := ""
		if s.SetBy.File != "" {
			loc = fmt.Sprintf(" at %s:%d", Short(s.SetBy.File), s.SetBy.Line)
		}
		fmt.Fprintf(w, "  cached by    pid %d, view %s, path %s%s, %s\n", s.SetBy.PID, orDash(s.SetBy.View), orDash(s.SetBy.Path), loc, s.SetBy.Time)
		fmt.Fprintf(w, "  inputs       %s\n", strings.Join(s.Inputs, ", "))
		fmt.Fprintf(w, "  made stale   by pid %d, view %s, path %s, committed %s:\n", s.WrittenBy.PID, orDash(s.WrittenBy.View), orDash(s.WrittenBy.Path), s.WrittenBy.Time)
		fmt.Fprintf(w, "               %s\n", oneLine(s.WrittenBy.SQL, 200))
		switch {
		case s.SetAfterWrite && s.Invalidated != nil:
			fmt.Fprintf(w, "  cached after the write, from rows read before it committed (an invalidation before the set cannot help); replaced or deleted only at %s\n", *s.Invalidated)
		case s.SetAfterWrite:
			fmt.Fprintf(w, "  cached after the write, from rows read before it committed (an invalidation before the set cannot help)\n")
		case s.Invalidated != nil:
			fmt.Fprintf(w, "  no invalidation followed the write; the entry was replaced or deleted only at %s\n", *s.Invalidated)
		default:
			fmt.Fprintf(w, "  no invalidation followed the write\n")
		}
		if s.StaleHits == 0 {
			fmt.Fprintf(w, "  stale hits   none yet\n")
		} else {
			var views []string
			for v, n := range s.StaleByView {
				views = append(views, fmt.Sprintf("%s %d", v, n))
			}
			sort.Strings(views)
			fmt.Fprintf(w, "  stale hits   %d served since (%s), last %s\n", s.StaleHits, strings.Join(views, ", "), orDash(s.LastStaleHit))
		}
		switch {
		case s.Never:
			fmt.Fprintf(w, "  timeout      never expires\n")
		case s.Timeout != nil:
			fmt.Fprintf(w, "  timeout      %gs\n", *s.Timeout)
		default:
			fmt.Fprintf(w, "  timeout      unknown\n")
		}
	}
	fmt.Fprintln(w)
	WriteSummary(w, r)
}

// WriteSummary writes the table of key patterns.
func WriteSummary(w io.Writer, r *Report) {
	fmt.Fprintf(w, "%d cache operations, %d SQL statements, %d committed writes, %d requests\n", r.CacheOps, r.SQL, r.Writes, r.Requests)
	if len(r.Patterns) == 0 {
		return
	}
	fmt.Fprintf(w, "%-48s %-10s %7s %6s %6s %6s %10s %10s\n", "KEY PATTERN", "ALIAS", "GETS", "HIT%", "SETS", "DELS", "BYTES", "TIME")
	for _, p := range r.Patterns {
		name := p.Pattern
		if p.Stale > 0 {
			name = "STALE " + name
		}
		hit := "-"
		if p.Gets > 0 {
			hit = fmt.Sprintf("%.1f", p.HitRatio*100)
		}
		fmt.Fprintf(w, "%-48s %-10s %7d %6s %6d %6d %10d %10s\n", oneLine(name, 48), oneLine(p.Alias, 10), p.Gets, hit, p.Sets, p.Deletes, p.Bytes, us(p.TimeUS))
	}
}

func us(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}

func lastDot(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
