// Package layout owns every difference between CPython versions that krait
// knows: struct offsets (generated from the DWARF of real builds by
// tools/layoutgen, and read from the target's _Py_DebugOffsets on 3.13+),
// and the version-dependent constants and formats in features.go. It is the
// only package that compares Python versions; everything else reads the
// fields of a Layout.
package layout

// Offsets holds the byte offsets and sizes krait reads, for one CPython
// minor version. A value of -1 means the field does not exist in that
// version.
//
// The `c` tag names where the generator finds the value in DWARF:
// "Type.member.member" is a member offset, "sizeof(Type)" a type's size and
// "bit(Type.member.bitfield)" a bit-field's bit position in its containing
// struct. Alternatives are separated by "|" and tried in order (members get
// renamed between versions). The `dbg` tag names the field of
// _Py_DebugOffsets that publishes the same value on 3.13+.
type Offsets struct {
	// _PyRuntimeState (3.7+)
	RuntimeInterpretersHead int64 `c:"_PyRuntimeState.interpreters.head" dbg:"runtime_state.interpreters_head"`
	RuntimeTstateCurrent    int64 `c:"_PyRuntimeState.gilstate.tstate_current"`

	// PyInterpreterState
	InterpNext       int64 `c:"_is.next" dbg:"interpreter_state.next"`
	InterpThreadHead int64 `c:"_is.tstate_head|_is.threads.head" dbg:"interpreter_state.threads_head"`
	InterpID         int64 `c:"_is.id" dbg:"interpreter_state.id"`
	InterpModules    int64 `c:"_is.modules|_is.imports.modules" dbg:"interpreter_state.imports_modules"`
	InterpSysdict    int64 `c:"_is.sysdict" dbg:"interpreter_state.sysdict"`
	InterpGIL        int64 `c:"_is.ceval.gil"`
	GILLocked        int64 `c:"_gil_runtime_state.locked"`
	GILLastHolder    int64 `c:"_gil_runtime_state.last_holder"`

	// PEP 768 remote debugging (3.14+): where a debugger asks a thread to
	// run a script at its next eval-breaker check, and the interpreter's
	// opt-out (-X disable-remote-debug, PYTHON_DISABLE_REMOTE_DEBUG).
	InterpRemoteDebug    int64 `c:"_is.config.remote_debug" dbg:"debugger_support.remote_debugging_enabled"`
	TstateEvalBreaker    int64 `c:"_ts.eval_breaker" dbg:"debugger_support.eval_breaker"`
	TstateRemoteSupport  int64 `c:"_ts.remote_debugger_support" dbg:"debugger_support.remote_debugger_support"`
	RemotePendingCall    int64 `c:"_PyRemoteDebuggerSupport.debugger_pending_call" dbg:"debugger_support.debugger_pending_call"`
	RemoteScriptPath     int64 `c:"_PyRemoteDebuggerSupport.debugger_script_path" dbg:"debugger_support.debugger_script_path"`
	RemoteScriptPathSize int64 `dbg:"debugger_support.debugger_script_path_size"`

	// CPython's pending-call queue (what Py_AddPendingCall fills), through
	// which attach enters a process none of whose threads is parked
	// (3.7–3.13): in _PyRuntime up to 3.8, in each interpreter from 3.9
	// (3.12 also keeps one for the main thread in _PyRuntime, not used).
	// The eval breaker is beside it up to 3.12, per thread state on 3.13
	// (TstateEvalBreaker). The lock is a PyThread_type_lock up to 3.12,
	// a PyMutex on 3.13, whose queue counts its calls (npending, max).
	RuntimePending     int64 `c:"_PyRuntimeState.ceval.pending"`
	RuntimeEvalBreaker int64 `c:"_PyRuntimeState.ceval.eval_breaker"`
	InterpPending      int64 `c:"_is.ceval.pending"`
	InterpEvalBreaker  int64 `c:"_is.ceval.eval_breaker"`
	PendingLock        int64 `c:"_pending_calls.lock"`
	PendingMutex       int64 `c:"_pending_calls.mutex"`
	PendingCallsToDo   int64 `c:"_pending_calls.calls_to_do"`
	PendingNpending    int64 `c:"_pending_calls.npending"`
	PendingMax         int64 `c:"_pending_calls.max"`
	PendingCalls       int64 `c:"_pending_calls.calls"`
	PendingFirst       int64 `c:"_pending_calls.first"`
	PendingLast        int64 `c:"_pending_calls.last|_pending_calls.next"`
	PendingCallSize    int64 `c:"sizeof(_pending_call)"`

	// PyThreadState
	TstateNext         int64 `c:"_ts.next" dbg:"thread_state.next"`
	TstateInterp       int64 `c:"_ts.interp" dbg:"thread_state.interp"`
	TstateFrame        int64 `c:"_ts.frame"`
	TstateCframe       int64 `c:"_ts.cframe"`
	CframeCurrent      int64 `c:"_PyCFrame.current_frame"`
	TstateCurrentFrame int64 `c:"_ts.current_frame" dbg:"thread_state.current_frame"`
	TstateThreadID     int64 `c:"_ts.thread_id" dbg:"thread_state.thread_id"`
	TstateNativeID     int64 `c:"_ts.native_thread_id" dbg:"thread_state.native_thread_id"`
	// Tracing state, which the injected agent sets on every thread before
	// 3.12 (what PyEval_SetTrace does for the current thread only).
	TstateTracefunc        int64 `c:"_ts.c_tracefunc"`
	TstateTraceobj         int64 `c:"_ts.c_traceobj"`
	TstateUseTracing       int64 `c:"_ts.use_tracing"`
	CframeUseTracing       int64 `c:"_PyCFrame.use_tracing|_cframe.use_tracing"`
	RuntimeTracingPossible int64 `c:"_PyRuntimeState.ceval.tracing_possible"`

	// PyFrameObject (up to 3.10)
	FrameBack       int64 `c:"_frame.f_back"`
	FrameCode       int64 `c:"_frame.f_code"`
	FrameLasti      int64 `c:"_frame.f_lasti"`
	FrameLocalsplus int64 `c:"_frame.f_localsplus"`

	// _PyInterpreterFrame (3.11+)
	IFramePrevious   int64 `c:"_PyInterpreterFrame.previous" dbg:"interpreter_frame.previous"`
	IFrameCode       int64 `c:"_PyInterpreterFrame.f_code|_PyInterpreterFrame.f_executable" dbg:"interpreter_frame.executable"`
	IFrameInstr      int64 `c:"_PyInterpreterFrame.prev_instr|_PyInterpreterFrame.instr_ptr" dbg:"interpreter_frame.instr_ptr"`
	IFrameLocalsplus int64 `c:"_PyInterpreterFrame.localsplus" dbg:"interpreter_frame.localsplus"`
	IFrameOwner      int64 `c:"_PyInterpreterFrame.owner" dbg:"interpreter_frame.owner"`

	// Coroutine and generator objects (they share a head): the frame of
	// a suspended coroutine, a pointer up to 3.10 and embedded from 3.11.
	CoroFrame      int64 `c:"PyCoroObject.cr_frame"`
	CoroIFrame     int64 `c:"PyCoroObject.cr_iframe"`
	CoroFrameState int64 `c:"PyCoroObject.cr_frame_state"`
	// The value stack of a suspended frame, whose top is what a
	// coroutine awaits: f_stacktop (≤3.9), f_valuestack + f_stackdepth
	// (3.10), stacktop, an index into localsplus (3.11–3.13), stackpointer
	// (3.14+).
	FrameStacktop      int64 `c:"_frame.f_stacktop"`
	FrameValuestack    int64 `c:"_frame.f_valuestack"`
	FrameStackdepth    int64 `c:"_frame.f_stackdepth"`
	IFrameStacktop     int64 `c:"_PyInterpreterFrame.stacktop"`
	IFrameStackpointer int64 `c:"_PyInterpreterFrame.stackpointer"`

	// weakref.ref objects (WeakSet's members).
	WeakrefObject int64 `c:"PyWeakReference.wr_object"`

	// asyncio's C Future and Task (Modules/_asynciomodule.c, not in a
	// header: from the DWARF of the _asyncio extension module).
	FutLoop       int64 `c:"FutureObj.fut_loop"`
	FutState      int64 `c:"FutureObj.fut_state"`
	TaskLoop      int64 `c:"TaskObj.task_loop"`
	TaskState     int64 `c:"TaskObj.task_state"`
	TaskFutWaiter int64 `c:"TaskObj.task_fut_waiter"`
	TaskCoro      int64 `c:"TaskObj.task_coro"`
	TaskName      int64 `c:"TaskObj.task_name"`
	TaskNode      int64 `c:"TaskObj.task_node"`
	// The running loop of a thread on 3.7–3.12: in its thread state's
	// dict, under RunningLoopKey, in a holder up to 3.11.
	TstateDict        int64 `c:"_ts.dict"`
	RunningLoopHolder int64 `c:"PyRunningLoopHolder.rl_loop"`
	// Where 3.14+ links C tasks: per thread state, and per interpreter
	// for tasks whose thread has gone.
	TstateAsyncioTasksHead int64 `c:"_PyThreadStateImpl.asyncio_tasks_head"`
	TstateAsyncioLoop      int64 `c:"_PyThreadStateImpl.asyncio_running_loop"`
	InterpAsyncioTasksHead int64 `c:"_is.asyncio_tasks_head"`

	// PyCodeObject
	CodeArgcount        int64 `c:"PyCodeObject.co_argcount" dbg:"code_object.argcount"`
	CodePosonlyArgcount int64 `c:"PyCodeObject.co_posonlyargcount"`
	CodeKwonlyArgcount  int64 `c:"PyCodeObject.co_kwonlyargcount"`
	CodeNlocals         int64 `c:"PyCodeObject.co_nlocals"`
	CodeFlags           int64 `c:"PyCodeObject.co_flags"`
	CodeFirstlineno     int64 `c:"PyCodeObject.co_firstlineno" dbg:"code_object.firstlineno"`
	CodeVarnames        int64 `c:"PyCodeObject.co_varnames"`
	CodeCellvars        int64 `c:"PyCodeObject.co_cellvars"`
	CodeFreevars        int64 `c:"PyCodeObject.co_freevars"`
	CodeLocalsplusNames int64 `c:"PyCodeObject.co_localsplusnames" dbg:"code_object.localsplusnames"`
	CodeLocalsplusKinds int64 `c:"PyCodeObject.co_localspluskinds" dbg:"code_object.localspluskinds"`
	CodeFilename        int64 `c:"PyCodeObject.co_filename" dbg:"code_object.filename"`
	CodeName            int64 `c:"PyCodeObject.co_name" dbg:"code_object.name"`
	CodeQualname        int64 `c:"PyCodeObject.co_qualname" dbg:"code_object.qualname"`
	CodeLinetable       int64 `c:"PyCodeObject.co_lnotab|PyCodeObject.co_linetable" dbg:"code_object.linetable"`
	CodeCode            int64 `c:"PyCodeObject.co_code"`
	CodeCodeAdaptive    int64 `c:"PyCodeObject.co_code_adaptive" dbg:"code_object.co_code_adaptive"`
	CodeFirstTraceable  int64 `c:"PyCodeObject._co_firsttraceable"`

	// PyObject, PyVarObject, PyTypeObject
	ObType             int64 `c:"PyObject.ob_type" dbg:"pyobject.ob_type"`
	ObSize             int64 `c:"PyVarObject.ob_size"`
	TypeName           int64 `c:"PyTypeObject.tp_name" dbg:"type_object.tp_name"`
	TypeBasicsize      int64 `c:"PyTypeObject.tp_basicsize"`
	TypeFlags          int64 `c:"PyTypeObject.tp_flags"`
	TypeDict           int64 `c:"PyTypeObject.tp_dict"`
	TypeDictoffset     int64 `c:"PyTypeObject.tp_dictoffset"`
	TypeMro            int64 `c:"PyTypeObject.tp_mro"`
	TypeMethods        int64 `c:"PyTypeObject.tp_methods"`
	HeapTypeQualname   int64 `c:"PyHeapTypeObject.ht_qualname"`
	HeapTypeCachedKeys int64 `c:"PyHeapTypeObject.ht_cached_keys"`

	// PyMethodDef: a C method's name and function (attach looks for the
	// lock methods on a thread's native stack).
	MethodDefName int64 `c:"PyMethodDef.ml_name"`
	MethodDefMeth int64 `c:"PyMethodDef.ml_meth"`
	MethodDefSize int64 `c:"sizeof(PyMethodDef)"`

	// Numbers
	IntIval    int64 `c:"PyIntObject.ob_ival"`
	LongDigits int64 `c:"PyLongObject.ob_digit|PyLongObject.long_value.ob_digit"`
	LongTag    int64 `c:"PyLongObject.long_value.lv_tag"`
	DigitSize  int64 `c:"sizeof(digit)"`
	FloatValue int64 `c:"PyFloatObject.ob_fval"`

	// Strings
	BytesData        int64 `c:"PyBytesObject.ob_sval|PyStringObject.ob_sval"`
	ASCIILength      int64 `c:"PyASCIIObject.length" dbg:"unicode_object.length"`
	ASCIIState       int64 `c:"PyASCIIObject.state" dbg:"unicode_object.state"`
	ASCIISize        int64 `c:"sizeof(PyASCIIObject)" dbg:"unicode_object.asciiobject_size"`
	CompactSize      int64 `c:"sizeof(PyCompactUnicodeObject)"`
	StateKindBit     int64 `c:"bit(PyASCIIObject.state.kind)"`
	StateCompactBit  int64 `c:"bit(PyASCIIObject.state.compact)"`
	StateASCIIBit    int64 `c:"bit(PyASCIIObject.state.ascii)"`
	UnicodeData      int64 `c:"PyUnicodeObject.data"`
	Py2UnicodeLength int64 `c:"PyUnicodeObject.length"`
	Py2UnicodeStr    int64 `c:"PyUnicodeObject.str"`
	Py2UnicodeSize   int64 `c:"sizeof(Py_UNICODE)"`

	// Containers
	TupleItems int64 `c:"PyTupleObject.ob_item" dbg:"tuple_object.ob_item"`
	ListItems  int64 `c:"PyListObject.ob_item"`

	DictUsed   int64 `c:"PyDictObject.ma_used"`
	DictKeys   int64 `c:"PyDictObject.ma_keys"`
	DictValues int64 `c:"PyDictObject.ma_values"`
	// Python 2 dicts are open-addressing tables of entries.
	DictFill      int64 `c:"PyDictObject.ma_fill"`
	DictMask      int64 `c:"PyDictObject.ma_mask"`
	DictTable     int64 `c:"PyDictObject.ma_table"`
	DictEntrySize int64 `c:"sizeof(PyDictEntry)"`

	KeysSize           int64 `c:"PyDictKeysObject.dk_size"`
	KeysLog2Size       int64 `c:"PyDictKeysObject.dk_log2_size"`
	KeysLog2IndexBytes int64 `c:"PyDictKeysObject.dk_log2_index_bytes"`
	KeysKind           int64 `c:"PyDictKeysObject.dk_kind"`
	KeysNentries       int64 `c:"PyDictKeysObject.dk_nentries"`
	KeysIndices        int64 `c:"PyDictKeysObject.dk_indices"`
	KeyEntrySize       int64 `c:"sizeof(PyDictKeyEntry)"`
	UnicodeEntrySize   int64 `c:"sizeof(PyDictUnicodeEntry)"`
	ValuesCapacity     int64 `c:"PyDictValues.capacity"`
	ValuesValues       int64 `c:"PyDictValues.values"`
	ValuesValid        int64 `c:"PyDictValues.valid"`

	SetMask      int64 `c:"PySetObject.mask"`
	SetUsed      int64 `c:"PySetObject.used"`
	SetTable     int64 `c:"PySetObject.table"`
	SetEntrySize int64 `c:"sizeof(setentry)"`
	SetEntryKey  int64 `c:"setentry.key"`

	ModuleDict   int64 `c:"PyModuleObject.md_dict"`
	CellRef      int64 `c:"PyCellObject.ob_ref"`
	FuncName     int64 `c:"PyFunctionObject.func_name"`
	FuncQualname int64 `c:"PyFunctionObject.func_qualname"`
	FuncModule   int64 `c:"PyFunctionObject.func_module"`

	// Python 2 old-style instances and classes.
	InstanceClass int64 `c:"PyInstanceObject.in_class"`
	InstanceDict  int64 `c:"PyInstanceObject.in_dict"`
	ClassName     int64 `c:"PyClassObject.cl_name"`
	ClassDict     int64 `c:"PyClassObject.cl_dict"`
}
