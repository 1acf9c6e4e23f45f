package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"krait/internal/cpython"
	"krait/internal/target/live"
)

// Attach methods.
const (
	MethodAuto   = "auto"   // PEP 768 where the target publishes it (3.14+), else ptrace
	MethodPEP768 = "pep768" // CPython's remote-debugging protocol only
	MethodPtrace = "ptrace" // krait's trampoline, entered from a parked thread
)

// ErrRemoteDebugDisabled: the target opted out of remote debugging.
var ErrRemoteDebugDisabled = errors.New("remote debugging is disabled in the target")

// evalPleaseStop is _PY_EVAL_PLEASE_STOP_BIT in a thread state's
// eval_breaker (3.14): it sends the thread through the eval breaker's slow
// path, where it runs the pending remote-debugger script.
const evalPleaseStop = 1 << 5

// hasPEP768 says whether the target's layout has the remote-debugging
// fields (3.14+).
func hasPEP768(py *cpython.Python) bool {
	L := py.L
	return L.TstateRemoteSupport >= 0 && L.RemotePendingCall >= 0 && L.RemoteScriptPath >= 0 &&
		L.TstateEvalBreaker >= 0 && L.InterpRemoteDebug >= 0
}

// pickInterpreter returns the interpreter the agent is for: asked for
// (want ≥ 0), or the one running Django (mod_wsgi runs applications in
// sub-interpreters by default), or the main one.
func pickInterpreter(py *cpython.Python, interps []*cpython.Interpreter, want int64) (*cpython.Interpreter, error) {
	if want < 0 {
		want = 0
		for _, in := range interps {
			if mods, ok := py.Modules(in); ok {
				if _, ok := mods.DictGet("django"); ok {
					want = in.ID
					break
				}
			}
		}
	}
	for _, in := range interps {
		if in.ID == want {
			return in, nil
		}
	}
	return nil, fmt.Errorf("process %d has no interpreter %d", py.Proc.PID(), want)
}

// remoteBootstrap is the script CPython runs (in a fresh namespace) for
// PEP 768. Every thread of the interpreter is asked to run it, since
// krait cannot know which will reach an eval-breaker check first: the
// first one renames agent.py away and starts the agent; the others find
// it gone and do nothing.
func remoteBootstrap(dir string, cfg map[string]any) (string, error) {
	load, err := loaderCall(dir+"/agent.run", cfg)
	if err != nil {
		return "", err
	}
	d, _ := json.Marshal(dir)
	return fmt.Sprintf(`# krait attach (PEP 768 bootstrap): start krait's agent once.
import os
try:
    os.rename(os.path.join(%s, 'agent.py'), os.path.join(%s, 'agent.run'))
except OSError:
    pass  # another thread started the agent already
else:
    %s
`, d, d, load), nil
}

// injectRemote starts the agent through CPython's own remote-debugging
// protocol (PEP 768, 3.14+): krait writes the bootstrap's path into each
// thread state of the chosen interpreter, sets its pending-call flag and
// the eval breaker's please-stop bit, and the thread runs the script at
// its next bytecode boundary. The process is held only while krait
// writes (about a millisecond); no thread is diverted, no register touched.
// A target that opted out (-X disable-remote-debug,
// PYTHON_DISABLE_REMOTE_DEBUG) is refused.
func injectRemote(proc *live.Process, py *cpython.Python, interp int64) (*Injection, error) {
	L := py.L
	pid := proc.PID()
	interps, err := py.Interpreters()
	if err != nil {
		return nil, err
	}
	in, err := pickInterpreter(py, interps, interp)
	if err != nil {
		return nil, err
	}
	if err := remoteDebugEnabled(py, in); err != nil {
		return nil, err
	}
	if len(in.Threads) == 0 {
		return nil, fmt.Errorf("process %d: interpreter %d has no thread to run krait's agent", pid, in.ID)
	}
	inj, err := newInjection(py, interp, MethodPEP768)
	if err != nil {
		return nil, err
	}
	inj.InterpID = in.ID
	ok := false
	defer func() {
		if !ok {
			inj.proc, inj.py = proc, py
			inj.Abort()
		}
	}()
	cfg := map[string]any{"dir": inj.Dir, "token": inj.Token, "page": nil, "page_size": nil, "trace": inj.tracecfg, "connect_timeout": connectTimeout,
		// The agent clears the other threads' requests too (krait may die
		// before it does).
		"pep768": map[string]int64{"remote_support": L.TstateRemoteSupport, "pending_call": L.RemotePendingCall}}
	boot, err := remoteBootstrap(inj.Dir, cfg)
	if err != nil {
		return nil, err
	}
	script := inj.Dir + "/bootstrap.py"
	size := L.RemoteScriptPathSize
	if size <= 0 {
		size = 512
	}
	if int64(len(script)) >= size {
		return nil, fmt.Errorf("bootstrap path %s is too long for PEP 768 (%d bytes at most)", script, size-1)
	}
	if err := inj.dir.create("bootstrap.py", []byte(boot)); err != nil {
		return nil, err
	}
	// The writes go to thread states, which a thread frees when it ends:
	// with every thread held (a millisecond or two), the list krait reads
	// is the list it writes to.
	p, err := live.Pause(pid, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer p.Release()
	threads, err := liveThreads(py, in.ID)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for _, t := range threads {
		rs := t.TState + uint64(L.TstateRemoteSupport)
		if err := proc.WriteAt(append([]byte(script), 0), rs+uint64(L.RemoteScriptPath)); err != nil {
			return nil, err
		}
		var one [4]byte
		binary.LittleEndian.PutUint32(one[:], 1)
		if err := proc.WriteAt(one[:], rs+uint64(L.RemotePendingCall)); err != nil {
			return nil, err
		}
		inj.asked = append(inj.asked, asked{t.TState, t.NativeID})
		// eval_breaker is updated atomically by the interpreter; this
		// read-modify-write is the one CPython's own sys.remote_exec does.
		var eb [8]byte
		at := t.TState + uint64(L.TstateEvalBreaker)
		if err := proc.ReadAt(eb[:], at); err != nil {
			return nil, err
		}
		binary.LittleEndian.PutUint64(eb[:], binary.LittleEndian.Uint64(eb[:])|evalPleaseStop)
		if err := proc.WriteAt(eb[:], at); err != nil {
			return nil, err
		}
	}
	p.Release()
	inj.Paused = p.Held
	inj.Syscall = fmt.Sprintf("CPython's remote debugging, %d threads asked in %s; the first to reach a bytecode boundary ran the agent", len(threads), time.Since(start).Round(time.Microsecond))
	inj.proc, inj.py = proc, py
	ok = true
	return inj, nil
}

// asked is a thread state krait wrote a PEP 768 request into.
type asked struct {
	tstate uint64
	tid    int
}

// liveThreads re-reads interpreter id's thread states from the target
// (no cached memory).
func liveThreads(py *cpython.Python, id int64) ([]*cpython.Thread, error) {
	py.Reset()
	interps, err := py.Interpreters()
	if err != nil {
		return nil, err
	}
	for _, in := range interps {
		if in.ID == id {
			return in.Threads, nil
		}
	}
	return nil, fmt.Errorf("process %d: interpreter %d is gone", py.Proc.PID(), id)
}

// clearPending withdraws the PEP 768 request from every thread that has
// not taken it yet, so none runs the bootstrap later (after a failed
// attach; a started agent clears them itself). With the process held, it
// writes only into thread states still in the interpreter's list, of the
// same thread, whose request is still pending. It returns how many of
// those threads took theirs. The path stays in the thread state, as
// CPython leaves it.
func (inj *Injection) clearPending(proc *live.Process, py *cpython.Python) (taken int) {
	if proc == nil || py == nil || len(inj.asked) == 0 {
		return 0
	}
	L := py.L
	p, err := live.Pause(proc.PID(), 2*time.Second)
	if err != nil {
		return 0
	}
	defer p.Release()
	threads, err := liveThreads(py, inj.InterpID)
	if err != nil {
		return 0
	}
	still := map[uint64]int{}
	for _, t := range threads {
		still[t.TState] = t.NativeID
	}
	var zero, flag [4]byte
	for _, a := range inj.asked {
		if tid, ok := still[a.tstate]; !ok || tid != a.tid {
			continue // that thread ended
		}
		at := a.tstate + uint64(L.TstateRemoteSupport) + uint64(L.RemotePendingCall)
		if proc.ReadAt(flag[:], at) != nil {
			continue
		}
		if flag == zero {
			taken++
			continue
		}
		_ = proc.WriteAt(zero[:], at)
	}
	inj.asked = nil
	return taken
}

// checkRemoteDebugEnabled refuses a 3.14+ target that opted out of remote
// debugging, whatever the method.
func checkRemoteDebugEnabled(py *cpython.Python, interp int64) error {
	interps, err := py.Interpreters()
	if err != nil {
		return err
	}
	in, err := pickInterpreter(py, interps, interp)
	if err != nil {
		return err
	}
	return remoteDebugEnabled(py, in)
}

// remoteDebugEnabled reads interpreter in's config.remote_debug: anything
// but 1 is an opt-out.
func remoteDebugEnabled(py *cpython.Python, in *cpython.Interpreter) error {
	var flag [4]byte
	if err := py.Proc.ReadAt(flag[:], in.Addr+uint64(py.L.InterpRemoteDebug)); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(flag[:]) == 1 {
		return nil
	}
	return fmt.Errorf("%w: process %d (Python %s) was started with -X disable-remote-debug or PYTHON_DISABLE_REMOTE_DEBUG set, or built --without-remote-debug; krait respects that and does not attach", ErrRemoteDebugDisabled, py.Proc.PID(), py.Version)
}
