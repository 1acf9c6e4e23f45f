// Package dap is krait's Debug Adapter Protocol server (krait dap): the
// protocol on a reader and a writer (stdin and stdout for an editor), with
// go-dap's types and framing, over internal/session as the REPL is over
// it. It keeps only the protocol's bookkeeping (thread, frame and
// variable numbers, the breakpoints each request set); every debugger
// action is the session's.
package dap

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-dap"

	"krait/internal/session"
)

// AttachFunc attaches a session to a process (session.Attach, by
// default; a test may wrap it).
type AttachFunc func(pid int, interp int64, method string, timeout time.Duration) (*session.Session, error)

// Server serves one debug session on a connection.
type Server struct {
	in  *bufio.Reader
	out io.Writer
	// Attach attaches; AttachTimeout bounds the agent's start.
	Attach        AttachFunc
	AttachTimeout time.Duration
	// ThreadPoll is how often thread started/exited events are looked
	// for (0: never).
	ThreadPoll time.Duration

	wmu sync.Mutex // writes
	seq int

	mu        sync.Mutex // the group, the inferiors and the tables below
	g         *session.Group
	inferiors []*inferior               // by the adapter's index, in the order they joined; nil once gone
	byInf     map[*session.Inferior]int // index of a group's inferior
	threadIDs map[threadKey]int         // DAP thread ids, stable for the session
	threads   map[int]threadKey
	frames    map[int]frameRef // frame ids of stopped threads
	refs      map[int]varRef   // variablesReference of stopped threads
	nextID    int
	srcBPs    map[string][]int // breakpoints set by setBreakpoints, by remote file
	funcBPs   []int            // by setFunctionBreakpoints
	catches   []int            // by setExceptionBreakpoints
	logpoints map[int]*logpoint
	maps      []pathMapping
	justMine  bool
	done      chan struct{} // closed when Serve returns
	ended     bool          // terminated was sent
}

// inferior is one attached process, one of the group's. The group may
// hold several (a server's workers, several PIDs): a DAP thread is a
// thread of one of them.
type inferior struct {
	gi    *session.Inferior
	s     *session.Session
	pid   int
	stops map[int64]*session.Stop // reported stops of threads still stopped
	known map[int64]bool          // threads announced (thread events)
}

type threadKey struct {
	inf   int
	ident int64
}

type frameRef struct {
	threadKey
	index int
}

type varRef struct {
	frameRef
	path []any
}

type pathMapping struct{ local, remote string }

// NewServer makes a server reading requests from in and writing responses
// and events to out.
func NewServer(in io.Reader, out io.Writer) *Server {
	return &Server{in: bufio.NewReader(in), out: out, Attach: session.Attach, AttachTimeout: 10 * time.Second,
		ThreadPoll: 2 * time.Second, threadIDs: map[threadKey]int{}, threads: map[int]threadKey{},
		frames: map[int]frameRef{}, refs: map[int]varRef{}, srcBPs: map[string][]int{}, logpoints: map[int]*logpoint{}, justMine: true,
		byInf: map[*session.Inferior]int{},
		done:  make(chan struct{})}
}

// Serve handles requests until disconnect or the end of the input. Every
// way out (disconnect, the input closed, an error) detaches from every
// process: the target is never killed, and runs on as before the attach.
func (sv *Server) Serve() error {
	defer close(sv.done)
	defer sv.detachAll()
	for {
		content, err := dap.ReadBaseMessage(sv.in)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		msg, err := dap.DecodeProtocolMessage(content)
		if err != nil {
			var m struct {
				Seq     int    `json:"seq"`
				Type    string `json:"type"`
				Command string `json:"command"`
			}
			if json.Unmarshal(content, &m) == nil && m.Type == "request" {
				sv.fail(&dap.Request{ProtocolMessage: dap.ProtocolMessage{Seq: m.Seq}, Command: m.Command}, fmt.Errorf("krait dap does not support %q", m.Command))
				continue
			}
			return fmt.Errorf("bad message: %v", err)
		}
		if quit := sv.handle(msg); quit {
			return nil
		}
	}
}

func (sv *Server) send(m dap.Message) {
	sv.wmu.Lock()
	defer sv.wmu.Unlock()
	sv.seq++
	switch v := m.(type) {
	case dap.ResponseMessage:
		v.GetResponse().Seq = sv.seq
		v.GetResponse().Type = "response"
	case dap.EventMessage:
		v.GetEvent().Seq = sv.seq
		v.GetEvent().Type = "event"
	}
	_ = dap.WriteProtocolMessage(sv.out, m)
}

// fail sends req's error response, with err's message.
func (sv *Server) fail(req *dap.Request, err error) {
	msg := strings.TrimSpace(err.Error())
	sv.send(&dap.ErrorResponse{Response: dap.Response{RequestSeq: req.Seq, Command: req.Command, Message: msg},
		Body: dap.ErrorResponseBody{Error: &dap.ErrorMessage{Id: 1, Format: strings.ReplaceAll(msg, "{", "{{"), ShowUser: true}}})
}

func (sv *Server) event(name string, ev dap.EventMessage) {
	ev.GetEvent().Event = name
	sv.send(ev)
}

// output sends an output event (category console, stderr, …).
func (sv *Server) output(category, text string) {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	sv.event("output", &dap.OutputEvent{Body: dap.OutputEventBody{Category: category, Output: text}})
}

// outputAt sends an output event that comes from a place in the source
// (a logpoint's message).
func (sv *Server) outputAt(text, path string, line int) {
	sv.event("output", &dap.OutputEvent{Body: dap.OutputEventBody{Category: "console", Output: text + "\n",
		Source: &dap.Source{Name: filepath.Base(path), Path: path}, Line: line}})
}

func (sv *Server) detachAll() {
	sv.mu.Lock()
	g := sv.g
	sv.g, sv.inferiors, sv.byInf = nil, nil, map[*session.Inferior]int{}
	sv.ended = true // detached: no terminated event follows
	sv.mu.Unlock()
	if g != nil {
		_, _ = g.Detach()
		g.Close()
	}
}

// adopt is the adapter's index of a group's inferior, given one if it
// has none yet (a worker followed since) (mu held).
func (sv *Server) adopt(gi *session.Inferior) (int, *inferior) {
	if n, ok := sv.byInf[gi]; ok {
		return n, sv.inferiors[n]
	}
	inf := &inferior{gi: gi, s: gi.S, pid: gi.PID, stops: map[int64]*session.Stop{}, known: map[int64]bool{}}
	sv.inferiors = append(sv.inferiors, inf)
	n := len(sv.inferiors) - 1
	sv.byInf[gi] = n
	return n, inf
}

// sync adopts the group's inferiors that joined and forgets those that
// left, with a thread exited event for each thread they had (mu held).
func (sv *Server) sync() {
	if sv.g == nil {
		return
	}
	live := map[*session.Inferior]bool{}
	for _, gi := range sv.g.Inferiors() {
		live[gi] = true
		sv.adopt(gi)
	}
	for n, inf := range sv.inferiors {
		if inf == nil || live[inf.gi] {
			continue
		}
		for ident := range inf.known {
			sv.event("thread", &dap.ThreadEvent{Body: dap.ThreadEventBody{Reason: "exited", ThreadId: sv.threadID(threadKey{n, ident})}})
		}
		for ident := range inf.stops {
			sv.resumed(inf, threadKey{n, ident})
		}
		delete(sv.byInf, inf.gi)
		sv.inferiors[n] = nil
	}
}

// inf is the inferior of a thread key (mu held).
func (sv *Server) inf(k threadKey) (*inferior, error) {
	if k.inf < 0 || k.inf >= len(sv.inferiors) || sv.inferiors[k.inf] == nil {
		return nil, errors.New("krait is not attached")
	}
	return sv.inferiors[k.inf], nil
}

// threadID is a thread's DAP id (mu held).
func (sv *Server) threadID(k threadKey) int {
	if id, ok := sv.threadIDs[k]; ok {
		return id
	}
	sv.nextID++
	sv.threadIDs[k], sv.threads[sv.nextID] = sv.nextID, k
	return sv.nextID
}

func (sv *Server) newID() int {
	sv.nextID++
	return sv.nextID
}

// stoppedThread finds the stopped thread a request names (mu held).
func (sv *Server) stoppedThread(id int) (*inferior, threadKey, error) {
	k, ok := sv.threads[id]
	if !ok {
		return nil, k, fmt.Errorf("no thread %d", id)
	}
	inf, err := sv.inf(k)
	if err != nil {
		return nil, k, err
	}
	if inf.stops[k.ident] == nil {
		return nil, k, fmt.Errorf("thread %d is not stopped", id)
	}
	return inf, k, nil
}

// resumed forgets what a stopped thread's frames and variables were
// numbered (mu held).
func (sv *Server) resumed(inf *inferior, k threadKey) {
	delete(inf.stops, k.ident)
	for id, f := range sv.frames {
		if f.threadKey == k {
			delete(sv.frames, id)
		}
	}
	for id, r := range sv.refs {
		if r.threadKey == k {
			delete(sv.refs, id)
		}
	}
}

// selectFrame makes a stopped thread's frame the session's selected one, for
// the session's calls that act on it (mu held).
func selectFrame(inf *inferior, ident int64, frame int) {
	inf.s.Thread, inf.s.Frame = ident, frame
}

// watch turns what the group reports into events: stops, notices,
// threads started and exited, processes joining and leaving, and the end
// of the session.
func (sv *Server) watch(g *session.Group) {
	var tick <-chan time.Time
	if sv.ThreadPoll > 0 {
		t := time.NewTicker(sv.ThreadPoll)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-sv.done:
			return
		case <-g.Updates():
			sv.mu.Lock()
			sv.pump(g)
			sv.mu.Unlock()
		case <-tick:
			sv.mu.Lock()
			if sv.g == g {
				sv.sync()
				sv.pollThreads()
			}
			sv.mu.Unlock()
		case <-g.Done():
			sv.mu.Lock()
			sv.pump(g)
			msg, _ := g.End()
			ended := sv.ended
			sv.ended = true
			sv.mu.Unlock()
			if msg != "" {
				sv.output("console", msg)
			}
			if !ended {
				sv.event("terminated", &dap.TerminatedEvent{})
			}
			return
		}
	}
}

// pump reports the group's queued stops and notices (mu held).
func (sv *Server) pump(g *session.Group) {
	for _, note := range g.TakeNotes() {
		if m := resolved.FindStringSubmatch(note); m != nil {
			// a pending breakpoint armed as its module loaded
			id, _ := strconv.Atoi(m[1])
			line, _ := strconv.Atoi(m[3])
			p := sv.local(m[2])
			sv.event("breakpoint", &dap.BreakpointEvent{Body: dap.BreakpointEventBody{Reason: "changed",
				Breakpoint: dap.Breakpoint{Id: id, Verified: true, Line: line, Source: &dap.Source{Name: filepath.Base(p), Path: p}}}})
		}
		sv.output("console", note)
	}
	if sv.g != g {
		return // detached
	}
	for {
		gi, st := g.NextStop()
		if st == nil {
			return
		}
		n, inf := sv.adopt(gi)
		k := threadKey{n, st.Thread}
		inf.stops[st.Thread] = st
		if !inf.known[st.Thread] {
			inf.known[st.Thread] = true
			sv.event("thread", &dap.ThreadEvent{Body: dap.ThreadEventBody{Reason: "started", ThreadId: sv.threadID(k)}})
		}
		body := dap.StoppedEventBody{ThreadId: sv.threadID(k), PreserveFocusHint: false}
		switch st.Reason {
		case "breakpoint":
			body.Reason = "breakpoint"
			if st.BP > 0 {
				body.HitBreakpointIds = []int{st.BP}
			}
		case "exception":
			body.Reason = "exception"
			if st.Exception != nil {
				body.Description = "Exception"
				body.Text = st.Exception.Value
			}
		case "interrupt":
			body.Reason = "pause"
		default:
			body.Reason = "step"
		}
		if st.CondError != "" {
			sv.output("stderr", fmt.Sprintf("Error in condition of breakpoint %d: %s", st.BP, st.CondError))
		}
		sv.event("stopped", &dap.StoppedEvent{Body: body})
	}
}

// pollThreads sends thread events for threads started and exited since
// the last look, in every process (mu held).
func (sv *Server) pollThreads() {
	for n, inf := range sv.inferiors {
		if inf == nil {
			continue
		}
		ts, err := inf.s.Threads()
		if err != nil {
			continue
		}
		sv.threadEvents(n, inf, ts)
	}
}

func (sv *Server) threadEvents(n int, inf *inferior, ts []session.Thread) {
	now := map[int64]bool{}
	for _, t := range ts {
		now[t.Ident] = true
		if !inf.known[t.Ident] {
			inf.known[t.Ident] = true
			sv.event("thread", &dap.ThreadEvent{Body: dap.ThreadEventBody{Reason: "started", ThreadId: sv.threadID(threadKey{n, t.Ident})}})
		}
	}
	for ident := range inf.known {
		if !now[ident] && inf.stops[ident] == nil {
			delete(inf.known, ident)
			sv.event("thread", &dap.ThreadEvent{Body: dap.ThreadEventBody{Reason: "exited", ThreadId: sv.threadID(threadKey{n, ident})}})
		}
	}
}

// resolved is the session's notice of a pending breakpoint armed.
var resolved = regexp.MustCompile(`^Breakpoint (\d+) resolved at (.+):(\d+)$`)

// errNotAttached answers requests that come before attach.
var errNotAttached = errors.New("krait is not attached to a process yet (attach first)")

// Close detaches from every process (as disconnect does), for a server
// told to end from outside (a signal) while Serve still reads.
func (sv *Server) Close() { sv.detachAll() }
