// Package agent gets krait's Python agent into a live process and talks to
// it. How, and the wire protocol, are in PROTOCOL.md.
package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	mrand "math/rand"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"krait/internal/cpython"
	"krait/internal/target"
	"krait/internal/target/live"
)

// Regs are a thread's registers.
type Regs = live.Regs

// ErrNoSafeThread: no thread is parked where injection is safe.
var ErrNoSafeThread = errors.New("no thread stopped where krait can safely enter (a system call or a Python-level lock wait, without the GIL) before the attach timeout; every thread kept running Python, waiting for the GIL or in a wait krait cannot enter through")

// ErrUnsupported: attach does not work on this target.
var ErrUnsupported = errors.New("attach is not supported here")

// ErrTimeout: the agent did not come up in time.
var ErrTimeout = errors.New("injection timed out")

// safeSyscalls are system calls (x86-64 numbers) during which a thread
// holds no interpreter or libc lock: Python released the GIL around them.
var safeSyscalls = map[uint64]string{
	0: "read", 7: "poll", 23: "select", 34: "pause", 35: "nanosleep", 43: "accept",
	45: "recvfrom", 47: "recvmsg", 61: "wait4", 128: "rt_sigtimedwait", 230: "clock_nanosleep",
	232: "epoll_wait", 247: "waitid", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait",
	288: "accept4", 441: "epoll_pwait2", 219: "restart_syscall",
}

// Kernel-internal return values of an interrupted system call.
const (
	eintr                = 4
	erestartsys          = 512
	erestartnointr       = 513
	erestartnohand       = 514
	erestartRestartblock = 516
	sysRestartSyscall    = 219
)

// Injection describes one injection, for messages and benchmarks.
type Injection struct {
	Dir     string        // private directory as the target sees it
	HostDir string        // the same, as krait reaches it
	Token   string        // shared secret
	Thread  int           // the thread that ran the bootstrap
	Syscall string        // where that thread was parked
	Paused  time.Duration // how long the process was held (in all)
	Tries   int           // how many pauses it took to find a safe thread (ptrace)
	Cave    uint64        // where the trampoline's code is (ptrace)
	// Interp selects the interpreter the agent runs in (-1: the one
	// running Django, else the main one); InterpID is the one used.
	Interp   int64
	InterpID int64
	// Method is how the agent got in: MethodPtrace, MethodPEP768 or
	// MethodPending.
	Method   string
	tracecfg *cpython.TraceConfig

	// PEP 768: the thread states asked to run the bootstrap, and the
	// process to withdraw the request from once the agent is up.
	asked     []asked
	proc      *live.Process
	py        *cpython.Python
	withdrawn bool // the PEP 768 request was taken back: no agent will start
	refused   bool // a thread took the PEP 768 request but no agent started
	// pending is the call krait queued in the interpreter's pending calls
	// (MethodPending) until it is known to have run or is taken back.
	pending *pendingEntry
	chosen  *cpython.Interpreter // the interpreter enter picked (last try)
	// Note says why krait entered another way than asked for ("" if not).
	Note string

	dir    *privDir        // the agent's directory, held open until Finish
	pid    int             // the target
	start  uint64          // and its start time
	cancel <-chan struct{} // closed: give up the attach (Ctrl-C, SIGTERM)
}

// connectTimeout is how long (seconds) a started agent waits for krait to
// connect before it cleans up and leaves: krait polls for the socket and
// connects within milliseconds, so this only matters when krait died
// meanwhile.
const connectTimeout = 10

// pep768Grace is how long MethodAuto waits for a thread of a 3.14+ target
// to run krait's bootstrap through PEP 768 before it enters through ptrace
// instead (an idle server: every thread blocked in a system call).
const pep768Grace = time.Second

// ErrInterrupted: krait was told to stop (Ctrl-C, SIGTERM, SIGHUP) while
// it attached; it took back what it had started.
var ErrInterrupted = errors.New("interrupted; attach abandoned, nothing of krait's left in the process")

// Start injects the agent (see Inject) and waits up to timeout for its
// socket. With MethodAuto, a PEP 768 target none of whose threads runs
// Python within pep768Grace is entered through ptrace instead, which
// Injection.Note says; a target that opted out is never entered. On
// failure nothing of krait's is left: the agent's directory is removed
// and an agent that started anyway is told to leave.
func Start(proc *live.Process, py *cpython.Python, interp int64, method string, timeout time.Duration) (*Injection, string, error) {
	return StartWith(proc, py, interp, method, timeout, StartOptions{})
}

// StartCancel is Start, given up (ErrInterrupted) when cancel is closed:
// once the process is entered, krait takes the agent back (claims its
// source, or tells a started agent to leave) and removes its directory.
func StartCancel(proc *live.Process, py *cpython.Python, interp int64, method string, timeout time.Duration, cancel <-chan struct{}) (*Injection, string, error) {
	return StartWith(proc, py, interp, method, timeout, StartOptions{Cancel: cancel})
}

// StartOptions are Start's optional settings.
type StartOptions struct {
	// Cancel, closed, gives the attach up (ErrInterrupted).
	Cancel <-chan struct{}
	// Progress, if set, is told once, in one line, what krait waits for
	// when the ptrace way in has found no thread it can enter through
	// within progressAfter (a busy process).
	Progress func(line string)
}

// progressAfter is how long krait looks for a safe thread before it says
// what it is waiting for.
const progressAfter = time.Second

// StartWith is Start with options. The ptrace way in keeps looking for a
// thread it can enter through until timeout (the process runs between
// tries); what remains of timeout, but at least agentStartMin, is left for
// the agent to start.
func StartWith(proc *live.Process, py *cpython.Python, interp int64, method string, timeout time.Duration, opts StartOptions) (*Injection, string, error) {
	cancel := opts.Cancel
	if isClosed(cancel) {
		return nil, "", ErrInterrupted
	}
	begin := time.Now()
	deadline := begin.Add(timeout)
	po := ptraceOpts{deadline: deadline, progress: opts.Progress, cancel: cancel}
	inj, err := inject(proc, py, interp, method, po)
	if err != nil {
		return nil, "", err
	}
	inj.cancel = cancel
	rest := func() time.Duration {
		if d := time.Until(deadline); d > agentStartMin {
			return d
		}
		return agentStartMin
	}
	auto := method == MethodAuto || method == ""
	if !auto || inj.Method != MethodPEP768 || timeout <= 2*pep768Grace {
		sock, err := inj.WaitSocket(rest())
		return inj, sock, err
	}
	sock, err := inj.WaitSocket(pep768Grace)
	if err == nil || !inj.withdrawn || inj.refused {
		return inj, sock, err
	}
	if isClosed(cancel) {
		return nil, "", ErrInterrupted
	}
	inj2, err := injectPtrace(proc, py, interp, po)
	if err != nil {
		return nil, "", fmt.Errorf("no thread ran Python within %s to take the PEP 768 request, and entering through ptrace failed: %w", pep768Grace, err)
	}
	inj2.cancel = cancel
	inj2.Note = fmt.Sprintf("no thread ran Python within %s to take the PEP 768 request", pep768Grace)
	sock, err = inj2.WaitSocket(rest())
	return inj2, sock, err
}

// agentStartMin is the least time an agent that krait has sent on its way
// gets to start, however long finding the thread took.
const agentStartMin = 3 * time.Second

// ptraceOpts steer the ptrace way in.
type ptraceOpts struct {
	deadline time.Time       // keep looking for a safe thread until then
	pending  bool            // may queue a pending call when no thread is parked
	progress func(string)    // told once what krait waits for (may be nil)
	cancel   <-chan struct{} // closed: give up
}

// isClosed says whether ch (nil: never) is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// targetIDs returns the process's real uid and gid.
func targetIDs(pid int) (int, int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	uid, gid := -1, -1
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "Uid:" {
			uid, _ = strconv.Atoi(f[1])
		}
		if len(f) >= 2 && f[0] == "Gid:" {
			gid, _ = strconv.Atoi(f[1])
		}
	}
	if uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("process %d: no Uid/Gid in status", pid)
	}
	return uid, gid, nil
}

// loaderSource loads the agent in a new daemon thread, "krait-agent", and
// returns at once: the thread that runs it (the one krait entered, or the
// one that took the PEP 768 request) goes back to its own work. The new
// thread compiles agent.py one "# krait: chunk" at a time into one fresh
// namespace (KRAIT from CFG), so that no single compile holds the GIL for
// long: other threads run between chunks. Line numbers stay those of the
// file. If loading fails, the error goes to the file "error" in the
// agent's directory (krait reports it) rather than to the target's stderr.
const loaderSource = `import json, os, threading
def fail(e, path=PATH):
    try:
        with open(os.path.join(os.path.dirname(path), 'error'), 'w') as f:
            f.write('%s: %s' % (type(e).__name__, e))
    except Exception:
        pass
def load(cfg=CFG, path=PATH):
    try:
        ns = {'__name__': '__krait_agent__', 'KRAIT': json.loads(cfg)}
        ns['KRAIT']['own_thread'] = True
        with open(path, encoding='utf-8') as f:
            src = f.read()
        line = 0
        for part in src.split('\n# krait: chunk\n'):
            exec(compile('\n' * line + part, '<krait-agent>', 'exec'), ns)
            line += part.count('\n') + 2
    except BaseException as e:
        fail(e)
try:
    threading.Thread(target=load, name='krait-agent', daemon=True).start()
except BaseException as e:
    fail(e)
`

// loaderCall is one Python statement that runs loaderSource for the agent
// at path, in a namespace of its own: it binds no name where it runs
// (__main__, for PyRun_SimpleString). The loader's code is named
// <krait-loader>, as the agent's is <krait-agent>: krait dump knows its
// frames by that name (and hides the token they hold).
func loaderCall(path string, cfg map[string]any) (string, error) {
	js, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	lit := func(s string) string { b, _ := json.Marshal(s); return string(b) } // a JSON string literal is a Python one
	return fmt.Sprintf("(lambda b: b.exec(b.compile(%s, '<krait-loader>', 'exec'), {'CFG': %s, 'PATH': %s}))(__import__('builtins'))",
		lit(loaderSource), lit(string(js)), lit(path)), nil
}

// bootstrap is the one statement PyRun_SimpleString runs: load agent.py.
func bootstrap(dir string, cfg map[string]any) (string, error) {
	return loaderCall(dir+"/agent.py", cfg)
}

// newInjection prepares what both ways in share: the token, the agent's
// trace configuration, and the private directory holding the owner file
// and agent.py, made in the target's /tmp race-free (dir.go). A process
// that runs krait's agent already is refused (ErrBusy), and leftovers of
// earlier attaches krait can prove are its own are removed first.
func newInjection(py *cpython.Python, interp int64, method string) (*Injection, error) {
	tc, err := py.AgentTraceConfig()
	if err != nil {
		return nil, err
	}
	pid := py.Proc.PID()
	uid, gid, err := targetIDs(pid)
	if err != nil {
		return nil, procErr(pid, "read the status of", err)
	}
	o, err := newOwner(pid)
	if err != nil {
		return nil, err
	}
	tmp, err := openTargetTmp(pid)
	if err != nil {
		return nil, err
	}
	known, err := checkNoSession(py, tmp, o)
	if err != nil {
		unix.Close(tmp)
		return nil, err
	}
	idle := owner{}
	if known {
		idle = o // no agent runs in the target: its abandoned directories can go
	}
	cleanLeftovers(tmp, idle)
	cleanUnfinished(tmp)
	d, err := makePrivDir(tmp, uid, gid, []dirFile{{"owner", o.json()}, {"agent.py", agentSource}})
	if err != nil {
		return nil, err
	}
	inj := &Injection{Token: randomHex(16), tracecfg: tc, Interp: interp, Method: method, dir: d, pid: pid, start: o.Start}
	inj.Dir = "/tmp/" + d.name
	inj.HostDir = fmt.Sprintf("/proc/%d/root/tmp/%s", pid, d.name)
	return inj, nil
}

// Inject starts the agent in process pid, by method (MethodAuto: PEP 768
// where the target has it, 3.14+, else ptrace). With ptrace the process is
// paused only while krait picks a thread and prepares the trampoline; the
// thread then runs the bootstrap on its own.
func Inject(proc *live.Process, py *cpython.Python, interp int64, method string) (*Injection, error) {
	return inject(proc, py, interp, method, ptraceOpts{deadline: time.Now().Add(safeThreadWait)})
}

func inject(proc *live.Process, py *cpython.Python, interp int64, method string, po ptraceOpts) (*Injection, error) {
	if py.L.Py2 {
		return nil, fmt.Errorf("%w: attach needs Python 3.6 or later; this is %s (krait dump works on it)", ErrUnsupported, py.Version)
	}
	switch method {
	case MethodAuto, "":
		if hasPEP768(py) {
			return injectRemote(proc, py, interp)
		}
		po.pending = true
	case MethodPEP768:
		if !hasPEP768(py) {
			return nil, fmt.Errorf("%w: Python %s has no PEP 768 remote debugging (3.14+); use --method ptrace", ErrUnsupported, py.Version)
		}
		return injectRemote(proc, py, interp)
	case MethodPtrace:
		if hasPEP768(py) {
			// The opt-out binds every way in, not just CPython's own.
			if err := checkRemoteDebugEnabled(py, interp); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("unknown attach method %q (auto, pep768 or ptrace)", method)
	}
	return injectPtrace(proc, py, interp, po)
}

func injectPtrace(proc *live.Process, py *cpython.Python, interp int64, po ptraceOpts) (*Injection, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("%w: attach works on x86-64 Linux only", ErrUnsupported)
	}
	pid := proc.PID()
	var fn trampolineFuncs
	for name, dst := range map[string]*uint64{"PyEval_RestoreThread": &fn.RestoreThread, "PyEval_SaveThread": &fn.SaveThread, "PyRun_SimpleString": &fn.RunSimpleString} {
		a, ok := py.Sym(name)
		if !ok {
			return nil, fmt.Errorf("Python %s in %s does not export %s", py.Version, py.Binary.Path, name)
		}
		*dst = a
	}
	inj, err := newInjection(py, interp, MethodPtrace)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			inj.dir.remove()
			inj.dir.close()
		}
	}()

	if inj.Cave, err = codeCave(proc, py, len(trampolineCode)); err != nil {
		return nil, err
	}
	// A busy process may have no thread parked where krait can enter at
	// the instant krait looks: watch /proc (no pause) until one may be,
	// then pause and try; again until the deadline, the process running
	// between tries.
	maps, err := proc.Maps()
	if err != nil {
		return nil, err
	}
	lw := newLockWaits(proc, py, maps)
	begin, told := time.Now(), false
	pc := pendingTry{on: po.pending && py.L.PendingCalls >= 0}
	for tries := 1; ; tries++ {
		if isClosed(po.cancel) {
			return nil, ErrInterrupted
		}
		var wake time.Time // when the pending-call way may be tried
		if pc.on {
			wake = begin.Add(pendingAfter)
		}
		waitSafeCandidate(pid, po.deadline, po.cancel, tries > 1, wake)
		if tries > 1 {
			if maps, err = proc.Maps(); err != nil {
				return nil, err
			}
			lw.unw.Remap(maps)
		}
		osThreads, err := proc.Threads()
		if err != nil {
			return nil, err
		}
		p, err := live.Pause(pid, 2*time.Second)
		if err != nil {
			return nil, err
		}
		// What py read at an earlier try (its page cache: the GIL's
		// holder, the thread list) is stale now: read afresh.
		py.Reset()
		err = inj.enter(p, py, fn, osThreads, maps, lw)
		if pc.on && errors.Is(err, ErrNoSafeThread) {
			err = inj.tryPending(p, proc, py, &pc, begin, fn.RunSimpleString, err)
		}
		p.Release()
		inj.Paused += p.Held
		// A pointer read while the process ran (thread names, code objects
		// read before the pause) may be stale by the time it holds: look again.
		if (errors.Is(err, ErrNoSafeThread) || errors.Is(err, target.ErrBadAddress)) && time.Now().Before(po.deadline) {
			if !told && po.progress != nil && time.Since(begin) >= progressAfter {
				told = true
				po.progress(fmt.Sprintf("krait: waiting until a thread of process %d stops where krait can enter (a system call or a lock wait, without the GIL); until %s at most; last look: %s",
					pid, time.Until(po.deadline).Round(time.Second), lookOf(err)))
			}
			time.Sleep(retryPause(tries))
			continue
		}
		if err != nil {
			return nil, err
		}
		inj.Tries = tries
		if inj.pending != nil {
			inj.Method, inj.Note, inj.Thread = MethodPending, pendingNote, 0
			inj.Syscall = "no thread stopped in a system call or lock wait"
			inj.proc, inj.py = proc, py
		}
		ok = true
		return inj, nil
	}
}

// retryPause is how long the process runs between two tries: a few ms at
// first, growing to 50-100 ms, so that waiting for a busy process costs it
// little (each try holds it for a millisecond or two).
func retryPause(tries int) time.Duration {
	base := 5 + 5*tries
	if base > 50 {
		base = 50
	}
	return time.Duration(base+mrand.Intn(base)) * time.Millisecond
}

// lookOf is what an ErrNoSafeThread says of each thread.
func lookOf(err error) string {
	var ns *noSafeThread
	if errors.As(err, &ns) {
		return strings.Join(ns.why, "; ")
	}
	return err.Error()
}

// noSafeThread is ErrNoSafeThread with what each thread was doing.
type noSafeThread struct {
	why       []string
	inSyscall bool // some thread was in a system call (perhaps parked soon)
}

func (e *noSafeThread) Error() string {
	return fmt.Sprintf("%v (last look: %s)", ErrNoSafeThread, strings.Join(e.why, "; "))
}

func (e *noSafeThread) Unwrap() error { return ErrNoSafeThread }

// safeThreadWait is how long Inject (without a timeout of its own) keeps
// looking for a thread to enter through in a busy process.
const safeThreadWait = 10 * time.Second

// lockTryEvery is how often krait pauses a process none of whose threads
// is in a safe system call but some in a futex (perhaps a lock wait, which
// only a pause can tell).
const lockTryEvery = 50 * time.Millisecond

// waitSafeCandidate waits (until deadline at most) until /proc says a
// thread of pid is blocked in one of the safe system calls or, with
// futexToo, lockTryEvery has passed with a thread in a futex wait; it
// pauses nothing. With wake set (the pending-call way is open: it needs
// no parked thread, only one that runs Python) it returns too when no
// thread is in a system call at all, and from wake on. The answer may be
// stale by the time krait pauses: enter checks again.
func waitSafeCandidate(pid int, deadline time.Time, cancel <-chan struct{}, futexToo bool, wake time.Time) {
	start := time.Now()
	for {
		tids, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if len(tids) == 0 {
			return // gone, or not readable: let Pause say why
		}
		futex, running := false, true
		for _, t := range tids {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, t.Name()))
			if err != nil {
				continue
			}
			f := strings.Fields(string(data))
			if len(f) == 0 {
				continue
			}
			running = running && f[0] == "running"
			if nr, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				if _, safe := safeSyscalls[nr]; safe {
					return
				}
				futex = futex || nr == sysFutex
			}
		}
		if futex && (!futexToo || time.Since(start) >= lockTryEvery) || !wake.IsZero() && (running || !time.Now().Before(wake)) {
			return
		}
		if time.Now().After(deadline) || isClosed(cancel) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// enter picks the thread and sets it on its way into the trampoline.
func (inj *Injection) enter(p *live.Pauser, py *cpython.Python, fn trampolineFuncs, osThreads []target.Thread, maps []target.Mapping, lw *lockWaits) error {
	pid := p.PID()
	interps, err := py.Snapshot(cpython.Options{OSThreads: osThreads})
	if err != nil {
		return err
	}
	chosen, err := pickInterpreter(py, interps, inj.Interp)
	if err != nil {
		return err
	}
	inj.chosen = chosen
	target := chosen.ID
	if lw != nil && len(lw.methods) == 0 {
		lw.methods = py.LockWaitFuncs(chosen) // read while the process holds still
	}
	// Candidates: that interpreter's thread states whose threads do not
	// hold the GIL, the main thread first. The thread enters with its own
	// thread state, as it would returning from its system call.
	type cand struct {
		tid    int
		tstate uint64
		name   string
	}
	var cands []cand
	var why []string // what each thread was doing, for the error
	found := false
	for _, in := range interps {
		if in.ID != target {
			continue
		}
		found = true
		for _, t := range in.Threads {
			label := fmt.Sprint(t.NativeID)
			if t.Name != "" {
				label = fmt.Sprintf("%d (%s)", t.NativeID, t.Name)
			}
			switch {
			case t.NativeID == 0:
				continue
			case t.GIL:
				why = append(why, label+" holds the GIL (runs Python)")
			case !p.Holds(t.NativeID):
				why = append(why, label+" did not stop")
			default:
				cands = append(cands, cand{t.NativeID, t.TState, label})
			}
		}
	}
	if !found {
		return fmt.Errorf("process %d has no interpreter %d", pid, target)
	}
	inj.InterpID = target
	sort.Slice(cands, func(i, j int) bool {
		return cands[i].tid == pid || cands[j].tid != pid && cands[i].tid < cands[j].tid
	})
	tid, tstate, saved, resumeFutex, inSyscall := 0, uint64(0), Regs{}, false, false
	for _, cd := range cands {
		c := cd.tid
		futexResume := false
		r, err := p.GetRegs(c)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", cd.name, err))
			continue
		}
		name, safe := safeSyscalls[r.Orig_rax]
		ret := -int64(r.Rax)
		restart := ret == erestartsys || ret == erestartnointr || ret == erestartnohand || ret == erestartRestartblock
		inSyscall = inSyscall || int64(r.Orig_rax) >= 0
		// -EINTR: the call will return EINTR to its caller anyway (the
		// interrupt did that, as any signal would); it resumes as is.
		switch {
		case int64(r.Orig_rax) < 0:
			why = append(why, cd.name+" runs (not in a system call)")
			continue
		case r.Orig_rax == sysRestartSyscall:
			// The restart of a call interrupted before (krait's own last
			// try, say): which call? The native stack says.
			if lw == nil || !restart {
				why = append(why, cd.name+" is in restart_syscall")
				continue
			}
			sleep, lock, no := lw.restarted(p, r)
			switch {
			case sleep != "":
				name = "restart_syscall (" + sleep + ")"
			case lock != "":
				name, futexResume = "futex in "+lock, true
			default:
				why = append(why, cd.name+" is in a "+no)
				continue
			}
		case r.Orig_rax == sysFutex && (restart || ret == eintr):
			if lw == nil || !futexRestartable(r) {
				why = append(why, cd.name+" is in a futex wait krait cannot resume")
				continue
			}
			lock, no := lw.check(p, r)
			if lock == "" {
				why = append(why, cd.name+" is in a "+no)
				continue
			}
			name = "futex in " + lock
		case r.Orig_rax == sysFutex:
			why = append(why, cd.name+" is returning from a futex wait")
			continue
		case !safe:
			why = append(why, fmt.Sprintf("%s is in system call %d", cd.name, r.Orig_rax))
			continue
		case !restart && ret != eintr:
			why = append(why, fmt.Sprintf("%s is returning from %s", cd.name, name))
			continue
		}
		insn, err := p.ReadMem(r.Rip-2, 2)
		if err != nil || insn[0] != 0x0f || insn[1] != 0x05 {
			why = append(why, cd.name+": no syscall instruction before its rip")
			continue
		}
		if !stackRoom(maps, r.Rsp) {
			why = append(why, cd.name+": too little stack")
			continue
		}
		tid, tstate, saved, inj.Syscall, resumeFutex = c, cd.tstate, r, name, futexResume
		break
	}
	if tid == 0 {
		return &noSafeThread{why: why, inSyscall: inSyscall}
	}
	inj.Thread = tid

	// Where the thread resumes once the trampoline is done: its
	// interrupted system call, restarted as the kernel would. A futex wait
	// (also one being restarted by restart_syscall: its registers still
	// hold the futex's arguments) is executed again rather than through
	// restart_syscall: its timeout is absolute (futexRestartable), so that
	// is the same wait, and it does not depend on the restart block, which
	// the system calls the trampoline's Python code makes may replace.
	resume := saved
	switch {
	case -int64(saved.Rax) == eintr:
	case saved.Orig_rax == sysFutex || resumeFutex:
		resume.Rip -= 2
		resume.Rax = sysFutex
	case -int64(saved.Rax) == erestartRestartblock:
		resume.Rip -= 2
		resume.Rax = sysRestartSyscall
	default:
		resume.Rip -= 2
		resume.Rax = saved.Orig_rax
	}
	cfg := map[string]any{"dir": inj.Dir, "token": inj.Token, "page": nil, "page_size": nil, "trace": inj.tracecfg, "connect_timeout": connectTimeout}
	boot, err := bootstrap(inj.Dir, cfg)
	if err != nil {
		return err
	}
	block, err := trampolineBlock(fn, tstate, resume, boot)
	if err != nil {
		return err
	}
	blockAt, entryRSP := blockAddr(saved.Rsp)
	// Nothing below changes how the thread runs until the one SetRegs at
	// the end: the block goes below the stack in use, the code into bytes
	// no code of the process uses.
	if err := p.WriteMem(blockAt, block); err != nil {
		return fmt.Errorf("write the trampoline's data on thread %d's stack: %w", tid, err)
	}
	if cur, err := p.ReadMem(inj.Cave, len(trampolineCode)); err != nil || !bytes.Equal(cur, trampolineCode) {
		if err := p.WriteMem(inj.Cave, trampolineCode); err != nil {
			return fmt.Errorf("write the trampoline: %w", err)
		}
	}
	if hookBeforeEnter != nil {
		hookBeforeEnter(tid, inj.Syscall)
	}
	entry := saved
	entry.Rip, entry.Rsp, entry.R12 = inj.Cave, entryRSP, blockAt
	entry.Orig_rax = ^uint64(0) // no system call to restart: the trampoline restarts it
	if err := p.SetRegs(tid, entry); err != nil {
		return err
	}
	if hookAfterEnter != nil {
		hookAfterEnter(tid, inj.Syscall)
	}
	return nil
}

// Test hooks: called while the process is paused, just before and just
// after the chosen thread is sent into the trampoline (via: where it was
// parked).
var hookBeforeEnter, hookAfterEnter func(tid int, via string)

// WaitSocket waits until the agent's socket appears and returns its path
// (reached through the directory krait holds open). On failure the attach
// is taken back: nothing of krait's stays in the target.
func (inj *Injection) WaitSocket(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var sock string
	var err error
	if inj.Method == MethodPending {
		sock, err = inj.waitPendingRun(deadline)
	} else {
		sock, err = inj.waitUntil(deadline)
	}
	if sock != "" {
		if e := inj.pending; e != nil {
			inj.pending = nil // it ran: the agent is up
			inj.restoreCave(inj.proc, e)
		}
		return sock, nil
	}
	if err == nil && inj.Method == MethodPEP768 {
		sock, err = inj.withdraw(timeout)
		if sock != "" {
			return sock, nil
		}
	}
	if err == nil && inj.Method == MethodPending {
		sock, err = inj.withdrawPending(timeout)
		if sock != "" {
			return sock, nil
		}
	}
	if err == nil {
		err = fmt.Errorf("%w: the agent did not start within %s (thread %d, parked in %s, may be waiting for the GIL)", ErrTimeout, timeout, inj.Thread, inj.Syscall)
	}
	inj.Abort()
	return "", err
}

// waitUntil polls for the socket, or for the agent's end or load error,
// until deadline ("" and no error: not yet).
func (inj *Injection) waitUntil(deadline time.Time) (string, error) {
	if inj.dir == nil {
		return "", errDirGone
	}
	for time.Now().Before(deadline) {
		if isClosed(inj.cancel) {
			return "", ErrInterrupted
		}
		if inj.dir.exists("sock") {
			return inj.dir.sockPath(), nil // a started agent cleared the PEP 768 requests
		}
		if !same(inj.pid, inj.start) {
			return "", fmt.Errorf("process %d: %w while krait attached", inj.pid, target.ErrExited)
		}
		if err := inj.dir.check(); errors.Is(err, errDirGone) {
			return "", fmt.Errorf("krait's agent directory %s was removed before the agent was ready (the agent ended, or something cleaned /tmp)", inj.Dir)
		} else if err != nil {
			return "", err
		}
		if msg, err := inj.dir.readFile("error", 4096); err == nil && len(msg) > 0 {
			return "", fmt.Errorf("krait's agent failed to start in the target: %s", strings.Join(strings.Fields(string(msg)), " "))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return "", nil
}

// withdraw takes back a PEP 768 request no thread ran in time: the
// pending flags are cleared and krait claims agent.py itself (the same
// rename a starting agent does), so no thread can start the agent later.
// If a thread won that race, the agent is starting after all. If a thread
// took its request but no agent started (an audit hook refusing
// cpython.remote_debugger_script, say), krait reports that and does not
// enter any other way.
func (inj *Injection) withdraw(timeout time.Duration) (string, error) {
	taken := inj.clearPending(inj.proc, inj.py)
	time.Sleep(100 * time.Millisecond) // a thread that just took it reaches the rename
	if err := inj.dir.rename("agent.py", "agent.krait"); err == nil {
		time.Sleep(50 * time.Millisecond)
		inj.dir.remove()
		inj.withdrawn = true
		if taken > 0 {
			inj.refused = true
			return "", fmt.Errorf("%w: %d thread(s) of the target took krait's PEP 768 request but its bootstrap did not start the agent (an audit hook may refuse cpython.remote_debugger_script); krait does not force its way in", ErrRemoteDebugDisabled, taken)
		}
		return "", fmt.Errorf("%w: no thread of the target ran Python code within %s, so none reached the point where CPython runs a remote debugger's script (PEP 768); krait withdrew the request. An idle process attaches when it next runs Python (send it a request), or use --method ptrace", ErrTimeout, timeout)
	}
	sock, err := inj.waitUntil(time.Now().Add(timeout))
	if sock != "" || err != nil {
		return sock, err
	}
	return "", fmt.Errorf("%w: the agent did not start within %s", ErrTimeout, timeout)
}

// Abort takes back an attach that failed or was given up: the PEP 768
// request is withdrawn, agent.py claimed so that no thread starts the
// agent later (or, if an agent started, it is told to leave through its
// socket), and krait's directory removed.
func (inj *Injection) Abort() {
	inj.clearPending(inj.proc, inj.py)
	if inj.pending != nil && inj.unqueue(inj.proc, inj.py) {
		inj.pending = nil
	}
	d := inj.dir
	if d == nil {
		return
	}
	claimed := d.rename("agent.py", "agent.krait") == nil
	if e := inj.pending; e != nil && !claimed {
		// The queued call ran (its bootstrap took agent.py): its string
		// was read long ago.
		inj.pending = nil
		inj.restoreCave(inj.proc, e)
	}
	if !claimed && same(inj.pid, inj.start) {
		// The agent has its source: it is starting or up. Closing a
		// connection to it makes it leave (remove its hooks, its files).
		for end := time.Now().Add(time.Second); !d.exists("sock") && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if d.check() != nil {
				break
			}
		}
		if d.exists("sock") {
			if conn, err := dialPeer(d.sockPath(), inj.pid, time.Second); err == nil {
				conn.Close()
			}
		}
	}
	d.remove()
	d.close()
	inj.dir = nil
}

// Finish ends krait's part once a session is over (the agent told to
// detach, or the connection gone): it waits a little for the agent to
// remove its directory, then removes what is left of krait's, unless the
// agent still serves there; and closes the directory.
func (inj *Injection) Finish() {
	d := inj.dir
	if d == nil {
		return
	}
	inj.dir = nil
	defer d.close()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !same(inj.pid, inj.start) || !d.exists("sock") {
			break
		}
	}
	if d.exists("sock") && same(inj.pid, inj.start) {
		return // the agent is still there; it removes its directory when it leaves
	}
	d.remove()
}

// Dial connects to the agent's socket, checks that the process listening
// is the target, and says hello with the token.
func (inj *Injection) Dial(sock string) (*Client, map[string]any, error) {
	return Dial(sock, inj.Token, inj.pid)
}
