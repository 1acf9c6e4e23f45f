package cpython

import (
	"encoding/binary"
	"fmt"

	"krait/internal/cpython/layout"
	"krait/internal/target"
	"krait/internal/value"
)

// Thread is one Python thread state.
type Thread struct {
	Interp   int64  // interpreter id (0 is the main interpreter)
	TState   uint64 // PyThreadState address
	ThreadID uint64 // threading.get_ident() (pthread_t)
	NativeID int    // OS thread id (0 if unknown)
	Name     string // threading.Thread name; "" if none
	HasName  bool
	GIL      bool
	Frames   []Frame
	Err      string
	// Loop is the asyncio event loop the thread runs (0: none), set by
	// Tasks.
	Loop uint64
}

// Options says what a snapshot reads.
type Options struct {
	Locals bool
	// LocalNames, if set, limits the locals read to these names.
	LocalNames map[string]bool
	Limits     Limits
	// Tasks reads asyncio tasks too.
	Tasks bool
	// OSThreads, read before pausing, lets krait map pthread ids to
	// thread ids on versions that do not record native ids.
	OSThreads []target.Thread
}

// Interpreter is one (sub)interpreter.
type Interpreter struct {
	Addr    uint64
	ID      int64
	Threads []*Thread
	// Tasks are its asyncio tasks (Options.Tasks).
	Tasks    []*Task
	TasksErr string
}

// maxThreads bounds a thread-list walk.
const maxThreads = 1 << 16

// Interpreters lists the process's interpreters and their thread states.
func (py *Python) Interpreters() ([]*Interpreter, error) {
	L := py.L
	head, err := py.m.u64(py.interpHead)
	if err != nil {
		return nil, fmt.Errorf("reading the interpreter list: %w", err)
	}
	if head == 0 {
		return nil, fmt.Errorf("process %d: %w", py.Proc.PID(), ErrNoInterpreter)
	}
	var out []*Interpreter
	seen := map[uint64]bool{}
	for is := head; is != 0 && !seen[is] && len(out) < 1024; {
		seen[is] = true
		in := &Interpreter{Addr: is}
		if L.InterpID >= 0 {
			in.ID, _ = py.m.i64(is + uint64(L.InterpID))
		} else {
			in.ID = int64(len(out))
		}
		ts, err := py.m.u64(is + uint64(L.InterpThreadHead))
		if err != nil {
			return nil, err
		}
		tseen := map[uint64]bool{}
		for ts != 0 && !tseen[ts] && len(tseen) < maxThreads {
			tseen[ts] = true
			t := &Thread{Interp: in.ID, TState: ts}
			t.ThreadID, _ = py.m.u64(ts + uint64(L.TstateThreadID))
			if L.TstateNativeID >= 0 {
				if n, err := py.m.i32(ts + uint64(L.TstateNativeID)); err == nil {
					t.NativeID = int(n)
				}
			}
			in.Threads = append(in.Threads, t)
			if ts, err = py.m.u64(ts + uint64(L.TstateNext)); err != nil {
				return nil, err
			}
		}
		out = append(out, in)
		next, err := py.m.u64(is + uint64(L.InterpNext))
		if err != nil {
			return nil, err
		}
		is = next
	}
	return out, nil
}

// gilHolders returns the thread states holding a GIL (one per interpreter
// that has its own).
func (py *Python) gilHolders(interps []*Interpreter) map[uint64]bool {
	L := py.L
	out := map[uint64]bool{}
	switch L.GIL {
	case layout.GILCurrentSymbol:
		if py.tstateCurrent != 0 {
			if ts, err := py.m.u64(py.tstateCurrent); err == nil && ts != 0 {
				out[ts] = true
			}
		}
	case layout.GILRuntimeTstate:
		if ts, err := py.m.u64(py.runtime + uint64(L.RuntimeTstateCurrent)); err == nil && ts != 0 {
			out[ts] = true
		}
	case layout.GILInterpreterGIL:
		for _, in := range interps {
			gil, err := py.m.u64(in.Addr + uint64(L.InterpGIL))
			if err != nil || gil == 0 {
				continue
			}
			locked, err := py.m.i32(gil + uint64(L.GILLocked))
			if err != nil || locked == 0 {
				continue
			}
			if ts, err := py.m.u64(gil + uint64(L.GILLastHolder)); err == nil && ts != 0 {
				out[ts] = true
			}
		}
	}
	return out
}

// Snapshot reads every thread of every interpreter: names, GIL, stacks and,
// if asked, locals.
func (py *Python) Snapshot(opt Options) ([]*Interpreter, error) {
	interps, err := py.Interpreters()
	if err != nil {
		return nil, err
	}
	holders := py.gilHolders(interps)
	py.localFilter = opt.LocalNames
	defer func() { py.localFilter = nil }()
	var all []*Thread
	for _, in := range interps {
		names := py.names[in.Addr]
		for _, t := range in.Threads {
			if _, ok := names[t.ThreadID]; !ok && t.ThreadID != 0 {
				// Not known from Prepare (or no Prepare): read now.
				names = py.threadNames(in.Addr)
				break
			}
		}
		for _, t := range in.Threads {
			t.GIL = holders[t.TState]
			if n, ok := names[t.ThreadID]; ok {
				t.Name, t.HasName = n, true
			}
			frames, err := py.Frames(t.TState, opt.Locals, opt.Limits, py.codes)
			t.Frames = frames
			if err != nil {
				t.Err = err.Error()
			}
			all = append(all, t)
		}
	}
	py.fillNativeIDs(all, opt.OSThreads)
	if opt.Tasks {
		for _, in := range interps {
			tasks, err := py.Tasks(in, opt.Locals, opt.Limits)
			in.Tasks = tasks
			if err != nil {
				in.TasksErr = err.Error()
			}
		}
	}
	return interps, nil
}

// Prepare reads, without any pause, what a following paused Snapshot
// would otherwise read while the process is held and that does not change
// under it: thread names (threading._active, a walk over sys.modules) and
// the code objects of every frame (names, files, line tables), asyncio
// tasks' included. The pause
// then covers only the frames and values themselves. It resets the memory
// cache afterwards, so the snapshot reads memory fresh.
func (py *Python) Prepare() {
	defer func() {
		py.m = newMem(py.Proc)
		py.values = map[valueKey]*value.Value{}
	}()
	interps, err := py.Interpreters()
	if err != nil {
		return
	}
	py.names = map[uint64]map[uint64]string{}
	for _, in := range interps {
		py.names[in.Addr] = py.threadNames(in.Addr)
		for _, t := range in.Threads {
			t.Frames, _ = py.Frames(t.TState, false, Limits{}, py.codes)
		}
		// And the code objects of asyncio tasks' coroutines, and the
		// types of their objects.
		_, _ = py.Tasks(in, false, Limits{})
	}
}

// threadNames maps thread idents to threading.Thread names, read from
// sys.modules['threading']._active of one interpreter.
func (py *Python) threadNames(interp uint64) map[uint64]string {
	out := map[uint64]string{}
	modules, err := py.m.u64(interp + uint64(py.L.InterpModules))
	if err != nil || modules == 0 {
		return out
	}
	mod, ok := py.dictGetStr(modules, "threading")
	if !ok {
		return out
	}
	md, err := py.m.u64(mod + uint64(py.L.ModuleDict))
	if err != nil || md == 0 {
		return out
	}
	for _, table := range []string{"_active", "_limbo"} {
		active, ok := py.dictGetStr(md, table)
		if !ok {
			continue
		}
		items, _, err := py.dictItems(active, 4096)
		if err != nil {
			continue
		}
		r := &reader{py: py, lim: Limits{Items: 1}}
		for _, e := range items {
			t, err := py.typeOf(e.key)
			if err != nil || (t.kind != kindInt && t.kind != kindLong) {
				continue
			}
			id, err := r.intValue(e.key, !py.L.Py2 || t.kind == kindLong)
			if err != nil {
				continue
			}
			tt, err := py.typeOf(e.value)
			if err != nil {
				continue
			}
			attrs, _, err := py.instanceDictItems(e.value, tt, 256)
			if err != nil {
				continue
			}
			for _, a := range attrs {
				if k, err := py.strValue(a.key, 16); err == nil && (k == "_name" || k == "_Thread__name") {
					if s, err := py.strValue(a.value, 1024); err == nil {
						out[id.Uint64()] = s
					}
				}
			}
		}
	}
	return out
}

// fillNativeIDs finds OS thread ids for versions whose thread states do not
// record them (before 3.8): the pthread_t of a thread is the address of
// glibc's struct pthread, which holds the kernel tid at a fixed offset.
// krait finds that offset as the one where every thread's struct holds one
// of the process's tids.
func (py *Python) fillNativeIDs(threads []*Thread, os []target.Thread) {
	need := false
	for _, t := range threads {
		if t.NativeID == 0 && t.ThreadID != 0 {
			need = true
		}
	}
	if !need || len(os) == 0 {
		return
	}
	off := py.pthreadTIDOffset(threads, os)
	if off < 0 {
		return
	}
	for _, t := range threads {
		if t.NativeID != 0 || t.ThreadID == 0 {
			continue
		}
		var b [4]byte
		if err := py.Proc.ReadAt(b[:], t.ThreadID+uint64(off)); err == nil {
			t.NativeID = int(int32(binary.LittleEndian.Uint32(b[:])))
		}
	}
}
