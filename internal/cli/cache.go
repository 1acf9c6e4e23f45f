package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"krait/internal/agent"
	"krait/internal/cache"
	"krait/internal/cpython"
	"krait/internal/procinfo"
	"krait/internal/session"
	"krait/internal/target"
)

// cacheProc is one process krait cache traces (or tried to).
type cacheProc struct {
	PID       int              `json:"pid"`
	Server    string           `json:"server,omitempty"`
	Django    string           `json:"django,omitempty"`
	Caches    []map[string]any `json:"caches"`
	Databases []map[string]any `json:"databases"`
	Error     string           `json:"error,omitempty"`
	Exited    bool             `json:"exited,omitempty"`

	s       *session.Session
	readerD chan struct{}
	aliases map[string]cache.Alias
	reqs    map[int64][2]string // request id -> method, path (read's goroutine only)
}

// cacheTracer attaches to the workers, starts tracing in each and
// collects their events.
type cacheTracer struct {
	mu      sync.Mutex
	procs   map[int]*cacheProc
	order   []int
	an      *cache.Analyzer // the events so far, related (mu)
	dropped int64
	seen    map[int]bool // pids tried (add's goroutine only)

	timeout time.Duration
	evOut   io.Writer // --events: each event as a JSON line
	evMu    sync.Mutex
	warn    func(string)
}

// cacheReport is krait cache --json.
type cacheReport struct {
	Processes []*cacheProc    `json:"processes"`
	Patterns  []cache.Pattern `json:"patterns"`
	Stale     []cache.Stale   `json:"stale"`
	Dropped   int64           `json:"dropped_events"`
	DurationS float64         `json:"duration_s"`
	CacheOps  int             `json:"cache_ops"`
	SQL       int             `json:"sql_statements"`
	Writes    int             `json:"committed_writes"`
	Requests  int             `json:"requests"`
}

// quiet errors: a process of a survey or a server's tree that is no
// Django worker (a gunicorn master, a resource tracker) is left alone
// without a word.
func quietCacheError(err error) bool {
	var ae *agent.AgentError
	return errors.Is(err, cpython.ErrNotPython) || errors.Is(err, target.ErrNoProcess) || errors.Is(err, target.ErrExited) ||
		errors.Is(err, target.ErrZombie) || errors.Is(err, cpython.ErrNoInterpreter) ||
		errors.As(err, &ae) && strings.Contains(ae.Msg, "Django")
}

// trace attaches to pid and starts cache tracing there. A process that
// cannot be traced is recorded with its error.
func (t *cacheTracer) trace(pid int) (*cacheProc, error) {
	p := &cacheProc{PID: pid, Caches: []map[string]any{}, Databases: []map[string]any{}}
	if info, err := procinfo.Read(pid); err == nil && info.Server != "script" {
		p.Server = info.Server
	}
	s, err := session.Attach(pid, -1, agent.MethodAuto, t.timeout)
	if err != nil {
		p.Error = err.Error()
		return p, err
	}
	res, err := s.Call("cache_start", nil)
	if err != nil {
		p.Error = err.Error()
		_ = s.Detach()
		s.Close()
		return p, err
	}
	p.Django, _ = res["django"].(string)
	p.aliases, p.reqs = map[string]cache.Alias{}, map[int64][2]string{}
	for _, k := range []string{"aliases", "databases"} {
		list, _ := res[k].([]any)
		for _, it := range list {
			if m, ok := it.(map[string]any); ok {
				if k == "aliases" {
					p.Caches = append(p.Caches, m)
					name, _ := m["alias"].(string)
					a := cache.Alias{Version: m["version"]}
					a.Backend, _ = m["backend"].(string)
					a.KeyPrefix, _ = m["key_prefix"].(string)
					a.OwnKeys, _ = m["key_function"].(bool)
					p.aliases[name] = a
				} else {
					p.Databases = append(p.Databases, m)
				}
			}
		}
	}
	p.s = s
	p.readerD = make(chan struct{})
	go t.read(p)
	return p, nil
}

// read takes p's events until its session ends.
func (t *cacheTracer) read(p *cacheProc) {
	defer close(p.readerD)
	for b := range p.s.Probes() {
		t.take(p, b)
	}
}

func (t *cacheTracer) take(p *cacheProc, b agent.ProbeBatch) {
	pid := p.PID
	evs := make([]cache.Event, 0, len(b.Events))
	for _, m := range b.Events {
		e := cache.FromMap(pid, m)
		cache.Complete(&e, p.aliases)
		switch {
		case e.Kind == "req" && e.Phase == "start":
			p.reqs[e.Req] = [2]string{e.Method, e.Path}
		case e.Kind == "req" && e.Phase == "end":
			delete(p.reqs, e.Req)
		case e.Req != 0:
			if r, ok := p.reqs[e.Req]; ok {
				e.Method, e.Path = r[0], r[1]
			}
		}
		if t.evOut != nil { // the stream shows each event complete
			if e.Back != "" {
				m["backend"] = e.Back
			}
			if e.FKey != "" {
				m["fkey"] = e.FKey
			}
			if e.Method != "" && e.Kind != "req" {
				m["method"], m["path"] = e.Method, e.Path
			}
		}
		evs = append(evs, e)
	}
	var n int64
	for _, d := range b.Dropped {
		n += int64(d)
	}
	t.mu.Lock()
	t.an.Add(evs...)
	t.dropped += n
	t.mu.Unlock()
	if t.evOut != nil {
		t.evMu.Lock()
		enc := json.NewEncoder(t.evOut)
		for _, m := range b.Events {
			m["pid"] = pid
			_ = enc.Encode(m)
		}
		if n > 0 {
			_ = enc.Encode(map[string]any{"pid": pid, "kind": "dropped", "dropped": b.Dropped})
		}
		t.evMu.Unlock()
	}
}

// add traces pids not seen yet, one after the other; returns those traced
// and the first error of the others (quiet ones left out when quiet).
func (t *cacheTracer) add(pids []int, quiet bool) (traced []int, firstErr error) {
	for _, pid := range pids {
		if t.seen[pid] {
			continue
		}
		t.seen[pid] = true
		p, err := t.trace(pid)
		if err != nil {
			if quiet && quietCacheError(err) {
				continue
			}
			if firstErr == nil {
				firstErr = err
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("process %d", pid)) {
				msg = fmt.Sprintf("process %d: %s", pid, msg)
			}
			t.warn(msg)
		} else {
			traced = append(traced, pid)
		}
		t.mu.Lock()
		t.procs[pid] = p
		t.order = append(t.order, pid)
		t.mu.Unlock()
	}
	sort.Ints(traced)
	return traced, firstErr
}

// finish stops tracing everywhere and detaches: every worker as before.
func (t *cacheTracer) finish() {
	t.mu.Lock()
	var list []*cacheProc
	for _, p := range t.procs {
		if p.s != nil {
			list = append(list, p)
		}
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Add(1)
		go func(p *cacheProc) {
			defer wg.Done()
			if msg, gone := p.s.End(); msg != "" {
				p.Exited = gone
			} else {
				// What the agent buffered comes before its reply, then the
				// end of the connection closes Probes (read drains it).
				_, _ = p.s.Call("cache_stop", nil)
				_ = p.s.Detach()
			}
			p.s.Close()
			<-p.readerD
		}(p)
	}
	wg.Wait()
}

// report relates the events up to upTo (those of every process up to
// then have come) and sums up.
func (t *cacheTracer) report(upTo time.Time) (*cache.Report, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.an.Report(float64(upTo.UnixNano()) / 1e9), t.dropped
}

func (t *cacheTracer) live() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.procs {
		if p.s != nil && !isClosedChan(p.s.Done()) {
			n++
		}
	}
	return n
}

func isClosedChan(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func runCache(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cache", flag.ContinueOnError)
	var pids pidList
	fs.Var(&pids, "pid", "process id (repeatable, or comma-separated)")
	fs.Var(&pids, "p", "short for --pid")
	all := fs.Bool("all", false, "every Django worker on the host")
	subs := fs.Bool("subprocesses", false, "also the processes' children (gunicorn workers, mod_wsgi daemons), including those started later")
	fs.BoolVar(subs, "s", false, "short for --subprocesses")
	var dur durationFlag
	fs.Var(&dur, "duration", "how long to trace: seconds or e.g. 1m30s (default: until Ctrl-C)")
	fs.Var(&dur, "d", "short for --duration")
	watch := fs.Bool("watch", false, "show the summary live, refreshed every second")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.BoolVar(asJSON, "j", false, "short for --json")
	events := fs.Bool("events", false, "stream every event as a JSON line on stdout (the report goes to stderr)")
	attachTimeout := fs.Duration("attach-timeout", 10*time.Second, "how long to wait for each process's agent to start")
	if code := parsePIDFlags(fs, "cache", args, &pids, stdout, stderr); code >= 0 {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(stderr, "cache", "unexpected argument %q", fs.Arg(0))
	case len(pids.pids) > 0 == *all:
		return usageError(stderr, "cache", "give --pid PID... or --all")
	case *attachTimeout <= 0:
		return usageError(stderr, "cache", "bad --attach-timeout %v (a positive duration)", *attachTimeout)
	case *events && *watch:
		return usageError(stderr, "cache", "--events and --watch both write to stdout: give one")
	}
	warn := func(msg string) { fmt.Fprintf(stderr, "krait cache: %s\n", msg) }
	t := &cacheTracer{procs: map[int]*cacheProc{}, seen: map[int]bool{}, an: cache.NewAnalyzer(), timeout: *attachTimeout, warn: warn}
	if *events {
		t.evOut = stdout
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	start := time.Now()

	roots := pids.pids
	quiet := false
	if *all {
		roots, _ = djangoProcesses() // the workers: a master serves no request
		quiet = true
	}
	first := roots
	if *subs {
		first = append(append([]int(nil), roots...), procinfo.Descendants(roots)...)
		quiet = true
	}
	traced, firstErr := t.add(first, quiet)
	if ctx.Err() == nil && len(traced) == 0 {
		if firstErr != nil {
			if len(first) == 1 {
				return exitFor(firstErr)
			}
			return fail(io.Discard, firstErr)
		}
		fmt.Fprintln(stderr, "krait cache: no Django process to trace")
		return ExitNoProcess
	}
	fmt.Fprintf(stderr, "krait cache: tracing %d process%s (%s); Ctrl-C to stop and report\n", len(traced), plural(len(traced), "es"), joinInts(traced))

	if dur.d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dur.d)
		defer cancel()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	term := false
	if f, ok := stdout.(*os.File); ok && isTerminal(f) {
		term = true
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		if *subs {
			if added, _ := t.add(procinfo.Descendants(roots), true); len(added) > 0 {
				fmt.Fprintf(stderr, "krait cache: tracing new process%s %s\n", plural(len(added), "es"), joinInts(added))
			}
		}
		if *watch {
			// Events reach krait up to a fraction of a second late, each
			// process's on its own: the live view is two seconds behind.
			r, dropped := t.report(time.Now().Add(-2 * time.Second))
			if term {
				fmt.Fprint(stdout, "\x1b[H\x1b[2J")
			} else {
				fmt.Fprintln(stdout, "----")
			}
			fmt.Fprintf(stdout, "krait cache: %d processes, %s, %d events dropped\n", t.live(), time.Since(start).Round(time.Second), dropped)
			for _, s := range r.Stale {
				fmt.Fprintf(stdout, "STALE %s (%s): inputs %s, %d stale hits\n", s.Key, s.Alias, strings.Join(s.Inputs, ", "), s.StaleHits)
			}
			cache.WriteSummary(stdout, r)
		}
		if t.live() == 0 && !*subs {
			warn("every traced process has exited")
			break
		}
	}
	stop()
	t.finish()
	r, dropped := t.report(time.Now())
	rep := cacheReport{Patterns: r.Patterns, Stale: r.Stale, Dropped: dropped, DurationS: time.Since(start).Seconds(),
		CacheOps: r.CacheOps, SQL: r.SQL, Writes: r.Writes, Requests: r.Requests}
	t.mu.Lock()
	for _, pid := range t.order {
		if p := t.procs[pid]; p.s != nil || p.Error != "" {
			rep.Processes = append(rep.Processes, p) // traced, or not with why
		}
	}
	t.mu.Unlock()
	if rep.Processes == nil {
		rep.Processes = []*cacheProc{}
	}
	out := stdout
	if *events {
		out = stderr
	}
	if *asJSON {
		return writeJSON(out, stderr, rep)
	}
	n := 0
	for _, p := range rep.Processes {
		if p.Error == "" {
			n++
		}
	}
	fmt.Fprintf(out, "krait cache: %d process%s traced for %s, %d events dropped\n\n", n, plural(n, "es"),
		time.Since(start).Round(100*time.Millisecond), dropped)
	cache.WriteText(out, r)
	return ExitOK
}

func plural(n int, suffix string) string {
	if n == 1 {
		return ""
	}
	return suffix
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
