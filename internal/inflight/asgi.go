package inflight

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"krait/internal/cpython"
	"krait/internal/render"
	"krait/internal/secrets"
)

// asgiCandidate is one task holding an ASGI request's scope.
type asgiCandidate struct {
	task  *cpython.Task
	scope cpython.Ref
	view  *string
	// sync is the thread running the task's sync_to_async call, if any.
	sync *cpython.Thread
}

// fromTasks finds the ASGI requests an interpreter's asyncio tasks serve:
// an HTTP scope in a task's coroutine frames (an ASGI application's
// `scope` argument, or a Django ASGIRequest's scope). When several tasks
// hold the same scope (Django runs the view in a task of its own, beside
// one that listens for the client going away) the one running the view
// stands for the request.
func fromTasks(py *cpython.Python, in *cpython.Interpreter, opt render.Options) []*Request {
	if len(in.Tasks) == 0 {
		return nil
	}
	byLoop := map[uint64]*cpython.Thread{}
	// asgiref's SyncToAsync hands the thread it runs a function in the
	// same task_context list its coroutine holds.
	byContext := map[uint64]*cpython.Thread{}
	for _, t := range in.Threads {
		if t.Loop != 0 {
			byLoop[t.Loop] = t
		}
		for _, f := range t.Frames {
			if f.Function == "thread_handler" && strings.HasSuffix(f.File, "/asgiref/sync.py") {
				if c, ok := py.FrameLocal(f, "task_context"); ok {
					byContext[c.Addr] = t
				}
			}
		}
	}
	var order []uint64
	best := map[uint64]*asgiCandidate{}
	for _, task := range in.Tasks {
		c := &asgiCandidate{task: task}
		for _, f := range task.Stack {
			if c.scope.Addr == 0 {
				if s, ok := py.FrameLocal(f, "scope"); ok && isHTTPScope(s) {
					c.scope = s
				} else if req, ok := py.FrameLocal(f, "request"); ok {
					if s, ok := req.Attr("scope"); ok && isHTTPScope(s) {
						c.scope = s
					}
				}
			}
			if f.Function == "_get_response_async" && strings.Contains(f.File, "/django/core/handlers/") {
				if cb, ok := py.FrameLocal(f, "callback"); ok {
					c.view = viewName(cb)
				}
			}
			if f.Function == "__call__" && strings.HasSuffix(f.File, "/asgiref/sync.py") {
				if tc, ok := py.FrameLocal(f, "task_context"); ok && c.sync == nil {
					c.sync = byContext[tc.Addr]
				}
			}
		}
		if c.scope.Addr == 0 {
			continue
		}
		prev, ok := best[c.scope.Addr]
		if !ok {
			order = append(order, c.scope.Addr)
		}
		if !ok || prev.view == nil && c.view != nil {
			best[c.scope.Addr] = c
		}
	}
	var out []*Request
	for _, key := range order {
		c := best[key]
		r := &Request{Key: key, View: c.view}
		get := func(k string) *string {
			if v, ok := c.scope.DictGet(k); ok {
				if s, ok := v.Str(); ok {
					return &s
				}
			}
			return nil
		}
		r.Method, r.Path, r.Query = get("method"), get("path"), get("query_string")
		if r.Query != nil && !opt.ShowSecrets {
			r.Query = sp(secrets.Query(*r.Query))
		}
		if client, ok := c.scope.DictGet("client"); ok {
			if items := client.Items(2); len(items) == 2 {
				host, ok1 := items[0].Str()
				port, ok2 := items[1].Int()
				if ok1 && ok2 && port > 0 && port < 65536 {
					r.RemoteAddr, r.RemotePort = host, int(port)
					r.Client = sp(net.JoinHostPort(host, strconv.Itoa(int(port))))
				}
			}
		}
		id := c.task.Addr
		r.TaskID = &id
		name := fmt.Sprintf("0x%x", id)
		if c.task.HasName {
			name = c.task.Name
		}
		r.Task = &name
		if c.task.Awaiting != "" {
			r.Awaiting = sp(c.task.Awaiting)
		}
		if t := byLoop[c.task.Loop]; t != nil && c.task.Loop != 0 {
			r.ThreadID = t.ThreadID
			if t.NativeID != 0 {
				n := t.NativeID
				r.NativeID = &n
			}
			if t.HasName {
				r.ThreadName = sp(t.Name)
			}
		}
		if len(c.task.Stack) > 0 {
			f := c.task.Stack[0]
			r.Function, r.File, r.Line = f.Qualname, f.File, f.Line
		}
		if c.sync != nil {
			// The work is in another thread now: say where, and what SQL.
			if len(c.sync.Frames) > 0 {
				f := c.sync.Frames[0]
				r.Function, r.File, r.Line = f.Qualname, f.File, f.Line
			}
			if r.Awaiting == nil || strings.HasPrefix(*r.Awaiting, "<") {
				r.Awaiting = sp(fmt.Sprintf("sync_to_async in thread %d", c.sync.NativeID))
			}
			sqlOf(py, r, c.sync.Frames, opt)
		}
		out = append(out, r)
	}
	return out
}

// isHTTPScope says whether a value is an ASGI HTTP connection scope.
func isHTTPScope(s cpython.Ref) bool {
	t, ok := s.DictGet("type")
	if !ok {
		return false
	}
	v, ok := t.Str()
	return ok && v == "http"
}
