package layout

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Version is a CPython version as read from the target.
type Version struct {
	Major, Minor, Micro int
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

// MinorString is "X.Y".
func (v Version) MinorString() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Less orders versions.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Micro < o.Micro
}

// ParseVersion reads "X.Y" or "X.Y.Z" (a suffix such as "rc1" or "+" is
// ignored).
func ParseVersion(s string) (Version, error) {
	var v Version
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return v, fmt.Errorf("bad version %q", s)
	}
	nums := []*int{&v.Major, &v.Minor, &v.Micro}
	for i, p := range parts {
		end := 0
		for end < len(p) && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		n, err := strconv.Atoi(p[:end])
		if err != nil {
			return v, fmt.Errorf("bad version %q", s)
		}
		*nums[i] = n
	}
	return v, nil
}

// VersionFromHex decodes PY_VERSION_HEX (as in Py_Version and
// _Py_DebugOffsets.version).
func VersionFromHex(h uint64) Version {
	return Version{int(h >> 24 & 0xff), int(h >> 16 & 0xff), int(h >> 8 & 0xff)}
}

// How frames are chained.
const (
	FrameObjects      = iota // PyFrameObject chain from tstate->frame (≤3.10)
	InterpreterFrames        // _PyInterpreterFrame chain (3.11+)
)

// Line table formats.
const (
	Lnotab         = iota // co_lnotab byte pairs (≤3.9)
	Linetable310          // co_linetable (3.10)
	Locations311          // PEP 626/657 location table (3.11+)
	LnotabUnsigned        // co_lnotab with unsigned line increments (2.7)
)

// How the GIL holder is found.
const (
	GILCurrentSymbol  = iota // _PyThreadState_Current global (2.7, 3.6)
	GILRuntimeTstate         // _PyRuntime.gilstate.tstate_current (3.7–3.11)
	GILInterpreterGIL        // interp->ceval.gil: locked + last_holder (3.12+)
)

// Dict keys object formats.
const (
	DictPy2     = iota // open-addressing table of PyDictEntry (2.7)
	DictKeys36         // dk_size, dk_indices sized by dk_size (3.6–3.10)
	DictKeys311        // dk_log2_size, dk_log2_index_bytes, dk_kind (3.11+)
)

// Where instances keep their attributes when the type manages the dict.
const (
	ManagedNone = iota // tp_dictoffset only (≤3.10)
	Managed311         // values pointer at -4 words, dict at -3 (3.11)
	Managed312         // tagged dict-or-values at -3 words (3.12)
	Managed313         // inline values after tp_basicsize, dict at -3 (3.13+)
)

// Layout is everything krait needs to know about one target's CPython.
type Layout struct {
	Version Version
	Offsets
	// From says where the offsets came from (the build whose DWARF
	// generated them, and whether _Py_DebugOffsets overrode them).
	From string

	Py2       bool
	Frames    int
	LineTable int
	GIL       int
	Dict      int
	Managed   int
	// LastiUnit is the size in bytes of one f_lasti step (3.10 counts code
	// units).
	LastiUnit int64
	// OwnerCStack is the lowest owner value of shim frames that are not
	// Python code (C-stack entry frames, and on 3.14 the interpreter's
	// own); -1: none. OwnerGenerator is that of generator frames (3.11+).
	OwnerCStack    int64
	OwnerGenerator int64
	// OwnerEntry is the owner of the shim frame each call of the
	// evaluation loop pushes under the frames it runs (FRAME_OWNED_BY_CSTACK,
	// 3.12+); -1: none. IFrameIsEntry is the offset of 3.11's is_entry flag,
	// set on the first frame a call of the loop runs; -1: none. Both split a
	// thread's Python frames among the native frames of the loop.
	OwnerEntry    int64
	IFrameIsEntry int64
	// EvalFunction is the C function of the evaluation loop, whose native
	// frames run Python frames.
	EvalFunction string
	// Monitoring: sys.monitoring exists (3.12+), so the agent needs no
	// trace function written into thread states.
	Monitoring bool
	// SplitOrderPrefix: split-dict insertion order kept in bytes before
	// the values array (3.11, 3.12); OrderAfterValues: after it (3.13+).
	SplitOrderPrefix bool
	OrderAfterValues bool
	// Type flags.
	FlagManagedDict  uint64
	FlagInlineValues uint64
	// localspluskinds bits (3.11+).
	FastCell, FastFree, FastHidden byte
	// Symbols holding the interpreter list and the GIL holder when there is
	// no _PyRuntime.
	InterpHeadSymbol    string
	TstateCurrentSymbol string
	// TracingPossibleSymbol is the static counter of traced threads in
	// 3.6 (_PyRuntime.ceval.tracing_possible in 3.7–3.9).
	TracingPossibleSymbol string
	// StackRefTag holds the tag bits of a _PyStackRef (3.14+: frames'
	// f_executable and localsplus), cleared to get the object pointer;
	// StackRefIntTag marks a tagged int (value in the bits above 2).
	StackRefTag, StackRefIntTag uint64
	// DictKindGeneral is the dk_kind of keys whose entries hold hashes
	// (3.11+; unicode-only keys have smaller entries).
	DictKindGeneral byte

	// asyncio. AsyncioTaskSets names the sets of asyncio.tasks that hold
	// tasks (WeakSets or sets); AsyncioAllTasksSymbol the static WeakSet
	// of the _asyncio module that holds its C tasks (3.6). C tasks of
	// 3.14+ are in linked lists (TaskNode, *AsyncioTasksHead).
	AsyncioTaskSets       []string
	AsyncioAllTasksSymbol string
	// AsyncioPyTaskSet names the class attribute of asyncio.tasks that
	// holds pure-Python tasks ("_PyTask._all_tasks", 3.6).
	AsyncioPyTaskSet string
	// RunningLoopKey is the key of the running loop in a thread state's
	// dict (3.7–3.12; "" where the version keeps it elsewhere).
	RunningLoopKey string
	// YieldFromOpcode is the opcode at which a frame object suspended in
	// an await waits (≤3.10; 0: not checked).
	YieldFromOpcode byte
	// FrameStateYieldFrom is the cr_frame_state of a coroutine suspended
	// in an await (3.13+); CheckFrameState says whether it is set.
	CheckFrameState     bool
	FrameStateYieldFrom int8

	// The pending-call queue (Offsets.Pending*). PendingMainThread: only
	// the main thread of the main interpreter runs its calls (before
	// 3.12). PendingBreakerBit is what tells the evaluation loop to run
	// them, in the (int) eval breaker beside the queue up to 3.12, in
	// every thread state's from 3.13 (_PY_CALLS_TO_DO_BIT).
	PendingMainThread bool
	PendingBreakerBit uint32
}

// Supported lists the minor versions krait has tables for.
func Supported() []string {
	var out []string
	for k := range generated {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return LessMinor(out[i], out[j]) })
	return out
}

// ErrUnsupported is returned for versions krait has no layout for.
type ErrUnsupported struct{ Version Version }

func (e *ErrUnsupported) Error() string {
	return fmt.Sprintf("Python %s is not supported (krait knows %s)", e.Version, strings.Join(Supported(), ", "))
}

// For returns the layout of a CPython version.
func For(v Version) (*Layout, error) {
	g, ok := generated[v.MinorString()]
	if !ok {
		return nil, &ErrUnsupported{v}
	}
	l := &Layout{Version: v, Offsets: g.offsets, From: "DWARF of " + g.from, OwnerCStack: -1}
	at := func(maj, min int) bool { return v.Major > maj || v.Major == maj && v.Minor >= min }
	l.Py2 = v.Major == 2
	switch {
	case at(3, 11):
		l.Frames, l.LineTable = InterpreterFrames, Locations311
	case at(3, 10):
		l.Frames, l.LineTable = FrameObjects, Linetable310
	case l.Py2:
		l.Frames, l.LineTable = FrameObjects, LnotabUnsigned
	default:
		l.Frames, l.LineTable = FrameObjects, Lnotab
	}
	l.LastiUnit = 1
	if v.Major == 3 && v.Minor == 10 {
		l.LastiUnit = 2
	}
	if at(3, 12) {
		l.OwnerCStack = 3 // FRAME_OWNED_BY_CSTACK; 3.14: _INTERPRETER, then _CSTACK = 4
	}
	if at(3, 14) {
		l.StackRefTag, l.StackRefIntTag = 1, 3
	}
	l.OwnerEntry, l.IFrameIsEntry = -1, -1
	l.EvalFunction = "_PyEval_EvalFrameDefault"
	if l.Py2 {
		l.EvalFunction = "PyEval_EvalFrameEx"
	}
	switch {
	case at(3, 12):
		// FRAME_OWNED_BY_CSTACK in 3.12 and 3.13; 3.14 gives the entry
		// frame FRAME_OWNED_BY_INTERPRETER, of the same value.
		l.OwnerEntry = 3
	case at(3, 11) && l.IFrameOwner > 0:
		// struct _PyInterpreterFrame: … int stacktop; bool is_entry; char owner;
		l.IFrameIsEntry = l.IFrameOwner - 1
	}
	l.OwnerGenerator = 1 // FRAME_OWNED_BY_GENERATOR, 3.11+
	l.Monitoring = at(3, 12)
	switch {
	case at(3, 12):
		l.GIL = GILInterpreterGIL
	case at(3, 7):
		l.GIL = GILRuntimeTstate
	default:
		l.GIL = GILCurrentSymbol
		l.InterpHeadSymbol = "interp_head"
		l.TstateCurrentSymbol = "_PyThreadState_Current"
		if v.Major == 3 {
			l.TracingPossibleSymbol = "_Py_TracingPossible"
		}
	}
	switch {
	case l.Py2:
		l.Dict = DictPy2
	case at(3, 11):
		l.Dict = DictKeys311
	default:
		l.Dict = DictKeys36
	}
	switch {
	case at(3, 13):
		l.Managed, l.OrderAfterValues = Managed313, true
		l.FlagManagedDict, l.FlagInlineValues = 1<<4, 1<<2
	case at(3, 12):
		l.Managed, l.SplitOrderPrefix = Managed312, true
		l.FlagManagedDict = 1 << 4
	case at(3, 11):
		l.Managed, l.SplitOrderPrefix = Managed311, true
		l.FlagManagedDict = 1 << 4
	}
	switch {
	case at(3, 12):
		l.AsyncioTaskSets = []string{"_scheduled_tasks", "_eager_tasks"}
	case at(3, 7):
		l.AsyncioTaskSets = []string{"_all_tasks"}
	case at(3, 6):
		l.AsyncioAllTasksSymbol = "all_tasks"
		l.AsyncioPyTaskSet = "_PyTask._all_tasks"
	}
	if !l.Py2 && !at(3, 11) {
		l.YieldFromOpcode = 72
	}
	if at(3, 7) && !at(3, 13) {
		l.RunningLoopKey = "__asyncio_running_event_loop__"
	}
	if at(3, 13) {
		l.CheckFrameState, l.FrameStateYieldFrom = true, -1
	}
	if l.PendingCalls >= 0 {
		l.PendingMainThread = !at(3, 12)
		l.PendingBreakerBit = 1
		if at(3, 13) {
			l.PendingBreakerBit = 1 << 2
		}
		if l.PendingCallSize < 0 {
			l.PendingCallSize = 16 // up to 3.11 an unnamed struct {func, arg}
		}
	}
	l.FastCell, l.FastFree = 0x40, 0x80
	if at(3, 13) {
		l.FastHidden = 0x10
	}
	return l, nil
}

// DebugOffsetsCookie starts _Py_DebugOffsets (at the start of _PyRuntime).
const DebugOffsetsCookie = "xdebugpy"

// HasDebugOffsets says whether this version publishes _Py_DebugOffsets
// whose layout krait knows.
func (l *Layout) HasDebugOffsets() bool {
	return len(generated[l.Version.MinorString()].debugOffsets) > 0
}

// DebugOffsetsSize is how many bytes of _Py_DebugOffsets krait reads.
func (l *Layout) DebugOffsetsSize() int {
	max := int64(0)
	for _, off := range generated[l.Version.MinorString()].debugOffsets {
		if off > max {
			max = off
		}
	}
	return int(max) + 8
}

// ApplyDebugOffsets overrides the tabled offsets with those the target
// publishes in its _Py_DebugOffsets (blob read from the start of
// _PyRuntime). It checks the cookie and the version first.
func (l *Layout) ApplyDebugOffsets(blob []byte) error {
	pos := generated[l.Version.MinorString()].debugOffsets
	if len(pos) == 0 {
		return nil
	}
	if len(blob) < l.DebugOffsetsSize() || string(blob[:8]) != DebugOffsetsCookie {
		return fmt.Errorf("_Py_DebugOffsets: no %q cookie at _PyRuntime", DebugOffsetsCookie)
	}
	got := VersionFromHex(binary.LittleEndian.Uint64(blob[pos["version"]:]))
	if got.MinorString() != l.Version.MinorString() {
		return fmt.Errorf("_Py_DebugOffsets: version %s, expected %s", got, l.Version)
	}
	for name, p := range l.debugFieldPointers() {
		if at, ok := pos[name]; ok {
			*p = int64(binary.LittleEndian.Uint64(blob[at:]))
		}
	}
	l.From += " + target's _Py_DebugOffsets"
	return nil
}

// AsyncioDebugSection is the section of the _asyncio module (3.14+) that
// holds _Py_AsyncioModuleDebugOffsets.
const AsyncioDebugSection = ".AsyncioDebug"

// asyncioDebugFields says where _Py_AsyncioModuleDebugOffsets (3.14)
// publishes each offset: byte position in the struct → Offsets field.
var asyncioDebugFields = []struct {
	pos   int
	field func(*Offsets) *int64
}{
	{8, func(o *Offsets) *int64 { return &o.TaskName }},
	{40, func(o *Offsets) *int64 { return &o.TaskCoro }},
	{48, func(o *Offsets) *int64 { return &o.TaskNode }},
	{64, func(o *Offsets) *int64 { return &o.InterpAsyncioTasksHead }},
	{80, func(o *Offsets) *int64 { return &o.TstateAsyncioLoop }},
	{96, func(o *Offsets) *int64 { return &o.TstateAsyncioTasksHead }},
}

// AsyncioDebugSize is how many bytes of _Py_AsyncioModuleDebugOffsets
// krait reads; 0 where the version publishes none.
func (l *Layout) AsyncioDebugSize() int {
	if l.TaskNode < 0 {
		return 0
	}
	return 104
}

// ApplyAsyncioDebugOffsets overrides the tabled asyncio offsets with those
// the target's _asyncio module publishes (3.14+). It checks that the task
// object size it states is plausible first.
func (l *Layout) ApplyAsyncioDebugOffsets(blob []byte) error {
	if l.AsyncioDebugSize() == 0 {
		return nil
	}
	if len(blob) < l.AsyncioDebugSize() {
		return fmt.Errorf("_Py_AsyncioModuleDebugOffsets: %d bytes, expected %d", len(blob), l.AsyncioDebugSize())
	}
	size := binary.LittleEndian.Uint64(blob)
	for _, f := range asyncioDebugFields[:3] {
		if v := binary.LittleEndian.Uint64(blob[f.pos:]); v == 0 || v >= size || size > 4096 {
			return fmt.Errorf("_Py_AsyncioModuleDebugOffsets: implausible task offsets (size %d)", size)
		}
	}
	for _, f := range asyncioDebugFields {
		*f.field(&l.Offsets) = int64(binary.LittleEndian.Uint64(blob[f.pos:]))
	}
	l.From += " + _asyncio's debug offsets"
	return nil
}
