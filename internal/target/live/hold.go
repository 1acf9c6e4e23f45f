package live

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"krait/internal/target"
)

// Holder keeps every thread of a process seized for as long as it lives,
// so that a sampler can stop the process many times a second cheaply: a
// stop is PTRACE_INTERRUPT and a wait per thread, a resume PTRACE_CONT,
// where Pause seizes, stops and detaches every thread each time. All
// ptrace calls run on one goroutine locked to its OS thread (the tracer,
// as the kernel wants); between stops that goroutine resumes at once any
// thread that stops by itself (a signal arriving: the tracer sees it
// first), woken by SIGCHLD. Threads created later are seized at the next
// stop. Close detaches every thread; if krait dies instead, the kernel
// detaches them and a thread krait had stopped runs on.
type Holder struct {
	pid     int
	calls   chan func()
	kick    chan struct{}
	threads map[int]*heldThread
	inStop  bool
	once    sync.Once
	done    chan struct{} // closed by Close, after the detach
	// Unstopped lists the threads that did not stop in time at the last
	// Stop (or that another tracer holds).
	Unstopped []int
}

type heldThread struct {
	stopped bool           // in a ptrace stop we must end
	listen  bool           // the stop is a group-stop: end it with PTRACE_LISTEN
	sig     syscall.Signal // to deliver when resumed
}

// Hold starts holding pid: no thread is seized or stopped until the first
// Stop.
func Hold(pid int) *Holder {
	h := &Holder{pid: pid, calls: make(chan func()), kick: make(chan struct{}, 1), done: make(chan struct{}), threads: map[int]*heldThread{}}
	go h.loop()
	kicks.add(h)
	return h
}

func (h *Holder) loop() {
	runtime.LockOSThread() // never unlocked: the thread dies with the goroutine, and the kernel detaches what it still traces
	for {
		select {
		case f := <-h.calls:
			f()
		case <-h.done:
			return
		case <-h.kick:
			if !h.inStop {
				h.drain()
				h.resumeAll()
			}
		}
	}
}

func (h *Holder) do(f func()) bool {
	done := make(chan struct{})
	select {
	case h.calls <- func() { f(); close(done) }:
	case <-h.done:
		return false
	}
	<-done
	return true
}

// event records what wait4 said about one of our threads.
func (h *Holder) event(tid int, ws unix.WaitStatus) {
	t := h.threads[tid]
	if t == nil {
		return
	}
	switch {
	case ws.Exited() || ws.Signaled():
		delete(h.threads, tid)
	case ws.Stopped():
		t.stopped = true
		sig := ws.StopSignal()
		if int(ws>>16)&0xff == unix.PTRACE_EVENT_STOP {
			// Our interrupt (SIGTRAP), or a group-stop (the stopping
			// signal), which must last after we let go.
			t.sig = 0
			t.listen = sig == unix.SIGSTOP || sig == unix.SIGTSTP || sig == unix.SIGTTIN || sig == unix.SIGTTOU
		} else {
			t.sig, t.listen = sig, false
		}
	}
}

// drain takes every wait status that is ready, without blocking.
func (h *Holder) drain() {
	for {
		var ws unix.WaitStatus
		tid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL|unix.WNOTHREAD, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || tid <= 0 {
			return
		}
		h.event(tid, ws)
	}
}

func (h *Holder) resume(tid int, t *heldThread) {
	if !t.stopped {
		return
	}
	var err error
	if t.listen {
		_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_LISTEN, uintptr(tid), 0, 0, 0, 0)
		if e != 0 {
			err = e
		}
	} else {
		err = unix.PtraceCont(tid, int(t.sig))
	}
	if err == nil || err == unix.ESRCH {
		// ESRCH: it died meanwhile; its exit is reaped by a later drain.
		t.stopped, t.sig, t.listen = false, 0, false
	}
}

func (h *Holder) resumeAll() {
	for tid, t := range h.threads {
		h.resume(tid, t)
	}
}

// Stop stops every thread of the process (seizing the ones not seen
// before), waiting at most timeout for each. Threads that do not stop in
// time are listed in Unstopped. It fails if the process is gone or may not
// be traced.
func (h *Holder) Stop(timeout time.Duration) error {
	var err error
	if !h.do(func() { err = h.stop(timeout) }) {
		return fmt.Errorf("process %d: holder closed", h.pid)
	}
	return err
}

func (h *Holder) stop(timeout time.Duration) error {
	h.inStop = true
	h.Unstopped = h.Unstopped[:0]
	h.drain()
	tids, err := listTIDs(h.pid)
	if err != nil {
		h.threads = map[int]*heldThread{}
		return fmt.Errorf("process %d: %w", h.pid, target.ErrExited)
	}
	present := make(map[int]bool, len(tids))
	for _, tid := range tids {
		present[tid] = true
	}
	for tid := range h.threads {
		if !present[tid] {
			delete(h.threads, tid) // gone without our seeing it (an exec)
		}
	}
	sort.Slice(tids, func(i, j int) bool { return tids[i] == h.pid || tids[j] != h.pid && tids[i] < tids[j] })
	for _, tid := range tids {
		if _, ok := h.threads[tid]; ok {
			continue
		}
		seize := unix.PtraceSeize
		if tid == h.pid && len(h.threads) == 0 {
			seize = seizeMain
		}
		if err := seize(tid); err != nil {
			switch {
			case err == unix.ESRCH:
			case err == unix.EPERM && tid == h.pid && len(h.threads) == 0 && threadAlive(h.pid, tid):
				return &target.PermissionError{PID: h.pid, Op: "ptrace"}
			case err == unix.EPERM:
				if threadAlive(h.pid, tid) {
					h.Unstopped = append(h.Unstopped, tid) // another tracer's
				}
			default:
				return fmt.Errorf("ptrace seize thread %d: %v", tid, err)
			}
			continue
		}
		h.threads[tid] = &heldThread{}
	}
	pending := 0
	for tid, t := range h.threads {
		if t.stopped {
			continue
		}
		if err := unix.PtraceInterrupt(tid); err != nil {
			if err != unix.ESRCH {
				return fmt.Errorf("ptrace interrupt thread %d: %v", tid, err)
			}
			continue // exiting: drain reaps it
		}
		pending++
	}
	deadline := time.Now().Add(timeout)
	for spins := 0; pending > 0; {
		var ws unix.WaitStatus
		tid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL|unix.WNOTHREAD, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break // ECHILD: none left
		}
		if tid > 0 {
			if t := h.threads[tid]; t != nil && !t.stopped {
				pending--
			}
			h.event(tid, ws)
			continue
		}
		if time.Now().After(deadline) {
			break
		}
		if spins++; spins < 4 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
	for tid, t := range h.threads {
		if !t.stopped {
			h.Unstopped = append(h.Unstopped, tid)
		}
	}
	if len(h.threads) == 0 {
		if !processAlive(h.pid) || !threadAlive(h.pid, h.pid) {
			return fmt.Errorf("process %d: %w", h.pid, target.ErrExited)
		}
	}
	return nil
}

// Cont resumes every thread Stop stopped, delivering the signals that
// arrived meanwhile; a thread in a group-stop (SIGSTOP) stays stopped.
func (h *Holder) Cont() {
	h.do(func() {
		h.drain()
		h.resumeAll()
		h.inStop = false
	})
}

// Threads is how many threads are seized.
func (h *Holder) Threads() int {
	n := 0
	h.do(func() { n = len(h.threads) })
	return n
}

// Close detaches every thread (stopping the running ones first, as the
// kernel wants), delivering pending signals. It is idempotent and safe
// from any goroutine.
func (h *Holder) Close() {
	h.once.Do(func() {
		kicks.remove(h)
		h.do(h.detachAll)
		close(h.done)
	})
}

func (h *Holder) detachAll() {
	h.inStop = true
	h.drain()
	pending := 0
	for tid, t := range h.threads {
		if !t.stopped {
			if err := unix.PtraceInterrupt(tid); err == nil {
				pending++
			}
		}
	}
	deadline := time.Now().Add(time.Second)
	for pending > 0 && time.Now().Before(deadline) {
		var ws unix.WaitStatus
		tid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL|unix.WNOTHREAD, nil)
		if err != nil && err != unix.EINTR {
			break
		}
		if tid > 0 {
			if t := h.threads[tid]; t != nil && !t.stopped {
				pending--
			}
			h.event(tid, ws)
			continue
		}
		time.Sleep(50 * time.Microsecond)
	}
	for tid, t := range h.threads {
		if t.stopped {
			// A group-stopped thread detached with no signal stays in
			// its group-stop, as it would be without krait.
			_, _, _ = unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, uintptr(t.sig), 0, 0)
		}
		// One still running stays seized until this goroutine's thread
		// ends (just after), when the kernel detaches it.
		delete(h.threads, tid)
	}
	h.drain()
}

// kicks wakes every holder when krait gets SIGCHLD, which the kernel sends
// the tracer when a tracee stops (a signal arriving) or exits.
var kicks = kickSet{m: map[*Holder]bool{}}

type kickSet struct {
	mu    sync.Mutex
	m     map[*Holder]bool
	start sync.Once
}

func (k *kickSet) add(h *Holder) {
	k.start.Do(func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, unix.SIGCHLD)
		go func() {
			for range c {
				k.mu.Lock()
				for h := range k.m {
					select {
					case h.kick <- struct{}{}:
					default:
					}
				}
				k.mu.Unlock()
			}
		}()
	})
	k.mu.Lock()
	k.m[h] = true
	k.mu.Unlock()
}

func (k *kickSet) remove(h *Holder) {
	k.mu.Lock()
	delete(k.m, h)
	k.mu.Unlock()
}
