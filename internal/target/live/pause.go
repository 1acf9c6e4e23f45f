package live

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"krait/internal/target"
)

// Pauser holds every thread of a process in a ptrace stop. The kernel wants
// all ptrace calls on a tracee from the thread that seized it, so they all
// run on one goroutine locked to its OS thread. Release is safe to call from
// any goroutine, any number of times (a signal handler calls it too), and if
// krait dies the kernel detaches the threads, which then run on.
type Pauser struct {
	pid   int
	calls chan func()
	// stopped maps each seized thread to the signal it was stopped with
	// (0 for our own interrupt), redelivered on release.
	stopped map[int]syscall.Signal
	once    sync.Once
	// Elapsed is set by Release: how long the process was held.
	Started time.Time
	Held    time.Duration
	// Unstopped lists threads that did not stop in time; memory read while
	// they run may change underneath.
	Unstopped []int
}

// Pause seizes and stops every thread of pid, waiting at most timeout for
// each to stop.
func Pause(pid int, timeout time.Duration) (*Pauser, error) {
	p := &Pauser{pid: pid, calls: make(chan func()), stopped: map[int]syscall.Signal{}}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		for f := range p.calls {
			f()
		}
	}()
	var err error
	p.do(func() { err = p.stopAll(timeout) })
	if err != nil {
		p.Release()
		return nil, err
	}
	return p, nil
}

func (p *Pauser) do(f func()) {
	done := make(chan struct{})
	p.calls <- func() { f(); close(done) }
	<-done
}

func listTIDs(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, tid)
		}
	}
	return out, nil
}

func (p *Pauser) stopAll(timeout time.Duration) error {
	p.Started = time.Now()
	pending := map[int]bool{}
	// Threads may be created while we seize: list again until every
	// thread listed is ours.
	for round := 0; ; round++ {
		tids, err := listTIDs(p.pid)
		if err != nil {
			if len(p.stopped) == 0 && len(pending) == 0 {
				return fmt.Errorf("process %d: %w", p.pid, target.ErrExited)
			}
			break
		}
		fresh := 0
		// The main thread first: if it cannot be traced, nothing can (a
		// permission problem); another thread refusing is one that is
		// exiting (the kernel says EPERM for those too).
		sort.Slice(tids, func(i, j int) bool { return tids[i] == p.pid || tids[j] != p.pid && tids[i] < tids[j] })
		for _, tid := range tids {
			if _, ok := p.stopped[tid]; ok || pending[tid] {
				continue
			}
			fresh++
			seize := unix.PtraceSeize
			if tid == p.pid {
				seize = seizeMain
			}
			if err := seize(tid); err != nil {
				switch {
				case err == unix.ESRCH:
					continue // thread exited meanwhile
				case err == unix.EPERM && tid == p.pid && threadAlive(p.pid, tid):
					return &target.PermissionError{PID: p.pid, Op: "ptrace"}
				case err == unix.EPERM:
					if threadAlive(p.pid, tid) {
						// Traced by someone else: read without holding it.
						p.Unstopped = append(p.Unstopped, tid)
					}
					continue
				default:
					return fmt.Errorf("ptrace seize thread %d: %v", tid, err)
				}
			}
			if err := unix.PtraceInterrupt(tid); err != nil && err != unix.ESRCH {
				return fmt.Errorf("ptrace interrupt thread %d: %v", tid, err)
			}
			pending[tid] = true
		}
		if fresh == 0 || round > 50 {
			break
		}
	}
	deadline := time.Now().Add(timeout)
	for len(pending) > 0 {
		progressed := false
		for tid := range pending {
			var ws unix.WaitStatus
			got, err := unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
			if err != nil {
				if err == unix.ECHILD {
					delete(pending, tid) // gone
					continue
				}
				return fmt.Errorf("wait for thread %d: %v", tid, err)
			}
			if got != tid {
				continue
			}
			progressed = true
			switch {
			case ws.Exited() || ws.Signaled():
				delete(pending, tid)
			case ws.Stopped():
				sig := ws.StopSignal()
				if sig == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_STOP {
					sig = 0
				} else if ws.TrapCause() == unix.PTRACE_EVENT_STOP {
					sig = 0 // group-stop reported via interrupt
				}
				p.stopped[tid] = sig
				delete(pending, tid)
			}
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for tid := range pending {
				p.Unstopped = append(p.Unstopped, tid)
				// Still seized; Release detaches it (detach of a running
				// tracee fails, so interrupt-wait happens there).
				p.stopped[tid] = -1
			}
			break
		}
		if !progressed {
			time.Sleep(50 * time.Microsecond)
		}
	}
	if len(p.stopped) == 0 {
		if !processAlive(p.pid) {
			return fmt.Errorf("process %d: %w", p.pid, target.ErrExited)
		}
	}
	return nil
}

// threadAlive says whether a thread exists and is not exiting.
// tracedWait is how long seizeMain waits for another tracer to let go:
// another krait's pause (a dump, a sample) holds a process for
// milliseconds.
const tracedWait = time.Second

// seizeMain seizes a process's main thread. Refused while another
// process traces it (the kernel's EPERM, as for a real refusal), it tries
// again until that tracer lets go, for tracedWait at most; refused with
// no tracer, it tries twice more (one that let go just then), then gives
// the refusal.
func seizeMain(pid int) error {
	deadline := time.Now().Add(tracedWait)
	for untraced := 0; ; {
		err := unix.PtraceSeize(pid)
		if err != unix.EPERM || time.Now().After(deadline) {
			return err
		}
		if tracerOf(pid) == 0 {
			if untraced++; untraced > 2 {
				return err
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// tracerOf is the thread tracing thread tid of its process (TracerPid), 0
// if none or unknown.
func tracerOf(tid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func threadAlive(pid, tid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return false
	}
	st := statState(stat)
	return st != 'Z' && st != 'X'
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// Release detaches every thread, redelivering any signal that arrived while
// it was held. It is idempotent.
func (p *Pauser) Release() {
	p.once.Do(func() {
		p.do(func() {
			for tid, sig := range p.stopped {
				if sig < 0 {
					// Never reported a stop: wait for it briefly so the
					// detach can succeed.
					var ws unix.WaitStatus
					for i := 0; i < 200; i++ {
						if got, _ := unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil); got == tid {
							break
						}
						time.Sleep(time.Millisecond)
					}
					sig = 0
				}
				_, _, _ = unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, uintptr(sig), 0, 0)
			}
			p.Held = time.Since(p.Started)
		})
		close(p.calls)
	})
}

// Threads reports how many threads are held.
func (p *Pauser) Threads() int { return len(p.stopped) }

// PID is the paused process.
func (p *Pauser) PID() int { return p.pid }
