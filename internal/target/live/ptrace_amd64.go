package live

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Regs are a thread's general registers (x86-64).
type Regs = unix.PtraceRegs

// Do runs f on the pauser's ptrace thread (for ptrace calls of a caller's
// own).
func (p *Pauser) Do(f func()) { p.do(f) }

// Held reports whether tid is one of the threads this pauser stopped.
func (p *Pauser) Holds(tid int) bool {
	sig, ok := p.stopped[tid]
	return ok && sig >= 0
}

// GetRegs reads a held thread's registers.
func (p *Pauser) GetRegs(tid int) (Regs, error) {
	var r Regs
	var err error
	p.do(func() { err = unix.PtraceGetRegs(tid, &r) })
	if err != nil {
		return r, fmt.Errorf("read registers of thread %d: %w", tid, err)
	}
	return r, nil
}

// GetRegsAll reads the registers of several held threads in one call to
// the ptrace thread; a thread not held, or whose registers cannot be read,
// has an error instead.
func (p *Pauser) GetRegsAll(tids []int) (map[int]Regs, map[int]error) {
	regs, errs := map[int]Regs{}, map[int]error{}
	p.do(func() {
		for _, tid := range tids {
			if !p.Holds(tid) {
				errs[tid] = fmt.Errorf("thread %d was not stopped, so its registers cannot be read", tid)
				continue
			}
			var r Regs
			if err := unix.PtraceGetRegs(tid, &r); err != nil {
				errs[tid] = fmt.Errorf("read registers of thread %d: %w", tid, err)
				continue
			}
			regs[tid] = r
		}
	})
	return regs, errs
}

// SetRegs writes a held thread's registers.
func (p *Pauser) SetRegs(tid int, r Regs) error {
	var err error
	p.do(func() { err = unix.PtraceSetRegs(tid, &r) })
	if err != nil {
		return fmt.Errorf("set registers of thread %d: %w", tid, err)
	}
	return nil
}

// Step single-steps a held thread and waits (at most timeout) until it
// stops again.
func (p *Pauser) Step(tid int, timeout time.Duration) error {
	var err error
	p.do(func() {
		if err = unix.PtraceSingleStep(tid); err != nil {
			return
		}
		deadline := time.Now().Add(timeout)
		for {
			var ws unix.WaitStatus
			got, werr := unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
			if werr != nil {
				err = werr
				return
			}
			if got == tid {
				if ws.Stopped() && ws.StopSignal() == unix.SIGTRAP {
					return
				}
				if ws.Exited() || ws.Signaled() {
					err = fmt.Errorf("thread %d ended", tid)
					return
				}
				// Another signal arrived: keep it for release and
				// step on.
				if ws.Stopped() {
					p.stopped[tid] = ws.StopSignal()
					if err = unix.PtraceSingleStep(tid); err != nil {
						return
					}
				}
				continue
			}
			if time.Now().After(deadline) {
				err = fmt.Errorf("thread %d did not stop after a single step", tid)
				return
			}
			time.Sleep(20 * time.Microsecond)
		}
	})
	return err
}

// WriteMem writes into the target's memory through /proc/PID/mem, which
// works on read-only mappings too while the process is traced.
func (p *Pauser) WriteMem(addr uint64, data []byte) error {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", p.pid), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := f.WriteAt(data, int64(addr))
	if err != nil || n != len(data) {
		return fmt.Errorf("write %d bytes at 0x%x: %v", len(data), addr, err)
	}
	return nil
}

// ReadMem reads target memory through /proc/PID/mem.
func (p *Pauser) ReadMem(addr uint64, n int) ([]byte, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", p.pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		return nil, err
	}
	return b, nil
}
