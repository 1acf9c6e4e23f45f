// Package dump takes one snapshot of every Python thread in a process —
// stacks, names, GIL, idle state and optionally locals — pausing the process
// for as short a time as it can (or not at all), and shapes the result for
// text and JSON output.
package dump

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"krait/internal/cpython"
	"krait/internal/render"
	"krait/internal/target"
	"krait/internal/target/core"
	"krait/internal/target/live"
	"krait/internal/views/django"
)

// Options for one dump.
type Options struct {
	Locals      bool
	NonBlocking bool
	Limits      cpython.Limits
	// Width bounds each rendered value in text output (0: unlimited).
	Width int
	// HoldPause keeps the process paused this long after reading; tests
	// use it to kill krait mid-pause.
	HoldPause time.Duration
	// ShowSecrets shows values under names that look secret (see package
	// secrets); by default they are <redacted>.
	ShowSecrets bool
	// Native adds each thread's native stack, merged with its Python one.
	Native bool
}

// Result is the JSON contract of krait dump.
type Result struct {
	PID           int       `json:"pid"`
	Command       []string  `json:"command"`
	PythonVersion string    `json:"python_version"`
	Binary        string    `json:"binary"`
	Layout        string    `json:"layout"`
	Paused        bool      `json:"paused"`
	PauseMillis   float64   `json:"pause_ms"`
	Interpreters  int       `json:"interpreters"`
	Core          string    `json:"core,omitempty"`
	Threads       []*Thread `json:"threads"`
	// Tasks are asyncio tasks whose loop no thread is running.
	Tasks []*Task `json:"tasks,omitempty"`
	// TasksError says why tasks could not be read.
	TasksError string `json:"tasks_error,omitempty"`
}

// Thread is one thread in the JSON contract.
type Thread struct {
	ThreadID    uint64   `json:"thread_id"`
	NativeID    *int     `json:"native_id"`
	Name        *string  `json:"name"`
	OSName      string   `json:"os_name,omitempty"`
	Interpreter int64    `json:"interpreter"`
	GIL         bool     `json:"gil"`
	Idle        bool     `json:"idle"`
	Frames      []*Frame `json:"frames"`
	Error       string   `json:"error,omitempty"`
	// NativeError says why the native stack (--native) stops where it
	// does, or could not be read.
	NativeError string `json:"native_error,omitempty"`
	// NativeOnly (--native): an OS thread that runs no Python thread state
	// (interpreter -1, thread_id its pthread_t); its frames are all native.
	NativeOnly bool `json:"native_only,omitempty"`
	// Loop is the address of the asyncio event loop the thread runs;
	// Tasks are that loop's tasks (both absent for other threads).
	Loop  *uint64 `json:"loop,omitempty"`
	Tasks []*Task `json:"tasks,omitempty"`
}

// Task is one asyncio task in the JSON contract. ID is the task object's
// address (Python's id()); Awaits and AwaitedBy hold task ids.
type Task struct {
	ID        uint64   `json:"id"`
	Name      *string  `json:"name"`
	State     string   `json:"state"`
	Running   bool     `json:"running"`
	Awaiting  string   `json:"awaiting,omitempty"`
	Awaits    []uint64 `json:"awaits"`
	AwaitedBy []uint64 `json:"awaited_by"`
	Stack     []*Frame `json:"stack"`
	Error     string   `json:"error,omitempty"`
}

// Frame is one frame in the JSON contract.
type Frame struct {
	Function string   `json:"function"`
	Qualname string   `json:"qualname"`
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Locals   []*Local `json:"locals,omitempty"`
	Error    string   `json:"error,omitempty"`
	// Native frames (--native): a C function, its library (the mapped
	// file's path) and the address executing (a return address in callers),
	// absolute and in the library's own addresses.
	Native        bool   `json:"native,omitempty"`
	Library       string `json:"library,omitempty"`
	Address       string `json:"address,omitempty"`
	LibraryOffset string `json:"library_offset,omitempty"`
	// A native frame's File and Line are its source line where the
	// library (or its debug file) has DWARF; Inlined marks a function
	// inlined into the native frame after it, at the same address.
	Inlined bool `json:"inlined,omitempty"`
	// compDir is the directory a native frame's file was compiled in
	// (text shows the file relative to it).
	compDir string
}

// Local is one variable in the JSON contract.
type Local struct {
	Name string `json:"name"`
	Arg  bool   `json:"arg"`
	render.JSONValue
}

// Process is a target that can be closed: a live process or a core.
type Process interface {
	target.Process
	Close() error
}

// Reading is one consistent read of a process's Python threads.
type Reading struct {
	Proc      Process
	Py        *cpython.Python
	Interps   []*cpython.Interpreter
	OSThreads []target.Thread
	Paused    bool
	Held      time.Duration
	// TracedBy: in a survey, the process another tracer holds (krait
	// record, gdb), read while it ran instead of paused; 0 otherwise.
	TracedBy int
	// Render says how Result renders values (secrets shown or not).
	Render render.Options
	// capture holds the threads' registers and stacks (ReadOptions.Native),
	// unwound on demand by NativeStack.
	capture *nativeCapture
}

// ReadOptions says how to read.
type ReadOptions struct {
	NonBlocking bool
	Snapshot    cpython.Options
	HoldPause   time.Duration
	// Native unwinds every thread's native stack too (the registers and
	// stacks are taken while the process is held, unwound after).
	Native bool
	// NativeOnly, if set, limits Native to the threads of the Python
	// thread states it accepts (krait requests: those serving a request).
	NativeOnly func(*cpython.Thread) bool
	// Survey: one of many processes read in a pass over the host; a
	// Python with no interpreter (not initialised, or finalising) is
	// reported at once, without waiting to see whether it exits.
	Survey bool
}

// Read opens pid, finds its Python and reads every thread: paused (every
// thread stopped for the read, released on every path, Ctrl-C included)
// or, with NonBlocking, while it runs. The caller closes r.Proc.
func Read(pid int, opt ReadOptions) (*Reading, error) {
	proc, err := live.Open(pid)
	if err != nil {
		return nil, err
	}
	r := &Reading{Proc: proc}
	if err := r.read(opt); err != nil {
		proc.Close()
		return nil, err
	}
	return r, nil
}

// ReadCore reads a core file's Python threads (nothing to pause).
func ReadCore(path, sysroot string, opt ReadOptions) (*Reading, error) {
	c, err := core.Open(path)
	if err != nil {
		return nil, err
	}
	c.Sysroot = sysroot
	r := &Reading{Proc: c}
	py, err := cpython.Open(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	py.AddDescriber(django.Describe)
	r.Py = py
	r.OSThreads, _ = c.Threads()
	sopt := opt.Snapshot
	sopt.OSThreads = r.OSThreads
	if r.Interps, err = py.Snapshot(sopt); err != nil {
		c.Close()
		return nil, err
	}
	if opt.Native {
		r.capture = captureCore(c, nativeThreads(r.OSThreads, r.Interps, opt.NativeOnly))
	}
	return r, nil
}

func (r *Reading) read(opt ReadOptions) error {
	proc := r.Proc.(*live.Process)
	pid := proc.PID()
	py, err := cpython.Open(proc)
	if err != nil {
		if opt.Survey && errors.Is(err, cpython.ErrNoInterpreter) {
			return err
		}
		return exitedOr(proc, err)
	}
	py.AddDescriber(django.Describe)
	r.Py = py
	// Thread states are read before pausing: a paused thread is no longer
	// running or sleeping.
	if r.OSThreads, err = proc.Threads(); err != nil {
		return exitedOr(proc, err)
	}
	sopt := opt.Snapshot
	sopt.OSThreads = r.OSThreads
	read := func() error {
		var err error
		r.Interps, err = py.Snapshot(sopt)
		return err
	}
	if opt.Native && opt.NonBlocking {
		return fmt.Errorf("--native needs the process paused: it cannot be used with --nonblocking")
	}
	var maps []target.Mapping
	if opt.Native && opt.NativeOnly == nil {
		// Every thread is unwound: the map is read before the pause.
		if maps, err = proc.Maps(); err != nil {
			return exitedOr(proc, err)
		}
	}
	var capture *nativeCapture
	var p *live.Pauser
	untrack := func() {}
	if !opt.NonBlocking {
		py.Prepare() // what need not be read while the process is held
		// No garbage collection while the process is held: the read is
		// short and its garbage small.
		defer gcOff()()
		var perr error
		var hold func(*live.Pauser)
		hold, untrack = track()
		defer untrack()
		if p, perr = live.Pause(pid, 2*time.Second); perr == nil {
			hold(p)
		} else {
			// One of many processes that another tracer holds (krait
			// record, gdb): read it running rather than leave it out.
			var pe *target.PermissionError
			if r.TracedBy = target.TracedBy(pid); !opt.Survey || r.TracedBy == 0 || !errors.As(perr, &pe) {
				return exitedOr(proc, perr)
			}
		}
	}
	if p == nil {
		// Memory may change underneath: retry a few times on errors.
		for i := 0; i < 5; i++ {
			if err = read(); err == nil {
				break
			}
			py.Reset()
		}
	} else {
		err = read()
		if err == nil && opt.Native {
			if ts := nativeThreads(r.OSThreads, r.Interps, opt.NativeOnly); len(ts) > 0 {
				if maps == nil {
					maps, _ = proc.Maps()
				}
				capture = captureLive(proc, p, maps, ts)
			}
		}
		if opt.HoldPause > 0 {
			time.Sleep(opt.HoldPause)
		}
		p.Release()
		untrack()
		r.Paused, r.Held = true, p.Held
	}
	if err != nil {
		return exitedOr(proc, err)
	}
	r.capture = capture
	return nil
}

// Take dumps process pid.
func Take(pid int, opt Options) (*Result, error) {
	rd, err := Read(pid, ReadOptions{NonBlocking: opt.NonBlocking, HoldPause: opt.HoldPause, Native: opt.Native,
		Snapshot: cpython.Options{Locals: opt.Locals, Limits: opt.Limits, Tasks: true}})
	if err != nil {
		return nil, err
	}
	rd.Render.ShowSecrets = opt.ShowSecrets
	return rd.Result(), nil
}

// TakeCore dumps a core file.
func TakeCore(path, sysroot string, opt Options) (*Result, error) {
	rd, err := ReadCore(path, sysroot, ReadOptions{Native: opt.Native, Snapshot: cpython.Options{Locals: opt.Locals, Limits: opt.Limits, Tasks: true}})
	if err != nil {
		return nil, err
	}
	rd.Render.ShowSecrets = opt.ShowSecrets
	res := rd.Result()
	res.Core = path
	return res, nil
}

// Result shapes a reading for output, and closes its process.
func (rd *Reading) Result() *Result {
	defer rd.Proc.Close()
	pid := rd.Proc.PID()
	py, interps, osThreads := rd.Py, rd.Interps, rd.OSThreads
	res := &Result{PID: pid, Command: rd.Proc.Cmdline(), PythonVersion: py.Version.String(), Binary: py.Binary.Path, Layout: py.L.From,
		Paused: rd.Paused, PauseMillis: float64(rd.Held.Microseconds()) / 1000}
	state := map[int]target.Thread{}
	for _, t := range osThreads {
		state[t.TID] = t
	}
	res.Interpreters = len(interps)
	res.Threads = []*Thread{}
	python := map[int]bool{}
	// The native stack of an OS thread goes with one of its thread states:
	// the one running Python frames (the deepest), else the first.
	owner := map[int]*cpython.Thread{}
	for _, in := range interps {
		for _, t := range in.Threads {
			if o, ok := owner[t.NativeID]; !ok || len(t.Frames) > len(o.Frames) {
				owner[t.NativeID] = t
			}
		}
	}
	for _, in := range interps {
		for _, t := range in.Threads {
			// Frames is [] for a thread with no Python frames (a C thread's
			// state, one not yet running code, a finalising interpreter):
			// the contract never has null there.
			jt := &Thread{ThreadID: t.ThreadID, Interpreter: t.Interp, GIL: t.GIL, Error: t.Err, Frames: []*Frame{}}
			if t.NativeID != 0 {
				id := t.NativeID
				jt.NativeID = &id
				if os, ok := state[id]; ok && os.State != '?' {
					jt.Idle = os.State != 'R'
					jt.OSName = os.Name
				}
			}
			if t.HasName {
				n := t.Name
				jt.Name = &n
			}
			for _, f := range t.Frames {
				jt.Frames = append(jt.Frames, rd.frame(f))
			}
			python[t.NativeID] = true
			if rd.capture != nil {
				if t.NativeID == 0 {
					jt.NativeError = "no OS thread of this process runs this thread state"
				} else if owner[t.NativeID] != t {
					// Another thread state of the same OS thread (one per
					// interpreter it entered) shows its native stack.
				} else if ns := rd.NativeStack(t.NativeID); ns != nil {
					jt.Frames = merge(rd.sourceFrames(ns), jt.Frames, entries(t), py.L.EvalFunction)
					jt.NativeError = ns.Err
				}
			}
			res.Threads = append(res.Threads, jt)
			if t.Loop != 0 {
				loop := t.Loop
				jt.Loop = &loop
			}
		}
		rd.addTasks(res, in)
	}
	if rd.capture != nil {
		res.Threads = append(res.Threads, rd.nativeOnlyThreads(python)...)
	}
	return res
}

func (rd *Reading) frame(f cpython.Frame) *Frame {
	jf := &Frame{Function: f.Function, Qualname: f.Qualname, File: f.File, Line: f.Line, Error: f.Err}
	mine := IsKraitFrame(f.File) // krait's agent: its token is not shown
	for _, l := range f.Locals {
		v := l.Value
		if mine {
			v = redact(v)
		}
		jf.Locals = append(jf.Locals, &Local{Name: l.Name, Arg: l.Arg, JSONValue: render.NamedJSON(l.Name, v, rd.Render, nil)})
	}
	return jf
}

// addTasks puts an interpreter's asyncio tasks under the threads running
// their loops (the last threads added to res), and the others in res.Tasks.
func (rd *Reading) addTasks(res *Result, in *cpython.Interpreter) {
	if in.TasksErr != "" && res.TasksError == "" {
		res.TasksError = in.TasksErr
	}
	if len(in.Tasks) == 0 {
		return
	}
	byLoop := map[uint64]*Thread{}
	for _, jt := range res.Threads[len(res.Threads)-len(in.Threads):] {
		if jt.Loop != nil {
			byLoop[*jt.Loop] = jt
		}
	}
	awaitedBy := map[uint64][]uint64{}
	for _, t := range in.Tasks {
		for _, a := range t.Awaits {
			awaitedBy[a] = append(awaitedBy[a], t.Addr)
		}
	}
	for _, t := range in.Tasks {
		jt := &Task{ID: t.Addr, State: t.State, Running: t.Running, Awaiting: t.Awaiting, Error: t.Err,
			Awaits: append([]uint64{}, t.Awaits...), AwaitedBy: append([]uint64{}, awaitedBy[t.Addr]...), Stack: []*Frame{}}
		if t.HasName {
			n := t.Name
			jt.Name = &n
		}
		for _, f := range t.Stack {
			jt.Stack = append(jt.Stack, rd.frame(f))
		}
		if th := byLoop[t.Loop]; th != nil && t.Loop != 0 {
			th.Tasks = append(th.Tasks, jt)
		} else {
			res.Tasks = append(res.Tasks, jt)
		}
	}
}

// held: the reads in progress that pause a process (about to, or holding
// it). Told to stop (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT) while there are
// any, krait releases the processes held and exits (exiting, it lets the
// kernel release one caught mid-pause).
var held struct {
	sync.Mutex
	n    int // reads in progress
	ps   map[*live.Pauser]bool
	sigs chan os.Signal
}

// track counts one more read about to pause a process; hold registers its
// pause once made, and done (idempotent) counts the read off.
func track() (hold func(*live.Pauser), done func()) {
	held.Lock()
	defer held.Unlock()
	if held.n == 0 {
		held.ps = map[*live.Pauser]bool{}
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
		held.sigs = c
		go func() {
			if _, ok := <-c; ok {
				held.Lock()
				for p := range held.ps {
					p.Release()
				}
				what := "process"
				if held.n > 1 {
					what = "processes"
				}
				fmt.Fprintf(os.Stderr, "krait: interrupted; %s released\n", what)
				os.Exit(130)
			}
		}()
	}
	held.n++
	var mine *live.Pauser
	var once sync.Once
	hold = func(p *live.Pauser) {
		held.Lock()
		defer held.Unlock()
		mine = p
		held.ps[p] = true
	}
	done = func() {
		once.Do(func() {
			held.Lock()
			defer held.Unlock()
			delete(held.ps, mine)
			if held.n--; held.n == 0 {
				signal.Stop(held.sigs)
				close(held.sigs)
			}
		})
	}
	return hold, done
}

var gc struct {
	sync.Mutex
	n, percent int
}

// gcOff turns Go's garbage collector off until the function it returns is
// called; reads of several processes at once share one switch.
func gcOff() func() {
	gc.Lock()
	if gc.n == 0 {
		gc.percent = debug.SetGCPercent(-1)
	}
	gc.n++
	gc.Unlock()
	return func() {
		gc.Lock()
		if gc.n--; gc.n == 0 {
			debug.SetGCPercent(gc.percent)
		}
		gc.Unlock()
	}
}

// exitedOr returns err, or ErrExited if the process is gone or going: a
// process that exits while krait reads it makes reads fail in ways that say
// nothing of the exit (a version that cannot be found, an unmapped address,
// …). An exiting process loses its memory before /proc shows it as a
// zombie; its memory map is empty from then on.
func exitedOr(proc *live.Process, err error) error {
	if errors.Is(err, target.ErrExited) || errors.Is(err, target.ErrNoProcess) || errors.Is(err, target.ErrZombie) {
		return err
	}
	if errors.Is(err, cpython.ErrNoInterpreter) {
		// A finalising Python is about to exit: say so if it does.
		for i := 0; i < 20 && proc.Alive(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !proc.Alive() {
		return fmt.Errorf("process %d: %w", proc.PID(), target.ErrExited)
	}
	if maps, merr := proc.Maps(); merr == nil && len(maps) == 0 || errors.Is(merr, target.ErrExited) {
		return fmt.Errorf("process %d: %w", proc.PID(), target.ErrExited)
	}
	return err
}
