package dap

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"

	"github.com/google/go-dap"

	"krait/internal/agent"
	"krait/internal/procinfo"
	"krait/internal/session"
)

// Exception filters (setExceptionBreakpoints), as the agent's catchpoints.
var exceptionFilters = []dap.ExceptionBreakpointsFilter{
	{Filter: "raised", Label: "Raised Exceptions", Description: "Stop the thread where an exception is raised (with justMyCode: in your code, not a library's); other threads run on."},
	{Filter: "uncaught", Label: "Uncaught Exceptions", Description: "Stop the thread as an exception leaves it uncaught.", Default: true},
}

func capabilities() dap.Capabilities {
	return dap.Capabilities{
		SupportsConfigurationDoneRequest:      true,
		SupportsFunctionBreakpoints:           true,
		SupportsConditionalBreakpoints:        true,
		SupportsHitConditionalBreakpoints:     true,
		SupportsEvaluateForHovers:             true,
		ExceptionBreakpointFilters:            exceptionFilters,
		SupportsSetVariable:                   true,
		SupportsExceptionInfoRequest:          true,
		SupportsDelayedStackTraceLoading:      true,
		SupportsSingleThreadExecutionRequests: true,
		SupportsLogPoints:                     true,
		SupportsCompletionsRequest:            true,
		CompletionTriggerCharacters:           []string{".", "["},
		// Not: terminating the debuggee (krait never kills it), restart,
		// step back, goto.
	}
}

// handle answers one message; it reports whether the session is over.
func (sv *Server) handle(m dap.Message) (quit bool) {
	rm, ok := m.(dap.RequestMessage)
	if !ok {
		return false // responses to reverse requests, events: none expected
	}
	req := rm.GetRequest()
	// A response goes out before any event the request causes (a stop
	// after next or a breakpoint set): the events wait for mu.
	locked := false
	switch rm.(type) {
	case *dap.InitializeRequest, *dap.AttachRequest, *dap.LaunchRequest, *dap.DisconnectRequest, *dap.ConfigurationDoneRequest:
	default:
		sv.mu.Lock()
		locked = true
	}
	resp, err := sv.dispatch(rm)
	if err != nil {
		sv.fail(req, err)
	} else {
		r := resp.GetResponse()
		r.RequestSeq, r.Command, r.Success = req.Seq, req.Command, true
		sv.send(resp)
	}
	if locked {
		sv.mu.Unlock()
	}
	switch rm.(type) {
	case *dap.AttachRequest:
		if err == nil {
			sv.event("initialized", &dap.InitializedEvent{})
		}
	case *dap.DisconnectRequest:
		return true
	}
	return false
}

func (sv *Server) dispatch(rm dap.RequestMessage) (dap.ResponseMessage, error) {
	switch r := rm.(type) {
	case *dap.InitializeRequest:
		return &dap.InitializeResponse{Body: capabilities()}, nil
	case *dap.AttachRequest:
		return sv.attach(r)
	case *dap.LaunchRequest:
		return nil, errors.New("krait dap attaches to a running process: use an attach configuration (processId)")
	case *dap.DisconnectRequest:
		sv.detachAll() // never kills the target, whatever terminateDebuggee says
		return &dap.DisconnectResponse{}, nil
	case *dap.ConfigurationDoneRequest:
		return &dap.ConfigurationDoneResponse{}, nil
	}
	// mu is held from here on (handle).
	if sv.g == nil {
		return nil, errNotAttached
	}
	switch r := rm.(type) {
	case *dap.SetBreakpointsRequest:
		return sv.setBreakpoints(r)
	case *dap.SetFunctionBreakpointsRequest:
		return sv.setFunctionBreakpoints(r)
	case *dap.SetExceptionBreakpointsRequest:
		return sv.setExceptionBreakpoints(r)
	case *dap.ThreadsRequest:
		return sv.threadsReq()
	case *dap.StackTraceRequest:
		return sv.stackTrace(r)
	case *dap.ScopesRequest:
		return sv.scopes(r)
	case *dap.VariablesRequest:
		return sv.variables(r)
	case *dap.EvaluateRequest:
		return sv.evaluate(r)
	case *dap.CompletionsRequest:
		return sv.completions(r)
	case *dap.SetVariableRequest:
		return sv.setVariable(r)
	case *dap.ExceptionInfoRequest:
		return sv.exceptionInfo(r)
	case *dap.ContinueRequest:
		return &dap.ContinueResponse{Body: dap.ContinueResponseBody{AllThreadsContinued: false}}, sv.resume(r.Arguments.ThreadId, "continue")
	case *dap.NextRequest:
		return &dap.NextResponse{}, sv.resume(r.Arguments.ThreadId, "next")
	case *dap.StepInRequest:
		return &dap.StepInResponse{}, sv.resume(r.Arguments.ThreadId, "step")
	case *dap.StepOutRequest:
		return &dap.StepOutResponse{}, sv.resume(r.Arguments.ThreadId, "finish")
	case *dap.PauseRequest:
		return &dap.PauseResponse{}, sv.pause(r.Arguments.ThreadId)
	}
	return nil, fmt.Errorf("krait dap does not support %q", rm.GetRequest().Command)
}

// attachArgs are the attach configuration's fields krait reads.
type attachArgs struct {
	// ProcessID is a pid, as a number or a string (VS Code's process
	// picker gives a string), or a list of them; a server's master (a
	// gunicorn arbiter, an Apache parent, …) stands for its workers, new
	// ones included. ProcessIDs is a list too, added to it.
	ProcessID   json.RawMessage `json:"processId"`
	ProcessIDs  json.RawMessage `json:"processIds"`
	Method      string          `json:"method"`
	Interpreter *int64          `json:"interpreter"`
	JustMyCode  *bool           `json:"justMyCode"`
	// PathMappings map the editor's paths (localRoot) to the process's
	// (remoteRoot), for code in a container or deployed elsewhere.
	PathMappings []struct {
		LocalRoot  string `json:"localRoot"`
		RemoteRoot string `json:"remoteRoot"`
	} `json:"pathMappings"`
}

// pids reads processId and processIds: pids, as numbers or strings,
// one or a list each.
func (a *attachArgs) pids() ([]int, error) {
	var out []int
	for _, raw := range []json.RawMessage{a.ProcessID, a.ProcessIDs} {
		var v any
		if len(raw) == 0 || json.Unmarshal(raw, &v) != nil || v == nil {
			continue
		}
		list, isList := v.([]any)
		if !isList {
			list = []any{v}
		}
		for _, it := range list {
			var n int
			switch x := it.(type) {
			case float64:
				n = int(x)
				if float64(n) != x {
					n = 0
				}
			case string:
				n, _ = strconv.Atoi(strings.TrimSpace(x))
			}
			if n <= 0 {
				return nil, fmt.Errorf("bad processId %s (a process id)", string(raw))
			}
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("attach needs processId (the pid of a Python process, or a server's master) or processIds (a list of them)")
	}
	return out, nil
}

func (sv *Server) attach(r *dap.AttachRequest) (dap.ResponseMessage, error) {
	var a attachArgs
	if len(r.Arguments) > 0 {
		if err := json.Unmarshal(r.Arguments, &a); err != nil {
			return nil, fmt.Errorf("bad attach arguments: %v", err)
		}
	}
	pids, err := a.pids()
	if err != nil {
		return nil, err
	}
	method := a.Method
	switch method {
	case "":
		method = agent.MethodAuto
	case agent.MethodAuto, agent.MethodPEP768, agent.MethodPtrace:
	default:
		return nil, fmt.Errorf("bad method %q (auto, pep768 or ptrace)", a.Method)
	}
	interp := int64(-1)
	if a.Interpreter != nil {
		if *a.Interpreter < -1 {
			return nil, fmt.Errorf("bad interpreter %d (an interpreter id, as krait dump shows it)", *a.Interpreter)
		}
		interp = *a.Interpreter
	}
	sv.mu.Lock()
	if sv.g != nil {
		sv.mu.Unlock()
		return nil, errors.New("already attached")
	}
	if a.JustMyCode != nil {
		sv.justMine = *a.JustMyCode
	}
	for _, m := range a.PathMappings {
		if m.LocalRoot != "" && m.RemoteRoot != "" {
			sv.maps = append(sv.maps, pathMapping{local: filepath.Clean(m.LocalRoot), remote: filepath.Clean(m.RemoteRoot)})
		}
	}
	sv.mu.Unlock()
	// A server's master stands for its workers; several processes, or a
	// master, make thread names and notices name their process.
	targets, masters := procinfo.ExpandServers(pids)
	if len(targets) == 0 {
		return nil, fmt.Errorf("server %d has no Python workers running", masters[0])
	}
	g := session.NewGroup(session.AttachOptions{Interp: interp, Method: method, Timeout: sv.AttachTimeout})
	if len(targets) > 1 || len(masters) > 0 {
		g.SetServer()
	}
	type result struct {
		s   *session.Session
		err error
	}
	results := make([]result, len(targets))
	var wg sync.WaitGroup
	for i, pid := range targets {
		wg.Add(1)
		go func(i, pid int) {
			defer wg.Done()
			s, err := sv.Attach(pid, interp, method, sv.AttachTimeout)
			results[i] = result{s, err}
		}(i, pid)
	}
	wg.Wait()
	var firstErr error
	attached := 0
	for i, res := range results {
		if res.err != nil {
			if firstErr == nil {
				firstErr = res.err
			}
			if len(targets) > 1 {
				sv.output("stderr", fmt.Sprintf("krait: process %d: %v", targets[i], res.err))
			}
			continue
		}
		gi := g.Add(res.s)
		sv.mu.Lock()
		sv.adopt(gi)
		sv.mu.Unlock()
		attached++
		sv.output("console", fmt.Sprintf("Attached to process %d (Python %s, %s backend).", targets[i], res.s.Version, res.s.Backend))
	}
	if attached == 0 {
		g.Close()
		sv.mu.Lock()
		sv.inferiors, sv.byInf = nil, map[*session.Inferior]int{}
		sv.mu.Unlock()
		return nil, firstErr
	}
	sv.mu.Lock()
	sv.g = g
	sv.mu.Unlock()
	for _, m := range masters {
		g.Follow(m)
		sv.output("console", fmt.Sprintf("Following the new workers of server %d.", m))
	}
	go sv.watch(g)
	go sv.logs(g.Probes())
	return &dap.AttachResponse{}, nil
}

// remote maps an editor's path to the process's (pathMappings).
func (sv *Server) remote(p string) string { return mapPath(sv.maps, p, true) }

// local maps a process's path to the editor's.
func (sv *Server) local(p string) string { return mapPath(sv.maps, p, false) }

func mapPath(maps []pathMapping, p string, toRemote bool) string {
	best, bestLen := p, -1
	for _, m := range maps {
		from, to := m.remote, m.local
		if toRemote {
			from, to = m.local, m.remote
		}
		if (p == from || strings.HasPrefix(p, strings.TrimSuffix(from, "/")+"/")) && len(from) > bestLen {
			best, bestLen = to+p[len(from):], len(from)
		}
	}
	return best
}

// hitCount reads a hitCondition as the agent's ignore count and whether
// the breakpoint stops once only: "5" and ">=5" stop at the fifth
// crossing and every later one, ">5" from the sixth, "==5" at the fifth
// only (a temporary breakpoint), "%5" at every fifth (the fifth, the
// tenth, …).
var hitCond = regexp.MustCompile(`^\s*(>=|==|>|%)?\s*(\d+)\s*$`)

func hitCount(s string) (o session.BreakOptions, err error) {
	m := hitCond.FindStringSubmatch(s)
	if m == nil {
		return o, fmt.Errorf("hit condition %q not understood: krait takes N or >=N (stop from the Nth crossing on), >N, ==N (the Nth only), %%N (every Nth)", s)
	}
	n, _ := strconv.Atoi(m[2])
	switch m[1] {
	case ">":
		n++
	case "==":
		o.Temporary = true
	case "%":
		o.Every = max(n, 1)
		return o, nil
	}
	o.Ignore = max(n, 1) - 1
	return o, nil
}

func (sv *Server) setBreakpoints(r *dap.SetBreakpointsRequest) (dap.ResponseMessage, error) {
	path := r.Arguments.Source.Path
	if path == "" {
		return nil, errors.New("setBreakpoints needs a source path")
	}
	file := sv.remote(path)
	for _, id := range sv.srcBPs[file] {
		_ = sv.g.BPCommand("delete", id)
		delete(sv.logpoints, id)
	}
	delete(sv.srcBPs, file)
	bps := r.Arguments.Breakpoints
	if bps == nil {
		for _, l := range r.Arguments.Lines {
			bps = append(bps, dap.SourceBreakpoint{Line: l})
		}
	}
	out := make([]dap.Breakpoint, 0, len(bps))
	for _, b := range bps {
		res := dap.Breakpoint{Line: b.Line, Source: &dap.Source{Name: filepath.Base(path), Path: path}}
		var lp *logpoint
		if b.LogMessage != "" {
			parts, exprs, err := parseLog(b.LogMessage)
			if err != nil {
				res.Message = err.Error()
				out = append(out, res)
				continue
			}
			lp = &logpoint{parts: parts, exprs: exprs, path: path}
		}
		bp, err := sv.setOne(fmt.Sprintf("%s:%d", file, b.Line), b.Condition, b.HitCondition, lp)
		if err != nil {
			res.Message = err.Error()
			out = append(out, res)
			continue
		}
		sv.srcBPs[file] = append(sv.srcBPs[file], bp.ID)
		if lp != nil {
			lp.line = bp.Line
			sv.logpoints[bp.ID] = lp
		}
		out = append(out, sv.dapBP(bp, res))
	}
	return &dap.SetBreakpointsResponse{Body: dap.SetBreakpointsResponseBody{Breakpoints: out}}, nil
}

// setOne sets one breakpoint with its condition and hit condition, in
// every process (and in every worker that joins); with lp, a logpoint:
// the agent's dprintf, which never stops the thread.
func (sv *Server) setOne(spec, cond, hit string, lp *logpoint) (session.Breakpoint, error) {
	var o session.BreakOptions
	if hit != "" {
		var err error
		if o, err = hitCount(hit); err != nil {
			return session.Breakpoint{}, err
		}
	}
	o.Cond = cond
	if lp != nil {
		if o.Temporary {
			return session.Breakpoint{}, errors.New("a logpoint takes N, >=N, >N or %N as its hit condition (not ==N)")
		}
		return sv.g.DprintfWith(spec, strings.Join(lp.parts, "{}"), lp.exprs, nil, o)
	}
	return sv.g.BreakWith(spec, o)
}

func (sv *Server) dapBP(bp session.Breakpoint, res dap.Breakpoint) dap.Breakpoint {
	res.Id, res.Verified = bp.ID, !bp.Pending
	if bp.Line > 0 {
		res.Line = bp.Line
	}
	if bp.File != "" && !bp.Pending {
		p := sv.local(bp.File)
		res.Source = &dap.Source{Name: filepath.Base(p), Path: p}
	}
	switch {
	case bp.Pending:
		res.Message = "pending: set when its module is imported"
	case bp.Warning != "":
		res.Message = bp.Warning
	}
	return res
}

func (sv *Server) setFunctionBreakpoints(r *dap.SetFunctionBreakpointsRequest) (dap.ResponseMessage, error) {
	for _, id := range sv.funcBPs {
		_ = sv.g.BPCommand("delete", id)
	}
	sv.funcBPs = nil
	var out []dap.Breakpoint
	for _, b := range r.Arguments.Breakpoints {
		res := dap.Breakpoint{}
		name := strings.TrimSpace(b.Name)
		if name == "" || strings.Contains(name, ":") {
			res.Message = fmt.Sprintf("bad function name %q", b.Name)
			out = append(out, res)
			continue
		}
		bp, err := sv.setOne(name, b.Condition, b.HitCondition, nil)
		if err != nil {
			res.Message = err.Error()
			out = append(out, res)
			continue
		}
		sv.funcBPs = append(sv.funcBPs, bp.ID)
		out = append(out, sv.dapBP(bp, res))
	}
	return &dap.SetFunctionBreakpointsResponse{Body: dap.SetFunctionBreakpointsResponseBody{Breakpoints: out}}, nil
}

func (sv *Server) setExceptionBreakpoints(r *dap.SetExceptionBreakpointsRequest) (dap.ResponseMessage, error) {
	filters := r.Arguments.Filters
	for _, o := range r.Arguments.FilterOptions {
		filters = append(filters, o.FilterId)
	}
	var kinds []string
	for _, f := range filters {
		switch f {
		case "raised":
			kinds = append(kinds, "raise")
		case "uncaught":
			kinds = append(kinds, "uncaught")
		default:
			return nil, fmt.Errorf("unknown exception filter %q (raised, uncaught)", f)
		}
	}
	for len(sv.catches) > 0 {
		if err := sv.g.BPCommand("delete", sv.catches[0]); err != nil {
			return nil, err
		}
		sv.catches = sv.catches[1:]
	}
	var out []dap.Breakpoint
	for _, k := range kinds {
		// justMyCode: no stop where library code raises (it may well
		// catch it); uncaught stops are at a thread's outermost frame,
		// often a server's, and are kept.
		c, err := sv.g.CatchIn(k, nil, k == "raise" && sv.justMine)
		if err != nil {
			return nil, err
		}
		sv.catches = append(sv.catches, c.ID)
		out = append(out, dap.Breakpoint{Verified: true})
	}
	return &dap.SetExceptionBreakpointsResponse{Body: dap.SetExceptionBreakpointsResponseBody{Breakpoints: out}}, nil
}

func (sv *Server) threadsReq() (dap.ResponseMessage, error) {
	var out []dap.Thread
	sv.sync()
	server := sv.g.Server()
	for n, inf := range sv.inferiors {
		if inf == nil {
			continue
		}
		ts, err := inf.s.Threads()
		if err != nil {
			if server {
				continue // a worker leaving: the others are listed
			}
			return nil, err
		}
		sv.threadEvents(n, inf, ts)
		for _, t := range ts {
			name := t.Name
			if name == "" {
				name = fmt.Sprintf("Thread %d", t.Number)
			}
			if server {
				name = inf.gi.Label() + " " + name
			}
			out = append(out, dap.Thread{Id: sv.threadID(threadKey{n, t.Ident}), Name: name})
		}
	}
	if out == nil {
		out = []dap.Thread{}
	}
	return &dap.ThreadsResponse{Body: dap.ThreadsResponseBody{Threads: out}}, nil
}

// library says whether a file is not the user's code (justMyCode): the
// standard library, installed packages, frozen modules.
var stdlib = regexp.MustCompile(`/lib/python[0-9.]+/`)

func library(p string) bool {
	return strings.Contains(p, "/site-packages/") || strings.Contains(p, "/dist-packages/") ||
		stdlib.MatchString(p) || strings.HasPrefix(p, "<")
}

func (sv *Server) stackTrace(r *dap.StackTraceRequest) (dap.ResponseMessage, error) {
	inf, k, err := sv.stoppedThread(r.Arguments.ThreadId)
	if err != nil {
		return nil, err
	}
	selectFrame(inf, k.ident, 0)
	frames, err := inf.s.Stack()
	if err != nil {
		return nil, err
	}
	start := r.Arguments.StartFrame
	if start < 0 || start > len(frames) {
		start = len(frames)
	}
	end := len(frames)
	if r.Arguments.Levels > 0 && start+r.Arguments.Levels < end {
		end = start + r.Arguments.Levels
	}
	out := []dap.StackFrame{}
	for _, f := range frames[start:end] {
		id := sv.newID()
		sv.frames[id] = frameRef{k, f.Index}
		p := sv.local(f.File)
		sf := dap.StackFrame{Id: id, Name: f.Function, Line: f.Line, Column: 1}
		if p != "" {
			sf.Source = &dap.Source{Name: filepath.Base(p), Path: p}
			if strings.HasPrefix(p, "<") {
				sf.Source = &dap.Source{Name: p, PresentationHint: "deemphasize"}
			}
		}
		if sv.justMine && library(f.File) {
			sf.PresentationHint = "subtle"
			if sf.Source != nil {
				sf.Source.PresentationHint = "deemphasize"
			}
		}
		out = append(out, sf)
	}
	return &dap.StackTraceResponse{Body: dap.StackTraceResponseBody{StackFrames: out, TotalFrames: len(frames)}}, nil
}

// frame finds a frame id of a stopped thread (mu held).
func (sv *Server) frame(id int) (*inferior, frameRef, error) {
	f, ok := sv.frames[id]
	if !ok {
		return nil, f, fmt.Errorf("no frame %d (its thread runs again?)", id)
	}
	inf, err := sv.inf(f.threadKey)
	if err != nil {
		return nil, f, err
	}
	return inf, f, nil
}

func (sv *Server) scopes(r *dap.ScopesRequest) (dap.ResponseMessage, error) {
	_, f, err := sv.frame(r.Arguments.FrameId)
	if err != nil {
		return nil, err
	}
	var out []dap.Scope
	for _, sc := range []struct{ name, root, hint string }{{"Locals", "locals", "locals"}, {"Globals", "globals", ""}} {
		id := sv.newID()
		sv.refs[id] = varRef{f, []any{sc.root}}
		out = append(out, dap.Scope{Name: sc.name, PresentationHint: sc.hint, VariablesReference: id})
	}
	return &dap.ScopesResponse{Body: dap.ScopesResponseBody{Scopes: out}}, nil
}

func (sv *Server) variables(r *dap.VariablesRequest) (dap.ResponseMessage, error) {
	ref, ok := sv.refs[r.Arguments.VariablesReference]
	if !ok {
		return nil, fmt.Errorf("no variables %d (their thread runs again?)", r.Arguments.VariablesReference)
	}
	inf, err := sv.inf(ref.threadKey)
	if err != nil {
		return nil, err
	}
	kids, _, err := inf.s.Children(ref.ident, ref.index, ref.path, r.Arguments.Start, r.Arguments.Count)
	if err != nil {
		return nil, err
	}
	out := []dap.Variable{}
	for _, c := range kids {
		v := dap.Variable{Name: c.Name, Value: c.Value, Type: c.Type}
		if c.More && c.Path != nil {
			v.VariablesReference = sv.newID()
			sv.refs[v.VariablesReference] = varRef{ref.frameRef, c.Path}
		}
		if len(ref.path) == 1 && ref.path[0] != "history" {
			v.EvaluateName = c.Name
		}
		out = append(out, v)
	}
	return &dap.VariablesResponse{Body: dap.VariablesResponseBody{Variables: out}}, nil
}

// scalar types have no children to show.
var scalar = map[string]bool{"int": true, "float": true, "complex": true, "bool": true, "NoneType": true, "str": true, "bytes": true}

// evalFrame is the frame an evaluate or completions request means: its
// frameId, or with none the first stopped thread's innermost frame.
func (sv *Server) evalFrame(id int) (*inferior, frameRef, error) {
	if id != 0 {
		return sv.frame(id)
	}
	for n, in := range sv.inferiors {
		if in == nil {
			continue
		}
		for ident := range in.stops {
			return in, frameRef{threadKey{n, ident}, 0}, nil
		}
	}
	return nil, frameRef{}, errors.New("no thread is stopped: krait evaluates in a stopped thread's frame")
}

func (sv *Server) evaluate(r *dap.EvaluateRequest) (dap.ResponseMessage, error) {
	inf, f, err := sv.evalFrame(r.Arguments.FrameId)
	if err != nil {
		return nil, err
	}
	mode := "safe" // hover, watch: rendered without user code, as print
	if r.Arguments.Context == "repl" {
		mode = "repr" // the console: repr() runs, as print/r
	}
	selectFrame(inf, f.ident, f.index)
	var n int
	var v session.Var
	if target, expr, ok := session.SplitAssign(r.Arguments.Expression); ok && mode == "repr" {
		n, v, err = inf.s.SetVar(target, expr, true) // an assignment typed in the console
	} else {
		n, v, err = inf.s.Print(r.Arguments.Expression, mode)
	}
	if err != nil {
		return nil, err
	}
	body := dap.EvaluateResponseBody{Result: v.Value, Type: v.Type}
	if !scalar[v.Type] {
		body.VariablesReference = sv.newID()
		sv.refs[body.VariablesReference] = varRef{f, []any{"history", n - 1}}
	}
	return &dap.EvaluateResponse{Body: body}, nil
}

// completionTypes are DAP's CompletionItem types for the agent's kinds.
var completionTypes = map[string]dap.CompletionItemType{"variable": "variable", "attribute": "property", "key": "value",
	"function": "function", "module": "module", "class": "class"}

// completions completes what the debug console's line has before the
// cursor (column, 1-based, in UTF-16 code units as DAP counts them): a
// name, an attribute, a dict key, in the request's frame (or, with no
// frameId, the first stopped thread's innermost), without running user
// code (session.Complete).
func (sv *Server) completions(r *dap.CompletionsRequest) (dap.ResponseMessage, error) {
	inf, f, err := sv.evalFrame(r.Arguments.FrameId)
	if err != nil {
		return nil, err
	}
	text := r.Arguments.Text
	if r.Arguments.Line > 1 { // a multi-line console input: complete its line
		lines := strings.Split(text, "\n")
		if r.Arguments.Line <= len(lines) {
			text = lines[r.Arguments.Line-1]
		}
	}
	cursor := utf16Offset(text, r.Arguments.Column-1)
	selectFrame(inf, f.ident, f.index)
	start, cands, err := inf.s.Complete(text, cursor)
	if err != nil {
		return nil, err
	}
	col := len(utf16.Encode([]rune(text[:start])))
	length := len(utf16.Encode([]rune(text[start:cursor])))
	out := []dap.CompletionItem{}
	for _, c := range cands {
		out = append(out, dap.CompletionItem{Label: c.Text, Text: c.Text, Type: completionTypes[c.Kind], Start: col + 1, Length: length})
	}
	return &dap.CompletionsResponse{Body: dap.CompletionsResponseBody{Targets: out}}, nil
}

// utf16Offset is the byte offset in s of its n-th UTF-16 code unit (the
// end of s past it).
func utf16Offset(s string, n int) int {
	units := 0
	for i, r := range s {
		if units >= n {
			return i
		}
		units += len(utf16.Encode([]rune{r}))
	}
	return len(s)
}

func (sv *Server) setVariable(r *dap.SetVariableRequest) (dap.ResponseMessage, error) {
	ref, ok := sv.refs[r.Arguments.VariablesReference]
	if !ok {
		return nil, fmt.Errorf("no variables %d (their thread runs again?)", r.Arguments.VariablesReference)
	}
	inf, err := sv.inf(ref.threadKey)
	if err != nil {
		return nil, err
	}
	selectFrame(inf, ref.ident, ref.index)
	var v session.Var
	if len(ref.path) == 1 && ref.path[0] == "locals" {
		_, v, err = inf.s.SetVar(r.Arguments.Name, r.Arguments.Value, false)
	} else {
		v, err = inf.s.SetChild(ref.path, r.Arguments.Name, r.Arguments.Value)
	}
	if err != nil {
		return nil, err
	}
	return &dap.SetVariableResponse{Body: dap.SetVariableResponseBody{Value: v.Value, Type: v.Type}}, nil
}

func (sv *Server) exceptionInfo(r *dap.ExceptionInfoRequest) (dap.ResponseMessage, error) {
	inf, k, err := sv.stoppedThread(r.Arguments.ThreadId)
	if err != nil {
		return nil, err
	}
	st := inf.stops[k.ident]
	if st.Reason != "exception" || st.Exception == nil {
		return nil, errors.New("the thread did not stop for an exception")
	}
	mode := dap.ExceptionBreakMode("always")
	if st.CatchKind == "uncaught" {
		mode = "unhandled"
	}
	typ := st.Exception.Type
	short := typ[strings.LastIndex(typ, ".")+1:]
	return &dap.ExceptionInfoResponse{Body: dap.ExceptionInfoResponseBody{ExceptionId: typ, Description: st.Exception.Value, BreakMode: mode,
		Details: &dap.ExceptionDetails{Message: st.Exception.Value, TypeName: short, FullTypeName: typ}}}, nil
}

// resume lets a stopped thread go: continue, or a step (next, step,
// finish). The other threads are not touched.
func (sv *Server) resume(id int, cmd string) error {
	inf, k, err := sv.stoppedThread(id)
	if err != nil {
		return err
	}
	selectFrame(inf, k.ident, 0)
	sv.resumed(inf, k)
	if sv.justMine {
		return inf.s.ResumeMine(cmd)
	}
	return inf.s.Resume(cmd, false)
}

// pause stops a running thread at the next line of Python it runs.
func (sv *Server) pause(id int) error {
	k, ok := sv.threads[id]
	if !ok {
		return fmt.Errorf("no thread %d", id)
	}
	inf, err := sv.inf(k)
	if err != nil {
		return err
	}
	if inf.stops[k.ident] != nil {
		return nil // stopped already
	}
	_, err = inf.s.Interrupt(k.ident, false)
	return err
}
