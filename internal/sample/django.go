package sample

import (
	"strconv"
	"strings"
	"time"

	"krait/internal/cpython"
	"krait/internal/sockdiag"
)

// attribution is what a thread's sample is charged to.
type attribution struct {
	view, method, route string
	first               time.Time
}

// reqState is the request a thread was last seen serving: krait reads the
// request object only when it changes (a new request object, or the view
// resolved since), so a sample inside a request costs one read of two
// frame slots.
type reqState struct {
	frame, request, callback uint64
	mark                     int64
	// port is the client's (gunicorn), read for a request found by the
	// first sample of the process; guessed: its start is when krait first
	// saw it (it began before krait came: fixStarts asks the client
	// socket).
	port    int
	guessed bool
	attribution
}

var noRequest = attribution{view: NoRequest}

// handlerFrame finds the innermost frame of Django's request handling:
// BaseHandler._get_response or, under ASGI, _get_response_async (which
// hold the resolved view in `callback`); else, under ASGI, asgiref's
// thread_handler running sync code in a sync_to_async thread (for a
// request when it runs a sync view or middleware: see requestLocals);
// else WSGIHandler.__call__ (the request before and after the view).
func handlerFrame(frames []cpython.StackFrame) (int, bool) {
	for i, f := range frames {
		if (f.Info.Name == "_get_response" || f.Info.Name == "_get_response_async") && strings.Contains(f.Info.File, "django/core/handlers") {
			return i, true
		}
	}
	for i, f := range frames {
		if f.Info.Name == "thread_handler" && strings.HasSuffix(f.Info.File, "asgiref/sync.py") {
			return i, true
		}
	}
	for i, f := range frames {
		if f.Info.Name == "__call__" && strings.HasSuffix(f.Info.File, "django/core/handlers/wsgi.py") {
			return i, true
		}
	}
	return 0, false
}

// requestLocals reads the request and the view (or what runs for the
// request) from the frame handlerFrame found, frames[i].
func (p *proc) requestLocals(frames []cpython.StackFrame, i int) (req, callback uint64, err error) {
	f := frames[i]
	if f.Info.Name != "thread_handler" {
		addrs, err := p.py.FrameLocalAddrs(f.Addr, f.Code, "request", "callback")
		if err != nil {
			return 0, 0, err
		}
		return addrs[0], addrs[1], nil
	}
	// In a sync_to_async thread, what thread_handler runs is wrapped
	// differently by each asgiref (a partial, a context's run): the
	// request is the `request` argument of the outermost function it
	// calls that has one (the view, or a sync middleware's __call__);
	// none when it runs something else (a view's ORM call). The view is
	// then read from request.resolver_match.
	for k := i - 1; k >= 0; k-- {
		g := frames[k]
		addrs, err := p.py.FrameLocalAddrs(g.Addr, g.Code, "request")
		if err != nil || addrs[0] == 0 {
			continue
		}
		if _, q := p.py.Ref(addrs[0]).Type(); strings.HasSuffix(q, "Request") {
			return addrs[0], 0, nil
		}
	}
	return 0, 0, nil
}

func (p *proc) attributeAll(threads []*cpython.StackThread, now time.Time) []attribution {
	out := make([]attribution, len(threads))
	live := map[uint64]bool{}
	for i, t := range threads {
		out[i] = p.attribute(t, now)
		live[t.TState] = true
	}
	for ts := range p.reqs {
		if !live[ts] {
			delete(p.reqs, ts)
		}
	}
	return out
}

// wsgiFrame finds, for a WSGI app that is not Django, the innermost frame
// of the server calling it: gunicorn's worker handle_request (the app in
// self.wsgi, the request in environ) or wsgiref's BaseHandler.run (the app
// in application, the request in self.environ).
func wsgiFrame(frames []cpython.StackFrame) (int, string, bool) {
	for i, f := range frames {
		switch {
		case isGunicornHandler(f):
			return i, "gunicorn", true
		case f.Info.Name == "run" && strings.HasSuffix(f.Info.File, "wsgiref/handlers.py"):
			return i, "wsgiref", true
		}
	}
	return 0, "", false
}

// attributeWSGI charges a sample inside a plain WSGI app's request to the
// app callable (as the view) and the request's method and PATH_INFO (as
// the route), read once per request.
func (p *proc) attributeWSGI(t *cpython.StackThread, i int, server string, now time.Time) attribution {
	f := t.Frames[i]
	var env, app uint64
	if server == "gunicorn" {
		addrs, err := p.py.FrameLocalAddrs(f.Addr, f.Code, "environ", "self")
		if err != nil || addrs[0] == 0 || addrs[1] == 0 {
			return attribution{view: "(wsgi request)", first: now}
		}
		env = addrs[0]
		p.py.FreshRead()
		if a, ok := p.py.Ref(addrs[1]).Attr("wsgi"); ok {
			app = a.Addr
		}
	} else {
		addrs, err := p.py.FrameLocalAddrs(f.Addr, f.Code, "application", "self")
		if err != nil || addrs[0] == 0 || addrs[1] == 0 {
			return attribution{view: "(wsgi request)", first: now}
		}
		app = addrs[0]
		p.py.FreshRead()
		if e, ok := p.py.Ref(addrs[1]).Attr("environ"); ok && !e.IsNone() {
			env = e.Addr
		}
	}
	st, same := p.known(t, reqState{frame: f.Addr, request: env, callback: app}, now)
	if same {
		return st.attribution
	}
	if env != 0 {
		e := p.py.Ref(env)
		if m, ok := e.DictGet("REQUEST_METHOD"); ok {
			st.method, _ = m.Str()
		}
		if r, ok := e.DictGet("PATH_INFO"); ok {
			st.route, _ = r.Str()
		}
	}
	if app != 0 {
		a := p.py.Ref(app)
		if mod, q, ok := a.FuncName(); ok {
			st.view = q
			if mod != "" {
				st.view = mod + "." + q
			}
		} else if mod, q := a.Type(); q != "" {
			// A callable object: its class.
			st.view = q
			if mod != "" && mod != "builtins" {
				st.view = mod + "." + q
			}
		}
	}
	if st.view == "" {
		st.view = "(wsgi request)"
	}
	p.reqs[t.TState] = st
	return st.attribution
}

func (p *proc) attribute(t *cpython.StackThread, now time.Time) attribution {
	i, ok := handlerFrame(t.Frames)
	if !ok {
		if j, server, ok := wsgiFrame(t.Frames); ok {
			return p.attributeWSGI(t, j, server, now)
		}
		delete(p.reqs, t.TState)
		return noRequest
	}
	f := t.Frames[i]
	reqAddr, cbAddr, err := p.requestLocals(t.Frames, i)
	if err == nil && reqAddr == 0 && f.Info.Name == "thread_handler" {
		delete(p.reqs, t.TState)
		return noRequest
	}
	if err != nil || reqAddr == 0 {
		return attribution{view: "(django request)", first: now}
	}
	st, same := p.known(t, reqState{frame: f.Addr, request: reqAddr, callback: cbAddr}, now)
	if same {
		return st.attribution
	}
	p.py.FreshRead()
	req := p.py.Ref(reqAddr)
	if m, ok := req.Attr("method"); ok {
		st.method, _ = m.Str()
	}
	if rm, ok := req.Attr("resolver_match"); ok && !rm.IsNone() {
		if v, ok := rm.Attr("_func_path"); ok {
			st.view, _ = v.Str()
		}
		if r, ok := rm.Attr("route"); ok {
			st.route, _ = r.Str()
		}
	}
	if st.view == "" && cbAddr != 0 {
		if mod, q, ok := p.py.Ref(cbAddr).FuncName(); ok {
			st.view = q
			if mod != "" {
				st.view = mod + "." + q
			}
		}
	}
	if st.view == "" {
		st.view = "(django middleware)"
	}
	p.reqs[t.TState] = st
	return st.attribution
}

// known looks up the request thread t was last seen serving: the same
// one (frame, request, view and the server's mark all equal) is returned
// with same; else key as a new state, its start the server's (mod_wsgi),
// or carried over when only the view or frame changed (resolved, or the
// handler entered, since), or now.
func (p *proc) known(t *cpython.StackThread, key reqState, now time.Time) (*reqState, bool) {
	mark, start := p.serverMark(t.Frames)
	key.mark = mark
	old := p.reqs[t.TState]
	if old != nil && old.frame == key.frame && old.request == key.request && old.callback == key.callback && old.mark == mark {
		return old, true
	}
	st := &key
	switch {
	case !start.IsZero():
		st.first = start
	case old != nil && old.request == key.request && old.mark == mark:
		st.first = old.first
	default:
		st.first = now
		if !p.sampled {
			st.port = p.clientPort(t.Frames)
			st.guessed = st.port != 0
		}
	}
	return st, false
}

// fixStarts gives the requests found in flight by the first sample of the
// process, whose server does not say when they began (gunicorn), the time
// the kernel last received data on their client connection (the request,
// read whole before the application is called), as `krait requests`
// does: else a request that began long before krait came would show as
// young. Called once, after the first sample (and with the process
// running again: the query is not part of any pause).
func (p *proc) fixStarts(threads []*cpython.StackThread, attrs []attribution, now time.Time) {
	var guessed []int
	for i, t := range threads {
		if st := p.reqs[t.TState]; st != nil && st.guessed {
			guessed = append(guessed, i)
		}
	}
	if len(guessed) == 0 {
		return
	}
	conns, asked, err := sockdiag.Own(p.pid)
	if err != nil {
		return
	}
	for _, i := range guessed {
		st := p.reqs[threads[i].TState]
		st.guessed = false
		for _, c := range conns {
			if int(c.Peer.Port()) == st.port {
				if start := asked.Add(-c.LastRecv); start.Before(now) {
					st.first, attrs[i].first = start, start
				}
				break
			}
		}
	}
}

// serverMark tells one request from the next on a thread when the
// addresses krait keys on (handler frame, request object, view) are all
// the same: a request's memory is freed when it ends, and the next request
// on the thread is made in the same places (the same frame slot, the same
// block of the allocator), so a sampler that saw no sample between them
// would take them for one. The server marks each request: mod_wsgi with
// its start in microseconds (returned as start too: the request's true
// start), gunicorn's sync worker with its count of requests, its threaded
// and async workers with the client's port and the request's number on
// its connection. 0 (and no start) under any other server.
func (p *proc) serverMark(frames []cpython.StackFrame) (int64, time.Time) {
	for _, f := range frames {
		switch {
		case isGunicornHandler(f):
			return p.gunicornMark(f), time.Time{}
		case p.modWSGI && f.Info.Name == "__call__" && strings.HasSuffix(f.Info.File, "django/core/handlers/wsgi.py"):
			addrs, err := p.py.FrameLocalAddrs(f.Addr, f.Code, "environ")
			if err != nil || addrs[0] == 0 {
				return 0, time.Time{}
			}
			if v, ok := p.py.Ref(addrs[0]).DictGet("mod_wsgi.request_start"); ok {
				if s, ok := v.Str(); ok {
					if us, err := strconv.ParseInt(s, 10, 64); err == nil && us > 0 {
						return us, time.UnixMicro(us)
					}
				}
			}
			return 0, time.Time{}
		}
	}
	return 0, time.Time{}
}

func isGunicornHandler(f cpython.StackFrame) bool {
	return f.Info.Name == "handle_request" && strings.Contains(f.Info.File, "gunicorn/workers/")
}

// gunicornMark reads the mark of the request a gunicorn worker's
// handle_request frame serves: the sync worker's handle_request(self,
// listener, req, client, addr) counts requests in self.nr (one thread, one
// request at a time); the threaded worker's handle_request(self, req,
// conn) and the async workers' handle_request(self, listener_name, req,
// sock, addr) share self.nr among threads, so the client's port and
// req.req_number (the request's place on a kept-alive connection) mark
// theirs.
func (p *proc) gunicornMark(f cpython.StackFrame) int64 {
	if strings.HasSuffix(f.Info.File, "/sync.py") {
		addrs, err := p.py.FrameLocalAddrs(f.Addr, f.Code, "self")
		if err != nil || addrs[0] == 0 {
			return 0
		}
		if nr, ok := p.py.Ref(addrs[0]).Attr("nr"); ok {
			n, _ := nr.Int()
			return n
		}
		return 0
	}
	addrs, err := p.py.FrameLocalAddrs(f.Addr, f.Code, "req")
	if err != nil || addrs[0] == 0 {
		return 0
	}
	var mark int64
	if n, ok := p.py.Ref(addrs[0]).Attr("req_number"); ok {
		mark, _ = n.Int()
	}
	return mark | int64(p.gunicornPort(f))<<32
}

// clientPort is the client's port of the request a gunicorn worker's
// thread serves (0: not gunicorn, or a Unix socket).
func (p *proc) clientPort(frames []cpython.StackFrame) int {
	for _, f := range frames {
		if isGunicornHandler(f) {
			return p.gunicornPort(f)
		}
	}
	return 0
}

// gunicornPort reads the client's port in a handle_request frame: from
// addr (sync and async workers) or conn.client (threaded), (host, port)
// for TCP, a path for a Unix socket (no port).
func (p *proc) gunicornPort(f cpython.StackFrame) int {
	addrs, err := p.py.FrameLocalAddrs(f.Addr, f.Code, "conn", "addr")
	if err != nil {
		return 0
	}
	client := addrs[1]
	if addrs[0] != 0 {
		if c, ok := p.py.Ref(addrs[0]).Attr("client"); ok {
			client = c.Addr
		}
	}
	if client != 0 {
		if items := p.py.Ref(client).Items(2); len(items) == 2 {
			if port, ok := items[1].Int(); ok {
				return int(port)
			}
		}
	}
	return 0
}
