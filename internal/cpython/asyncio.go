package cpython

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"krait/internal/binfmt"
)

// Task is one asyncio task, read from memory: its state, the stack of
// coroutines it is suspended in and what it waits for.
type Task struct {
	Addr uint64
	Loop uint64
	// Name is the task's name (3.8+); HasName is false before.
	Name    string
	HasName bool
	// State is "pending", "cancelled" or "finished".
	State string
	// Running: the task's coroutine is executing on a thread right now
	// (its frames are in that thread's stack).
	Running bool
	// Stack is the coroutine chain (innermost first): the task's
	// coroutine, the coroutine it awaits, and so on.
	Stack []Frame
	// Awaiting says what the innermost await waits on ("sleep(3600)",
	// `task "Task-2" (0x…)`, "gather of 2", "<_asyncio.Future pending at
	// 0x…>").
	Awaiting string
	// Awaits are the tasks this task waits for (directly, through a
	// gather, asyncio.wait, wait_for or a TaskGroup).
	Awaits []uint64
	Err    string
}

// maxTasks bounds how many tasks krait reads in one interpreter.
const maxTasks = 1 << 14

// maxAwaitChain bounds a coroutine await chain.
const maxAwaitChain = 256

// future states (enum fut_state in _asynciomodule.c).
var futStates = []string{"pending", "cancelled", "finished"}

// Tasks reads the asyncio tasks of an interpreter whose threads have been
// read (Snapshot): every task asyncio knows, with its coroutine stack,
// each thread's running loop in Thread.Loop. Tasks is empty when asyncio
// was never imported.
func (py *Python) Tasks(in *Interpreter, locals bool, lim Limits) ([]*Task, error) {
	py.asyncioInit()
	L := py.L
	modules, err := py.m.u64(in.Addr + uint64(L.InterpModules))
	if err != nil || modules == 0 {
		return nil, err
	}
	tasksMod, ok := py.dictGetStr(modules, "asyncio.tasks")
	if !ok {
		return nil, nil // no asyncio in this interpreter
	}
	// Which thread runs which loop.
	running := map[uint64]bool{} // frames executing on some thread
	for _, t := range in.Threads {
		for _, f := range t.Frames {
			running[f.Addr] = true
		}
		t.Loop = py.runningLoop(t)
	}
	var addrs []uint64
	seen := map[uint64]bool{}
	add := func(a uint64) {
		if a != 0 && !seen[a] && len(addrs) < maxTasks {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	if md, err := py.m.u64(tasksMod + uint64(L.ModuleDict)); err == nil && md != 0 {
		for _, name := range L.AsyncioTaskSets {
			if s, ok := py.dictGetStr(md, name); ok {
				for _, a := range py.setMembers(s) {
					add(a)
				}
			}
		}
		if class, attr, ok := strings.Cut(L.AsyncioPyTaskSet, "."); ok {
			if c, ok := py.dictGetStr(md, class); ok {
				if s, ok := py.Ref(c).ClassAttr(attr); ok {
					for _, a := range py.setMembers(s.Addr) {
						add(a)
					}
				}
			}
		}
	}
	if L.AsyncioAllTasksSymbol != "" {
		if a, ok := py.extSymbol("_asyncio", L.AsyncioAllTasksSymbol); ok {
			if s, err := py.m.u64(a); err == nil && s != 0 {
				for _, a := range py.setMembers(s) {
					add(a)
				}
			}
		}
	}
	if L.TaskNode >= 0 {
		for _, t := range in.Threads {
			if L.TstateAsyncioTasksHead >= 0 {
				for _, a := range py.taskList(t.TState + uint64(L.TstateAsyncioTasksHead)) {
					add(a)
				}
			}
		}
		if L.InterpAsyncioTasksHead >= 0 {
			for _, a := range py.taskList(in.Addr + uint64(L.InterpAsyncioTasksHead)) {
				add(a)
			}
		}
	}
	var out []*Task
	for _, a := range addrs {
		if !py.isTask(a) {
			continue
		}
		out = append(out, py.readTask(a, running, locals, lim))
	}
	if len(addrs) >= maxTasks {
		return out, fmt.Errorf("krait reads at most %d tasks of an interpreter; the others are not shown", maxTasks)
	}
	return out, nil
}

// asyncioInit applies the offsets the target's _asyncio module publishes
// (3.14+), once.
func (py *Python) asyncioInit() {
	if py.asyncioDone {
		return
	}
	py.asyncioDone = true
	n := py.L.AsyncioDebugSize()
	if n == 0 {
		return
	}
	obj, bias, ok := py.extension("_asyncio")
	if !ok {
		return
	}
	addr, _, ok := obj.Section(".AsyncioDebug")
	if !ok {
		return
	}
	if blob, err := py.m.bytes(addr+bias, n); err == nil {
		_ = py.L.ApplyAsyncioDebugOffsets(blob)
	}
}

// extension finds an extension module mapped in the target (name is its
// module name: "_asyncio" for _asyncio.cpython-312-x86_64-linux-gnu.so),
// or the binary holding the runtime when the module is built in.
func (py *Python) extension(name string) (*binfmt.Object, uint64, bool) {
	if o, ok := py.exts[name]; ok {
		return o.obj, o.bias, o.obj != nil
	}
	if py.exts == nil {
		py.exts = map[string]extObject{}
	}
	py.exts[name] = extObject{}
	maps, err := py.Proc.Maps()
	if err != nil {
		return nil, 0, false
	}
	for _, m := range maps {
		base := filepath.Base(m.Path)
		if !strings.HasPrefix(base, name+".") || !strings.Contains(base, ".so") || m.Offset != 0 {
			continue
		}
		opened, err := py.Proc.OpenPath(m.Path)
		if err != nil {
			continue
		}
		obj, err := openObject(opened, m.Path)
		if err != nil {
			continue
		}
		if id := mappedBuildID(py.Proc, m.Start); id != "" && obj.BuildID != "" && id != obj.BuildID {
			continue // another build than the process mapped: its addresses would mislead
		}
		e := extObject{obj: obj, bias: obj.Bias(m.Start, m.Offset)}
		py.exts[name] = e
		return e.obj, e.bias, true
	}
	e := extObject{obj: py.Binary, bias: py.Bias}
	py.exts[name] = e
	return e.obj, e.bias, true
}

type extObject struct {
	obj  *binfmt.Object
	bias uint64
}

// extSymbol returns the address of a symbol of an extension module.
func (py *Python) extSymbol(module, sym string) (uint64, bool) {
	obj, bias, ok := py.extension(module)
	if !ok {
		return 0, false
	}
	v, ok := obj.Symbol(sym)
	if !ok {
		return 0, false
	}
	return v + bias, true
}

// setMembers returns the objects in a set, or those a WeakSet's weak
// references still point to.
func (py *Python) setMembers(s uint64) []uint64 {
	t, err := py.typeOf(s)
	if err != nil {
		return nil
	}
	r := &reader{py: py, lim: Limits{Items: maxTasks}}
	if t.kind == kindSet || t.kind == kindFrozenSet {
		items, _, err := r.setItems(s)
		if err != nil {
			return nil
		}
		return items
	}
	data, ok := py.Ref(s).Attr("data")
	if !ok {
		return nil
	}
	refs, _, err := r.setItems(data.Addr)
	if err != nil {
		return nil
	}
	var out []uint64
	for _, w := range refs {
		o, err := py.m.u64(w + uint64(py.L.WeakrefObject))
		if err != nil || o == 0 || py.Ref(o).IsNone() {
			continue // a dead reference
		}
		out = append(out, o)
	}
	return out
}

// taskList walks a 3.14 linked list of C tasks from its head node.
func (py *Python) taskList(head uint64) []uint64 {
	var out []uint64
	node, err := py.m.u64(head)
	for err == nil && node != 0 && node != head && len(out) < maxTasks {
		out = append(out, node-uint64(py.L.TaskNode))
		node, err = py.m.u64(node)
	}
	return out
}

// isCTask and friends tell asyncio's C types from its pure-Python ones.
func (py *Python) isCTask(a uint64) bool   { return py.Ref(a).Inherits("_asyncio.Task") }
func (py *Python) isCFuture(a uint64) bool { return py.Ref(a).Inherits("_asyncio.Future") }

func (py *Python) isTask(a uint64) bool {
	r := py.Ref(a)
	return r.Inherits("_asyncio.Task") || r.Inherits("asyncio.tasks.Task") || r.Inherits("asyncio.tasks._PyTask")
}

// objAt reads a pointer field of a C object (0 for NULL or None).
func (py *Python) objAt(a uint64, off int64) uint64 {
	if off < 0 {
		return 0
	}
	p, err := py.m.u64(a + uint64(off))
	if err != nil || p == 0 || py.Ref(p).IsNone() {
		return 0
	}
	return p
}

// attrAddr reads an instance attribute (0 when absent or None).
func (py *Python) attrAddr(a uint64, name string) uint64 {
	r, ok := py.Ref(a).Attr(name)
	if !ok || r.IsNone() {
		return 0
	}
	return r.Addr
}

func (py *Python) futureState(a uint64, off int64) string {
	if py.isCFuture(a) {
		if off < 0 {
			return "?"
		}
		v, err := py.m.i32(a + uint64(off))
		if err != nil || v < 0 || int(v) >= len(futStates) {
			return "?"
		}
		return futStates[v]
	}
	st := py.attrAddr(a, "_state")
	if st == 0 {
		// Still the class's default.
		if r, ok := py.Ref(a).TypeRef().ClassAttr("_state"); ok {
			st = r.Addr
		}
	}
	if s, ok := py.Ref(st).Str(); ok && st != 0 {
		return strings.ToLower(s)
	}
	return "?"
}

func (py *Python) readTask(a uint64, running map[uint64]bool, locals bool, lim Limits) *Task {
	L := py.L
	t := &Task{Addr: a}
	var coro, waiter, name uint64
	if py.isCTask(a) {
		t.Loop = py.objAt(a, L.TaskLoop)
		coro = py.objAt(a, L.TaskCoro)
		waiter = py.objAt(a, L.TaskFutWaiter)
		name = py.objAt(a, L.TaskName)
		t.State = py.futureState(a, L.TaskState)
	} else {
		coro = py.attrAddr(a, "_coro")
		waiter = py.attrAddr(a, "_fut_waiter")
		name = py.attrAddr(a, "_name")
		if py.isCFuture(a) {
			// A Python task class on the C Future (3.6's _PyTask).
			t.Loop = py.objAt(a, L.FutLoop)
			t.State = py.futureState(a, L.FutState)
		} else {
			t.Loop = py.attrAddr(a, "_loop")
			t.State = py.futureState(a, -1)
		}
	}
	if name != 0 {
		r := py.Ref(name)
		if s, ok := r.Str(); ok {
			t.Name, t.HasName = s, true
		} else if n, ok := r.Int(); ok {
			// 3.12+ keeps the number of an unnamed task until asked.
			t.Name, t.HasName = fmt.Sprintf("Task-%d", n), true
		}
	}
	var leaf uint64
	t.Stack, leaf, t.Running, t.Err = py.awaitChain(coro, running, locals, lim)
	if waiter == 0 && !t.Running {
		waiter = leaf
	}
	t.Awaiting, t.Awaits = py.describeWaiter(waiter, t.Stack)
	// A TaskGroup's __aexit__ (and its _aexit, 3.14) waits for the
	// group's tasks; asyncio.wait for those it was given.
	groups := map[uint64]bool{}
	for _, f := range t.Stack {
		if f.Function == "_wait" && inAsyncio(f, "tasks.py") {
			var tasks []uint64
			for _, m := range py.setMembers(py.frameLocal(f, "fs")) {
				if py.isTask(m) {
					tasks = append(tasks, m)
				}
			}
			if len(tasks) > 0 {
				t.Awaits = append(t.Awaits, tasks...)
				t.Awaiting = fmt.Sprintf("wait for %d tasks", len(tasks))
			}
		}
		if f.Function == "wait_for" && inAsyncio(f, "tasks.py") {
			if fut := py.frameLocal(f, "fut"); fut != 0 && py.isTask(fut) {
				t.Awaits = append(t.Awaits, fut)
				if t.Awaiting == "" || strings.HasPrefix(t.Awaiting, "<") {
					t.Awaiting = "wait_for task " + py.taskLabel(fut)
				}
			}
		}
		if (f.Function == "__aexit__" || f.Function == "_aexit") && inAsyncio(f, "taskgroups.py") {
			self := py.frameLocal(f, "self")
			if groups[self] {
				continue
			}
			groups[self] = true
			if tasks := py.attrAddr(self, "_tasks"); tasks != 0 {
				members := py.setMembers(tasks)
				t.Awaits = append(t.Awaits, members...)
				t.Awaiting = fmt.Sprintf("TaskGroup of %d tasks", len(members))
			}
		}
	}
	// One edge per awaited task (a task met through its future and a
	// frame too).
	seen := map[uint64]bool{}
	uniq := t.Awaits[:0]
	for _, a := range t.Awaits {
		if !seen[a] {
			seen[a] = true
			uniq = append(uniq, a)
		}
	}
	t.Awaits = uniq
	return t
}

// describeWaiter says what a task's future is, and which tasks it stands
// for.
func (py *Python) describeWaiter(w uint64, stack []Frame) (string, []uint64) {
	if w == 0 {
		return "", nil
	}
	if py.isTask(w) {
		return "task " + py.taskLabel(w), []uint64{w}
	}
	if children := py.attrAddr(w, "_children"); children != 0 {
		tasks := py.gatherTasks(children, 0)
		return fmt.Sprintf("gather of %d", len(tasks)), tasks
	}
	state := "?"
	if py.isCFuture(w) || py.Ref(w).Inherits("asyncio.futures.Future") {
		state = py.futureState(w, py.L.FutState)
	}
	mod, qual := py.Ref(w).Type()
	desc := fmt.Sprintf("<%s.%s %s at 0x%x>", mod, qual, state, w)
	if len(stack) > 0 {
		f := stack[0]
		if f.Function == "sleep" && inAsyncio(f, "tasks.py") {
			if d := py.frameLocal(f, "delay"); d != 0 {
				return "sleep(" + py.numberText(d) + ")", nil
			}
			return "sleep", nil
		}
		if inAsyncio(f, "selector_events.py") && strings.HasPrefix(f.Function, "sock_") {
			return f.Function + " " + desc, nil
		}
		if inAsyncio(f, "streams.py") {
			return "stream " + f.Function + " " + desc, nil
		}
	}
	return desc, nil
}

// gatherTasks lists the tasks a gather waits for (gathers of gathers
// included).
func (py *Python) gatherTasks(children uint64, depth int) []uint64 {
	var out []uint64
	for _, c := range py.Ref(children).Items(maxTasks) {
		switch {
		case py.isTask(c.Addr):
			out = append(out, c.Addr)
		case depth < 16:
			if cc := py.attrAddr(c.Addr, "_children"); cc != 0 {
				out = append(out, py.gatherTasks(cc, depth+1)...)
			}
		}
	}
	return out
}

// taskLabel names a task for a one-line description.
func (py *Python) taskLabel(a uint64) string {
	L := py.L
	var name uint64
	if py.isCTask(a) {
		name = py.objAt(a, L.TaskName)
	} else {
		name = py.attrAddr(a, "_name")
	}
	if s, ok := py.Ref(name).Str(); ok && name != 0 {
		return fmt.Sprintf("%q (0x%x)", s, a)
	}
	if n, ok := py.Ref(name).Int(); ok && name != 0 {
		return fmt.Sprintf("\"Task-%d\" (0x%x)", n, a)
	}
	return fmt.Sprintf("0x%x", a)
}

// awaitChain follows a coroutine's awaits: each suspended coroutine (or
// generator) frame, then the object on top of its value stack, until an
// object that is neither (a Future: leaf). running is set when a frame of
// the chain is executing on a thread.
func (py *Python) awaitChain(coro uint64, onThread map[uint64]bool, locals bool, lim Limits) (stack []Frame, leaf uint64, running bool, errText string) {
	L := py.L
	for i := 0; coro != 0 && i < maxAwaitChain; i++ {
		t, err := py.typeOf(coro)
		if err != nil {
			return stack, 0, running, err.Error()
		}
		switch t.name {
		case "coroutine", "generator", "async_generator":
		default:
			return stack, coro, running, ""
		}
		var frame uint64
		if L.CoroFrame >= 0 {
			if frame, err = py.m.u64(coro + uint64(L.CoroFrame)); err != nil {
				return stack, 0, running, err.Error()
			}
		} else {
			st, err := py.m.u8(coro + uint64(L.CoroFrameState))
			if err != nil {
				return stack, 0, running, err.Error()
			}
			if int8(st) > 0 { // completed or cleared
				return stack, 0, running, ""
			}
			frame = coro + uint64(L.CoroIFrame)
		}
		if frame == 0 {
			return stack, 0, running, "" // finished
		}
		var f *Frame
		if L.CoroFrame >= 0 {
			f, _, err = py.frameObject(frame, locals, lim, py.codes)
		} else {
			f, _, err = py.interpreterFrame(frame, locals, lim, py.codes)
		}
		if err != nil {
			return append(stack, Frame{Addr: frame, Function: "???", Err: err.Error()}), 0, running, ""
		}
		if f != nil {
			stack = append([]Frame{*f}, stack...)
		}
		if onThread[frame] {
			// Executing: what it calls is on the thread's stack.
			return stack, 0, true, ""
		}
		coro = py.awaited(frame, coro)
	}
	return stack, 0, running, ""
}

// awaited returns the object a suspended frame awaits: the top of its
// value stack when it is suspended in an await (0 otherwise).
func (py *Python) awaited(frame, coro uint64) uint64 {
	L := py.L
	var tos uint64
	var err error
	switch {
	case L.FrameStacktop >= 0 || L.FrameStackdepth >= 0:
		if L.YieldFromOpcode != 0 && !py.atYieldFrom(frame) {
			return 0
		}
		var base uint64
		if base, err = py.m.u64(frame + uint64(L.FrameValuestack)); err != nil {
			return 0
		}
		var sp uint64
		if L.FrameStacktop >= 0 {
			if sp, err = py.m.u64(frame + uint64(L.FrameStacktop)); err != nil {
				return 0
			}
		} else {
			depth, err := py.m.i32(frame + uint64(L.FrameStackdepth))
			if err != nil || depth <= 0 || depth > 1<<16 {
				return 0
			}
			sp = base + 8*uint64(depth)
		}
		if sp <= base || sp-base > 8<<16 {
			return 0
		}
		tos, err = py.m.u64(sp - 8)
	case L.IFrameStacktop >= 0 || L.IFrameStackpointer >= 0:
		if L.CheckFrameState {
			st, err := py.m.u8(coro + uint64(L.CoroFrameState))
			if err != nil || int8(st) != L.FrameStateYieldFrom {
				return 0
			}
		}
		var codeAddr uint64
		if codeAddr, err = py.m.u64(frame + uint64(L.IFrameCode)); err != nil {
			return 0
		}
		c, err := py.codeCached(codeAddr&^L.StackRefTag, py.codes)
		if err != nil {
			return 0
		}
		base := frame + uint64(L.IFrameLocalsplus) + 8*uint64(len(c.names))
		var sp uint64
		if L.IFrameStacktop >= 0 {
			top, err := py.m.i32(frame + uint64(L.IFrameStacktop))
			if err != nil || top < 0 || top > 1<<16 {
				return 0
			}
			sp = frame + uint64(L.IFrameLocalsplus) + 8*uint64(top)
		} else if sp, err = py.m.u64(frame + uint64(L.IFrameStackpointer)); err != nil {
			return 0
		}
		if sp <= base || sp-base > 8<<16 {
			return 0
		}
		tos, err = py.m.u64(sp - 8)
		if err == nil && L.StackRefTag != 0 {
			if tos&L.StackRefIntTag == L.StackRefIntTag {
				return 0
			}
			tos &^= L.StackRefTag
		}
	}
	if err != nil || tos == 0 {
		return 0
	}
	return tos
}

// atYieldFrom says whether a frame object (≤3.10) is suspended at a
// YIELD_FROM, as CPython's _PyGen_yf checks.
func (py *Python) atYieldFrom(frame uint64) bool {
	L := py.L
	lasti, err := py.m.i32(frame + uint64(L.FrameLasti))
	if err != nil || lasti < 0 {
		return false
	}
	codeAddr, err := py.m.u64(frame + uint64(L.FrameCode))
	if err != nil {
		return false
	}
	bytecode, err := py.m.u64(codeAddr + uint64(L.CodeCode))
	if err != nil || bytecode == 0 {
		return false
	}
	next := int64(lasti)*L.LastiUnit + 2
	op, err := py.m.u8(bytecode + uint64(L.BytesData) + uint64(next))
	return err == nil && op == L.YieldFromOpcode
}

// runningLoop finds the event loop a thread runs: where the _asyncio
// module keeps the running loop of each thread (its thread state on
// 3.13+, the thread state's dict on 3.7–3.12), else the self of a
// BaseEventLoop.run_forever frame on its stack (3.6, asyncio without its
// C module).
func (py *Python) runningLoop(t *Thread) uint64 {
	L := py.L
	if L.TstateAsyncioLoop >= 0 {
		if l := py.objAt(t.TState, L.TstateAsyncioLoop); l != 0 {
			return l
		}
	}
	if L.RunningLoopKey != "" && L.TstateDict >= 0 {
		if d := py.objAt(t.TState, L.TstateDict); d != 0 {
			if l, ok := py.dictGetStr(d, L.RunningLoopKey); ok && !py.Ref(l).IsNone() {
				if tp, err := py.typeOf(l); err == nil && strings.HasSuffix(tp.name, "RunningLoopHolder") {
					l = py.objAt(l, L.RunningLoopHolder)
				}
				if l != 0 {
					return l
				}
			}
		}
	}
	for _, f := range t.Frames {
		if f.Function == "run_forever" && inAsyncio(f, "base_events.py") {
			return py.frameLocal(f, "self")
		}
	}
	return 0
}

// FrameLocal reads one local variable of a frame read earlier (a
// thread's or a task's), whether or not the read that found the frame
// read its locals.
func (py *Python) FrameLocal(f Frame, name string) (Ref, bool) {
	a := py.frameLocal(f, name)
	return Ref{py: py, Addr: a}, a != 0
}

// frameLocal reads one local of a frame read earlier (0 when unbound).
func (py *Python) frameLocal(f Frame, name string) uint64 {
	addrs, err := py.frameLocalAddrs(f.Addr, f.Code, name)
	if err != nil || addrs[0] == 0 || py.Ref(addrs[0]).IsNone() {
		return 0
	}
	return addrs[0]
}

// numberText renders an int or float object as Python's repr does for
// the usual values ("?" for anything else).
func (py *Python) numberText(a uint64) string {
	if n, ok := py.Ref(a).Int(); ok {
		return strconv.FormatInt(n, 10)
	}
	if t, err := py.typeOf(a); err == nil && t.kind == kindFloat {
		if f, err := py.m.f64(a + uint64(py.L.FloatValue)); err == nil {
			s := strconv.FormatFloat(f, 'g', -1, 64)
			if !strings.ContainsAny(s, ".eIN") {
				s += ".0"
			}
			return s
		}
	}
	return "?"
}

// inAsyncio says whether a frame runs code of asyncio's module file.
func inAsyncio(f Frame, file string) bool {
	return strings.HasSuffix(f.File, "/asyncio/"+file)
}
