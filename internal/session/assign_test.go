package session

import "testing"

// TestSplitAssign: where gdb's set var and print see an assignment.
func TestSplitAssign(t *testing.T) {
	for _, tc := range []struct{ in, target, expr string }{
		{"x = 1", "x", "1"},
		{"order.total = a + b", "order.total", "a + b"},
		{"d['a=b'] = f(k=1)", "d['a=b']", "f(k=1)"},
		{"self.items[i + 1].n = {'k': v}", "self.items[i + 1].n", "{'k': v}"},
		{"x == 1", "", ""},
		{"x != 1", "", ""},
		{"x <= 1", "", ""},
		{"(y := 2)", "", ""},
		{"f(a=1)", "", ""},
		{"lambda x=1: x", "", ""},
		{"x += 1", "", ""},
		{"s = 'it''s = '", "s", "'it''s = '"},
		{"= 1", "", ""},
		{"x =", "", ""},
	} {
		target, expr, ok := SplitAssign(tc.in)
		if ok != (tc.target != "") || target != tc.target || expr != tc.expr {
			t.Errorf("SplitAssign(%q) = %q, %q, %v; want %q, %q", tc.in, target, expr, ok, tc.target, tc.expr)
		}
	}
}
