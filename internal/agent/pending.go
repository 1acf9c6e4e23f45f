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

// MethodPending is how an Injection got in when krait queued a call in the
// interpreter's pending calls (3.7–3.13, under MethodAuto): the interpreter
// ran krait's bootstrap at its next eval-breaker check.
const MethodPending = "pending"

// pendingAfter is how long the ptrace way looks for a parked thread before
// it queues a pending call instead (at once when no thread of the
// interpreter is in a system call at all).
const pendingAfter = time.Second

// pendingNote is what Injection.Note says of an entry through the queue.
const pendingNote = "entered at the interpreter's next safe point (pending call)"

// pendingRoom is the room the pending call's bootstrap string takes in
// the code cave, below the trampoline's code.
const pendingRoom = 384

// Reasons a pending call cannot be queued now; krait tries again at its
// next pause.
var (
	errPendingLocked = errors.New("the interpreter's pending-call queue is locked")
	errPendingFull   = errors.New("the interpreter's pending-call queue is full")
)

// pendingEntry is the call krait queued: where, and what to restore.
type pendingEntry struct {
	q       cpython.PendingQueue
	slot    int64  // index of krait's call in the ring
	fn, arg uint64 // PyRun_SimpleString and the bootstrap string
	str     []byte // the string at arg (NUL-terminated)
	old     []byte // the cave's bytes it replaced
	oldCall []byte // the slot's bytes before (a call run long ago, up to 3.12)
	toDo    []byte // calls_to_do before (up to 3.12)
}

// pendingString is the one statement PyRun_SimpleString runs from the
// queue: run the bootstrap file in a namespace of its own, binding nothing
// in __main__. Any error (the file gone: krait gave up or died) is
// swallowed, so that the call returns 0: a pending call that fails raises
// SystemError in the application.
func pendingString(path string) string {
	p, _ := json.Marshal(path)
	return fmt.Sprintf("try:\n __import__('builtins').exec(\"with open(p, 'rb') as f:\\n s = f.read()\\nexec(compile(s, p, 'exec'), {'__name__': '__krait_boot__'})\", {'p': %s})\nexcept BaseException:\n pass\n", p)
}

// pendingCave is where the bootstrap string goes: the start of a cave
// whose end the trampoline's code may take.
func pendingCave(proc *live.Process, py *cpython.Python) (uint64, error) {
	return codeCave(proc, py, pendingRoom+caveAlign+len(trampolineCode))
}

// pendingRunner says whether a thread that can run interpreter in's
// pending calls runs Python now (holds the GIL; the process is held):
// before 3.12 the main thread of the main interpreter, from 3.12 any
// thread of the interpreter. "" if so, else why not (for the per-thread
// list of the error; krait tries again at its next pause).
func pendingRunner(py *cpython.Python, in *cpython.Interpreter, pid int) string {
	if py.L.PendingMainThread {
		if in.ID != 0 {
			return fmt.Sprintf("before Python 3.12 only the main interpreter runs pending calls, and the agent is for interpreter %d", in.ID)
		}
		for _, t := range in.Threads {
			if t.NativeID == pid {
				if t.GIL {
					return ""
				}
				return "the main thread does not hold the GIL, and before Python 3.12 only it runs pending calls"
			}
		}
		return "the main thread has no Python thread state, and before Python 3.12 only it runs pending calls (mod_wsgi's main thread never runs Python)"
	}
	for _, t := range in.Threads {
		if t.GIL {
			return ""
		}
	}
	return fmt.Sprintf("no thread of interpreter %d holds the GIL to run a pending call", in.ID)
}

// queuePending writes one pending call {PyRun_SimpleString, the bootstrap
// string} into interpreter in's queue, with every thread held (p), as
// Py_AddPendingCall would: only when the queue's lock is free and the
// ring has room; then it sets calls_to_do (up to 3.12; npending from
// 3.13) and the eval breaker's pending-calls bit (on every thread state of
// the interpreter from 3.13), so that the thread that runs Python next
// runs the call at its next eval-breaker check.
func (inj *Injection) queuePending(p *live.Pauser, py *cpython.Python, in *cpython.Interpreter, fn, cave uint64) error {
	L := py.L
	q, ok := py.PendingCalls(in)
	if !ok {
		return fmt.Errorf("%w: krait knows no pending-call queue in Python %s", ErrUnsupported, py.Version)
	}
	u32 := func(a uint64) (uint32, error) {
		b, err := p.ReadMem(a, 4)
		if err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint32(b), nil
	}
	put32 := func(a uint64, v uint32) error {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], v)
		return p.WriteMem(a, b[:])
	}
	// The lock: a PyThread_type_lock (glibc sem_t, value 1 = free) up to
	// 3.12, a PyMutex (bit 0 = locked) from 3.13.
	switch {
	case L.PendingMutex >= 0:
		b, err := p.ReadMem(q.Addr+uint64(L.PendingMutex), 1)
		if err != nil {
			return err
		}
		if b[0]&1 != 0 {
			return errPendingLocked
		}
	case L.PendingLock >= 0:
		b, err := p.ReadMem(q.Addr+uint64(L.PendingLock), 8)
		if err != nil {
			return err
		}
		lock := binary.LittleEndian.Uint64(b)
		if lock == 0 {
			return fmt.Errorf("the interpreter's pending-call queue has no lock yet")
		}
		if v, err := u32(lock); err != nil {
			return err
		} else if v != 1 {
			return errPendingLocked
		}
	default:
		return fmt.Errorf("%w: no lock of the pending-call queue in Python %s's layout", ErrUnsupported, py.Version)
	}
	ringLen := (L.PendingFirst - L.PendingCalls) / L.PendingCallSize
	first, err := u32(q.Addr + uint64(L.PendingFirst))
	if err != nil {
		return err
	}
	last, err := u32(q.Addr + uint64(L.PendingLast))
	if err != nil {
		return err
	}
	if int64(first) >= ringLen || int64(last) >= ringLen {
		return fmt.Errorf("the pending-call queue reads first %d, last %d (ring of %d)", first, last, ringLen)
	}
	next := (int64(last) + 1) % ringLen
	if L.PendingNpending >= 0 {
		n, err := u32(q.Addr + uint64(L.PendingNpending))
		if err != nil {
			return err
		}
		max, err := u32(q.Addr + uint64(L.PendingMax))
		if err != nil {
			return err
		}
		if int32(n) < 0 || int64(n) >= ringLen || n >= max {
			return errPendingFull
		}
	} else if next == int64(first) {
		return errPendingFull
	}

	// The string goes first (nothing reads it until the call is queued),
	// then the call, then the index that publishes it, then the flags.
	str := append([]byte(pendingString(inj.Dir+"/pending.py")), 0)
	if len(str) > pendingRoom {
		return fmt.Errorf("the pending call's bootstrap is %d bytes, more than the %d krait has room for", len(str), pendingRoom)
	}
	e := &pendingEntry{q: q, slot: int64(last), fn: fn, arg: cave, str: str}
	if e.old, err = p.ReadMem(cave, len(str)); err != nil {
		return err
	}
	if err := p.WriteMem(cave, str); err != nil {
		return fmt.Errorf("write the pending call's bootstrap: %w", err)
	}
	slotAt := q.Addr + uint64(L.PendingCalls+e.slot*L.PendingCallSize)
	if e.oldCall, err = p.ReadMem(slotAt, int(L.PendingCallSize)); err != nil {
		return err
	}
	call := make([]byte, L.PendingCallSize) // func, arg, and 3.13's flags = 0
	binary.LittleEndian.PutUint64(call[0:], fn)
	binary.LittleEndian.PutUint64(call[8:], cave)
	if err := p.WriteMem(slotAt, call); err != nil {
		return err
	}
	inj.pending = e // from the index on, what unqueue takes back
	if L.PendingNpending >= 0 {
		n, _ := u32(q.Addr + uint64(L.PendingNpending))
		if err := put32(q.Addr+uint64(L.PendingNpending), n+1); err != nil {
			inj.pending = nil
			return err
		}
		if err := put32(q.Addr+uint64(L.PendingLast), uint32(next)); err != nil {
			_ = put32(q.Addr+uint64(L.PendingNpending), n)
			inj.pending = nil
			return err
		}
	} else {
		if e.toDo, err = p.ReadMem(q.Addr+uint64(L.PendingCallsToDo), 4); err != nil {
			inj.pending = nil
			return err
		}
		if err := put32(q.Addr+uint64(L.PendingLast), uint32(next)); err != nil {
			inj.pending = nil
			return err
		}
		if err := put32(q.Addr+uint64(L.PendingCallsToDo), 1); err != nil {
			return err // queued; the nudges set it (and the breaker) again
		}
	}
	// The call is queued: a failure to set the breaker leaves it for the
	// interpreter's next look (krait's nudges, a signal, a GIL switch).
	return inj.signalPending(p, py, in)
}

// signalPending sets the eval breaker's pending-calls bit (and up to 3.12
// calls_to_do): beside the queue up to 3.12, on every thread state of the interpreter from 3.13
// (as _Py_set_eval_breaker_bit_all). The process is held.
func (inj *Injection) signalPending(p *live.Pauser, py *cpython.Python, in *cpython.Interpreter) error {
	L := py.L
	or := func(a uint64) error {
		b, err := p.ReadMem(a, 4)
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(b, binary.LittleEndian.Uint32(b)|L.PendingBreakerBit)
		return p.WriteMem(a, b)
	}
	if inj.pending.q.Breaker != 0 {
		if L.PendingCallsToDo >= 0 { // the queue holds krait's call
			if err := p.WriteMem(inj.pending.q.Addr+uint64(L.PendingCallsToDo), []byte{1, 0, 0, 0}); err != nil {
				return err
			}
		}
		return or(inj.pending.q.Breaker)
	}
	for _, t := range in.Threads {
		if err := or(t.TState + uint64(L.TstateEvalBreaker)); err != nil {
			return err
		}
	}
	return nil
}

// pendingNudge is how often krait, waiting for its queued call to run,
// sets the eval breaker's bit again: up to 3.11 a thread that cannot run
// pending calls may recompute the breaker without it (CPython's own calls
// from other threads wait for the main thread's next GIL switch the same
// way).
const pendingNudge = 250 * time.Millisecond

// waitPendingRun is waitUntil for a queued call: every pendingNudge the
// breaker's bit is set again while the call is still queued.
func (inj *Injection) waitPendingRun(deadline time.Time) (string, error) {
	for {
		next := time.Now().Add(pendingNudge)
		if next.After(deadline) {
			next = deadline
		}
		sock, err := inj.waitUntil(next)
		if sock != "" || err != nil || !time.Now().Before(deadline) {
			return sock, err
		}
		inj.nudgePending()
	}
}

// nudgePending sets the eval breaker's pending-calls bit again, with the
// process held, if krait's call is still queued.
func (inj *Injection) nudgePending() {
	if inj.pending == nil || inj.proc == nil || inj.py == nil {
		return
	}
	p, err := live.Pause(inj.proc.PID(), 2*time.Second)
	if err != nil {
		return
	}
	defer p.Release()
	inj.py.Reset()
	if inj.pendingStatus(p, inj.py) != pendingQueued {
		return
	}
	interps, err := inj.py.Interpreters()
	if err != nil {
		return
	}
	for _, in := range interps {
		if in.ID == inj.InterpID {
			_ = inj.signalPending(p, inj.py, in)
		}
	}
}

// pendingState is where krait's queued call stands.
type pendingState int

const (
	pendingQueued  pendingState = iota // still in the ring, not run
	pendingTaken                       // taken from the ring: it runs or ran
	pendingUnknown                     // the queue could not be read
)

// pendingStatus reads, with the process held, whether krait's call is
// still queued.
func (inj *Injection) pendingStatus(p *live.Pauser, py *cpython.Python) pendingState {
	L, e := py.L, inj.pending
	first, err1 := p.ReadMem(e.q.Addr+uint64(L.PendingFirst), 4)
	last, err2 := p.ReadMem(e.q.Addr+uint64(L.PendingLast), 4)
	call, err3 := p.ReadMem(e.q.Addr+uint64(L.PendingCalls+e.slot*L.PendingCallSize), 16)
	if err1 != nil || err2 != nil || err3 != nil {
		return pendingUnknown
	}
	f, l := int64(binary.LittleEndian.Uint32(first)), int64(binary.LittleEndian.Uint32(last))
	ringLen := (L.PendingFirst - L.PendingCalls) / L.PendingCallSize
	n := (l - f + ringLen) % ringLen // calls queued (up to 3.12 the ring keeps one slot free)
	if L.PendingNpending >= 0 {
		c, err := p.ReadMem(e.q.Addr+uint64(L.PendingNpending), 4)
		if err != nil {
			return pendingUnknown
		}
		n = int64(int32(binary.LittleEndian.Uint32(c)))
	}
	pos := (e.slot - f + ringLen) % ringLen
	if pos >= n || binary.LittleEndian.Uint64(call[0:]) != e.fn || binary.LittleEndian.Uint64(call[8:]) != e.arg {
		return pendingTaken
	}
	return pendingQueued
}

// unqueue takes krait's pending call back, with the process held, if it
// has not been taken from the ring yet: the last call (nothing queued
// since), it is removed and the indexes and counts are restored; with
// calls queued after it, its string is emptied (an empty program, run
// harmlessly). It says whether the call will not run krait's bootstrap.
// The cave is restored where no call can read it any more.
func (inj *Injection) unqueue(proc *live.Process, py *cpython.Python) bool {
	e := inj.pending
	if e == nil {
		return true
	}
	p, err := live.Pause(proc.PID(), 2*time.Second)
	if err != nil {
		return false
	}
	defer p.Release()
	py.Reset()
	if inj.pendingStatus(p, py) != pendingQueued {
		return false // taken (it runs or ran), or unreadable
	}
	L := py.L
	ringLen := (L.PendingFirst - L.PendingCalls) / L.PendingCallSize
	last, _ := p.ReadMem(e.q.Addr+uint64(L.PendingLast), 4)
	if (int64(binary.LittleEndian.Uint32(last))-1+ringLen)%ringLen != e.slot {
		// Calls were queued after krait's: leave the slot, run nothing.
		if p.WriteMem(e.arg, []byte{0}) != nil {
			return false
		}
		inj.pending = nil
		return true
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(e.slot))
	if p.WriteMem(e.q.Addr+uint64(L.PendingLast), b[:]) != nil {
		return false
	}
	_ = p.WriteMem(e.q.Addr+uint64(L.PendingCalls+e.slot*L.PendingCallSize), e.oldCall)
	if L.PendingNpending >= 0 {
		if n, err := p.ReadMem(e.q.Addr+uint64(L.PendingNpending), 4); err == nil && binary.LittleEndian.Uint32(n) > 0 {
			binary.LittleEndian.PutUint32(n, binary.LittleEndian.Uint32(n)-1)
			_ = p.WriteMem(e.q.Addr+uint64(L.PendingNpending), n)
		}
	} else if first, err := p.ReadMem(e.q.Addr+uint64(L.PendingFirst), 4); err == nil && int64(binary.LittleEndian.Uint32(first)) == e.slot {
		// The queue is as krait found it: so is calls_to_do. The eval
		// breaker is left set: the loop's next look finds nothing to do
		// and computes it afresh.
		_ = p.WriteMem(e.q.Addr+uint64(L.PendingCallsToDo), e.toDo)
	}
	_ = p.WriteMem(e.arg, e.old)
	inj.pending = nil
	return true
}

// restoreCave puts back the cave's bytes under the bootstrap string once
// the call has run (the bootstrap it started renamed agent.py: the string
// was compiled long before).
func (inj *Injection) restoreCave(proc *live.Process, e *pendingEntry) {
	if e == nil || proc == nil {
		return
	}
	p, err := live.Pause(proc.PID(), 2*time.Second)
	if err != nil {
		return
	}
	defer p.Release()
	if cur, err := p.ReadMem(e.arg, len(e.str)); err == nil && string(cur) == string(e.str) {
		_ = p.WriteMem(e.arg, e.old)
	}
}

// withdrawPending takes back a pending call the interpreter has not run
// by the deadline: removed from the queue and agent.py claimed, nothing
// runs later. If the call ran meanwhile, the agent is starting: krait
// waits for it, as withdraw does for PEP 768.
func (inj *Injection) withdrawPending(timeout time.Duration) (string, error) {
	if inj.unqueue(inj.proc, inj.py) {
		// Abort (after WaitSocket) claims agent.py, removes the directory.
		return "", fmt.Errorf("%w: the interpreter did not reach a safe point to run krait's pending call within %s (%s); krait took the call back", ErrTimeout, timeout, inj.Syscall)
	}
	if err := inj.dir.rename("agent.py", "agent.krait"); err == nil {
		return "", fmt.Errorf("%w: the interpreter took krait's pending call but no agent started within %s", ErrTimeout, timeout)
	}
	sock, err := inj.waitUntil(time.Now().Add(timeout))
	if sock != "" {
		e := inj.pending
		inj.pending = nil
		inj.restoreCave(inj.proc, e)
	}
	if sock != "" || err != nil {
		return sock, err
	}
	return "", fmt.Errorf("%w: the agent did not start within %s", ErrTimeout, timeout)
}

// pendingTry is the state of the ptrace way's fallback to a pending call.
type pendingTry struct {
	on    bool   // still worth trying
	cave  uint64 // where the bootstrap string goes (0: not found yet)
	ready bool   // pending.py is in the agent's directory
}

// tryPending queues krait's pending call, with the process held (p),
// when the ptrace way found no parked thread (err) and has looked for
// pendingAfter, or at once when no thread is in a system call at all, and
// a thread that can run the call runs Python. It returns nil once the call
// is queued, else err with why not added to what it says of the threads.
func (inj *Injection) tryPending(p *live.Pauser, proc *live.Process, py *cpython.Python, pc *pendingTry, begin time.Time, run uint64, err error) error {
	var ns *noSafeThread
	if !errors.As(err, &ns) || inj.chosen == nil || ns.inSyscall && time.Since(begin) < pendingAfter {
		return err
	}
	note := func(why string) error {
		ns.why = append(ns.why, "no pending call: "+why)
		return err
	}
	if why := pendingRunner(py, inj.chosen, p.PID()); why != "" {
		return note(why)
	}
	if pc.cave == 0 {
		cave, cerr := pendingCave(proc, py)
		if cerr != nil {
			pc.on = false
			return note(cerr.Error())
		}
		pc.cave = cave
	}
	if !pc.ready {
		cfg := map[string]any{"dir": inj.Dir, "token": inj.Token, "page": nil, "page_size": nil, "trace": inj.tracecfg, "connect_timeout": connectTimeout}
		boot, berr := remoteBootstrap(inj.Dir, cfg)
		if berr == nil {
			berr = inj.dir.create("pending.py", []byte(boot))
		}
		if berr != nil {
			pc.on = false
			return note(berr.Error())
		}
		pc.ready = true
	}
	qerr := inj.queuePending(p, py, inj.chosen, run, pc.cave)
	if inj.pending != nil {
		if hookAfterQueue != nil {
			hookAfterQueue()
		}
		return nil // queued (a breaker that could not be set waits for the next look)
	}
	if !errors.Is(qerr, errPendingLocked) && !errors.Is(qerr, errPendingFull) {
		pc.on = false
	}
	return note(qerr.Error())
}

// hookAfterQueue, a test hook, is called with the process held right
// after krait queued its pending call.
var hookAfterQueue func()
