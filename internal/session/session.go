// Package session is one debugging session with a live Python process: the
// agent connection, breakpoints, stopped threads, the selected thread and
// frame, and the value history. The REPL (and any protocol server) is a
// client of it; it formats nothing.
package session

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"krait/internal/agent"
	"krait/internal/cpython"
	"krait/internal/dump"
	"krait/internal/target"
	"krait/internal/target/live"
)

// Session is an attached debugging session.
type Session struct {
	PID     int
	Version string
	Backend string
	Inject  *agent.Injection

	c *agent.Client

	mu       sync.Mutex
	stops    map[int64]*Stop // stopped threads by ident
	pending  []*Stop         // stops not yet reported
	stopCh   chan struct{}   // signalled on every new stop
	updates  chan struct{}   // signalled on every new stop or note (see Updates)
	loopDone chan struct{}   // closed when the event loop has handled the last event
	numbers  map[int64]int   // gdb-style thread numbers
	nextNum  int
	Notes    []string // agent notices (resolved breakpoints, errors)

	// Selected thread (ident) and frame.
	Thread int64
	Frame  int
	// History holds printed values, $1 first.
	History []string
	// ShowSecrets shows values under names that look secret (see package
	// secrets) in Print, Eval, Stack and Locals; else they are <redacted>.
	ShowSecrets bool

	catches   []Catchpoint
	nextCatch int

	inf *Inferior // the group's inferior this session is, when it is one (set under mu)

	start       string // the process's start time (/proc stat field 22)
	detached    bool   // Detach was called
	terminating string // the agent let go because the process was told to stop (the signal)
}

// End says why a session whose connection ended (Done) is over: "" while
// it is not, or after Detach; else one line for the user, and whether the
// process is gone.
func (s *Session) End() (msg string, gone bool) {
	select {
	case <-s.c.Done():
	default:
		return "", false
	}
	select { // the events that came before the end, handled
	case <-s.loopDone:
	case <-time.After(time.Second):
	}
	s.mu.Lock()
	detached, term := s.detached, s.terminating
	s.mu.Unlock()
	if detached {
		return "", false
	}
	if term != "" {
		return fmt.Sprintf("Process %d was told to stop (%s): krait let go of every thread it held and detached, so that it can shut down.\n[Inferior 1 (process %d) detached]", s.PID, term, s.PID), true
	}
	// The connection closes as the process exits, a moment before it is
	// a zombie.
	alive := s.alive()
	for t := time.Now(); alive && time.Since(t) < 300*time.Millisecond; {
		time.Sleep(10 * time.Millisecond)
		alive = s.alive()
	}
	if !alive {
		return fmt.Sprintf("[Inferior 1 (process %d) exited]", s.PID), true
	}
	return fmt.Sprintf("The agent in process %d ended; krait is detached.\n[Inferior 1 (process %d) detached]", s.PID, s.PID), false
}

// alive says whether the attached process still runs (the same process:
// not a zombie, and not a new one with its PID).
func (s *Session) alive() bool {
	st, err := startTime(s.PID)
	return err == nil && (s.start == "" || st == s.start)
}

// startTime is a process's start time, "" and an error if it is gone or a
// zombie.
func startTime(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	str := string(data)
	i := strings.LastIndexByte(str, ')')
	f := strings.Fields(str[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", fmt.Errorf("process %d is gone", pid)
	}
	return f[19], nil
}

// Stop is one thread stopped in the agent.
type Stop struct {
	Thread     int64
	NativeID   int
	ThreadName string
	Reason     string
	BP         int
	Function   string
	File       string
	Line       int
	Args       []Var
	Return     *Var
	// CondError is the exception the breakpoint's condition raised (the
	// thread stops, as gdb's does).
	CondError string
	// Catch is the catchpoint an exception stop is for (Reason
	// "exception"), CatchKind "raise" or "uncaught", Exception the
	// exception (Type, and Value as its constructor call).
	Catch     int
	CatchKind string
	Exception *Var
	// LoopTasks is, when the thread runs an asyncio event loop, how many
	// other tasks that loop has (they wait while it is stopped); -1 when
	// it runs none.
	LoopTasks int
}

// Var is a named rendered value.
type Var struct {
	Name, Type, Value string
	Arg               bool
}

// Breakpoint as the agent reports it.
type Breakpoint struct {
	ID        int
	File      string
	Line      int
	Moved     bool
	Function  string
	Pending   bool
	Cond      string
	Temporary bool
	Enabled   bool
	Hits      int
	Ignore    int         // crossings still to ignore
	Every     int         // > 1: it stops at every Every-th crossing only
	Warning   string      // e.g. a module-level line that has run already
	Locations []Location  // where it is set, when more than one place (break FUNC)
	Dprintf   *Printf     // a dprintf's format and arguments (nil: a breakpoint)
	Catch     *Catchpoint // a catchpoint's kind and classes (nil: a breakpoint)
}

// Printf is what a dprintf prints: gdb's "FORMAT",ARG... (the arguments
// are Python expressions).
type Printf struct {
	Format string
	Args   []string
}

// Location is one place a breakpoint is set.
type Location struct {
	File     string
	Line     int
	Function string
}

// Attach injects the agent into pid and connects to it. interp picks the
// interpreter to debug (-1: the one running Django, else the main one);
// method is how the agent gets in (agent.MethodAuto, …). Any failure
// leaves nothing of krait's in the process.
//
// SIGINT, SIGTERM, SIGHUP or SIGQUIT meanwhile give the attach up: krait
// is never stopped half-way into the process by a catchable signal. It
// takes back what it started (the agent's source claimed or a started
// agent told to leave, its directory removed) and Attach returns an
// *Interrupted. (SIGKILL leaves the process untouched or with the agent
// on its way, which leaves by itself when nobody connects.)
func Attach(pid int, interp int64, method string, timeout time.Duration) (*Session, error) {
	return AttachForce(pid, interp, method, timeout, false)
}

// AttachForce is Attach; with force, the agent of an earlier session whose
// krait is gone (it waits for a connection that will never come) is made
// to leave first (agent.ReleaseAbandoned). A session whose krait still
// runs is never disturbed.
func AttachForce(pid int, interp int64, method string, timeout time.Duration, force bool) (*Session, error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	cancel, done := make(chan struct{}), make(chan struct{})
	var got os.Signal
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case got = <-sigs:
			close(cancel)
		case <-done:
		}
	}()
	var s *Session
	var err error
	if force {
		_, err = agent.ReleaseAbandoned(pid)
	}
	if err == nil {
		s, err = attach(pid, interp, method, timeout, cancel)
	}
	close(done)
	<-watched
	if got != nil {
		if s != nil { // the signal came as the attach completed
			s.Detach()
		}
		return nil, &Interrupted{Signal: got.(syscall.Signal), Cause: err}
	}
	return s, err
}

// Interrupted is an attach given up because krait got a signal.
type Interrupted struct {
	Signal syscall.Signal
	Cause  error // the attach's own error, if it failed anyway
}

func (e *Interrupted) Error() string {
	if e.Cause != nil && !errors.Is(e.Cause, agent.ErrInterrupted) {
		return fmt.Sprintf("attach interrupted by %s (it failed anyway: %v); nothing of krait's left in the process", unix.SignalName(e.Signal), e.Cause)
	}
	return fmt.Sprintf("attach interrupted by %s; nothing of krait's left in the process, which runs on as before", unix.SignalName(e.Signal))
}

func (e *Interrupted) Unwrap() error { return agent.ErrInterrupted }

func attach(pid int, interp int64, method string, timeout time.Duration, cancel chan struct{}) (*Session, error) {
	proc, err := live.Open(pid)
	if err != nil {
		return nil, err
	}
	defer proc.Close()
	// Read while the process runs: a pointer followed just as a thread
	// starts or ends may be stale (an address not mapped); look again.
	py, err := cpython.Open(proc)
	for i := 0; i < 5 && errors.Is(err, target.ErrBadAddress); i++ {
		time.Sleep(10 * time.Millisecond)
		py, err = cpython.Open(proc)
	}
	if err != nil {
		return nil, err
	}
	inj, sock, err := agent.StartWith(proc, py, interp, method, timeout, agent.StartOptions{Cancel: cancel, Progress: func(line string) {
		fmt.Fprintln(os.Stderr, line)
	}})
	if err != nil {
		return nil, err
	}
	c, hello, err := inj.Dial(sock)
	if err == nil && isClosed(cancel) {
		c.Close()
		err = agent.ErrInterrupted
	}
	if err != nil {
		inj.Abort()
		if !proc.Alive() {
			return nil, fmt.Errorf("process %d: %w while krait attached", pid, target.ErrExited)
		}
		return nil, err
	}
	s := &Session{PID: pid, Inject: inj, c: c, stops: map[int64]*Stop{}, stopCh: make(chan struct{}, 1), updates: make(chan struct{}, 1), loopDone: make(chan struct{}), numbers: map[int64]int{}, nextNum: 1}
	s.start, _ = startTime(pid)
	s.Version, _ = hello["version"].(string)
	s.Backend, _ = hello["backend"].(string)
	go s.eventLoop()
	return s, nil
}

// isClosed says whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func str(m map[string]any, k string) string { v, _ := m[k].(string); return v }
func num(m map[string]any, k string) int    { v, _ := m[k].(float64); return int(v) }
func flag(m map[string]any, k string) bool  { v, _ := m[k].(bool); return v }

func vars(v any, arg bool) []Var {
	list, _ := v.([]any)
	var out []Var
	for _, it := range list {
		m, _ := it.(map[string]any)
		out = append(out, Var{Name: str(m, "name"), Type: str(m, "type"), Value: str(m, "value"), Arg: arg || flag(m, "arg")})
	}
	return out
}

func (s *Session) eventLoop() {
	defer close(s.loopDone)
	for ev := range s.c.Events {
		switch str(ev, "event") {
		case "stop":
			st := &Stop{Thread: int64(num(ev, "thread")), NativeID: num(ev, "native_id"), ThreadName: str(ev, "thread_name"),
				Reason: str(ev, "reason"), BP: num(ev, "bp"), Function: str(ev, "function"), File: str(ev, "file"), Line: num(ev, "line"),
				Args: vars(ev["args"], true), CondError: str(ev, "cond_error")}
			st.Catch, st.CatchKind = num(ev, "catch"), str(ev, "catch_kind")
			if e, ok := ev["exception"].(map[string]any); ok {
				st.Exception = &Var{Type: str(e, "type"), Value: str(e, "value")}
			}
			st.LoopTasks = -1
			if n, ok := ev["loop_tasks"].(float64); ok {
				st.LoopTasks = int(n)
			}
			if rv, ok := ev["return_value"].(map[string]any); ok {
				st.Return = &Var{Type: str(rv, "type"), Value: str(rv, "value")}
			}
			inf := s.inferior()
			if inf != nil {
				inf.g.translate(inf, st)
			}
			s.mu.Lock()
			s.stops[st.Thread] = st
			s.pending = append(s.pending, st)
			s.number(st.Thread)
			s.mu.Unlock()
			if inf != nil {
				inf.g.stopped(inf, st)
			}
			select {
			case s.stopCh <- struct{}{}:
			default:
			}
			s.updated()
		case "breakpoint_resolved":
			bp := toBP(ev["bp"])
			s.note(fmt.Sprintf("Breakpoint %d resolved at %s:%d", bp.ID, bp.File, bp.Line))
		case "error":
			s.note(str(ev, "message"))
		case "terminating":
			s.mu.Lock()
			s.terminating = str(ev, "signal")
			if s.terminating == "" {
				s.terminating = "a signal"
			}
			s.mu.Unlock()
		}
	}
	select {
	case s.stopCh <- struct{}{}:
	default:
	}
}

// Updates is signalled (coalesced) when a stop or a notice arrives: a
// front end waiting for its user's input announces them at once.
func (s *Session) Updates() <-chan struct{} { return s.updates }

func (s *Session) updated() {
	select {
	case s.updates <- struct{}{}:
	default:
	}
	if inf := s.inferior(); inf != nil {
		inf.g.updated()
	}
}

// inferior is the group's inferior this session is, or nil.
func (s *Session) inferior() *Inferior {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inf
}

// HasStops says whether any thread of the process is stopped in the agent.
func (s *Session) HasStops() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stops) > 0
}

func (s *Session) note(msg string) {
	s.mu.Lock()
	s.Notes = append(s.Notes, msg)
	s.mu.Unlock()
	s.updated()
}

// TakeNotes returns and clears pending notices.
func (s *Session) TakeNotes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.Notes
	s.Notes = nil
	return n
}

// number gives a thread its gdb-style number (mu held).
func (s *Session) number(ident int64) int {
	if n, ok := s.numbers[ident]; ok {
		return n
	}
	s.numbers[ident] = s.nextNum
	s.nextNum++
	return s.numbers[ident]
}

// ThreadNumber returns the gdb-style number of a thread.
func (s *Session) ThreadNumber(ident int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.number(ident)
}

// Done is closed when the agent connection ends.
func (s *Session) Done() <-chan struct{} { return s.c.Done() }

const callTimeout = 30 * time.Second

func (s *Session) call(cmd string, args map[string]any) (map[string]any, error) {
	return s.c.Call(cmd, args, callTimeout)
}

func toBP(v any) Breakpoint {
	m, _ := v.(map[string]any)
	bp := Breakpoint{ID: num(m, "id"), File: str(m, "file"), Line: num(m, "line"), Moved: flag(m, "moved"), Function: str(m, "function"),
		Pending: flag(m, "pending"), Cond: str(m, "cond"), Temporary: flag(m, "temporary"), Enabled: flag(m, "enabled"), Hits: num(m, "hits"),
		Ignore: num(m, "ignore"), Every: num(m, "every"), Warning: str(m, "warning")}
	if d, ok := m["dprintf"].(map[string]any); ok {
		bp.Dprintf = &Printf{Format: str(d, "format")}
		list, _ := d["args"].([]any)
		for _, a := range list {
			as, _ := a.(string)
			bp.Dprintf.Args = append(bp.Dprintf.Args, as)
		}
	}
	if locs, _ := m["locations"].([]any); len(locs) > 1 {
		for _, l := range locs {
			lm, _ := l.(map[string]any)
			bp.Locations = append(bp.Locations, Location{File: str(lm, "file"), Line: num(lm, "line"), Function: str(lm, "function")})
		}
	}
	return bp
}

var fileLine = regexp.MustCompile(`^(.+):(\d+)$`)

// Break sets a breakpoint at FILE:LINE or on a function name.
func (s *Session) Break(spec, cond string, temporary bool) (Breakpoint, error) {
	return s.BreakWith(spec, BreakOptions{Cond: cond, Temporary: temporary})
}

// BreakOptions are what a breakpoint is set with, all at once (no
// crossing sees it without them): its condition, whether it is deleted
// when hit, and how many crossings it lets go first (gdb's ignore).
type BreakOptions struct {
	Cond      string
	Temporary bool
	Ignore    int
	// Every > 1: only every Every-th crossing stops (counted after the
	// ignored ones), as a debugger's hit condition %N.
	Every int
}

func (o BreakOptions) args() map[string]any {
	args := map[string]any{"temporary": o.Temporary}
	if o.Cond != "" {
		args["cond"] = o.Cond
	}
	if o.Ignore > 0 {
		args["ignore"] = o.Ignore
	}
	if o.Every > 1 {
		args["every"] = o.Every
	}
	return args
}

// BreakWith sets a breakpoint at FILE:LINE or on a function name with
// options.
func (s *Session) BreakWith(spec string, o BreakOptions) (Breakpoint, error) {
	args := o.args()
	cmd, err := s.location(spec, args)
	if err != nil {
		return Breakpoint{}, err
	}
	r, err := s.call(cmd, args)
	if err != nil {
		return Breakpoint{}, err
	}
	return toBP(r["bp"]), nil
}

// Dprintf sets gdb's dynamic printf at spec (as Break's): each time a
// thread passes there, the agent evaluates exprs in its frame and sends a
// "dprintf" probe event (Probes) with their values rendered safely, and
// the thread goes on. format is kept for the listing (Breakpoint.Dprintf);
// the front end formats the line (package dprintf). Every value is sent
// in mode "value" (DprintfCond).
func (s *Session) Dprintf(spec, format string, exprs []string) (Breakpoint, error) {
	return s.DprintfCond(spec, "", format, exprs, nil)
}

// DprintfCond is Dprintf with a condition (cond, "" for none) and, per
// expression, its mode: "value" (a str's own text, a number's digits) or
// "repr" (as print renders it); nil: every one "value".
func (s *Session) DprintfCond(spec, cond, format string, exprs, modes []string) (Breakpoint, error) {
	return s.DprintfWith(spec, format, exprs, modes, BreakOptions{Cond: cond})
}

// DprintfWith is DprintfCond with a condition and an ignore count set
// with it (Temporary does not apply: a dprintf never stops).
func (s *Session) DprintfWith(spec, format string, exprs, modes []string, o BreakOptions) (Breakpoint, error) {
	if exprs == nil {
		exprs = []string{}
	}
	if modes == nil {
		modes = []string{}
	}
	args := o.args()
	delete(args, "temporary")
	args["format"], args["args"], args["modes"] = format, exprs, modes
	if _, err := s.location(spec, args); err != nil { // the agent tells a location by its fields
		return Breakpoint{}, err
	}
	r, err := s.call("dprintf", args)
	if err != nil {
		return Breakpoint{}, err
	}
	return toBP(r["bp"]), nil
}

// location fills args with where spec says (FILE:LINE, LINE in the
// selected frame's file, or a function name) and returns the agent
// command that sets a breakpoint there.
func (s *Session) location(spec string, args map[string]any) (string, error) {
	if m := fileLine.FindStringSubmatch(spec); m != nil {
		line, _ := strconv.Atoi(m[2])
		args["file"], args["line"] = m[1], line
		return "break", nil
	}
	if n, err := strconv.Atoi(spec); err == nil {
		// "break 42": a line of the selected frame's file.
		f, err := s.frameFile()
		if err != nil {
			return "", err
		}
		args["file"], args["line"] = f, n
		return "break", nil
	}
	args["name"] = spec
	return "break_func", nil
}

func (s *Session) frameFile() (string, error) {
	frames, err := s.Stack()
	if err != nil {
		return "", err
	}
	if s.Frame >= len(frames) {
		return "", errors.New("no frame selected")
	}
	return frames[s.Frame].File, nil
}

// Breakpoints lists the breakpoints.
func (s *Session) Breakpoints() ([]Breakpoint, error) {
	r, err := s.call("breakpoints", nil)
	if err != nil {
		return nil, err
	}
	list, _ := r["bps"].([]any)
	var out []Breakpoint
	for _, b := range list {
		out = append(out, toBP(b))
	}
	return out, nil
}

// BPCommand runs delete/enable/disable on a breakpoint (id 0: all, for delete).
func (s *Session) BPCommand(cmd string, id int) error {
	args := map[string]any{}
	if id > 0 {
		args["bp"] = id
	}
	_, err := s.call(cmd, args)
	return err
}

// Condition sets or removes a breakpoint's condition.
func (s *Session) Condition(id int, cond string) error {
	args := map[string]any{"bp": id, "cond": nil}
	if cond != "" {
		args["cond"] = cond
	}
	_, err := s.call("condition", args)
	return err
}

// Catchpoint stops threads where an exception is raised (Kind "raise") or
// as it leaves a thread (Kind "uncaught"), for exceptions of Types (class
// names; any when empty): the agent's exception stops.
//
// UserOnly leaves out the stops where the frame runs library code (the
// standard library, an installed package): an editor's "just my code".
type Catchpoint struct {
	ID       int
	Kind     string
	Types    []string
	UserOnly bool
	Disabled bool
}

// Catch adds a catchpoint.
func (s *Session) Catch(kind string, types []string) (Catchpoint, error) {
	return s.CatchIn(kind, types, false)
}

// CatchIn adds a catchpoint; with userOnly, for the user's code only
// (Catchpoint.UserOnly).
func (s *Session) CatchIn(kind string, types []string, userOnly bool) (Catchpoint, error) {
	s.mu.Lock()
	s.nextCatch++
	c := Catchpoint{ID: s.nextCatch, Kind: kind, Types: types, UserOnly: userOnly}
	list := append(append([]Catchpoint{}, s.catches...), c)
	s.mu.Unlock()
	if err := s.setCatches(list); err != nil {
		return Catchpoint{}, err
	}
	return c, nil
}

// Catchpoints lists the catchpoints.
func (s *Session) Catchpoints() []Catchpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Catchpoint{}, s.catches...)
}

// DeleteCatch removes catchpoint id (0: all).
func (s *Session) DeleteCatch(id int) error {
	var list []Catchpoint
	found := id == 0
	for _, c := range s.Catchpoints() {
		if id != 0 && c.ID != id {
			list = append(list, c)
		} else {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("No catchpoint number %d.", id)
	}
	return s.setCatches(list)
}

// EnableCatch enables or disables catchpoint id.
func (s *Session) EnableCatch(id int, on bool) error {
	list := s.Catchpoints()
	found := false
	for i := range list {
		if list[i].ID == id {
			list[i].Disabled, found = !on, true
		}
	}
	if !found {
		return fmt.Errorf("No catchpoint number %d.", id)
	}
	return s.setCatches(list)
}

func (s *Session) setCatches(list []Catchpoint) error {
	filters := []map[string]any{}
	for _, c := range list {
		if c.Disabled {
			continue
		}
		types := c.Types
		if types == nil {
			types = []string{}
		}
		filters = append(filters, map[string]any{"id": c.ID, "kind": c.Kind, "types": types, "user_only": c.UserOnly})
	}
	if _, err := s.call("exception_filters", map[string]any{"filters": filters}); err != nil {
		return err
	}
	s.mu.Lock()
	s.catches = list
	s.mu.Unlock()
	return nil
}

// Ignore makes breakpoint id let the next count crossings go (gdb's ignore).
func (s *Session) Ignore(id, count int) error {
	_, err := s.call("ignore", map[string]any{"bp": id, "count": count})
	return err
}

// Cancel cancels the step (next, step, finish, until) a thread was resumed
// with: it runs on and does not stop for it. cancelled says whether a step
// was still in progress (else the thread had stopped already, or was not
// stepping).
func (s *Session) Cancel(thread int64) (cancelled bool, err error) {
	r, err := s.call("cancel", map[string]any{"thread": thread})
	if err != nil {
		return false, err
	}
	return flag(r, "cancelled"), nil
}

// Interrupt asks a running thread (every one, with all) to stop at the
// next line of Python it runs; the stops arrive as any other. It returns
// the idents of the threads asked.
func (s *Session) Interrupt(thread int64, all bool) ([]int64, error) {
	args := map[string]any{"thread": thread}
	if all {
		args["thread"] = nil
	}
	r, err := s.call("interrupt", args)
	if err != nil {
		return nil, err
	}
	list, _ := r["threads"].([]any)
	var out []int64
	for _, t := range list {
		n, _ := t.(float64)
		out = append(out, int64(n))
	}
	return out, nil
}

// SetVar assigns expr's value to name in the selected frame (a local, or a
// global at module level: gdb's set var; or an attribute or an item,
// assigned as Python does). With store the value joins the history (print
// NAME = EXPR) and its $N is returned.
func (s *Session) SetVar(name, expr string, store bool) (int, Var, error) {
	if err := s.needStopped(); err != nil {
		return 0, Var{}, err
	}
	e, err := s.expandHistory(expr)
	if err != nil {
		return 0, Var{}, err
	}
	r, err := s.call("set_local", map[string]any{"thread": s.Thread, "frame": s.Frame, "name": name, "expr": e, "store": store, "secrets": s.ShowSecrets})
	if err != nil {
		return 0, Var{}, err
	}
	v := Var{Name: name, Type: str(r, "type"), Value: str(r, "value")}
	if !store {
		return 0, v, nil
	}
	s.History = append(s.History, v.Value)
	return len(s.History), v, nil
}

// SetChild sets name, a child of the value at path in the selected
// frame (as Children lists it: a dict's or list's item, an instance's
// attribute, a global under ["globals"]), to the value of expr evaluated
// in that frame.
func (s *Session) SetChild(path []any, name, expr string) (Var, error) {
	if err := s.needStopped(); err != nil {
		return Var{}, err
	}
	e, err := s.expandHistory(expr)
	if err != nil {
		return Var{}, err
	}
	r, err := s.call("set_child", map[string]any{"thread": s.Thread, "frame": s.Frame, "path": path, "name": name, "expr": e, "secrets": s.ShowSecrets})
	if err != nil {
		return Var{}, err
	}
	return Var{Name: name, Type: str(r, "type"), Value: str(r, "value")}, nil
}

// Thread is one thread as the agent lists it.
type Thread struct {
	Ident    int64
	Number   int
	NativeID int
	Name     string
	Stopped  bool
	Function string
	File     string
	Line     int
}

// Threads lists the target's threads.
func (s *Session) Threads() ([]Thread, error) {
	r, err := s.call("threads", nil)
	if err != nil {
		return nil, err
	}
	list, _ := r["threads"].([]any)
	var out []Thread
	s.mu.Lock()
	for _, it := range list {
		m, _ := it.(map[string]any)
		t := Thread{Ident: int64(num(m, "id")), NativeID: num(m, "native_id"), Name: str(m, "name"), Stopped: flag(m, "stopped"),
			Function: str(m, "function"), File: str(m, "file"), Line: num(m, "line")}
		t.Number = s.number(t.Ident)
		out = append(out, t)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// SelectThread selects a thread by gdb number.
func (s *Session) SelectThread(n int) (Thread, error) {
	ts, err := s.Threads()
	if err != nil {
		return Thread{}, err
	}
	for _, t := range ts {
		if t.Number == n {
			s.Thread, s.Frame = t.Ident, 0
			return t, nil
		}
	}
	return Thread{}, fmt.Errorf("Invalid thread ID: %d", n)
}

// Stopped reports the stop of the selected thread, if it is stopped.
func (s *Session) Stopped() *Stop {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stops[s.Thread]
}

// ErrNotStopped is returned by commands that need a stopped thread.
var ErrNotStopped = errors.New("The selected thread is not stopped.")

func (s *Session) needStopped() error {
	if s.Stopped() == nil {
		return ErrNotStopped
	}
	return nil
}

// Resume runs continue/step/next/finish/until on the selected thread.
// "continue" with all set resumes every stopped thread whose stop has been
// reported; a stop not yet reported stays, to be reported by the next
// WaitStop (a thread that hit a breakpoint just as the user typed continue
// is not let go unseen).
func (s *Session) Resume(cmd string, all bool) error {
	if cmd == "continue" && all {
		s.mu.Lock()
		unreported := map[int64]bool{}
		for _, st := range s.pending {
			unreported[st.Thread] = true
		}
		var threads []int64
		for id := range s.stops {
			if !unreported[id] {
				threads = append(threads, id)
				delete(s.stops, id)
			}
		}
		s.mu.Unlock()
		for _, id := range threads {
			if _, err := s.call("continue", map[string]any{"thread": id}); err != nil {
				return err
			}
		}
		return nil
	}
	return s.resume(cmd, false)
}

// ResumeMine is Resume for the selected thread's step (step, next, finish,
// until) that lands only in the user's code, as DAP's justMyCode asks: it
// goes on through the lines of the standard library, installed packages
// and frozen modules (and a finish that returns into them goes on to the
// user's next line).
func (s *Session) ResumeMine(cmd string) error {
	return s.resume(cmd, cmd != "continue")
}

func (s *Session) resume(cmd string, mine bool) error {
	if err := s.needStopped(); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.stops, s.Thread)
	s.mu.Unlock()
	args := map[string]any{"thread": s.Thread}
	if mine {
		args["mine"] = true
	}
	_, err := s.call(cmd, args)
	return err
}

// WaitStop waits for the next stop to report (or one already queued), and
// selects its thread. A zero timeout waits forever; cancel ends the wait
// early (nil, nil).
func (s *Session) WaitStop(timeout time.Duration, cancel <-chan struct{}) (*Stop, error) {
	var deadline <-chan time.Time
	if timeout > 0 {
		deadline = time.After(timeout)
	}
	for {
		if st := s.NextStop(); st != nil {
			return st, nil
		}
		select {
		case <-s.stopCh:
		case <-s.c.Done():
			if st := s.NextStop(); st != nil {
				return st, nil
			}
			return nil, agent.ErrClosed
		case <-deadline:
			return nil, fmt.Errorf("no thread stopped within %s", timeout)
		case <-cancel:
			return nil, nil
		}
	}
}

// HasPendingStop says whether a stop awaits reporting.
func (s *Session) HasPendingStop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.pending {
		if s.stops[st.Thread] == st {
			return true
		}
	}
	return false
}

// NextStop returns a queued stop not yet reported, selecting its thread.
func (s *Session) NextStop() *Stop {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.pending) > 0 {
		st := s.pending[0]
		s.pending = s.pending[1:]
		if s.stops[st.Thread] != st {
			continue // resumed since
		}
		s.Thread, s.Frame = st.Thread, 0
		return st
	}
	return nil
}

// Frame of a stopped thread's stack.
type Frame struct {
	Index    int
	Function string
	File     string
	Line     int
	Args     []Var
}

// Stack returns the selected thread's stack, innermost first: from the
// agent when the thread is stopped, else read from outside as krait dump
// does (the process paused for the read), a snapshot of a moving stack.
func (s *Session) Stack() ([]Frame, error) {
	if s.Stopped() == nil {
		frames, err := s.outside()
		if err != nil {
			return nil, err
		}
		out := make([]Frame, len(frames))
		for i, f := range frames {
			out[i] = Frame{Index: i, Function: f.Function, File: f.File, Line: f.Line}
			for _, v := range f.Locals {
				if v.Arg {
					out[i].Args = append(out[i].Args, v)
				}
			}
		}
		return out, nil
	}
	r, err := s.call("stack", map[string]any{"thread": s.Thread, "secrets": s.ShowSecrets})
	if err != nil {
		return nil, err
	}
	list, _ := r["frames"].([]any)
	var out []Frame
	for _, it := range list {
		m, _ := it.(map[string]any)
		out = append(out, Frame{Index: num(m, "index"), Function: str(m, "function"), File: str(m, "file"), Line: num(m, "line"), Args: vars(m["args"], true)})
	}
	return out, nil
}

// Locals returns the selected frame's variables, arguments first.
func (s *Session) Locals() ([]Var, error) { return s.LocalsAt(s.Frame) }

// LocalsAt are the arguments and locals of frame n of the selected thread.
func (s *Session) LocalsAt(n int) ([]Var, error) {
	if s.Stopped() == nil {
		frames, err := s.outside()
		if err != nil {
			return nil, err
		}
		if n < 0 || n >= len(frames) {
			return nil, fmt.Errorf("No frame at level %d.", n)
		}
		return frames[n].Locals, nil
	}
	r, err := s.call("locals", map[string]any{"thread": s.Thread, "frame": n, "secrets": s.ShowSecrets})
	if err != nil {
		return nil, err
	}
	return vars(r["locals"], false), nil
}

// outsideFrame is a frame of a running thread read from outside.
type outsideFrame struct {
	Function, File string
	Line           int
	Locals         []Var
}

// outside reads the selected (running) thread's stack and locals from
// outside the process, as krait dump does: the agent cannot, since the
// thread is not stopped in it.
func (s *Session) outside() ([]outsideFrame, error) {
	if s.Thread == 0 {
		return nil, errors.New("No thread selected.")
	}
	res, err := dump.Take(s.PID, dump.Options{Locals: true, ShowSecrets: s.ShowSecrets})
	if err != nil {
		return nil, fmt.Errorf("reading thread %d's stack from outside: %w", s.ThreadNumber(s.Thread), err)
	}
	for _, t := range res.Threads {
		if int64(t.ThreadID) != s.Thread {
			continue
		}
		var out []outsideFrame
		for _, f := range t.Frames {
			if dump.IsKraitFrame(f.File) {
				continue
			}
			of := outsideFrame{Function: f.Qualname, File: f.File, Line: f.Line}
			if of.Function == "" {
				of.Function = f.Function
			}
			for _, l := range f.Locals {
				of.Locals = append(of.Locals, Var{Name: l.Name, Type: l.Type, Value: l.Value, Arg: l.Arg})
			}
			out = append(out, of)
		}
		if len(out) == 0 {
			return nil, errors.New("No stack.")
		}
		return out, nil
	}
	return nil, fmt.Errorf("Thread %d has exited.", s.ThreadNumber(s.Thread))
}

// Running says whether the selected thread runs (not stopped in the
// agent): its stack comes from outside.
func (s *Session) Running() bool { return s.Stopped() == nil }

var histRef = regexp.MustCompile(`\$(\$?)(\d*)`)

// expandHistory rewrites gdb's value-history references ($, $N, $$, $$N)
// into references to the agent's history list.
func (s *Session) expandHistory(expr string) (string, error) {
	var err error
	out := histRef.ReplaceAllStringFunc(expr, func(m string) string {
		sub := histRef.FindStringSubmatch(m)
		n := len(s.History)
		idx := n // $ → last
		switch {
		case sub[1] == "" && sub[2] != "":
			idx, _ = strconv.Atoi(sub[2])
		case sub[1] == "$" && sub[2] == "":
			idx = n - 1
		case sub[1] == "$":
			k, _ := strconv.Atoi(sub[2])
			idx = n - k
		}
		if idx < 1 || idx > n {
			err = fmt.Errorf("History has not yet reached $%d.", idx)
			return m
		}
		return fmt.Sprintf("__krait_h[%d]", idx-1)
	})
	return out, err
}

// Print evaluates expr in the selected frame. mode "safe" renders without
// user code; "repr" calls the object's own __repr__ (print/r); "sql"
// compiles a Django QuerySet's SQL without running it (print/sql). The
// value joins the history; the returned number is its $N.
func (s *Session) Print(expr, mode string) (int, Var, error) {
	return s.PrintSecrets(expr, mode, s.ShowSecrets)
}

// PrintSecrets is Print showing secrets or not, whatever ShowSecrets says
// (print/s).
func (s *Session) PrintSecrets(expr, mode string, show bool) (int, Var, error) {
	if err := s.needStopped(); err != nil {
		return 0, Var{}, err
	}
	e, err := s.expandHistory(expr)
	if err != nil {
		return 0, Var{}, err
	}
	r, err := s.call("eval", map[string]any{"thread": s.Thread, "frame": s.Frame, "expr": e, "mode": mode, "store": true, "secrets": show})
	if err != nil {
		return 0, Var{}, err
	}
	v := Var{Type: str(r, "type"), Value: str(r, "value")}
	s.History = append(s.History, v.Value)
	return len(s.History), v, nil
}

// Eval evaluates expr in the selected frame as Print does, without adding
// it to the value history.
func (s *Session) Eval(expr, mode string) (Var, error) {
	if err := s.needStopped(); err != nil {
		return Var{}, err
	}
	e, err := s.expandHistory(expr)
	if err != nil {
		return Var{}, err
	}
	r, err := s.call("eval", map[string]any{"thread": s.Thread, "frame": s.Frame, "expr": e, "mode": mode, "secrets": s.ShowSecrets})
	if err != nil {
		return Var{}, err
	}
	return Var{Type: str(r, "type"), Value: str(r, "value")}, nil
}

// Source returns count lines of file from line on.
func (s *Session) Source(file string, line, count int) ([][2]any, error) {
	r, err := s.call("source", map[string]any{"file": file, "line": line, "count": count})
	if err != nil {
		return nil, err
	}
	list, _ := r["lines"].([]any)
	var out [][2]any
	for _, it := range list {
		pair, _ := it.([]any)
		if len(pair) == 2 {
			n, _ := pair[0].(float64)
			out = append(out, [2]any{int(n), pair[1]})
		}
	}
	return out, nil
}

// Detach removes everything krait put in the process and disconnects.
func (s *Session) Detach() error {
	if msg, _ := s.End(); msg != "" {
		return agent.ErrClosed
	}
	s.mu.Lock()
	s.detached = true
	s.mu.Unlock()
	_, err := s.c.Call("detach", nil, 5*time.Second)
	s.c.Close()
	s.Inject.Finish()
	if err != nil && !errors.Is(err, agent.ErrClosed) {
		return err
	}
	return nil
}

// Close drops the connection without a detach request (the agent cleans
// up on end of file just the same), and removes what the agent left of
// krait's directory (everything, if the process died with the agent in it).
func (s *Session) Close() {
	s.c.Close()
	s.Inject.Finish()
}

// ShortFile shortens a path for display when it is long.
func ShortFile(p string) string {
	if i := strings.LastIndex(p, "/site-packages/"); i >= 0 {
		return p[i+len("/site-packages/"):]
	}
	return p
}

// Child is one child of a value in a variables tree (Children): a scope's
// variable, an item of a container or an attribute of an object, rendered
// safely. Path reaches it (nil when it cannot be expanded: no children, or
// a value kept secret); More says it has children of its own.
type Child struct {
	Name, Type, Value string
	More              bool
	Path              []any
}

// Children lists the children of the value at path in frame frame of
// stopped thread thread, from start, at most count (0: the agent's limit),
// and how many there are in all. A path starts with "locals" or "globals"
// (a scope of the frame) or "history", N (the value $N+1 of Print), then
// steps from Child.Path: nothing is held in the process between calls,
// and no user code runs (a QuerySet is not evaluated).
func (s *Session) Children(thread int64, frame int, path []any, start, count int) ([]Child, int, error) {
	args := map[string]any{"thread": thread, "frame": frame, "path": path, "start": start, "secrets": s.ShowSecrets}
	if count > 0 {
		args["count"] = count
	}
	r, err := s.call("children", args)
	if err != nil {
		return nil, 0, err
	}
	list, _ := r["children"].([]any)
	out := make([]Child, 0, len(list))
	for _, it := range list {
		m, _ := it.(map[string]any)
		c := Child{Name: str(m, "name"), Type: str(m, "type"), Value: str(m, "value"), More: flag(m, "more")}
		c.Path, _ = m["path"].([]any)
		out = append(out, c)
	}
	return out, num(r, "total"), nil
}
