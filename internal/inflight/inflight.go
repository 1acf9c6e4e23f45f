// Package inflight finds the web requests a Python process is serving
// right now, from its threads' stacks: the WSGI environ of each request
// (method, path, query, mod_wsgi's start time), the Django view handling
// it, and the SQL Django is executing for it, with parameters — and from
// its asyncio tasks, the ASGI scope of each request and the task handling
// it. Any WSGI or ASGI server works; Django is recognised.
package inflight

import (
	"net"
	"strconv"
	"strings"
	"time"

	"krait/internal/cpython"
	"krait/internal/render"
	"krait/internal/secrets"
)

// Request is one request in flight, in the JSON contract of
// krait requests (null where unknown).
type Request struct {
	PID         int      `json:"pid"`
	ThreadID    uint64   `json:"thread_id"`
	NativeID    *int     `json:"native_id"`
	ThreadName  *string  `json:"thread_name"`
	Interpreter int64    `json:"interpreter"`
	Method      *string  `json:"method"`
	Path        *string  `json:"path"`
	Query       *string  `json:"query"`
	View        *string  `json:"view"`
	ElapsedS    *float64 `json:"elapsed_s"`
	// ElapsedSource says where ElapsedS comes from: "server" (the
	// server's own start time, mod_wsgi's), "socket" (an estimate: how
	// long ago the kernel last received data on the request's client
	// connection), "watch" (an estimate: since krait requests --watch
	// first saw it); null with ElapsedS.
	ElapsedSource *string `json:"elapsed_source"`
	// Client is the peer of the request's connection ("addr:port", from
	// REMOTE_ADDR and REMOTE_PORT or the server's client address).
	Client    *string `json:"client"`
	SQL       *string `json:"sql"`
	SQLParams *string `json:"sql_params"`
	Server    *string `json:"server"`
	// Task and TaskID name the asyncio task handling an ASGI request;
	// Awaiting says what it waits on (null for WSGI requests).
	Task     *string `json:"task"`
	TaskID   *uint64 `json:"task_id"`
	Awaiting *string `json:"awaiting"`
	// Key identifies the request across scans (its environ's address).
	Key uint64 `json:"-"`
	// RemoteAddr and RemotePort are the client connection's peer, when
	// known, to find its socket.
	RemoteAddr string `json:"-"`
	RemotePort int    `json:"-"`
	// Function and Line say where the thread is now.
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

// LocalNames are the only locals a scan reads.
var LocalNames = map[string]bool{"environ": true, "sql": true, "params": true, "callback": true, "client_address": true, "addr": true}

// Where ElapsedS comes from.
const (
	ElapsedServer = "server"
	ElapsedSocket = "socket"
	ElapsedWatch  = "watch"
)

func sp(s string) *string { return &s }

// FromThreads extracts the requests from a snapshot read with
// Options{Locals: true, LocalNames: LocalNames}.
// Values are rendered with opt: SQL parameters and query-string values
// under names that look secret are <redacted> unless opt.ShowSecrets.
func FromThreads(py *cpython.Python, pid int, interps []*cpython.Interpreter, now time.Time, opt render.Options) []*Request {
	var out []*Request
	for _, in := range interps {
		for _, t := range in.Threads {
			if r := fromThread(py, t, now, opt); r != nil {
				r.PID, r.Interpreter = pid, in.ID
				out = append(out, r)
			}
		}
		for _, r := range fromTasks(py, in, opt) {
			r.PID, r.Interpreter = pid, in.ID
			out = append(out, r)
		}
	}
	return out
}

func local(f cpython.Frame, name string) (cpython.Ref, *cpython.Local, bool) {
	for i := range f.Locals {
		if f.Locals[i].Name == name && f.Locals[i].Value != nil && f.Locals[i].Value.Addr != 0 {
			return cpython.Ref{}, &f.Locals[i], true
		}
	}
	return cpython.Ref{}, nil, false
}

func fromThread(py *cpython.Python, t *cpython.Thread, now time.Time, opt render.Options) *Request {
	// The WSGI environ closest to the application (innermost frame that
	// has one).
	var env cpython.Ref
	found := false
	for _, f := range t.Frames {
		if _, l, ok := local(f, "environ"); ok {
			e := py.Ref(l.Value.Addr)
			if _, ok := e.DictGet("REQUEST_METHOD"); ok {
				env, found = e, true
				break
			}
		}
	}
	if !found {
		return nil
	}
	r := &Request{ThreadID: t.ThreadID, Key: env.Addr}
	if t.NativeID != 0 {
		id := t.NativeID
		r.NativeID = &id
	}
	if t.HasName {
		r.ThreadName = sp(t.Name)
	}
	if len(t.Frames) > 0 {
		r.Function, r.File, r.Line = t.Frames[0].Qualname, t.Frames[0].File, t.Frames[0].Line
	}
	get := func(k string) *string {
		if v, ok := env.DictGet(k); ok {
			if s, ok := v.Str(); ok {
				return &s
			}
		}
		return nil
	}
	r.Method, r.Path, r.Query = get("REQUEST_METHOD"), get("PATH_INFO"), get("QUERY_STRING")
	if r.Query != nil && !opt.ShowSecrets {
		r.Query = sp(secrets.Query(*r.Query))
	}
	if start := get("mod_wsgi.request_start"); start != nil {
		if us, err := strconv.ParseInt(*start, 10, 64); err == nil {
			el := now.Sub(time.UnixMicro(us)).Seconds()
			r.ElapsedS, r.ElapsedSource = &el, sp(ElapsedServer)
		}
	}
	// The client: REMOTE_ADDR and REMOTE_PORT (gunicorn, uWSGI, mod_wsgi,
	// waitress), else the (host, port) tuple socketserver hands its
	// handler (runserver, wsgiref) or gunicorn's sync worker its handle().
	if a := get("REMOTE_ADDR"); a != nil && *a != "" {
		r.RemoteAddr = *a
		if p := get("REMOTE_PORT"); p != nil {
			r.RemotePort, _ = strconv.Atoi(*p)
		}
	}
	if r.RemotePort == 0 {
		for _, f := range t.Frames {
			for _, name := range []string{"client_address", "addr"} {
				if _, l, ok := local(f, name); ok {
					items := py.Ref(l.Value.Addr).Items(2)
					if len(items) == 2 {
						host, ok1 := items[0].Str()
						port, ok2 := items[1].Int()
						if ok1 && ok2 && port > 0 && port < 65536 {
							r.RemoteAddr, r.RemotePort = host, int(port)
						}
					}
				}
			}
			if r.RemotePort != 0 {
				break
			}
		}
	}
	if r.RemotePort != 0 {
		r.Client = sp(net.JoinHostPort(r.RemoteAddr, strconv.Itoa(r.RemotePort)))
	}
	for _, k := range []string{"SERVER_SOFTWARE", "mod_wsgi.process_group"} {
		if s := get(k); s != nil && *s != "" {
			r.Server = s
			break
		}
	}
	for i, f := range t.Frames {
		// Django: BaseHandler._get_response(request) resolves the view
		// into the local `callback`.
		if f.Qualname == "BaseHandler._get_response" || f.Function == "_get_response" && strings.Contains(f.File, "django/core/handlers") {
			if _, l, ok := local(f, "callback"); ok {
				r.View = viewName(py.Ref(l.Value.Addr))
			}
			if r.View == nil && i > 0 {
				v := t.Frames[i-1].Qualname
				r.View = &v
			}
		}
	}
	sqlOf(py, r, t.Frames, opt)
	return r
}

// viewName names the view a Django handler resolved (its `callback`): a
// class-based view's class (View.as_view() returns a function `view`
// whose view_class attribute is the class), else the function.
func viewName(cb cpython.Ref) *string {
	if cls, ok := cb.Attr("view_class"); ok && cls.IsType() {
		v := cls.ClassName()
		return &v
	}
	if mod, q, ok := cb.FuncName(); ok {
		v := q
		if mod != "" {
			v = mod + "." + q
		}
		return &v
	}
	return nil
}

// sqlOf sets the SQL Django's cursor wrapper is executing now in frames
// (read with LocalNames), with its parameters.
func sqlOf(py *cpython.Python, r *Request, frames []cpython.Frame, opt render.Options) {
	for _, f := range frames {
		if r.SQL == nil && strings.HasSuffix(f.File, "django/db/backends/utils.py") {
			if _, l, ok := local(f, "sql"); ok {
				if s, ok := py.Ref(l.Value.Addr).Str(); ok {
					r.SQL = &s
				}
				if _, p, ok := local(f, "params"); ok {
					r.SQLParams = sp(render.Repr(p.Value, render.Options{MaxWidth: 2000, ShowSecrets: opt.ShowSecrets}))
				}
			}
		}
	}
}
