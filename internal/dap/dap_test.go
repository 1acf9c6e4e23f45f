package dap

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-dap"

	"krait/internal/agent"
	"krait/internal/session"
	"krait/internal/testkit"
)

// client drives a Server in-process with go-dap messages.
type client struct {
	*testkit.DAPClient
	in   io.WriteCloser // the server's input
	done chan struct{}  // closed when Serve has returned
}

func newClient(t *testing.T) *client {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	sv := NewServer(inR, outW)
	sv.ThreadPoll = 200 * time.Millisecond
	c := &client{DAPClient: testkit.NewDAPClient(t, inW, outR), in: inW, done: make(chan struct{})}
	go func() {
		if err := sv.Serve(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		outW.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		inW.Close()
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			t.Error("server did not end after its input closed")
		}
	})
	return c
}

// target runs the fixture on py and returns its pid.
func target(t *testing.T, py string) (*exec.Cmd, string) {
	t.Helper()
	root, err := testkit.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "testdata", "fixtures", "dap_target.py")
	cmd := exec.Command(py, file)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		t.Fatalf("fixture did not start: %q %v", line, err)
	}
	return cmd, file
}

func (c *client) eval(frame int, expr, context string) dap.EvaluateResponseBody {
	c.T.Helper()
	return c.Call("evaluate", map[string]any{"expression": expr, "frameId": frame, "context": context}).(*dap.EvaluateResponse).Body
}

func (c *client) vars(ref int) map[string]dap.Variable {
	c.T.Helper()
	out := map[string]dap.Variable{}
	for _, v := range c.Call("variables", map[string]any{"variablesReference": ref}).(*dap.VariablesResponse).Body.Variables {
		out[v.Name] = v
	}
	return out
}

// TestAdapter runs the adapter in-process against the fixture on a few
// interpreters (both backends; the DebugClient suite in test/dap covers
// every one): attach, breakpoints, stack paging, scopes, lazy variables,
// evaluate, setVariable, steps, a conditional and a hit-count breakpoint,
// exception stops, pause, other threads running throughout, disconnect.
func TestAdapter(t *testing.T) {
	for _, py := range testkit.AttachPythons(t) {
		if py.Minor != "3.9" && py.Minor != "3.12" && py.Minor != "3.14" {
			continue
		}
		t.Run(py.Name, func(t *testing.T) { testAdapter(t, py.Path) })
	}
}

func testAdapter(t *testing.T, py string) {
	cmd, file := target(t, py)
	pid := cmd.Process.Pid
	workLine := testkit.FixtureLine(t, file, "# LINE work")
	failLine := testkit.FixtureLine(t, file, "# LINE fail")
	c := newClient(t)

	caps := c.Call("initialize", map[string]any{"adapterID": "krait", "linesStartAt1": true}).(*dap.InitializeResponse).Body
	if !caps.SupportsConfigurationDoneRequest || len(caps.ExceptionBreakpointFilters) != 2 || caps.SupportTerminateDebuggee {
		t.Errorf("capabilities: %+v", caps)
	}
	if msg := c.CallErr("attach", map[string]any{"processId": "x"}); !strings.Contains(msg, "processId") {
		t.Errorf("bad processId: %q", msg)
	}
	c.Call("attach", map[string]any{"processId": strconv.Itoa(pid), "justMyCode": true})
	c.Event("initialized", 5*time.Second)

	// A breakpoint with a condition: stops only where it holds.
	bps := c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file},
		"breakpoints": []map[string]any{{"line": workLine, "condition": "i % 3 == 0"}}}).(*dap.SetBreakpointsResponse).Body.Breakpoints
	if len(bps) != 1 || !bps[0].Verified || bps[0].Line != workLine {
		t.Fatalf("setBreakpoints: %+v", bps)
	}
	c.Call("configurationDone", nil)
	st := c.Stopped(30 * time.Second)
	if st.Reason != "breakpoint" || len(st.HitBreakpointIds) != 1 || st.HitBreakpointIds[0] != bps[0].Id {
		t.Errorf("stopped: %+v", st)
	}
	th := st.ThreadId
	trace := c.Call("stackTrace", map[string]any{"threadId": th}).(*dap.StackTraceResponse).Body
	if len(trace.StackFrames) < 2 || trace.StackFrames[0].Name != "work" || trace.StackFrames[0].Line != workLine ||
		trace.StackFrames[0].Source == nil || trace.StackFrames[0].Source.Path != file || trace.StackFrames[1].Name != "worker" {
		t.Fatalf("stack: %+v", trace)
	}
	// Paging: the second frame alone.
	page := c.Call("stackTrace", map[string]any{"threadId": th, "startFrame": 1, "levels": 1}).(*dap.StackTraceResponse).Body
	if len(page.StackFrames) != 1 || page.StackFrames[0].Name != "worker" || page.TotalFrames != len(trace.StackFrames) {
		t.Errorf("stack page: %+v", page)
	}
	frame := trace.StackFrames[0].Id
	i := c.eval(frame, "i", "watch")
	if n, _ := strconv.Atoi(i.Result); n%3 != 0 || i.Type != "int" {
		t.Errorf("i = %+v, want a multiple of 3", i)
	}

	scopes := c.Call("scopes", map[string]any{"frameId": frame}).(*dap.ScopesResponse).Body.Scopes
	if len(scopes) != 2 || scopes[0].Name != "Locals" || scopes[1].Name != "Globals" {
		t.Fatalf("scopes: %+v", scopes)
	}
	locals := c.vars(scopes[0].VariablesReference)
	data, ok := locals["data"]
	if !ok || locals["i"].Value != i.Result || data.VariablesReference == 0 {
		t.Fatalf("locals: %+v", locals)
	}
	kids := c.vars(data.VariablesReference)
	if kids["'i'"].Value != i.Result || kids["'items'"].Value != "[1, 2, 3]" || kids["'p'"].VariablesReference == 0 {
		t.Fatalf("data's children: %+v", kids)
	}
	items := c.vars(kids["'items'"].VariablesReference)
	if len(items) != 3 || items["[2]"].Value != "3" {
		t.Errorf("items: %+v", items)
	}
	// An object whose __repr__ raises: shown from its __dict__, its
	// attributes by expansion; the __repr__ never runs.
	p := kids["'p'"]
	if !strings.Contains(p.Value, "Point object at") || strings.Contains(p.Value, "user __repr__") {
		t.Errorf("p = %q", p.Value)
	}
	pk := c.vars(p.VariablesReference)
	if pk["x"].Value != i.Result || pk["y"].Value != "'y'" {
		t.Errorf("p's attributes: %+v", pk)
	}
	globals := c.vars(scopes[1].VariablesReference)
	if _, ok := globals["ticks"]; !ok {
		t.Errorf("globals: no ticks: %v", globals)
	}
	// hover renders safely; repl runs repr() (print/r), here raising.
	h := c.eval(frame, "data['p']", "hover")
	if !strings.Contains(h.Result, "Point object at") || h.VariablesReference == 0 {
		t.Errorf("hover: %+v", h)
	}
	if hk := c.vars(h.VariablesReference); hk["x"].Value != i.Result {
		t.Errorf("hover's children: %+v", hk)
	}
	// completions: names, a dict's keys, attributes (as the debug console
	// asks them, the cursor a 1-based column), in the frame given or, with
	// none, the stopped thread's innermost.
	if !caps.SupportsCompletionsRequest {
		t.Errorf("capabilities: no completions")
	}
	for _, tc := range []struct {
		text  string
		frame int
		want  string
	}{
		{"data['i", frame, "i:value@7+1 items:value@7+1"},
		{"len(data['p'].", frame, "x:property@15+0 y:property@15+0"},
		{"tic", frame, "ticker:function@1+3 ticks:variable@1+3"},
		{"wor + 1", frame, ""}, // the cursor is at the end: after a complete operand
		{"data['p'].y", 0, "y:property@11+1"},
		{"Poi", 0, "Point:class@1+3"},
	} {
		args := map[string]any{"text": tc.text, "column": len(tc.text) + 1}
		if tc.frame != 0 {
			args["frameId"] = tc.frame
		}
		var got []string
		for _, it := range c.Call("completions", args).(*dap.CompletionsResponse).Body.Targets {
			if it.Label != it.Text {
				t.Errorf("completion %+v: label and text differ", it)
			}
			got = append(got, fmt.Sprintf("%s:%s@%d+%d", it.Label, it.Type, it.Start, it.Length))
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("completions of %q: %s, want %s", tc.text, strings.Join(got, " "), tc.want)
		}
	}
	if r := c.Call("completions", map[string]any{"text": "wor + 1", "column": 4, "frameId": frame}).(*dap.CompletionsResponse).Body.Targets; len(r) != 2 || r[0].Label != "work" || r[1].Label != "worker" || r[0].Type != "function" {
		t.Errorf("completions with the cursor inside: %+v", r)
	}
	if msg := c.CallErr("evaluate", map[string]any{"expression": "data['p']", "frameId": frame, "context": "repl"}); !strings.Contains(msg, "user __repr__ ran") {
		t.Errorf("repl evaluate: %q, want the __repr__'s error", msg)
	}
	// setVariable on a local.
	sv := c.Call("setVariable", map[string]any{"variablesReference": scopes[0].VariablesReference, "name": "i", "value": "1000"}).(*dap.SetVariableResponse).Body
	if sv.Value != "1000" {
		t.Errorf("setVariable: %+v", sv)
	}
	if v := c.eval(frame, "i", "watch"); v.Result != "1000" {
		t.Errorf("i after setVariable: %s", v.Result)
	}
	// setVariable on children: a dict's item, a list's item, an
	// attribute (the object's __repr__ never runs), a global; the new
	// values as the target itself computes them.
	for _, tc := range []struct {
		ref         int
		name, value string
		check, want string
	}{
		{data.VariablesReference, "'items'", "[i, 'x']", "repr(data['items'])", `"[1000, 'x']"`},
		{kids["'items'"].VariablesReference, "[0]", "i + 1", "data['items']", "[1001, 'x']"},
		{p.VariablesReference, "x", "'moved'", "data['p'].x", "'moved'"},
		{scopes[1].VariablesReference, "rounds", "-7", "rounds", "-7"},
	} {
		sv := c.Call("setVariable", map[string]any{"variablesReference": tc.ref, "name": tc.name, "value": tc.value}).(*dap.SetVariableResponse).Body
		if got := c.eval(frame, tc.check, "watch").Result; got != tc.want {
			t.Errorf("setVariable %s = %s (answer %+v): %s is %s, want %s", tc.name, tc.value, sv, tc.check, got, tc.want)
		}
	}
	// An assignment typed in the debug console.
	if r := c.eval(frame, "data['items'] = [i, 8]", "repl"); r.Result != "[1000, 8]" {
		t.Errorf("console assignment: %+v", r)
	}
	if got := c.eval(frame, "data['items']", "watch").Result; got != "[1000, 8]" {
		t.Errorf("after the console's assignment: %s", got)
	}
	if msg := c.CallErr("setVariable", map[string]any{"variablesReference": p.VariablesReference, "name": "nosuch", "value": "1"}); !strings.Contains(msg, "nosuch") {
		t.Errorf("setVariable of no child: %q", msg)
	}

	// Other threads run while this one is stopped.
	t0, _ := strconv.Atoi(c.eval(frame, "ticks", "watch").Result)
	deadline := time.Now().Add(30 * time.Second)
	for {
		t1, _ := strconv.Atoi(c.eval(frame, "ticks", "watch").Result)
		if t1 > t0+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ticks did not move while a thread was stopped (%d, %d)", t0, t1)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Steps: next to the return line, stepOut back into worker.
	c.Call("next", map[string]any{"threadId": th})
	if st := c.Stopped(30 * time.Second); st.Reason != "step" || st.ThreadId != th {
		t.Errorf("next: %+v", st)
	}
	if f := c.Top(th); f.Line != workLine+1 {
		t.Errorf("after next: line %d, want %d", f.Line, workLine+1)
	}
	c.Call("stepOut", map[string]any{"threadId": th})
	c.Stopped(30 * time.Second)
	if f := c.Top(th); f.Name != "worker" {
		t.Errorf("after stepOut: in %s", f.Name)
	}
	// A hit condition: the breakpoint (on fail's line now) stops at its
	// 3rd crossing.
	c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file}, "breakpoints": []map[string]any{}})
	c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file},
		"breakpoints": []map[string]any{{"line": failLine, "hitCondition": "3"}}})
	before, _ := strconv.Atoi(c.eval(c.Top(th).Id, "i", "watch").Result)
	c.Call("stepIn", map[string]any{"threadId": th})
	c.Stopped(30 * time.Second)
	c.Call("continue", map[string]any{"threadId": th})
	st = c.Stopped(30 * time.Second)
	if f := c.Top(st.ThreadId); f.Line != failLine {
		t.Fatalf("hit condition: stopped at %+v", f)
	}
	if n, _ := strconv.Atoi(c.eval(c.Top(st.ThreadId).Id, "i", "watch").Result); n < before+2 {
		t.Errorf("hit condition 3: stopped with i=%d after i=%d", n, before)
	}
	c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file}, "breakpoints": []map[string]any{}})

	// Exception breakpoints: raised stops where fail raises.
	c.Call("setExceptionBreakpoints", map[string]any{"filters": []string{"raised"}})
	c.Call("continue", map[string]any{"threadId": st.ThreadId})
	st = c.Stopped(30 * time.Second)
	if st.Reason != "exception" {
		t.Fatalf("exception stop: %+v", st)
	}
	ei := c.Call("exceptionInfo", map[string]any{"threadId": st.ThreadId}).(*dap.ExceptionInfoResponse).Body
	if ei.ExceptionId != "ValueError" || !regexp.MustCompile(`^ValueError\('bad \d+'\)$`).MatchString(ei.Description) || ei.BreakMode != "always" {
		t.Errorf("exceptionInfo: %+v", ei)
	}
	c.Call("setExceptionBreakpoints", map[string]any{"filters": []string{}})
	c.Call("continue", map[string]any{"threadId": st.ThreadId})

	// pause: the spinner stops at its next line; the others run on.
	threads := c.Call("threads", nil).(*dap.ThreadsResponse).Body.Threads
	spin := 0
	for _, t := range threads {
		if t.Name == "spinner" {
			spin = t.Id
		}
	}
	if spin == 0 {
		t.Fatalf("no spinner thread: %+v", threads)
	}
	started := map[int]bool{}
	for _, m := range c.Kept {
		if e, ok := m.(*dap.ThreadEvent); ok && e.Body.Reason == "started" {
			started[e.Body.ThreadId] = true
		}
	}
	for _, th := range threads {
		if !started[th.Id] {
			t.Errorf("no thread started event for %+v", th)
		}
	}
	c.Call("pause", map[string]any{"threadId": spin})
	st = c.Stopped(30 * time.Second)
	if st.Reason != "pause" || st.ThreadId != spin {
		t.Errorf("pause: %+v", st)
	}
	c.Call("continue", map[string]any{"threadId": spin})

	// A logpoint: a message per crossing, values rendered safely (Point's
	// __repr__ raises), the thread never stopped.
	c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file},
		"breakpoints": []map[string]any{{"line": workLine, "logMessage": "round {i}: {{items}} {data['items']} p={data['p']} {undefined_name}"}}})
	out := c.Next("logpoint output", func(m dap.Message) bool {
		o, ok := m.(*dap.OutputEvent)
		return ok && strings.HasPrefix(o.Body.Output, "round ")
	}, 30*time.Second).(*dap.OutputEvent).Body
	if !regexp.MustCompile(`^round \d+: \{items\} \[1, 2, 3\] p=<\S*Point object at 0x[0-9a-f]+> \{x = \d+, y = 'y'\} <error: NameError: name 'undefined_name' is not defined>\n$`).MatchString(out.Output) ||
		out.Line != workLine || out.Source == nil || out.Source.Path != file {
		t.Errorf("logpoint output: %+v", out)
	}
	c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file}, "breakpoints": []map[string]any{}})
	for _, m := range c.Kept {
		if e, ok := m.(*dap.StoppedEvent); ok {
			t.Errorf("a stop while only a logpoint was set: %+v", e.Body)
		}
	}

	// disconnect (terminateDebuggee or not) detaches: the process runs on
	// with no agent thread.
	c.Call("disconnect", map[string]any{"terminateDebuggee": true})
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("target gone after disconnect: %v", err)
	}
	if agentThread(pid) {
		t.Fatal("krait's agent is still in the target after disconnect")
	}
}

// agentThread says whether krait's agent is still in pid: a new session
// cannot attach while it is (tried for a few seconds: an agent leaving
// takes a moment), and detaches at once when it can.
func agentThread(pid int) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := session.Attach(pid, -1, agent.MethodAuto, 10*time.Second)
		if err == nil {
			s.Detach()
			s.Close()
			return false
		}
		if time.Now().After(deadline) {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestAdapterInputClosed: the adapter's input ending (the editor gone)
// detaches as disconnect does.
func TestAdapterInputClosed(t *testing.T) {
	pys := testkit.AttachPythons(t)
	py := pys[len(pys)-1]
	for _, p := range pys {
		if p.Minor == "3.12" {
			py = p
		}
	}
	cmd, file := target(t, py.Path)
	c := newClient(t)
	c.Call("initialize", map[string]any{"adapterID": "krait"})
	c.Call("attach", map[string]any{"processId": cmd.Process.Pid})
	c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file},
		"breakpoints": []map[string]any{{"line": testkit.FixtureLine(t, file, "# LINE work")}}})
	c.Call("configurationDone", nil)
	c.Stopped(30 * time.Second) // a thread held
	c.in.Close()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("server did not end when its input closed")
	}
	if agentThread(cmd.Process.Pid) {
		t.Fatal("krait's agent is still in the target after the adapter's input closed")
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("target gone: %v", err)
	}
}

func TestParseLog(t *testing.T) {
	for _, tc := range []struct {
		msg          string
		parts, exprs []string
		err          bool
	}{
		{"plain", []string{"plain"}, nil, false},
		{"x={x} y={d['}']}", []string{"x=", " y=", ""}, []string{"x", "d['}']"}, false},
		{"{{lit}} {f({1: 2}[1])}", []string{"{lit} ", ""}, []string{"f({1: 2}[1])"}, false},
		{"bad {x", nil, nil, true},
		{"empty {}", nil, nil, true},
	} {
		parts, exprs, err := parseLog(tc.msg)
		if (err != nil) != tc.err || strings.Join(parts, "|") != strings.Join(tc.parts, "|") || strings.Join(exprs, "|") != strings.Join(tc.exprs, "|") {
			t.Errorf("parseLog(%q) = %q, %q, %v", tc.msg, parts, exprs, err)
		}
	}
}

// TestAdapterTargetExits: the process ending sends output saying so and
// terminated.
func TestAdapterTargetExits(t *testing.T) {
	pys := testkit.AttachPythons(t)
	cmd, _ := target(t, pys[len(pys)-1].Path)
	c := newClient(t)
	c.Call("initialize", map[string]any{"adapterID": "krait"})
	c.Call("attach", map[string]any{"processId": cmd.Process.Pid})
	c.Call("configurationDone", nil)
	cmd.Process.Kill()
	c.Event("terminated", 30*time.Second)
	found := false
	for _, m := range c.Kept {
		if o, ok := m.(*dap.OutputEvent); ok && strings.Contains(o.Body.Output, "exited") {
			found = true
		}
	}
	if !found {
		t.Errorf("no output saying the process exited before terminated: %v", c.Kept)
	}
	c.Call("disconnect", nil)
}

// TestAdapterPending: a breakpoint in a module not imported yet is
// unverified, then a breakpoint event says it is set once the module
// loads, and it stops.
func TestAdapterPending(t *testing.T) {
	for _, py := range testkit.AttachPythons(t) {
		if py.Minor != "3.9" && py.Minor != "3.13" {
			continue
		}
		t.Run(py.Name, func(t *testing.T) {
			cmd, file := target(t, py.Path)
			late := filepath.Join(filepath.Dir(file), "dap_late.py")
			lateLine := testkit.FixtureLine(t, late, "# LINE late")
			c := newClient(t)
			c.Call("initialize", map[string]any{"adapterID": "krait"})
			c.Call("attach", map[string]any{"processId": cmd.Process.Pid})
			bps := c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": late},
				"breakpoints": []map[string]any{{"line": lateLine}}}).(*dap.SetBreakpointsResponse).Body.Breakpoints
			if len(bps) != 1 || bps[0].Verified || !strings.Contains(bps[0].Message, "pending") {
				t.Fatalf("pending breakpoint: %+v", bps)
			}
			c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file},
				"breakpoints": []map[string]any{{"line": testkit.FixtureLine(t, file, "# LINE work")}}})
			c.Call("configurationDone", nil)
			st := c.Stopped(30 * time.Second)
			c.eval(c.Top(st.ThreadId).Id, "globals().__setitem__('load_late', True)", "repl")
			c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file}, "breakpoints": []map[string]any{}})
			c.Call("continue", map[string]any{"threadId": st.ThreadId})
			ev := c.Event("breakpoint", 30*time.Second).(*dap.BreakpointEvent).Body
			if ev.Reason != "changed" || !ev.Breakpoint.Verified || ev.Breakpoint.Id != bps[0].Id || ev.Breakpoint.Line != lateLine {
				t.Errorf("breakpoint event: %+v", ev)
			}
			st = c.Stopped(30 * time.Second)
			if f := c.Top(st.ThreadId); f.Name != "hello" || f.Line != lateLine {
				t.Errorf("stopped in %+v", f)
			}
			c.Call("disconnect", nil)
		})
	}
}

// TestAdapterJustMyCode: with justMyCode (the default) the raised filter
// does not stop where the standard library raises (json.loads' error, in
// json/decoder.py), only in the fixture's own code; without it, it does.
func TestAdapterJustMyCode(t *testing.T) {
	for _, py := range testkit.AttachPythons(t) {
		if py.Minor != "3.10" && py.Minor != "3.12" {
			continue
		}
		for _, mine := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/justMyCode=%v", py.Name, mine), func(t *testing.T) {
				cmd, file := target(t, py.Path)
				c := newClient(t)
				c.Call("initialize", map[string]any{"adapterID": "krait"})
				c.Call("attach", map[string]any{"processId": cmd.Process.Pid, "justMyCode": mine})
				c.Call("setExceptionBreakpoints", map[string]any{"filters": []string{"raised"}})
				c.Call("configurationDone", nil)
				var files []string
				sawLib := false
				for n := 0; n < 6; n++ {
					st := c.Stopped(30 * time.Second)
					f := c.Top(st.ThreadId)
					files = append(files, f.Source.Path)
					if f.Source.Path != file {
						sawLib = true
					}
					c.Call("continue", map[string]any{"threadId": st.ThreadId})
				}
				if sawLib == mine {
					t.Errorf("justMyCode %v: stops in %v", mine, files)
				}
				c.Call("disconnect", nil)
			})
		}
	}
}

// TestAdapterJustMyCodeSteps: with justMyCode, stepIn at a call into the
// standard library (copy.deepcopy) lands in the fixture's own code it
// calls back (Twin.__deepcopy__), and stepOut from there, returning into
// copy.py, lands on the fixture's next line; without justMyCode stepIn
// lands in copy.py.
func TestAdapterJustMyCodeSteps(t *testing.T) {
	for _, py := range testkit.AttachPythons(t) {
		if py.Minor != "3.9" && py.Minor != "3.12" && py.Minor != "3.14" {
			continue
		}
		for _, mine := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/justMyCode=%v", py.Name, mine), func(t *testing.T) {
				cmd, file := target(t, py.Path)
				callLine := testkit.FixtureLine(t, file, "# LINE deepcopy")
				mineLine := testkit.FixtureLine(t, file, "# LINE mine")
				c := newClient(t)
				c.Call("initialize", map[string]any{"adapterID": "krait"})
				c.Call("attach", map[string]any{"processId": cmd.Process.Pid, "justMyCode": mine})
				c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file},
					"breakpoints": []map[string]any{{"line": callLine}}})
				c.Call("configurationDone", nil)
				st := c.Stopped(30 * time.Second)
				th := st.ThreadId
				c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file}, "breakpoints": []map[string]any{}})
				if f := c.Top(th); f.Line != callLine {
					t.Fatalf("stopped at %s:%d, want line %d", f.Source.Path, f.Line, callLine)
				}
				c.Call("stepIn", map[string]any{"threadId": th})
				c.Stopped(30 * time.Second)
				f := c.Top(th)
				if !mine {
					if filepath.Base(f.Source.Path) != "copy.py" {
						t.Errorf("stepIn without justMyCode: at %s:%d (%s), want copy.py", f.Source.Path, f.Line, f.Name)
					}
					c.Call("disconnect", nil)
					return
				}
				if f.Source.Path != file || f.Line != mineLine {
					t.Fatalf("stepIn with justMyCode: at %s:%d (%s), want %s:%d", f.Source.Path, f.Line, f.Name, file, mineLine)
				}
				c.Call("stepOut", map[string]any{"threadId": th})
				if st := c.Stopped(30 * time.Second); st.ThreadId != th {
					t.Fatalf("stepOut: %+v", st)
				}
				if f := c.Top(th); f.Source.Path != file || f.Name != "worker" || f.Line <= callLine {
					t.Errorf("stepOut with justMyCode into copy.py: at %s:%d (%s), want worker after line %d", f.Source.Path, f.Line, f.Name, callLine)
				}
				c.Call("disconnect", nil)
			})
		}
	}
}

// TestAdapterHitEvery: the hit condition %3 stops at every third
// crossing: two stops in a row are three calls of work() apart (its
// argument counts the calls).
func TestAdapterHitEvery(t *testing.T) {
	for _, py := range testkit.AttachPythons(t) {
		if py.Minor != "3.9" && py.Minor != "3.12" {
			continue
		}
		t.Run(py.Name, func(t *testing.T) {
			cmd, file := target(t, py.Path)
			c := newClient(t)
			c.Call("initialize", map[string]any{"adapterID": "krait"})
			c.Call("attach", map[string]any{"processId": cmd.Process.Pid})
			c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file},
				"breakpoints": []map[string]any{{"line": testkit.FixtureLine(t, file, "# LINE work"), "hitCondition": "%3"}}})
			c.Call("configurationDone", nil)
			var is []int
			for len(is) < 3 {
				st := c.Stopped(30 * time.Second)
				n, err := strconv.Atoi(c.eval(c.Top(st.ThreadId).Id, "i", "watch").Result)
				if err != nil {
					t.Fatal(err)
				}
				is = append(is, n)
				c.Call("continue", map[string]any{"threadId": st.ThreadId})
			}
			if is[1]-is[0] != 3 || is[2]-is[1] != 3 {
				t.Errorf("stops at i = %v, want every third call", is)
			}
			c.Call("disconnect", nil)
		})
	}
}

func TestHitCount(t *testing.T) {
	for _, tc := range []struct {
		in     string
		ignore int
		once   bool
		every  int
		err    bool
	}{
		{"1", 0, false, 0, false}, {"5", 4, false, 0, false}, {">=5", 4, false, 0, false}, {" > 5 ", 5, false, 0, false},
		{"==3", 2, true, 0, false}, {"0", 0, false, 0, false}, {"%2", 0, false, 2, false}, {"% 3", 0, false, 3, false},
		{"x", 0, false, 0, true}, {"%", 0, false, 0, true},
	} {
		o, err := hitCount(tc.in)
		if o.Ignore != tc.ignore || o.Temporary != tc.once || o.Every != tc.every || (err != nil) != tc.err {
			t.Errorf("hitCount(%q) = %+v, %v", tc.in, o, err)
		}
	}
}

// TestAdapterProcesses attaches one debug session to two processes of
// different Pythons (processId and processIds): a breakpoint set once
// stops a thread in each, threads are listed from both with their
// process in their names, each stopped thread's stack and variables are
// its own process's, exception breakpoints reach both, continue acts on
// the thread's process, and disconnect leaves both as they were.
func TestAdapterProcesses(t *testing.T) {
	var pys []testkit.Python
	for _, minor := range []string{"3.9", "3.12"} {
		for _, p := range testkit.AttachPythons(t) {
			if p.Minor == minor && !strings.HasPrefix(p.Name, "system") {
				pys = append(pys, p)
				break
			}
		}
	}
	if len(pys) != 2 {
		t.Skip("needs pyenv's 3.9 and 3.12")
	}
	cmdA, file := target(t, pys[0].Path)
	cmdB, _ := target(t, pys[1].Path)
	pids := []int{cmdA.Process.Pid, cmdB.Process.Pid}
	workLine := testkit.FixtureLine(t, file, "# LINE work")
	c := newClient(t)
	c.Call("initialize", map[string]any{"adapterID": "krait", "linesStartAt1": true})
	c.Call("attach", map[string]any{"processId": pids[0], "processIds": []string{strconv.Itoa(pids[1])}})
	c.Event("initialized", 5*time.Second)

	bps := c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file},
		"breakpoints": []map[string]any{{"line": workLine}}}).(*dap.SetBreakpointsResponse).Body.Breakpoints
	if len(bps) != 1 || !bps[0].Verified || bps[0].Line != workLine {
		t.Fatalf("setBreakpoints: %+v", bps)
	}
	c.Call("configurationDone", nil)

	// One stop in each process: the first one's thread stays stopped, so
	// the second comes from the other process.
	stops := map[int]dap.StoppedEventBody{} // by pid
	for len(stops) < 2 {
		st := c.Stopped(30 * time.Second)
		if st.Reason != "breakpoint" || len(st.HitBreakpointIds) != 1 || st.HitBreakpointIds[0] != bps[0].Id {
			t.Errorf("stopped: %+v", st)
		}
		f := c.Top(st.ThreadId)
		if f.Name != "work" || f.Line != workLine || f.Source == nil || f.Source.Path != file {
			t.Errorf("top frame: %+v", f)
		}
		pid, _ := strconv.Atoi(c.eval(f.Id, "os.getpid()", "watch").Result)
		if _, dup := stops[pid]; dup || (pid != pids[0] && pid != pids[1]) {
			t.Fatalf("stop in process %d (stops so far: %v)", pid, stops)
		}
		stops[pid] = st
	}
	if stops[pids[0]].ThreadId == stops[pids[1]].ThreadId {
		t.Fatalf("both processes' threads have DAP id %d", stops[pids[0]].ThreadId)
	}

	// threads: both processes', unique ids, named by their process.
	threads := c.Call("threads", nil).(*dap.ThreadsResponse).Body.Threads
	names := map[int]string{}
	for _, th := range threads {
		if _, dup := names[th.Id]; dup {
			t.Errorf("thread id %d listed twice", th.Id)
		}
		names[th.Id] = th.Name
	}
	for i, pid := range pids {
		want := fmt.Sprintf("[process %d] worker", pid)
		if names[stops[pid].ThreadId] != want {
			t.Errorf("stopped thread of process %d is named %q, want %q", pid, names[stops[pid].ThreadId], want)
		}
		for _, n := range []string{"ticker", "spinner"} {
			found := false
			for _, name := range names {
				found = found || name == fmt.Sprintf("[process %d] %s", pid, n)
			}
			if !found {
				t.Errorf("no %s thread of process %d in %v", n, pid, names)
			}
		}
		// Each thread's frames and variables are its own process's: the
		// Python version, as the target itself says it.
		th := stops[pid].ThreadId
		frame := c.Top(th).Id
		ver := c.eval(frame, "'%d.%d' % sys.version_info[:2]", "watch").Result
		if ver != "'"+pys[i].Minor+"'" {
			t.Errorf("process %d: version %s, want %s", pid, ver, pys[i].Minor)
		}
		scopes := c.Call("scopes", map[string]any{"frameId": frame}).(*dap.ScopesResponse).Body.Scopes
		locals := c.vars(scopes[0].VariablesReference)
		data := locals["data"]
		if data.VariablesReference == 0 {
			t.Fatalf("process %d: locals %+v", pid, locals)
		}
		kids := c.vars(data.VariablesReference)
		if kids["'i'"].Value != locals["i"].Value || kids["'items'"].Value != "[1, 2, 3]" {
			t.Errorf("process %d: data's children %+v", pid, kids)
		}
	}

	// Breakpoints cleared once, in both; continue is per thread, in its
	// process.
	c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": file}, "breakpoints": []map[string]any{}})
	c.Call("continue", map[string]any{"threadId": stops[pids[0]].ThreadId})
	if msg := c.CallErr("stackTrace", map[string]any{"threadId": stops[pids[0]].ThreadId}); !strings.Contains(msg, "not stopped") {
		t.Errorf("stackTrace of a continued thread: %q", msg)
	}
	if f := c.Top(stops[pids[1]].ThreadId); f.Name != "work" {
		t.Errorf("the other process's thread moved: %+v", f)
	}
	c.Call("continue", map[string]any{"threadId": stops[pids[1]].ThreadId})

	// Exception breakpoints reach both processes.
	c.Call("setExceptionBreakpoints", map[string]any{"filters": []string{"raised"}})
	seen := map[int]int{} // pid → thread
	for len(seen) < 2 {
		st := c.Stopped(30 * time.Second)
		if st.Reason != "exception" {
			t.Fatalf("exception stop: %+v", st)
		}
		ei := c.Call("exceptionInfo", map[string]any{"threadId": st.ThreadId}).(*dap.ExceptionInfoResponse).Body
		// fail's ValueError, or json's decode error as it enters worker
		if ei.ExceptionId != "ValueError" && ei.ExceptionId != "json.decoder.JSONDecodeError" {
			t.Errorf("exceptionInfo: %+v", ei)
		}
		pid, _ := strconv.Atoi(c.eval(c.Top(st.ThreadId).Id, "os.getpid()", "watch").Result)
		if _, dup := seen[pid]; dup {
			t.Fatalf("two exception stops in process %d", pid)
		}
		seen[pid] = st.ThreadId
	}
	c.Call("setExceptionBreakpoints", map[string]any{"filters": []string{}})
	for _, th := range seen {
		c.Call("continue", map[string]any{"threadId": th})
	}

	c.Call("disconnect", map[string]any{"terminateDebuggee": true})
	for _, cmd := range []*exec.Cmd{cmdA, cmdB} {
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("target gone after disconnect: %v", err)
		}
		if agentThread(cmd.Process.Pid) {
			t.Fatalf("krait's agent is still in process %d after disconnect", cmd.Process.Pid)
		}
	}
}

func TestAttachPids(t *testing.T) {
	for _, tc := range []struct {
		args string
		want []int
		err  string
	}{
		{`{"processId": 12}`, []int{12}, ""},
		{`{"processId": "12"}`, []int{12}, ""},
		{`{"processId": [12, "13"]}`, []int{12, 13}, ""},
		{`{"processId": 12, "processIds": [13, 14]}`, []int{12, 13, 14}, ""},
		{`{"processIds": ["13"]}`, []int{13}, ""},
		{`{}`, nil, "attach needs processId"},
		{`{"processIds": [13, "x"]}`, nil, "bad processId"},
		{`{"processId": 1.5}`, nil, "bad processId"},
	} {
		var a attachArgs
		if err := json.Unmarshal([]byte(tc.args), &a); err != nil {
			t.Fatal(err)
		}
		got, err := a.pids()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, %v; want an error %q", tc.args, got, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.args, got, err, tc.want)
		}
	}
}
