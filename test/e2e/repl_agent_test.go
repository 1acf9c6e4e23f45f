package e2e

// REPL commands that need the agent's help (issue 13): the real LWP of a
// forked worker's thread, Ctrl-C during a step, interrupt, breakpoints
// with several locations, ignore, set var, secrets.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAttachForkedLWP: in a worker forked from a master that had imported
// threading, info threads shows MainThread's own LWP (the worker's pid),
// not the master's that threading cached before the fork.
func TestAttachForkedLWP(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" && py.minor != "3.9" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state.json")
			p := start(t, nil, py.path, fixture("forked_worker.py"), state)
			var st struct{ Worker, Master int }
			if !p.waitFor(20*time.Second, func() bool {
				data, err := os.ReadFile(state)
				return err == nil && json.Unmarshal(data, &st) == nil
			}) {
				t.Fatalf("the worker did not start: %s", p.stderr.String())
			}
			record(st.Worker)
			r := krait(t, "attach", fmt.Sprint(st.Worker), "--batch", "-ex", "info threads")
			if r.code != 0 {
				t.Fatalf("attach: %v", r)
			}
			mustMatch(t, "info threads", fmt.Sprintf(`\(LWP %d\) "MainThread"`, st.Worker), r.stdout)
		})
	}
}

// TestTerminalCancelStep: Ctrl-C while next waits on a line that blocks
// (time.sleep) cancels the step in the agent: the thread does not stop
// later holding its request, which completes, and no stop is announced.
func TestTerminalCancelStep(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" && py.minor != "3.9" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			srv := startAttachServer(t, py)
			s := startPTY(t, t.TempDir(), 120, "attach", fmt.Sprint(srv.p.pid()))
			at := s.waitFor(0, "(krait) ", 30*time.Second)
			s.typeKeys(fmt.Sprintf("break steps.py:%d\r", srv.marks["slow_sleep"]))
			at = s.waitFor(at, "Breakpoint 1 at ", 10*time.Second) // not a prompt: readline redraws it at each key
			resp := srv.getAsync(t, "/steps/slow?s=2")
			at = s.waitFor(at, "Breakpoint 1, slow (s='2')", 15*time.Second)
			at = s.waitFor(at, "(krait) ", 5*time.Second)
			s.typeKeys("delete\r")
			at = s.waitFor(at, "(krait) ", 5*time.Second)
			s.typeKeys("next\r")
			time.Sleep(500 * time.Millisecond)
			s.typeKeys("\x03")
			at = s.waitFor(at, "the step is cancelled; thread 1 runs on", 10*time.Second)
			select {
			case body := <-resp:
				if body == nil || body["slept"] != "4.0" {
					t.Fatalf("the request: %v", body)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the request did not complete after the step was cancelled (the thread stopped again?):\n%s", s.text()[at:])
			}
			time.Sleep(300 * time.Millisecond)
			if strings.Contains(s.text()[at:], "slow (") {
				t.Errorf("a stop was announced after the step was cancelled:\n%s", s.text()[at:])
			}
			s.typeKeys("detach\r")
			s.waitFor(at, "detached]", 10*time.Second)
			checkClean(t, srv)
		})
	}
}

// TestAttachAgentCommands: through krait attach (pipe mode), the REPL
// commands that need the agent: break FUNC with several locations, ignore,
// a condition that raises, a module-level line that has run already, set
// var and print NAME = EXPR, secrets redacted in print and info locals
// (print/s and set print secrets on show them), interrupt.
func TestAttachAgentCommands(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" && py.minor != "3.8" && py.minor != "3.13" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			srv := startAttachServer(t, py)
			s := attach(t, srv.p.pid())
			steps := strings.Replace(srv.views, "views.py", "steps.py", 1)
			q := regexp.QuoteMeta

			// thread apply all bt: every thread, the highest number first,
			// each under gdb's header; running ones read from outside.
			out := s.do("thread apply all bt 1")
			m := mustMatch(t, "thread apply all bt", `(?s)\nThread (\d+) \(Thread 0x[0-9a-f]+ \(LWP \d+\) "[^"]+"\):\n.*\nThread (\d+) \(Thread 0x[0-9a-f]+ \(LWP \d+\) "[^"]+"\):\n`, out)
			first, _ := strconv.Atoi(m[1])
			second, _ := strconv.Atoi(m[2])
			if first <= second {
				t.Errorf("thread apply all: thread %s before thread %s, want the highest first:\n%s", m[1], m[2], out)
			}
			mustMatch(t, "thread apply all bt: the counter thread", `(?m)^#0  counter \(\) at .*attach_server\.py:\d+$`, out)
			mustMatch(t, "thread apply unknown", `warning: Unknown thread 999`, s.do("thread apply 999 bt"))

			// break FUNC: every function and method of that name.
			out = s.do("break handle_item")
			mustMatch(t, "break handle_item", fmt.Sprintf(`Breakpoint 1 at %s:%d: handle_item\. \(3 locations\)`, q(steps), srv.marks["a_handle"]), out)
			out = s.do("info breakpoints")
			mustMatch(t, "info breakpoints", `(?m)^1\s+breakpoint\s+keep y\s+<MULTIPLE>\n1\.1 .* in A\.handle_item at .*steps\.py:\d+\n1\.2 .* in B\.handle_item at .*\n1\.3 .* in handle_item at `, out)
			out, resp := s.continueWith(srv, "/steps/handlers?x=1")
			mustMatch(t, "stop in A.handle", `Breakpoint 1, A\.handle_item \(self=.*, x=1\)`, out)
			mustMatch(t, "stop in B.handle", `Breakpoint 1, B\.handle_item \(self=.*, x=1\)`, s.do("continue"))
			mustMatch(t, "stop in handle", `Breakpoint 1, handle_item \(x=1\)`, s.do("continue"))
			s.do("delete")
			if body := s.interrupt("continue", resp); body == nil || body["sum"] != "9" {
				t.Fatalf("/steps/handlers: %v", body)
			}

			// ignore, and a condition that raises.
			s.do(fmt.Sprintf("break steps.py:%d", srv.marks["handle"]))
			mustMatch(t, "ignore", `Will ignore next 2 crossings of breakpoint 2\.`, s.do("ignore 2 2"))
			mustMatch(t, "info breakpoints", `Will ignore next 2 crossings of breakpoint\.`, s.do("info breakpoints"))
			srv.get(t, "/steps/handlers?x=1")
			srv.get(t, "/steps/handlers?x=2")
			out, resp = s.continueWith(srv, "/steps/handlers?x=3")
			mustMatch(t, "after ignore", `Breakpoint 2, handle_item \(x=3\)`, out)
			s.do("condition 2 undefined_name > 1")
			s.interrupt("continue", resp)
			out, resp = s.continueWith(srv, "/steps/handlers?x=4")
			mustMatch(t, "condition raised", `Error in testing condition for breakpoint 2: NameError: name 'undefined_name' is not defined\n+Breakpoint 2, handle_item \(x=4\)`, out)
			s.do("delete")
			s.interrupt("continue", resp)

			// A line at module level of a module imported already.
			out = s.do(fmt.Sprintf("break steps.py:%d", srv.marks["steps_module"]))
			mustMatch(t, "module level", `Breakpoint 3 at .*steps\.py:\d+ \(<module>\)\nwarning: line \d+ is module-level code of shop\.steps, which has run already`, out)
			s.do("delete")

			// set var, print NAME = EXPR; secrets.
			s.do(fmt.Sprintf("break steps.py:%d", srv.marks["creds_after"]))
			out, resp = s.continueWith(srv, "/steps/creds?user=ann")
			mustMatch(t, "stop in creds", `Breakpoint 4, creds \(user='ann'\)`, out)
			// CPython's gdb extension's names (libpython.py) work too.
			for alias, cmd := range map[string]string{"py-bt": "bt", "py-locals": "info locals", "py-bt-full": "bt full"} {
				if a, b := s.do(alias), s.do(cmd); a != b {
					t.Errorf("%s:\n%s\nwant as %s:\n%s", alias, a, cmd, b)
				}
			}
			mustMatch(t, "py-up", `^#1  `, s.do("py-up"))
			mustMatch(t, "py-down", `^#0  creds `, s.do("py-down"))
			out = s.do("info locals")
			mustMatch(t, "info locals", `(?m)^password = <redacted>\nenv = \{'API_TOKEN': <redacted>, 'HOME': '/home/ann'\}$`, out)
			mustMatch(t, "print", `(?m)^\$1 = <redacted>$`, s.do("print password"))
			mustMatch(t, "print/s", `(?m)^\$2 = 'hunter2-ann'$`, s.do("print/s password"))
			s.do("set print secrets on")
			mustMatch(t, "secrets on", `(?m)^env = \{'API_TOKEN': 'tk-ann', 'HOME': '/home/ann'\}$`, s.do("info locals"))
			s.do("set print secrets off")
			s.do("set var password = 'x' * 3")
			mustMatch(t, "print NAME = EXPR", `(?m)^\$3 = \{\}$`, s.do("print env = {}"))
			// An item or an attribute as the target, as gdb's set var takes
			// any lvalue: the assignment runs as Python runs it.
			mustMatch(t, "print ITEM = EXPR", `(?m)^\$4 = \[1, 2\]$`, s.do("print env['k'] = [1, 2]"))
			s.do("set var env['k'][0] = len(password) + 2")
			mustMatch(t, "set var ITEM", `(?m)^\$5 = \{'k': \[5, 2\]\}$`, s.do("print env"))
			mustMatch(t, "set var ATTR error", `AttributeError: 'dict' object has no attribute 'x'`, s.do("set var env.x = 1"))
			mustMatch(t, "print EXPR == EXPR", `(?m)^\$6 = False$`, s.do("print env == {}"))
			s.do("delete")
			if body := s.interrupt("continue", resp); body == nil || body["password"] != "'xxx'" || body["n"] != "4" {
				t.Errorf("the function did not see set var's values: %v", body)
			}

			// catch raise TYPE, catch uncaught: numbered with the
			// breakpoints (4 so far) and listed with them, as gdb does.
			mustMatch(t, "catch raise", `^Catchpoint 5 \(raise ValueError\)$`, strings.TrimSpace(s.do("catch raise ValueError")))
			mustMatch(t, "info breakpoints: catchpoint", `(?m)^5\s+catchpoint\s+keep y\s+exception raise ValueError$`, s.do("info breakpoints"))
			out, resp = s.continueWith(srv, "/steps/fail?kind=x")
			mustMatch(t, "catch raise stop", fmt.Sprintf(`Catchpoint 5 \(raise\), ValueError\("invalid literal for int\(\) with base 10: 'x'"\) raised in fail \(kind='x'\) at .*steps\.py:%d\n`, srv.marks["fail_raise"]), out)
			mustMatch(t, "info breakpoints: catchpoint hit", `(?m)^\tcatchpoint already hit 1 time$`, s.do("info breakpoints"))
			s.do("delete 5")
			mustMatch(t, "catchpoint deleted", `^No catchpoints\.$`, strings.TrimSpace(s.do("catch")))
			if body := s.interrupt("continue", resp); body == nil || body["caught"] != "1" {
				t.Errorf("/steps/fail: %v", body)
			}
			mustMatch(t, "catch uncaught", `^Catchpoint 6 \(uncaught any exception\)$`, strings.TrimSpace(s.do("catch uncaught")))
			out, resp = s.continueWith(srv, "/steps/boom")
			mustMatch(t, "catch uncaught stop", fmt.Sprintf(`Catchpoint 6 \(uncaught\), KeyError\('gone'\) not caught in _boom \(\) at .*steps\.py:%d\n`, srv.marks["boom_raise"]), out)
			s.do("catch delete")
			mustMatch(t, "no catchpoints", `^No catchpoints\.$`, strings.TrimSpace(s.do("catch")))
			s.interrupt("continue", resp)

			// interrupt: a thread running a loop stops at its next line.
			resp = srv.getAsync(t, "/steps/idle?s=3")
			time.Sleep(500 * time.Millisecond)
			out = s.do("info threads")
			m = mustMatch(t, "info threads", `(?m)^[ *] (\d+) .* running: idle at `, out)
			out = s.do("interrupt " + m[1])
			mustMatch(t, "interrupt", fmt.Sprintf(`Thread %s "[^"]*" stopped\.\nidle \(s='3'\) at .*steps\.py:\d+`, m[1]), out)
			mustMatch(t, "bt after interrupt", `#0\s+idle \(s='3'\)`, s.do("bt"))
			s.interrupt("continue", resp)
			fmt.Fprintf(s.In, "detach\n")
			s.readUntil(func(l string) bool { return strings.Contains(l, "detached]") }, 30*time.Second)
			checkClean(t, srv)
		})
	}
}

// TestAttachAsyncio: a thread stopped in a coroutine says that its event
// loop's other tasks wait; next over an await lands on the coroutine's
// next line (not in the event loop's code), and so does a step.
func TestAttachAsyncio(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" && py.minor != "3.9" && py.minor != "3.11" && py.minor != "3.14" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state.json")
			p := start(t, nil, py.path, fixture("aio_server.py"), state)
			var st struct{ PID int }
			if !p.waitFor(20*time.Second, func() bool {
				data, err := os.ReadFile(state)
				return err == nil && json.Unmarshal(data, &st) == nil
			}) {
				t.Fatalf("the program did not start: %s", p.stderr.String())
			}
			marks := map[string]int{}
			data, _ := os.ReadFile(fixture("aio_server.py"))
			for i, line := range strings.Split(string(data), "\n") {
				if j := strings.Index(line, "# MARK:"); j >= 0 {
					marks[strings.TrimSpace(line[j+7:])] = i + 1
				}
			}
			args := []string{"attach", fmt.Sprint(p.pid()), "--batch", "--timeout", "20s",
				"-ex", fmt.Sprintf("break aio_server.py:%d", marks["aio_await"]), "-ex", "continue", "-ex", "delete"}
			for i := 0; i < 5; i++ {
				args = append(args, "-ex", "next")
			}
			for i := 0; i < 4; i++ {
				args = append(args, "-ex", "step")
			}
			r := krait(t, args...)
			if r.code != 0 {
				t.Fatalf("attach: %v", r)
			}
			out := r.stdout
			mustMatch(t, "stop", fmt.Sprintf(`Breakpoint 1, worker \(\) at .*aio_server\.py:%d\n\[this thread runs an event loop with 12 other tasks; they wait while it is stopped\]\n`, marks["aio_await"]), out)
			var lines []int
			for _, m := range regexp.MustCompile(`(?m)^(\S+) \(.*\) at (.*):(\d+)$`).FindAllStringSubmatch(out, -1) {
				if m[1] == "BaseEventLoop._run_once" || m[1] == "Handle._run" || m[1] == "BaseEventLoop.run_forever" {
					t.Errorf("a step in the coroutine landed in the event loop's code: %s", m[0])
				}
				if m[1] == "worker" && len(lines) < 5 {
					n, _ := strconv.Atoi(m[3])
					lines = append(lines, n)
				}
			}
			after := 0
			for _, n := range lines {
				if n == marks["aio_after"] {
					after++
				}
			}
			if len(lines) != 5 || lines[0] != marks["aio_after"] || after < 2 {
				t.Errorf("next in the coroutine (five times from its await) stopped at lines %v; want each in worker, first at %d, crossing the await twice:\n%s", lines, marks["aio_after"], out)
			}
		})
	}
}
