package agent

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAgentREPLCommands: the agent commands behind the REPL's gdb
// commands (issue 13): cancel (Ctrl-C during a step), interrupt, break
// FUNC with several locations, ignore, a condition that raises, a
// module-level line that has run already, set_local (set var), and
// secrets redacted in eval and locals unless asked. On the oldest, a
// settrace and a monitoring interpreter, and the newest.
func TestAgentREPLCommands(t *testing.T) {
	some := func(py agentPython) bool {
		return py.name == "3.6" || py.name == "3.11" || py.name == "3.12" || py.name == "3.13" || py.name == "3.14"
	}
	eachFixture(t, some, func(t *testing.T, fx *agentFixture) {
		c, dir := fx.session(t)
		agentREPLCommands(t, fx, c)
		c.call("detach")
		fx.gone(dir, 3*time.Second)
	})
}

func agentREPLCommands(t *testing.T, fx *agentFixture, c *agentConn) {
	evalIs := func(th any, expr, want string, extra ...any) {
		t.Helper()
		r := c.call("eval", append([]any{"thread", th, "frame", 0, "expr", expr, "mode", "safe"}, extra...)...)
		if r["value"] != want {
			t.Errorf("eval %s %v: %v, want %s", expr, extra, r["value"], want)
		}
	}
	threadNamed := func(name string) any {
		for _, x := range c.call("threads")["threads"].([]any) {
			if d := x.(map[string]any); d["name"] == name {
				return d["id"]
			}
		}
		t.Fatalf("no thread %s", name)
		return nil
	}

	// drain lets go every thread that stopped at a breakpoint just deleted.
	drain := func() {
		for {
			time.Sleep(150 * time.Millisecond)
			c.evmu.Lock()
			n := len(c.evs)
			c.evs = nil
			c.evmu.Unlock()
			if n == 0 {
				return
			}
			c.call("continue")
		}
	}

	// set_local writes a local of the stopped frame: the next line sees it.
	bp := c.call("break", "file", "fixture.py", "line", fx.line("compute-first"))["bp"].(map[string]any)
	ev := c.stop("breakpoint", "compute", fx.line("compute-first"))
	th := ev["thread"]
	x0, _ := strconv.Atoi(str(ev["args"].([]any)[0].(map[string]any)["value"]))
	if r := c.call("set_local", "thread", th, "frame", 0, "name", "x", "expr", "500 * 2"); r["value"] != "1000" {
		t.Errorf("set_local: %v", r)
	}
	if _, err := c.try("set_local", "thread", th, "frame", 0, "name", "nosuch", "expr", "1"); !strings.Contains(err, `No symbol "nosuch" in current context.`) {
		t.Errorf("set_local of no local: %q", err)
	}
	evalIs(th, "x", "1000")
	c.call("next", "thread", th)
	c.stop("step", "compute", fx.line("call-helper"))
	evalIs(th, "y", "2000")

	// Secrets: redacted under secret-looking names, shown when asked.
	evalIs(th, "{'api_key': 'k1', 'n': 2, 'cache_key': 3}", "{'api_key': <redacted>, 'n': 2, 'cache_key': 3}")
	evalIs(th, "{'api_key': 'k1'}", "{'api_key': 'k1'}", "secrets", true)
	evalIs(th, "{'password': 'p'}['password']", "<redacted>")
	evalIs(th, "{'password': 'p'}['password']", "'p'", "secrets", true)
	if r := c.call("eval", "thread", th, "frame", 0, "expr", "dict(SECRET_KEY='s')", "mode", "repr"); r["value"] != "{'SECRET_KEY': 's'}" {
		t.Errorf("print/r runs repr (no redaction inside): %v", r["value"])
	}
	c.call("set_local", "thread", th, "frame", 0, "name", "z", "expr", "{'auth_token': 'tk'}")
	loc := fmt.Sprint(c.call("locals", "thread", th, "frame", 0)["locals"])
	if !strings.Contains(loc, "value:{'auth_token': <redacted>}") {
		t.Errorf("locals with a secret: %s", loc)
	}
	loc = fmt.Sprint(c.call("locals", "thread", th, "frame", 0, "secrets", true)["locals"])
	if !strings.Contains(loc, "value:{'auth_token': 'tk'}") {
		t.Errorf("locals with secrets shown: %s", loc)
	}

	// cancel: a finish from the worker's own frame (which never returns)
	// is cancelled; the thread does not stop for it.
	c.call("delete", "bp", bp["id"])
	c.call("finish", "thread", th, "frame", 1)
	if r := c.call("cancel", "thread", th); r["cancelled"] != true {
		t.Errorf("cancel: %v", r)
	}
	c.noEvent("stop", 500*time.Millisecond)
	if r := c.call("cancel", "thread", th); r["cancelled"] != false {
		t.Errorf("cancel with no step: %v", r)
	}

	// ignore: the next 2 crossings do not stop; hits count them.
	bp = c.call("break", "file", "fixture.py", "line", fx.line("compute-first"))["bp"].(map[string]any)
	x1, _ := strconv.Atoi(str(c.stop("breakpoint", "compute", fx.line("compute-first"))["args"].([]any)[0].(map[string]any)["value"]))
	c.call("ignore", "bp", bp["id"], "count", 2)
	c.call("continue")
	x2, _ := strconv.Atoi(str(c.stop("breakpoint", "compute", fx.line("compute-first"))["args"].([]any)[0].(map[string]any)["value"]))
	if x2 != x1+3 || x1 <= x0 {
		t.Errorf("ignore 2: stopped at x = %d then %d", x1, x2)
	}
	if b := c.call("breakpoints")["bps"].([]any)[0].(map[string]any); num(b["hits"]) != 4 || num(b["ignore"]) != 0 {
		t.Errorf("after ignore: %v", b)
	}
	c.call("delete")
	c.call("continue")

	// break FUNC: every method of that name.
	bp = c.call("break_func", "name", "poke")["bp"].(map[string]any)
	locs := fmt.Sprint(bp["locations"])
	if !regexp.MustCompile(`^\[map\[file:\S+fixture\.py function:Thing\.poke line:` + strconv.Itoa(fx.line("poke")) +
		`\] map\[file:\S+fixture\.py function:Sub\.poke line:` + strconv.Itoa(fx.line("sub-poke")) + `\]\]$`).MatchString(locs) {
		t.Errorf("break_func poke: %v", bp)
	}
	got := map[string]bool{}
	for i := 0; i < 3; i++ {
		ev = c.event("stop", 10*time.Second)
		got[str(ev["function"])] = true
		c.call("continue")
	}
	if !got["Thing.poke"] || !got["Sub.poke"] {
		t.Errorf("break poke stopped in %v", got)
	}
	c.call("delete")
	drain()
	if _, err := c.try("break_func", "name", "no_such_function"); err != `error: Function "no_such_function" not defined.` {
		t.Errorf("break_func of nothing: %q", err)
	}

	// A module-level line of a module imported already: accepted, with a
	// warning.
	fx.send("import")
	time.Sleep(300 * time.Millisecond)
	bp = c.call("break", "file", "lazy_mod.py", "line", fx.line("lazy-top"))["bp"].(map[string]any)
	if !strings.Contains(str(bp["warning"]), "module-level code of lazy_mod, which has run already") {
		t.Errorf("break at module level of an imported module: %v", bp)
	}
	if bp = c.call("break", "file", "lazy_mod.py", "line", fx.line("lazy-body"))["bp"].(map[string]any); bp["warning"] != nil {
		t.Errorf("break in a function: %v", bp)
	}
	c.call("delete")
	drain()

	// interrupt: the counter thread stops at its next line.
	counter := threadNamed("counter")
	if r := c.call("interrupt", "thread", counter); fmt.Sprint(r["threads"]) != fmt.Sprint([]any{counter}) {
		t.Errorf("interrupt: %v", r)
	}
	ev = c.event("stop", 5*time.Second)
	if ev["thread"] != counter || ev["reason"] != "interrupt" || ev["thread_name"] != "counter" {
		t.Errorf("stop after interrupt: %v", ev)
	}
	// Continued and at once interrupted (a debugger's continue then pause,
	// both sent before the thread is on its way): it stops again.
	cont, intr := c.post("continue"), c.post("interrupt", "thread", counter)
	for _, ch := range []chan map[string]any{cont, intr} {
		select {
		case r := <-ch:
			if r["ok"] != true {
				t.Fatalf("continue, interrupt: %v", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("continue, interrupt: no reply")
		}
	}
	ev = c.event("stop", 5*time.Second)
	if ev["thread"] != counter || ev["reason"] != "interrupt" {
		t.Errorf("stop after continue and interrupt: %v", ev)
	}
	c.call("continue")
	c.noEvent("stop", 300*time.Millisecond)
}
