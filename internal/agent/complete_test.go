package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAgentComplete: the complete command, in a thread stopped in
// compute() of testdata/agent/fixture.py, on every interpreter: a local
// prefix, a builtin prefix, globals, a module's functions, an object's
// attributes (instance dict and class), a chain of attributes and dict
// items, a dict's str keys; private names only for a prefix starting with
// _; and Spy, whose __getattribute__, __getattr__, __dir__ and property
// record every call, is never called (the fixture's own record, read by
// eval, stays empty).
func TestAgentComplete(t *testing.T) {
	eachFixture(t, nil, func(t *testing.T, fx *agentFixture) {
		c, dir := fx.session(t)
		c.call("break", "file", "fixture.py", "line", fx.line("compute-first"))
		th := c.stop("breakpoint", "compute", fx.line("compute-first"))["thread"]
		c.call("delete")
		agentComplete(t, c, th)
		c.call("detach")
		fx.gone(dir, 3*time.Second)
	})
}

func agentComplete(t *testing.T, c *agentConn, th any) {
	complete := func(what, prefix string, chain ...any) string {
		t.Helper()
		if chain == nil {
			chain = []any{}
		}
		r := c.call("complete", "thread", th, "frame", 0, "chain", chain, "what", what, "prefix", prefix)
		var out []string
		for _, it := range r["items"].([]any) {
			m := it.(map[string]any)
			out = append(out, fmt.Sprintf("%s:%s", m["name"], m["kind"]))
		}
		return strings.Join(out, " ")
	}
	is := func(got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	is(complete("name", "x"), "x:variable")               // a local
	is(complete("name", "isinst"), "isinstance:function") // a builtin
	is(complete("name", "TH"), "THING:variable")          // globals
	is(complete("name", "Thi"), "Thing:class")
	is(complete("name", "DA"), "DATA:variable")
	is(complete("attr", "dum", "json"), "dump:function dumps:function") // a module's
	if got := complete("attr", "pa", "os"); !strings.Contains(got, "path:module") {
		t.Errorf("os.pa: %s", got)
	}
	is(complete("attr", "", "THING"), "a:attribute name:attribute poke:function prop:attribute smeth:function")
	is(complete("attr", "po", "Sub"), "poke:function") // a class's
	is(complete("attr", "", "DATA"), "env:attribute items:attribute order:attribute")
	is(complete("attr", "to", "DATA", []any{"a", "order"}), "to_ship:attribute token:attribute topping:attribute total:attribute")
	is(complete("attr", "_h", "DATA", []any{"a", "order"}), "_hidden:attribute")
	is(complete("attr", "", "DATA", []any{"a", "items"}, []any{"i", 0}), "sku:attribute")
	is(complete("key", "HO", "DATA", []any{"a", "env"}), "HOME:key HOSTNAME:key")
	is(complete("key", "", "ENV"), "HOME:key HOSTNAME:key PATH:key")
	is(complete("key", "_", "ENV"), "_PRIVATE:key")
	if !strings.Contains(complete("attr", "__", "DATA", []any{"a", "order"}), "__getattr__:function") {
		t.Errorf("private names for a prefix starting with _: %s", complete("attr", "__", "DATA", []any{"a", "order"}))
	}
	// Steps that would run code are refused: a property, __getattr__.
	for _, step := range []string{"topping", "nosuch", "__class__"} {
		if _, err := c.try("complete", "thread", th, "frame", 0, "chain", []any{"DATA", []any{"a", "order"}, []any{"a", step}},
			"what", "attr", "prefix", ""); !strings.Contains(err, "cannot complete after "+step) {
			t.Errorf("complete after order.%s: %q", step, err)
		}
	}
	if _, err := c.try("complete", "thread", th, "frame", 0, "chain", []any{"nosuch"}, "what", "attr", "prefix", ""); !strings.Contains(err, `No symbol "nosuch"`) {
		t.Errorf("complete after nosuch.: %q", err)
	}
	if _, err := c.try("complete", "thread", th, "frame", 0, "chain", []any{"x"}, "what", "key", "prefix", ""); !strings.Contains(err, "cannot complete the keys of a int") {
		t.Errorf("keys of an int: %q", err)
	}
	r := c.call("eval", "thread", th, "frame", 0, "expr", "list(SPY_CALLS)", "mode", "safe")
	if r["value"] != "[]" {
		t.Errorf("completion ran the object's own code: %v", r["value"])
	}
	// A value of the history.
	c.call("eval", "thread", th, "frame", 0, "expr", "DATA", "mode", "safe", "store", true)
	r = c.call("complete", "thread", th, "frame", 0, "chain", []any{[]any{"h", 0}, []any{"a", "env"}}, "what", "key", "prefix", "HOM")
	if fmt.Sprint(r["items"]) != "[map[kind:key name:HOME]]" {
		t.Errorf("complete $1.env['HOM: %v", r["items"])
	}
	// At most 300 candidates; more says some were left out.
	c.call("eval", "thread", th, "frame", 0, "expr", "ENV.update(('k%03d' % n, n) for n in range(400))", "mode", "safe")
	r = c.call("complete", "thread", th, "frame", 0, "chain", []any{"ENV"}, "what", "key", "prefix", "k")
	if items := r["items"].([]any); len(items) != 300 || r["more"] != true || items[299].(map[string]any)["name"] != "k299" {
		t.Errorf("400 keys: %d completions, more %v", len(items), r["more"])
	}
	c.call("continue")
}
