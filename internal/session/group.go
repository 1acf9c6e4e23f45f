package session

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"krait/internal/agent"
	"krait/internal/procinfo"
)

// Group is a debugging session over several processes (gdb's inferiors):
// the workers of a server whose master was given, or several PIDs. It
// holds one Session per process, sets every breakpoint in each of them
// (with one numbering of its own), queues the stops of all of them in the
// order they happen, follows a master's new workers (arming them as they
// start) and drops workers that exit. A front end (the REPL, a DAP server)
// is its client; with one plain process it behaves as that Session.
type Group struct {
	opt AttachOptions

	// bpMu serialises changes to the breakpoints with the arming of a new
	// inferior, so that no worker misses a breakpoint set as it joins.
	bpMu sync.Mutex

	mu       sync.Mutex
	infs     []*Inferior // live ones, by Num
	sel      *Inferior
	nextInf  int
	bps      []*groupBP
	nextBP   int
	resolved map[int]bool // group breakpoints announced as resolved
	pending  []queuedStop // stops in the order they happened
	notes    []string
	updates  chan struct{}
	stopCh   chan struct{}
	masters  []int        // servers whose new workers are followed
	known    map[int]bool // PIDs seen as workers (attached, being attached, or given up)
	server   bool         // a master or several processes: stop lines name the process
	last     *Session     // the last inferior to go (for End)
	done     chan struct{}
	closed   bool
	quit     chan struct{} // stops following
	quitOnce sync.Once
	probes   chan ProbeBatch // every inferior's probe events, once Probes was called (else nil)
	probeWG  sync.WaitGroup  // forwarders to probes
}

// AttachOptions are how a Group attaches to each process (see Attach).
type AttachOptions struct {
	Interp  int64
	Method  string
	Timeout time.Duration
	Force   bool
}

// Inferior is one process of a Group.
type Inferior struct {
	Num    int
	PID    int
	Server string // the server kind krait ps shows ("gunicorn worker", …)
	Group  string // the mod_wsgi process group or gunicorn name
	S      *Session
	// Watchdogs are what may kill a request (or the process) while a
	// thread is stopped, found at attach (see watchdogs.go).
	Watchdogs []Watchdog

	g   *Group
	bps map[int]int   // group breakpoint id → the agent's
	hb  chan struct{} // kicks the heartbeat keeper (gunicorn workers)
	// readConf: the watchdogs' settings were read from the process at a
	// stop (WatchdogsAt).
	readConf bool
	probed   bool // its probe events are forwarded to Group.Probes
}

type groupBP struct {
	ID      int
	Spec    string
	Cond    string
	Temp    bool
	Ignore  int // crossings each process lets go first (gdb's ignore)
	Every   int // only every Every-th crossing stops (BreakOptions.Every)
	Enabled bool
	Printf  *Printf  // a dprintf's (nil: a breakpoint)
	Modes   []string // a dprintf's argument modes (Session.DprintfCond)
	// Catch is a catchpoint's kind and classes (nil: a breakpoint), and
	// Hits its stops in every process (the agent counts a breakpoint's).
	Catch *Catchpoint
	Hits  int
}

// set sets b in inf's process.
func (b *groupBP) set(inf *Inferior) (Breakpoint, error) {
	if b.Catch != nil {
		c, err := inf.S.CatchIn(b.Catch.Kind, b.Catch.Types, b.Catch.UserOnly)
		return Breakpoint{ID: c.ID}, err
	}
	if b.Printf != nil {
		return inf.S.DprintfWith(b.Spec, b.Printf.Format, b.Printf.Args, b.Modes, BreakOptions{Cond: b.Cond, Ignore: b.Ignore, Every: b.Every})
	}
	return inf.S.BreakWith(b.Spec, BreakOptions{Cond: b.Cond, Temporary: b.Temp, Ignore: b.Ignore, Every: b.Every})
}

type queuedStop struct {
	inf *Inferior
	st  *Stop
}

// NewGroup is an empty group.
func NewGroup(opt AttachOptions) *Group {
	return &Group{opt: opt, resolved: map[int]bool{}, updates: make(chan struct{}, 1), stopCh: make(chan struct{}, 1),
		known: map[int]bool{}, done: make(chan struct{}), quit: make(chan struct{}), nextInf: 1, nextBP: 1}
}

// SetServer makes stop lines and notices name the process (set when more
// than one process may take part).
func (g *Group) SetServer() {
	g.mu.Lock()
	g.server = true
	g.mu.Unlock()
}

// Server says whether stop lines name the process.
func (g *Group) Server() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.server
}

// Attach attaches to pid and adds it: it gets the group's breakpoints
// before it is announced.
func (g *Group) Attach(pid int) (*Inferior, error) {
	g.mu.Lock()
	g.known[pid] = true
	g.mu.Unlock()
	s, err := AttachForce(pid, g.opt.Interp, g.opt.Method, g.opt.Timeout, g.opt.Force)
	if err != nil {
		return nil, err
	}
	return g.add(s), nil
}

// Add adds an attached session (its breakpoints are set as the group's).
func (g *Group) Add(s *Session) *Inferior { return g.add(s) }

func (g *Group) add(s *Session) *Inferior {
	inf := &Inferior{PID: s.PID, S: s, g: g, bps: map[int]int{}, hb: make(chan struct{}, 1)}
	if in, err := procinfo.Read(s.PID); err == nil {
		inf.Server, inf.Group = in.Server, in.Group
	}
	inf.Watchdogs = findWatchdogs(s.PID)
	s.mu.Lock()
	s.inf = inf
	s.mu.Unlock()
	g.bpMu.Lock()
	defer g.bpMu.Unlock()
	for _, b := range g.breakpoints() {
		g.arm(inf, b)
	}
	g.mu.Lock()
	g.known[s.PID] = true
	inf.Num = g.nextInf
	g.nextInf++
	g.infs = append(g.infs, inf)
	if g.sel == nil {
		g.sel = inf
	}
	g.mu.Unlock()
	go g.watchEnd(inf)
	startHeartbeat(inf)
	g.forwardProbes(inf)
	return inf
}

// arm sets breakpoint b in inf (bpMu held).
func (g *Group) arm(inf *Inferior, b groupBP) {
	bp, err := b.set(inf)
	if err != nil {
		g.note(fmt.Sprintf("%s breakpoint %d (%s) not set: %v", inf.Label(), b.ID, b.Spec, err))
		return
	}
	g.mu.Lock()
	inf.bps[b.ID] = bp.ID
	g.mu.Unlock()
	if !b.Enabled {
		_ = b.command(inf, "disable", bp.ID)
	}
}

// command runs delete/enable/disable on b's number aid in inf's process.
func (b *groupBP) command(inf *Inferior, cmd string, aid int) error {
	if b.Catch == nil {
		return inf.S.BPCommand(cmd, aid)
	}
	if cmd == "delete" {
		return inf.S.DeleteCatch(aid)
	}
	return inf.S.EnableCatch(aid, cmd == "enable")
}

func (g *Group) breakpoints() []groupBP {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]groupBP, len(g.bps))
	for i, b := range g.bps {
		out[i] = *b
	}
	return out
}

// Label names the process in stop lines and notices: "[worker 4242]",
// "[process 4242]".
func (inf *Inferior) Label() string {
	kind := "process"
	if procinfo.IsWorker(inf.Server) {
		kind = "worker"
	}
	return fmt.Sprintf("[%s %d]", kind, inf.PID)
}

// Follow watches master for new workers (polling its children every 100
// ms): each is attached, given the breakpoints, and announced as
// "[New worker PID]".
func (g *Group) Follow(master int) {
	g.mu.Lock()
	g.masters = append(g.masters, master)
	first := len(g.masters) == 1
	g.server = true
	g.mu.Unlock()
	if first {
		go g.follow()
	}
}

func (g *Group) follow() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-g.quit:
			return
		case <-t.C:
		}
		g.mu.Lock()
		masters := append([]int(nil), g.masters...)
		g.mu.Unlock()
		alive := 0
		for _, m := range masters {
			if _, err := startTime(m); err != nil {
				continue
			}
			alive++
			for _, pid := range procinfo.Workers(m) {
				g.mu.Lock()
				seen := g.known[pid]
				g.known[pid] = true
				g.mu.Unlock()
				if !seen {
					go g.attachNew(pid)
				}
			}
		}
		if alive == 0 {
			g.checkDone()
		}
	}
}

// attachNew attaches to a new worker; it may still be starting (not yet
// Python, or importing the application), so it is tried for up to 30 s,
// in tries of a second: each try reads the process afresh (within one try,
// a worker seen holding the GIL as it imported its application was still
// seen so once idle in its accept loop: the attach's retries reuse what
// they read).
func (g *Group) attachNew(pid int) {
	deadline := time.Now().Add(30 * time.Second)
	try := g.opt.Timeout
	if try <= 0 || try > time.Second {
		try = time.Second
	}
	for {
		select {
		case <-g.quit:
			return
		default:
		}
		s, err := AttachForce(pid, g.opt.Interp, g.opt.Method, try, false)
		if err == nil {
			select {
			case <-g.quit: // detached meanwhile
				_ = s.Detach()
				s.Close()
				return
			default:
			}
			inf := g.add(s)
			g.note(fmt.Sprintf("[New worker %d]", inf.PID))
			return
		}
		if _, gone := startTime(pid); gone != nil {
			return
		}
		if time.Now().After(deadline) {
			g.note(fmt.Sprintf("[worker %d] krait could not attach to this new worker: %v", pid, err))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// watchEnd drops an inferior whose session ends (the process exited, or
// its agent let go) and says so.
func (g *Group) watchEnd(inf *Inferior) {
	<-inf.S.Done()
	msg, gone := inf.S.End()
	if msg == "" { // detached
		return
	}
	g.mu.Lock()
	for i, x := range g.infs {
		if x == inf {
			g.infs = append(g.infs[:i], g.infs[i+1:]...)
			break
		}
	}
	if g.sel == inf {
		g.sel = nil
		if len(g.infs) > 0 {
			g.sel = g.infs[0]
		}
	}
	g.last = inf.S
	server := g.server
	g.mu.Unlock()
	if server {
		switch {
		case gone && procinfo.IsWorker(inf.Server):
			g.note(fmt.Sprintf("[Worker %d exited]", inf.PID))
		case gone:
			g.note(fmt.Sprintf("[Inferior %d (process %d) exited]", inf.Num, inf.PID))
		default:
			g.note(fmt.Sprintf("%s %s", inf.Label(), msg))
		}
	}
	g.checkDone()
}

// checkDone ends the group once no process is left and no master is
// followed.
func (g *Group) checkDone() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.infs) > 0 || g.closed {
		return
	}
	for _, m := range g.masters {
		if _, err := startTime(m); err == nil {
			return
		}
	}
	g.closed = true
	close(g.done)
}

// Done is closed when every process of the group has gone (and the
// followed masters too).
func (g *Group) Done() <-chan struct{} { return g.done }

// End says why a group whose processes are all gone is over ("" while it
// is not): for one process, as its Session's End.
func (g *Group) End() (msg string, gone bool) {
	select {
	case <-g.done:
	default:
		return "", false
	}
	g.mu.Lock()
	last, server := g.last, g.server
	g.mu.Unlock()
	if !server && last != nil {
		return last.End()
	}
	return "[every process krait was attached to has exited]", true
}

// Inferiors lists the live inferiors by number.
func (g *Group) Inferiors() []*Inferior {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*Inferior(nil), g.infs...)
}

// Selected is the selected inferior (nil when none is left).
func (g *Group) Selected() *Inferior {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sel
}

// Select selects inferior n.
func (g *Group) Select(n int) (*Inferior, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, inf := range g.infs {
		if inf.Num == n {
			g.sel = inf
			return inf, nil
		}
	}
	return nil, fmt.Errorf("Invalid inferior ID %d.", n)
}

// SelectSession selects the inferior of s.
func (g *Group) SelectSession(s *Session) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, inf := range g.infs {
		if inf.S == s {
			g.sel = inf
		}
	}
}

// Updates is signalled when a stop or notice arrives in any inferior.
func (g *Group) Updates() <-chan struct{} { return g.updates }

func (g *Group) updated() {
	select {
	case g.updates <- struct{}{}:
	default:
	}
}

func (g *Group) note(msg string) {
	g.mu.Lock()
	g.notes = append(g.notes, msg)
	g.mu.Unlock()
	g.updated()
}

var resolvedNote = regexp.MustCompile(`^Breakpoint (\d+) resolved at (.*)$`)

// TakeNotes returns and clears the notices of the group and of every
// inferior (a breakpoint's resolution announced once, under the group's
// number; others named by their process when there are several).
func (g *Group) TakeNotes() []string {
	g.mu.Lock()
	out := g.notes
	g.notes = nil
	infs := append([]*Inferior(nil), g.infs...)
	server := g.server
	g.mu.Unlock()
	for _, inf := range infs {
		for _, n := range inf.S.TakeNotes() {
			if m := resolvedNote.FindStringSubmatch(n); m != nil {
				id, _ := strconv.Atoi(m[1])
				gid := g.groupID(inf, id, false)
				g.mu.Lock()
				seen := g.resolved[gid]
				g.resolved[gid] = true
				g.mu.Unlock()
				if !seen {
					out = append(out, fmt.Sprintf("Breakpoint %d resolved at %s", gid, m[2]))
				}
				continue
			}
			if server {
				n = inf.Label() + " " + n
			}
			out = append(out, n)
		}
	}
	return out
}

// groupID is the group's number of inf's agent breakpoint (catch false)
// or catchpoint (catch true) id (id itself if it is none of the group's).
func (g *Group) groupID(inf *Inferior, id int, catch bool) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	for gid, aid := range inf.bps {
		if aid == id && g.isCatch(gid) == catch {
			return gid
		}
	}
	return id
}

// isCatch says whether group number gid is a catchpoint's (g.mu held).
func (g *Group) isCatch(gid int) bool {
	for _, b := range g.bps {
		if b.ID == gid {
			return b.Catch != nil
		}
	}
	return false
}

// translate gives a stop the group's breakpoint or catchpoint number; a
// temporary breakpoint hit in one process is deleted in the others.
func (g *Group) translate(inf *Inferior, st *Stop) {
	if st.Reason == "exception" && st.Catch != 0 {
		st.Catch = g.groupID(inf, st.Catch, true)
		g.mu.Lock()
		for _, b := range g.bps {
			if b.ID == st.Catch {
				b.Hits++
			}
		}
		g.mu.Unlock()
		return
	}
	if st.Reason != "breakpoint" || st.BP == 0 {
		return
	}
	gid := g.groupID(inf, st.BP, false)
	st.BP = gid
	g.mu.Lock()
	var temp bool
	for i, b := range g.bps {
		if b.ID == gid && b.Temp {
			temp = true
			g.bps = append(g.bps[:i], g.bps[i+1:]...)
			break
		}
	}
	g.mu.Unlock()
	if temp {
		go g.deleteBP(groupBP{ID: gid}, inf)
	}
}

// stopped queues a stop of inf.
func (g *Group) stopped(inf *Inferior, st *Stop) {
	g.mu.Lock()
	g.pending = append(g.pending, queuedStop{inf, st})
	g.mu.Unlock()
	select {
	case g.stopCh <- struct{}{}:
	default:
	}
	inf.heartbeatNow()
}

// NextStop returns the oldest stop not yet reported, of any inferior, and
// selects its inferior and thread.
func (g *Group) NextStop() (*Inferior, *Stop) { return g.NextStopOf(nil) }

// QueuedStop is a stop not yet reported.
type QueuedStop struct {
	Inf  *Inferior
	Stop *Stop
}

// Queued lists the stops not yet reported, oldest first.
func (g *Group) Queued() []QueuedStop {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []QueuedStop
	for _, q := range g.pending {
		if !g.live(q.inf) {
			continue
		}
		s := q.inf.S
		s.mu.Lock()
		for _, st := range s.pending {
			if st == q.st && s.stops[st.Thread] == st {
				out = append(out, QueuedStop{q.inf, st})
				break
			}
		}
		s.mu.Unlock()
	}
	return out
}

// NextStopOf is NextStop for the stops of inf only (any, with nil); the
// others stay queued in their order.
func (g *Group) NextStopOf(only *Inferior) (*Inferior, *Stop) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var keep []queuedStop
	defer func() { g.pending = append(keep, g.pending...) }()
	for len(g.pending) > 0 {
		q := g.pending[0]
		g.pending = g.pending[1:]
		if only != nil && q.inf != only {
			keep = append(keep, q)
			continue
		}
		s := q.inf.S
		s.mu.Lock()
		found := false
		for i, st := range s.pending {
			if st == q.st {
				s.pending = append(s.pending[:i], s.pending[i+1:]...)
				found = s.stops[st.Thread] == st
				break
			}
		}
		if found {
			s.Thread, s.Frame = q.st.Thread, 0
		}
		s.mu.Unlock()
		if !found || !g.live(q.inf) {
			continue
		}
		g.sel = q.inf
		return q.inf, q.st
	}
	return nil, nil
}

// live: inf is still one of the group's (mu held).
func (g *Group) live(inf *Inferior) bool {
	for _, x := range g.infs {
		if x == inf {
			return true
		}
	}
	return false
}

// HasPendingStop says whether a stop of inf (of any inferior, with nil)
// awaits reporting.
func (g *Group) HasPendingStop(inf *Inferior) bool {
	for _, x := range g.Inferiors() {
		if (inf == nil || x == inf) && x.S.HasPendingStop() {
			return true
		}
	}
	return false
}

// WaitStop waits for the next stop of any inferior (or one queued) and
// selects it. A zero timeout waits forever; cancel ends the wait early
// (nil, nil, nil).
func (g *Group) WaitStop(timeout time.Duration, cancel <-chan struct{}) (*Inferior, *Stop, error) {
	var deadline <-chan time.Time
	if timeout > 0 {
		deadline = time.After(timeout)
	}
	for {
		if inf, st := g.NextStop(); st != nil {
			return inf, st, nil
		}
		select {
		case <-g.stopCh:
		case <-g.done:
			if inf, st := g.NextStop(); st != nil {
				return inf, st, nil
			}
			return nil, nil, agent.ErrClosed
		case <-deadline:
			return nil, nil, fmt.Errorf("no thread stopped within %s", timeout)
		case <-cancel:
			return nil, nil, nil
		case <-time.After(200 * time.Millisecond):
			// Stops taken by a Session's own NextStop leave entries to skip.
		}
	}
}

// Break sets a breakpoint in every inferior (FILE:LINE, FUNCTION, or a
// LINE of the selected frame's file). It is the group's if any process
// took it; the others' errors are noted.
func (g *Group) Break(spec, cond string, temporary bool) (Breakpoint, error) {
	return g.setBP(&groupBP{Spec: spec, Cond: cond, Temp: temporary, Enabled: true})
}

// BreakWith is Break with all of a breakpoint's options (see
// Session.BreakWith); each process counts its own ignored crossings.
func (g *Group) BreakWith(spec string, o BreakOptions) (Breakpoint, error) {
	return g.setBP(&groupBP{Spec: spec, Cond: o.Cond, Temp: o.Temporary, Ignore: o.Ignore, Every: o.Every, Enabled: true})
}

// Catch sets a catchpoint (see Session.Catch) in every inferior: it is
// numbered with the breakpoints, as gdb numbers them.
func (g *Group) Catch(kind string, types []string) (Breakpoint, error) {
	return g.CatchIn(kind, types, false)
}

// CatchIn is Catch for the user's code only, with userOnly (see
// Session.CatchIn).
func (g *Group) CatchIn(kind string, types []string, userOnly bool) (Breakpoint, error) {
	return g.setBP(&groupBP{Enabled: true, Catch: &Catchpoint{Kind: kind, Types: types, UserOnly: userOnly}})
}

// Dprintf sets a dprintf (see Session.DprintfCond) in every inferior, as
// Break sets a breakpoint; its events come through Probes.
func (g *Group) Dprintf(spec, cond, format string, exprs, modes []string) (Breakpoint, error) {
	return g.setBP(&groupBP{Spec: spec, Cond: cond, Enabled: true, Printf: &Printf{Format: format, Args: exprs}, Modes: modes})
}

// DprintfWith is Dprintf with an ignore count too (o.Temporary does not
// apply: a dprintf never stops).
func (g *Group) DprintfWith(spec, format string, exprs, modes []string, o BreakOptions) (Breakpoint, error) {
	return g.setBP(&groupBP{Spec: spec, Cond: o.Cond, Ignore: o.Ignore, Every: o.Every, Enabled: true, Printf: &Printf{Format: format, Args: exprs}, Modes: modes})
}

func (g *Group) setBP(b *groupBP) (Breakpoint, error) {
	spec := b.Spec
	g.bpMu.Lock()
	defer g.bpMu.Unlock()
	sel := g.Selected()
	if sel == nil {
		return Breakpoint{}, agent.ErrClosed
	}
	if n, err := strconv.Atoi(spec); err == nil && b.Catch == nil {
		f, err := sel.S.frameFile()
		if err != nil {
			return Breakpoint{}, err
		}
		spec = fmt.Sprintf("%s:%d", f, n)
	}
	infs := g.Inferiors()
	sort.SliceStable(infs, func(i, j int) bool { return infs[i] == sel && infs[j] != sel })
	g.mu.Lock()
	b.ID, b.Spec = g.nextBP, spec
	g.mu.Unlock()
	var out Breakpoint
	var firstErr error
	set := false
	var failed []string
	for _, inf := range infs {
		bp, err := b.set(inf)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			failed = append(failed, fmt.Sprintf("%s %v", inf.Label(), err))
			continue
		}
		g.mu.Lock()
		inf.bps[b.ID] = bp.ID
		g.mu.Unlock()
		if !set || out.Pending && !bp.Pending {
			out = bp
		}
		set = true
	}
	if !set {
		if firstErr == nil {
			firstErr = agent.ErrClosed
		}
		return Breakpoint{}, firstErr
	}
	g.mu.Lock()
	g.bps = append(g.bps, b)
	g.nextBP++
	g.mu.Unlock()
	for _, f := range failed {
		g.note(fmt.Sprintf("breakpoint %d not set in %s", b.ID, f))
	}
	out.ID, out.Enabled = b.ID, true
	if b.Catch != nil {
		c := *b.Catch
		c.ID = b.ID
		out.Catch = &c
	}
	return out, nil
}

// each runs f on every inferior that has group breakpoint id (every
// inferior, with id 0), and returns the first error.
func (g *Group) each(id int, f func(inf *Inferior, aid int) error) error {
	var first error
	for _, inf := range g.Inferiors() {
		g.mu.Lock()
		aid, ok := inf.bps[id]
		g.mu.Unlock()
		if id != 0 && !ok {
			continue
		}
		if err := f(inf, aid); err != nil && first == nil && !errors.Is(err, agent.ErrClosed) {
			first = err
		}
	}
	return first
}

func (g *Group) find(id int) *groupBP {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.bps {
		if b.ID == id {
			return b
		}
	}
	return nil
}

// BPCommand runs delete/enable/disable on group breakpoint id (0: all, for
// delete) in every inferior.
func (g *Group) BPCommand(cmd string, id int) error {
	g.bpMu.Lock()
	defer g.bpMu.Unlock()
	if id != 0 && g.find(id) == nil {
		return fmt.Errorf("No breakpoint number %d.", id)
	}
	if cmd == "delete" {
		if id == 0 {
			g.mu.Lock()
			g.bps = nil
			g.mu.Unlock()
			err := g.each(0, func(inf *Inferior, _ int) error {
				err := inf.S.BPCommand("delete", 0)
				if cerr := inf.S.DeleteCatch(0); err == nil {
					err = cerr
				}
				return err
			})
			g.mu.Lock()
			for _, inf := range g.infs {
				inf.bps = map[int]int{}
			}
			g.mu.Unlock()
			return err
		}
		var del groupBP
		g.mu.Lock()
		for i, b := range g.bps {
			if b.ID == id {
				del = *b
				g.bps = append(g.bps[:i], g.bps[i+1:]...)
				break
			}
		}
		g.mu.Unlock()
		return g.deleteBP(del, nil)
	}
	b := g.find(id)
	g.mu.Lock()
	b.Enabled = cmd == "enable"
	g.mu.Unlock()
	return g.each(id, func(inf *Inferior, aid int) error { return b.command(inf, cmd, aid) })
}

// deleteBP deletes group breakpoint b from every inferior but except.
func (g *Group) deleteBP(b groupBP, except *Inferior) error {
	return g.each(b.ID, func(inf *Inferior, aid int) error {
		g.mu.Lock()
		delete(inf.bps, b.ID)
		g.mu.Unlock()
		if inf == except {
			return nil
		}
		return b.command(inf, "delete", aid)
	})
}

// Condition sets or removes group breakpoint id's condition everywhere.
func (g *Group) Condition(id int, cond string) error {
	g.bpMu.Lock()
	defer g.bpMu.Unlock()
	b := g.find(id)
	if b == nil {
		return fmt.Errorf("No breakpoint number %d.", id)
	}
	if b.Catch != nil {
		return fmt.Errorf("Catchpoint %d takes no condition: name the exception classes (catch raise TYPE…).", id)
	}
	g.mu.Lock()
	b.Cond = cond
	g.mu.Unlock()
	return g.each(id, func(inf *Inferior, aid int) error { return inf.S.Condition(aid, cond) })
}

// Ignore lets group breakpoint id's next count crossings go, in each
// process (each counts its own).
func (g *Group) Ignore(id, count int) error {
	b := g.find(id)
	if b == nil {
		return fmt.Errorf("No breakpoint number %d.", id)
	}
	if b.Catch != nil {
		return fmt.Errorf("Catchpoint %d cannot ignore crossings.", id)
	}
	return g.each(id, func(inf *Inferior, aid int) error { return inf.S.Ignore(aid, count) })
}

// Breakpoints lists the group's breakpoints: where the first process that
// resolved one has it, and the hits of all.
func (g *Group) Breakpoints() ([]Breakpoint, error) {
	bps := g.breakpoints()
	byInf := map[*Inferior]map[int]Breakpoint{}
	var firstErr error
	infs := g.Inferiors()
	for _, inf := range infs {
		list, err := inf.S.Breakpoints()
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		m := map[int]Breakpoint{}
		for _, b := range list {
			m[b.ID] = b
		}
		byInf[inf] = m
	}
	if len(byInf) == 0 && firstErr != nil {
		return nil, firstErr
	}
	var out []Breakpoint
	for _, b := range bps {
		if b.Catch != nil {
			c := *b.Catch
			c.ID, c.Disabled = b.ID, !b.Enabled
			out = append(out, Breakpoint{ID: b.ID, Enabled: b.Enabled, Hits: b.Hits, Catch: &c})
			continue
		}
		var agg Breakpoint
		have := false
		hits := 0
		for _, inf := range infs {
			g.mu.Lock()
			aid, ok := inf.bps[b.ID]
			g.mu.Unlock()
			ab, ok2 := byInf[inf][aid]
			if !ok || !ok2 {
				continue
			}
			hits += ab.Hits
			if !have || agg.Pending && !ab.Pending {
				agg = ab
				have = true
			}
		}
		if !have {
			agg = Breakpoint{File: b.Spec, Pending: true, Cond: b.Cond, Temporary: b.Temp, Enabled: b.Enabled, Dprintf: b.Printf}
		}
		agg.ID, agg.Hits = b.ID, hits
		out = append(out, agg)
	}
	return out, nil
}

// Detach leaves every process (and stops following masters); it returns
// the inferiors it detached from, in order, and the first error.
func (g *Group) Detach() ([]*Inferior, error) {
	g.stopFollowing()
	g.mu.Lock()
	infs := append([]*Inferior(nil), g.infs...)
	g.mu.Unlock()
	var first error
	var wg sync.WaitGroup
	errs := make([]error, len(infs))
	for i, inf := range infs {
		wg.Add(1)
		go func(i int, inf *Inferior) {
			defer wg.Done()
			errs[i] = inf.S.Detach()
		}(i, inf)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && first == nil && !errors.Is(err, agent.ErrClosed) {
			first = err
		}
	}
	return infs, first
}

// Close drops every connection (see Session.Close).
func (g *Group) Close() {
	g.stopFollowing()
	for _, inf := range g.Inferiors() {
		inf.S.Close()
	}
	g.mu.Lock()
	if g.last != nil {
		g.last.Close()
	}
	g.mu.Unlock()
}

func (g *Group) stopFollowing() { g.quitOnce.Do(func() { close(g.quit) }) }
