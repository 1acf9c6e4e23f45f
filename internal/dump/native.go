package dump

import (
	"fmt"
	"strings"

	"krait/internal/cpython"
	"krait/internal/target"
	"krait/internal/target/core"
	"krait/internal/target/live"
	"krait/internal/unwind"
)

// NativeStack is one thread's unwound native stack.
type NativeStack struct {
	Frames []unwind.Frame
	// Err says why the unwinding stopped before the outermost frame.
	Err string
}

// nativeCapture is what is taken of each thread while the process is held:
// its registers and a copy of its stack.
type nativeCapture struct {
	maps []target.Mapping
	mem  *unwind.Snapshot
	regs map[int]unwind.Regs
	errs map[int]string
}

// captureLive takes every held thread's registers and stack.
func captureLive(proc *live.Process, p *live.Pauser, maps []target.Mapping, threads []target.Thread) *nativeCapture {
	c := &nativeCapture{maps: maps, mem: &unwind.Snapshot{Under: proc}, regs: map[int]unwind.Regs{}, errs: map[int]string{}}
	for _, t := range threads {
		if !p.Holds(t.TID) {
			c.errs[t.TID] = "thread was not stopped, so its registers cannot be read"
			continue
		}
		ur, err := p.GetRegs(t.TID)
		if err != nil {
			c.errs[t.TID] = err.Error()
			continue
		}
		r, _ := unwind.FromUser([]uint64{ur.R15, ur.R14, ur.R13, ur.R12, ur.Rbp, ur.Rbx, ur.R11, ur.R10, ur.R9, ur.R8,
			ur.Rax, ur.Rcx, ur.Rdx, ur.Rsi, ur.Rdi, ur.Orig_rax, ur.Rip, ur.Cs, ur.Eflags, ur.Rsp})
		c.regs[t.TID] = r
		if err := c.mem.CopyStack(r[unwind.RSP], maps); err != nil {
			// Unwinding reads the process itself then.
			continue
		}
	}
	return c
}

// captureCore takes the registers a core recorded.
func captureCore(c *core.Core, threads []target.Thread) *nativeCapture {
	maps, _ := c.Maps()
	n := &nativeCapture{maps: maps, mem: &unwind.Snapshot{Under: c}, regs: map[int]unwind.Regs{}, errs: map[int]string{}}
	for _, t := range threads {
		u, ok := c.Registers(t.TID)
		if !ok {
			n.errs[t.TID] = "the core holds no registers for this thread"
			continue
		}
		r, err := unwind.FromUser(u)
		if err != nil {
			n.errs[t.TID] = err.Error()
			continue
		}
		n.regs[t.TID] = r
	}
	return n
}

// unwindAll unwinds every captured thread.
func (c *nativeCapture) unwindAll(proc target.Process) map[int]*NativeStack {
	u := unwind.New(c.mem, c.maps, proc.OpenPath)
	out := map[int]*NativeStack{}
	for tid, why := range c.errs {
		out[tid] = &NativeStack{Err: why}
	}
	for tid, r := range c.regs {
		frames, err := u.Stack(r)
		ns := &NativeStack{Frames: frames}
		if err != nil {
			ns.Err = err.Error()
		}
		out[tid] = ns
	}
	return out
}

// isEval says whether a native frame runs the evaluation loop (gcc's
// split-off cold part included).
func isEval(f unwind.Frame, eval string) bool {
	name, _, _ := strings.Cut(f.Function, ".")
	return name == eval
}

// nativeFrame shapes a native frame for the JSON contract.
func nativeFrame(f unwind.Frame) *Frame {
	jf := &Frame{Native: true, Function: f.Function, Library: f.Library, Address: fmt.Sprintf("0x%x", f.PC)}
	if f.Library != "" {
		jf.LibraryOffset = fmt.Sprintf("0x%x", f.Address)
	}
	if f.Function == "" {
		jf.Function = f.String()
	}
	jf.Qualname = jf.Function
	return jf
}

// merge puts a thread's Python frames in place of the native frames of
// the evaluation loop that run them, as py-spy and PyStack do. Python
// frames are grouped by the call of the loop that runs them (each group
// ends with its Entry frame); each eval frame, innermost first, takes the
// next group. Python frames left over (the unwinding stopped early) go
// after the native ones.
func merge(native []unwind.Frame, py []*Frame, entry []bool, eval string) []*Frame {
	var groups [][]*Frame
	var cur []*Frame
	for i, f := range py {
		cur = append(cur, f)
		if entry[i] {
			groups = append(groups, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	out := []*Frame{}
	for _, nf := range native {
		if isEval(nf, eval) && len(groups) > 0 {
			out = append(out, groups[0]...)
			groups = groups[1:]
			continue
		}
		out = append(out, nativeFrame(nf))
	}
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// entries lists the Entry flags of a thread's Python frames.
func entries(t *cpython.Thread) []bool {
	out := make([]bool, len(t.Frames))
	for i, f := range t.Frames {
		out[i] = f.Entry
	}
	return out
}
