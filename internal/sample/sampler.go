// Package sample is krait's sampling profiler: it takes the Python stacks
// of one or many processes at a steady rate, from outside (pausing each
// process for its read, or not at all with NonBlocking), charges each
// stack to the web request's view the thread is serving, and aggregates
// them by distinct stack.
package sample

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"krait/internal/cpython"
	"krait/internal/procinfo"
	"krait/internal/target"
	"krait/internal/target/live"
)

// Options say how to sample.
type Options struct {
	Rate         float64 // samples per second
	Idle         bool    // keep threads that are not running
	GIL          bool    // only the thread holding the GIL
	NonBlocking  bool    // never pause the targets
	Subprocesses bool    // follow the targets' children, and theirs
}

// ProcInfo is one process recorded, in the summary.
type ProcInfo struct {
	PID           int    `json:"pid"`
	Command       string `json:"command"`
	PythonVersion string `json:"python_version,omitempty"`
	Samples       int64  `json:"samples"`
	Errors        int64  `json:"errors"`
	Exited        bool   `json:"exited"`
	Error         string `json:"error,omitempty"`
}

// Request is a request seen in flight in the last round.
type Request struct {
	PID    int
	TID    int
	View   string
	Method string
	Route  string
	Age    time.Duration // since krait first saw it
}

// Sampler samples a set of processes. Without NonBlocking it keeps each
// process's threads seized from its first sample to the end of Run
// (live.Holder); a caller that started a target itself must not wait for
// it meanwhile, as its wait would take the threads' ptrace stops.
type Sampler struct {
	opt Options
	// Warn prints one line about a process that cannot be read.
	Warn func(string)

	mu      sync.Mutex
	profile *Profile
	procs   map[int]*proc
	order   []int
	roots   map[int]bool
	pending map[int]time.Time // children not yet readable, since
	ignored map[int]bool
	current []Request

	rounds  atomic.Int64
	late    atomic.Int64 // rounds skipped because a round took too long
	errors  atomic.Int64
	Started time.Time
	Ended   time.Time
	frames  []int
}

type proc struct {
	pid     int
	lp      *live.Process
	hold    *live.Holder // threads kept seized across samples (pausing mode)
	py      *cpython.Python
	sr      *cpython.StackReader
	names   map[uint64]string
	namesAt time.Time
	stat    map[int]*taskFiles
	reqs    map[uint64]*reqState
	modWSGI bool // its requests carry mod_wsgi.request_start
	sampled bool // a sample of it was taken (see fixStarts)
	info    ProcInfo
	gone    bool
}

// New returns a sampler of the given processes.
func New(opt Options, pids []int) *Sampler {
	if opt.Rate <= 0 {
		opt.Rate = 100
	}
	s := &Sampler{opt: opt, profile: NewProfile(), procs: map[int]*proc{}, roots: map[int]bool{},
		pending: map[int]time.Time{}, ignored: map[int]bool{}, Warn: func(string) {}}
	for _, pid := range pids {
		s.roots[pid] = true
	}
	return s
}

// Open opens the given processes; an error for one of them is returned
// (the caller decides whether the others go on).
func (s *Sampler) Open(pid int) error {
	p, err := openProc(pid)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.procs[pid] = p
	s.order = append(s.order, pid)
	s.mu.Unlock()
	return nil
}

func openProc(pid int) (*proc, error) {
	lp, err := live.Open(pid)
	if err != nil {
		return nil, err
	}
	py, err := cpython.Open(lp)
	if err != nil {
		lp.Close()
		return nil, err
	}
	p := &proc{pid: pid, lp: lp, py: py, sr: py.NewStackReader(), stat: map[int]*taskFiles{}, reqs: map[uint64]*reqState{}}
	p.info = ProcInfo{PID: pid, Command: strings.Join(lp.Cmdline(), " "), PythonVersion: py.Version.String()}
	if in, err := procinfo.Read(pid); err == nil {
		p.modWSGI = strings.Contains(in.Server, "mod_wsgi")
	}
	// Open every thread's stat now, so that the first sample already
	// knows which threads are idle.
	if ts, err := lp.Threads(); err == nil {
		for _, t := range ts {
			p.openStat(t.TID)
		}
	}
	return p, nil
}

// Add schedules pid to be opened (a child found, or a command started):
// until its Python is up, tries go on for a while.
func (s *Sampler) Add(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.procs[pid]; ok || s.ignored[pid] {
		return
	}
	if _, ok := s.pending[pid]; !ok {
		s.pending[pid] = time.Now()
	}
}

// Profile returns the profile being recorded.
func (s *Sampler) Profile() *Profile {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.profile
}

// Swap returns the profile recorded so far and starts a new one.
func (s *Sampler) Swap() *Profile {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.profile
	s.profile = NewProfile()
	return p
}

// Current returns the requests in flight in the last round.
func (s *Sampler) Current() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.current...)
}

// Procs describes every process recorded.
func (s *Sampler) Procs() []ProcInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ProcInfo
	for _, pid := range s.order {
		out = append(out, s.procs[pid].info)
	}
	return out
}

// Live says how many processes are still being sampled or awaited.
func (s *Sampler) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.pending)
	for _, p := range s.procs {
		if !p.gone {
			n++
		}
	}
	return n
}

// Run samples until ctx is done or no process is left.
func (s *Sampler) Run(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / s.opt.Rate)
	s.Started = time.Now()
	next := s.Started
	lastScan := time.Time{}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if now := time.Now(); now.Sub(lastScan) > 250*time.Millisecond {
			lastScan = now
			s.scan()
		}
		if ctx.Err() != nil || s.Live() == 0 {
			break
		}
		s.round()
		next = next.Add(interval)
		now := time.Now()
		if behind := now.Sub(next); behind > 0 {
			missed := int64(behind / interval)
			s.late.Add(missed)
			next = next.Add(time.Duration(missed) * interval)
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
	s.Ended = time.Now()
	s.mu.Lock()
	for _, p := range s.procs {
		p.close()
	}
	s.mu.Unlock()
}

// Rounds is how many sampling rounds were taken.
func (s *Sampler) Rounds() int64 { return s.rounds.Load() }

// Late is how many rounds were skipped because sampling fell behind.
func (s *Sampler) Late() int64 { return s.late.Load() }

// Errors is how many process reads failed.
func (s *Sampler) Errors() int64 { return s.errors.Load() }

// Rate is the rate achieved: rounds per second of recording.
func (s *Sampler) Rate() float64 {
	end := s.Ended
	if end.IsZero() {
		end = time.Now()
	}
	d := end.Sub(s.Started).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(s.rounds.Load()) / d
}

func (p *proc) close() {
	p.release()
	for tid, f := range p.stat {
		f.close()
		delete(p.stat, tid)
	}
	p.lp.Close()
}

// release lets the process's threads go (detaches them).
func (p *proc) release() {
	if p.hold != nil {
		p.hold.Close()
		p.hold = nil
	}
}

// scan opens pending processes and, with Subprocesses, finds new children.
func (s *Sampler) scan() {
	if s.opt.Subprocesses {
		for _, pid := range procinfo.Descendants(s.rootsAndProcs()) {
			s.Add(pid)
		}
	}
	s.mu.Lock()
	pend := make(map[int]time.Time, len(s.pending))
	for k, v := range s.pending {
		pend[k] = v
	}
	s.mu.Unlock()
	for pid, since := range pend {
		p, err := openProc(pid)
		if err == nil {
			s.mu.Lock()
			delete(s.pending, pid)
			s.procs[pid] = p
			s.order = append(s.order, pid)
			s.mu.Unlock()
			continue
		}
		gone := errors.Is(err, target.ErrNoProcess) || errors.Is(err, target.ErrZombie) || errors.Is(err, target.ErrExited)
		notPy := errors.Is(err, cpython.ErrNotPython)
		if gone || notPy && time.Since(since) > 2*time.Second || time.Since(since) > 10*time.Second || errors.Is(err, target.ErrPermission) {
			s.mu.Lock()
			delete(s.pending, pid)
			s.ignored[pid] = true
			s.mu.Unlock()
			if errors.Is(err, target.ErrPermission) || !gone && !notPy {
				s.Warn(err.Error())
			}
		}
	}
}

func (s *Sampler) rootsAndProcs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for pid := range s.roots {
		out = append(out, pid)
	}
	for pid, p := range s.procs {
		if !p.gone && !s.roots[pid] {
			out = append(out, pid)
		}
	}
	return out
}

// round samples every process once, all of them at the same time.
func (s *Sampler) round() {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.order))
	for _, pid := range s.order {
		if p := s.procs[pid]; !p.gone {
			procs = append(procs, p)
		}
	}
	s.mu.Unlock()
	now := time.Now()
	// Every process at once: stopping one waits for each of its threads
	// to be scheduled, and on a busy host those waits overlap.
	type res struct {
		reqs []Request
		err  error
	}
	results := make([]res, len(procs))
	if len(procs) == 1 {
		results[0].reqs, results[0].err = s.sampleProc(procs[0], now)
	} else {
		var wg sync.WaitGroup
		for i, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i].reqs, results[i].err = s.sampleProc(p, now)
			}()
		}
		wg.Wait()
	}
	var cur []Request
	for i, p := range procs {
		reqs, err := results[i].reqs, results[i].err
		if err != nil {
			p.info.Errors++
			s.errors.Add(1)
			if gone(p, err) {
				p.gone, p.info.Exited = true, true
				p.release()
			} else if p.info.Error == "" {
				p.info.Error = err.Error()
			}
			continue
		}
		p.info.Samples++
		cur = append(cur, reqs...)
	}
	s.mu.Lock()
	s.current = cur
	s.profile.Samples++
	s.mu.Unlock()
	s.rounds.Add(1)
}

func gone(p *proc, err error) bool {
	if errors.Is(err, target.ErrExited) || errors.Is(err, target.ErrNoProcess) || errors.Is(err, target.ErrZombie) {
		return true
	}
	return !p.lp.Alive()
}

// taskFiles are a thread's /proc files, kept open across samples.
type taskFiles struct {
	stat, sched *os.File
	lastRun     uint64 // ns on CPU at the last sample (schedstat)
	haveRun     bool
}

func (tf *taskFiles) close() {
	tf.stat.Close()
	if tf.sched != nil {
		tf.sched.Close()
	}
}

// threadStates says which of the threads seen before are running, one
// pread each (the files stay open across samples). A thread the kernel
// shows runnable counts as running only if it got CPU time since the last
// sample: a thread krait's own pause woke from a blocking call is runnable
// until it blocks again, longer on a busy machine, without running Python.
func (p *proc) threadStates(interval time.Duration) map[int]bool {
	out := make(map[int]bool, len(p.stat))
	var buf [512]byte
	for tid, tf := range p.stat {
		n, err := tf.stat.ReadAt(buf[:], 0)
		if n == 0 && err != nil {
			tf.close()
			delete(p.stat, tid)
			continue
		}
		b := buf[:n]
		i := lastIndex(b, ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		running := b[i+2] == 'R'
		if running && tf.sched != nil {
			if n, _ := tf.sched.ReadAt(buf[:], 0); n > 0 {
				f := strings.Fields(string(buf[:n]))
				if len(f) > 0 {
					if ns, err := strconv.ParseUint(f[0], 10, 64); err == nil {
						if tf.haveRun && ns-tf.lastRun < uint64(interval/100) {
							running = false
						}
						tf.lastRun, tf.haveRun = ns, true
					}
				}
			}
		}
		out[tid] = running
	}
	return out
}

func (p *proc) openStat(tid int) {
	if _, ok := p.stat[tid]; ok {
		return
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/stat", p.pid, tid))
	if err != nil {
		return
	}
	tf := &taskFiles{stat: f}
	tf.sched, _ = os.Open(fmt.Sprintf("/proc/%d/task/%d/schedstat", p.pid, tid))
	p.stat[tid] = tf
}

func lastIndex(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func (s *Sampler) sampleProc(p *proc, now time.Time) ([]Request, error) {
	var states map[int]bool
	if !s.opt.Idle {
		states = p.threadStates(time.Duration(float64(time.Second) / s.opt.Rate))
	}
	var osThreads []target.Thread
	if p.sr.NeedsOSThreads() {
		osThreads, _ = p.lp.Threads()
	}
	var threads []*cpython.StackThread
	var err error
	var attrs []attribution
	if s.opt.NonBlocking {
		threads, err = p.sr.Sample(osThreads)
		if err == nil {
			attrs = p.attributeAll(threads, now)
		}
	} else {
		// The threads stay seized from the first sample to the end:
		// a sample is an interrupt, a wait and a resume per thread.
		if p.hold == nil {
			p.hold = live.Hold(p.pid)
		}
		if perr := p.hold.Stop(200 * time.Millisecond); perr != nil {
			p.hold.Cont()
			return nil, perr
		}
		threads, err = p.sr.Sample(osThreads)
		if err == nil {
			attrs = p.attributeAll(threads, now)
		}
		p.hold.Cont()
	}
	if err != nil {
		return nil, err
	}
	if !p.sampled {
		p.sampled = true
		p.fixStarts(threads, attrs, now)
	}
	if time.Since(p.namesAt) > time.Second || p.names == nil {
		unknown := p.names == nil
		for _, t := range threads {
			if _, ok := p.names[t.ThreadID]; !ok {
				unknown = true
			}
		}
		if unknown {
			p.names = p.py.ThreadNames()
			p.namesAt = time.Now()
		}
	}
	var reqs []Request
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range threads {
		if t.NativeID != 0 {
			p.openStat(t.NativeID)
		}
		if s.opt.GIL && !t.GIL {
			continue
		}
		idle := false
		if t.NativeID != 0 && !s.opt.Idle {
			running, ok := states[t.NativeID]
			// A thread new since the last sample: its state is known
			// from the next one on.
			idle = !ok || !running
		}
		if idle && !s.opt.Idle {
			continue
		}
		if len(t.Frames) == 0 {
			continue
		}
		a := attrs[i]
		if a.view != NoRequest {
			reqs = append(reqs, Request{PID: p.pid, TID: t.NativeID, View: a.view, Method: a.method, Route: a.route, Age: now.Sub(a.first)})
		}
		fr := s.frames[:0]
		for k := len(t.Frames) - 1; k >= 0; k-- {
			f := t.Frames[k]
			fr = append(fr, s.profile.Func(Func{Name: f.Info.Qualname, File: f.Info.File, Line: f.Line}))
		}
		s.frames = fr
		s.profile.Add(Labels{PID: p.pid, TID: t.NativeID, ThreadID: t.ThreadID, ThreadName: p.names[t.ThreadID],
			View: a.view, Method: a.method, Route: a.route}, fr, idle)
	}
	return reqs, nil
}
