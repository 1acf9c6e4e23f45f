package agent

import (
	"fmt"
	"path/filepath"
	"strings"

	"krait/internal/cpython"
	"krait/internal/target"
	"krait/internal/target/live"
	"krait/internal/unwind"
)

// The lock-wait rule (PROTOCOL.md, "A thread waiting for a Python-level
// lock"): a thread blocked in the futex of a semaphore wait that
// PyThread_acquire_lock_timed makes for threading's Lock or RLock acquire
// (or SimpleQueue.get), with its thread state detached, is entered as a
// thread parked in poll is. Its native stack says so: unwound with the
// binaries' call-frame information (internal/unwind), the frames from the system call up are libc's
// (the semaphore wait), then PyThread_acquire_lock_timed, then within
// lockWaitDepth frames the C method of the lock's type.

// sysFutex is futex(2)'s x86-64 number.
const sysFutex = 202

// futex operations (the low bits of futex's second argument).
const (
	futexWait       = 0
	futexWaitBitset = 9
	futexCmdMask    = 0x7f // without FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME
)

// lockWaitDepth is how many frames above PyThread_acquire_lock_timed may
// lie before the lock method (acquire_timed, and on 3.13
// PyThread_acquire_lock_timed_with_retries, when not inlined).
const lockWaitDepth = 3

// lockWaits holds what the rule needs across the tries of one attach.
type lockWaits struct {
	unw     *unwind.Unwinder  // reads the stacks through the process (process_vm_readv)
	acquire uint64            // PyThread_acquire_lock_timed (0: not exported)
	methods map[uint64]string // the lock methods' entry points
	py      string            // the Python binary's path
}

func newLockWaits(proc *live.Process, py *cpython.Python, maps []target.Mapping) *lockWaits {
	lw := &lockWaits{unw: unwind.New(proc, maps, proc.OpenPath), py: py.Binary.Path}
	lw.acquire, _ = py.Sym("PyThread_acquire_lock_timed")
	if lw.acquire != 0 {
		_ = lw.unw.Load(func(path string) bool { return path == lw.py || isLibc(path) })
	}
	return lw
}

// futexRestartable says whether a futex wait interrupted as r shows can be
// resumed by executing the same system call again: a wait with no timeout,
// or FUTEX_WAIT_BITSET, whose timeout is absolute (glibc's semaphore waits
// use it).
func futexRestartable(r Regs) bool {
	switch r.Rsi & futexCmdMask {
	case futexWaitBitset:
		return true
	case futexWait:
		return r.R10 == 0
	}
	return false
}

// walkDepth is how many frames of a thread's native stack the rule reads.
const walkDepth = 8

// walk unwinds the innermost walkDepth frames of the native stack of a
// thread paused with registers r.
func (lw *lockWaits) walk(_ *live.Pauser, r Regs) ([]unwind.Frame, error) {
	return lw.unw.StackN(nativeRegs(r), walkDepth)
}

// nativeRegs are a thread's registers as the unwinder numbers them.
func nativeRegs(r Regs) unwind.Regs {
	var u unwind.Regs
	u[unwind.RAX], u[unwind.RDX], u[unwind.RCX], u[unwind.RBX] = r.Rax, r.Rdx, r.Rcx, r.Rbx
	u[unwind.RSI], u[unwind.RDI], u[unwind.RBP], u[unwind.RSP] = r.Rsi, r.Rdi, r.Rbp, r.Rsp
	u[unwind.R8], u[unwind.R9], u[unwind.R10], u[unwind.R11] = r.R8, r.R9, r.R10, r.R11
	u[unwind.R12], u[unwind.R13], u[unwind.R14], u[unwind.R15] = r.R12, r.R13, r.R14, r.R15
	u[unwind.RIP] = r.Rip
	return u
}

// restartedSleeps are the C library's functions whose system calls the
// kernel restarts through restart_syscall (nanosleep, clock_nanosleep,
// poll with a timeout) and which are safe to enter (safeSyscalls): a
// thread paused in restart_syscall with its pc in one of them restarts
// one of those.
var restartedSleeps = map[string]string{
	"nanosleep": "nanosleep", "__nanosleep": "nanosleep",
	"clock_nanosleep": "clock_nanosleep", "__clock_nanosleep": "clock_nanosleep", "__clock_nanosleep_time64": "clock_nanosleep",
	"poll": "poll", "__poll": "poll",
}

// restarted says what a thread paused in restart_syscall (registers r)
// restarts: a sleep or poll (sleep set), a Python-level lock wait (lock
// set: a futex), or neither (why).
func (lw *lockWaits) restarted(p *live.Pauser, r Regs) (sleep, lock, why string) {
	frames, err := lw.walk(p, r)
	if len(frames) > 0 && isLibc(frames[0].Library) {
		if s, ok := restartedSleeps[frames[0].Function]; ok {
			return s, "", ""
		}
	}
	if err != nil && len(frames) < 2 {
		return "", "", fmt.Sprintf("restart_syscall (native stack not unwound: %v)", err)
	}
	if !futexRestartable(r) {
		return "", "", "restart_syscall " + describe(frames, lw.py)
	}
	lock, why = lw.classify(frames, err)
	if lock == "" {
		why = "restarted " + why
	}
	return "", lock, why
}

// check says whether the thread whose registers are r (paused in a futex)
// waits for a Python-level lock, and what it waits in ("" and why not).
func (lw *lockWaits) check(p *live.Pauser, r Regs) (string, string) {
	frames, err := lw.walk(p, r)
	return lw.classify(frames, err)
}

// classify applies the rule to a walk (err: where it stopped early).
func (lw *lockWaits) classify(frames []unwind.Frame, err error) (string, string) {
	if lw.acquire == 0 || len(lw.methods) == 0 {
		return "", "futex wait (no lock methods known)"
	}
	i := 0
	for ; i < len(frames) && frames[i].Library != lw.py; i++ {
		if !isLibc(frames[i].Library) {
			return "", "futex wait " + describe(frames, lw.py)
		}
	}
	switch {
	case i == 0 || i == len(frames):
		if err != nil {
			return "", fmt.Sprintf("futex wait (native stack not unwound: %v)", err)
		}
		return "", "futex wait " + describe(frames, lw.py)
	case !frames[i].Covers(lw.acquire):
		if strings.Contains(frames[i].Function, "take_gil") {
			return "", "futex wait for the GIL " + describe(frames, lw.py)
		}
		return "", "futex wait " + describe(frames, lw.py)
	}
	for j := i + 1; j < len(frames) && j <= i+lockWaitDepth; j++ {
		for start, name := range lw.methods {
			if frames[j].Covers(start) {
				return name, ""
			}
		}
	}
	if err != nil {
		return "", fmt.Sprintf("futex wait in PyThread_acquire_lock_timed, caller not unwound: %v", err)
	}
	return "", "futex wait in PyThread_acquire_lock_timed, not called by a lock's acquire " + describe(frames, lw.py)
}

// isLibc says whether path is the C library (or, before glibc 2.34, its
// thread library, where the semaphore functions lived).
func isLibc(path string) bool {
	b := filepath.Base(path)
	return strings.HasPrefix(b, "libc.so") || strings.HasPrefix(b, "libc-") || strings.HasPrefix(b, "libpthread")
}

// describe names the first frames of the Python binary on a walk, for
// messages: "(in take_gil ← PyEval_RestoreThread)" or "(in libpython at
// 0x…)".
func describe(frames []unwind.Frame, py string) string {
	var names []string
	for _, f := range frames {
		if f.Library != py && len(names) == 0 {
			continue
		}
		switch {
		case f.Function != "":
			names = append(names, f.Function)
		case f.FuncStart == 0:
			names = append(names, fmt.Sprintf("%s at %#x", filepath.Base(f.Library), f.PC))
		default:
			names = append(names, fmt.Sprintf("%s+%#x", filepath.Base(f.Library), f.PC-f.FuncStart))
		}
		if len(names) == 3 {
			break
		}
	}
	if len(names) == 0 {
		return "(outside Python)"
	}
	return "(in " + strings.Join(names, " ← ") + ")"
}
