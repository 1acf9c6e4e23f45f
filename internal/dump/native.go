package dump

import (
	"fmt"
	"slices"
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
	// fsBase is each thread's fs base: glibc's pthread_t on x86-64.
	fsBase map[int]uint64
	// unw and stacks: unwound on demand, once.
	unw    *unwind.Unwinder
	stacks map[int]*NativeStack
}

// nativeThreads lists the OS threads to unwind: all, or those running the
// Python threads only accepts.
func nativeThreads(all []target.Thread, interps []*cpython.Interpreter, only func(*cpython.Thread) bool) []target.Thread {
	if only == nil {
		return all
	}
	want := map[int]bool{}
	for _, in := range interps {
		for _, t := range in.Threads {
			if t.NativeID != 0 && only(t) {
				want[t.NativeID] = true
			}
		}
	}
	var out []target.Thread
	for _, t := range all {
		if want[t.TID] {
			out = append(out, t)
		}
	}
	return out
}

// captureLive takes every held thread's registers and stack.
func captureLive(proc *live.Process, p *live.Pauser, maps []target.Mapping, threads []target.Thread) *nativeCapture {
	c := &nativeCapture{maps: maps, mem: &unwind.Snapshot{Under: proc}, regs: map[int]unwind.Regs{}, errs: map[int]string{}, fsBase: map[int]uint64{}}
	tids := make([]int, len(threads))
	for i, t := range threads {
		tids[i] = t.TID
	}
	all, errs := p.GetRegsAll(tids)
	for tid, err := range errs {
		c.errs[tid] = err.Error()
	}
	for tid, ur := range all {
		r, _ := unwind.FromUser([]uint64{ur.R15, ur.R14, ur.R13, ur.R12, ur.Rbp, ur.Rbx, ur.R11, ur.R10, ur.R9, ur.R8,
			ur.Rax, ur.Rcx, ur.Rdx, ur.Rsi, ur.Rdi, ur.Orig_rax, ur.Rip, ur.Cs, ur.Eflags, ur.Rsp})
		c.regs[tid] = r
		c.fsBase[tid] = ur.Fs_base
		// A stack that cannot be copied is read from the process itself
		// when it is unwound.
		_ = c.mem.CopyStack(r[unwind.RSP], maps)
	}
	return c
}

// captureCore takes the registers a core recorded.
func captureCore(c *core.Core, threads []target.Thread) *nativeCapture {
	maps, _ := c.Maps()
	n := &nativeCapture{maps: maps, mem: &unwind.Snapshot{Under: c}, regs: map[int]unwind.Regs{}, errs: map[int]string{}, fsBase: map[int]uint64{}}
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
		if len(u) > 21 {
			n.fsBase[t.TID] = u[21] // user_regs_struct's fs_base
		}
	}
	return n
}

// NativeStack unwinds thread tid's native stack (once; nil if the
// reading was taken without ReadOptions.Native).
func (rd *Reading) NativeStack(tid int) *NativeStack {
	c := rd.capture
	if c == nil {
		return nil
	}
	if ns, ok := c.stacks[tid]; ok {
		return ns
	}
	ns := &NativeStack{}
	if why, ok := c.errs[tid]; ok {
		ns.Err = why
	} else if r, ok := c.regs[tid]; ok {
		if c.unw == nil {
			c.unw = unwind.New(c.mem, c.maps, rd.Proc.OpenPath)
		}
		frames, err := c.unw.Stack(r)
		ns.Frames = frames
		if err != nil {
			ns.Err = err.Error()
		}
	} else {
		ns.Err = "no registers were taken for this thread"
	}
	if c.stacks == nil {
		c.stacks = map[int]*NativeStack{}
	}
	c.stacks[tid] = ns
	return ns
}

// Waiting says what thread tid is waiting on when it is not running
// Python: the native frames its innermost Python frame called, outermost
// first ("PQexec → pqWait → poll"), without the interpreter's own calling
// machinery. "" when the thread is in Python (or has no native stack).
func (rd *Reading) Waiting(tid int) string {
	ns := rd.NativeStack(tid)
	if ns == nil || rd.Py == nil {
		return ""
	}
	eval, runtime := rd.Py.L.EvalFunction, rd.Py.Binary.Path
	var names []string
	for _, f := range ns.Frames {
		if isEval(f, eval) {
			break
		}
		if f.Library == runtime && callMachinery(f.Function) {
			continue
		}
		names = append(names, f.String())
	}
	if len(names) == 0 {
		return ""
	}
	slices.Reverse(names)
	return strings.Join(names, " → ")
}

// callMachinery: a function of the interpreter that only passes a call on
// (or one with no symbol, in a stripped build): not what a thread waits on.
func callMachinery(fn string) bool {
	if fn == "" {
		return true
	}
	for _, p := range []string{"_PyObject_", "PyObject_", "_PyFunction_", "_PyEval_", "PyEval_", "cfunction_", "_PyCFunction_",
		"PyCFunction_", "method_vectorcall", "call_function", "function_code_fastcall", "do_call_core", "ext_do_call",
		"slot_tp_call", "vectorcall_", "_PyMethodDef_", "PyVectorcall_", "_PyVectorcall_", "function_call", "instancemethod_call"} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// sourceFrames is a native stack with its frames' source lines and the
// functions inlined into them (see unwind.Source), for output: the
// stack itself (what Waiting and the lock-wait rule read) stays as it was
// unwound.
func (rd *Reading) sourceFrames(ns *NativeStack) []unwind.Frame {
	if rd.capture == nil || rd.capture.unw == nil || len(ns.Frames) == 0 {
		return ns.Frames
	}
	return rd.capture.unw.Source(ns.Frames)
}

// isEval says whether a native frame runs the evaluation loop (gcc's
// split-off cold part included).
func isEval(f unwind.Frame, eval string) bool {
	name, _, _ := strings.Cut(f.Function, ".")
	return name == eval && !f.Inlined
}

// nativeFrame shapes a native frame for the JSON contract.
func nativeFrame(f unwind.Frame) *Frame {
	jf := &Frame{Native: true, Function: f.Function, Library: f.Library, Address: fmt.Sprintf("0x%x", f.PC),
		File: f.File, Line: f.Line, Inlined: f.Inlined, compDir: f.CompDir}
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

// nativeOnlyThreads shapes the OS threads that run no Python thread state
// (C threads of extensions, a thread before its first Python call) with
// their native stacks.
func (rd *Reading) nativeOnlyThreads(python map[int]bool) []*Thread {
	c := rd.capture
	var out []*Thread
	for _, ot := range rd.OSThreads {
		if python[ot.TID] {
			continue
		}
		if _, ok := c.regs[ot.TID]; !ok {
			if _, ok := c.errs[ot.TID]; !ok {
				continue
			}
		}
		tid := ot.TID
		jt := &Thread{ThreadID: c.fsBase[ot.TID], NativeID: &tid, OSName: ot.Name, Interpreter: -1, NativeOnly: true, Frames: []*Frame{}}
		if ot.State != '?' {
			jt.Idle = ot.State != 'R'
		}
		ns := rd.NativeStack(ot.TID)
		for _, f := range rd.sourceFrames(ns) {
			jt.Frames = append(jt.Frames, nativeFrame(f))
		}
		jt.NativeError = ns.Err
		out = append(out, jt)
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
