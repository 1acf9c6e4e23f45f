package cpython

import (
	"encoding/binary"
	"fmt"

	"krait/internal/cpython/layout"
	"krait/internal/target"
)

// VectorReader is implemented by targets that read many ranges in one
// system call (live.Process with process_vm_readv).
type VectorReader interface {
	ReadV(bufs [][]byte, addrs []uint64) []error
}

// CodeInfo is what a sampler keeps of one code object.
type CodeInfo struct {
	Name, Qualname, File string
	FirstLine            int
}

// StackFrame is one frame of a sampled stack.
type StackFrame struct {
	Addr uint64 // the frame (object or _PyInterpreterFrame)
	Code uint64
	Info *CodeInfo
	Line int
	// pos is where the frame was in its code (f_lasti or the
	// instruction pointer), to find the line again if the code object
	// cached at Code turns out to be another one.
	pos uint64
}

// StackThread is one thread of a sample: no locals, no values.
type StackThread struct {
	Interp   int64
	TState   uint64
	ThreadID uint64
	NativeID int
	GIL      bool
	Frames   []StackFrame // innermost first
	Err      error
}

// StackReader reads every thread's stack for a sampling profiler, as
// cheaply as it can: code objects (names, files, line tables) are decoded
// once and kept by address across samples, line numbers are kept by code
// and offset, no locals are read, and the frames of all threads are read
// level by level, one process_vm_readv call per level (the innermost frame
// of every thread in one call, then their callers, …), so a sample costs
// about as many system calls as the deepest stack, not as all frames.
type StackReader struct {
	py    *Python
	vr    VectorReader
	codes map[uint64]*sampledCode
	// known thread states per interpreter from the last sample: when the
	// list did not change they are read in one call.
	known map[uint64][]uint64
	// nativeOff is where glibc's struct pthread holds the kernel tid
	// (versions without tstate->native_thread_id); -1 until found.
	nativeOff int
	tsSpan    int
	frameSpan int
	// Syscalls counts memory-read system calls, for benchmarks.
	Syscalls int
}

type sampledCode struct {
	info  *CodeInfo
	c     *code
	lines map[int]int // bytecode offset → line
	sig   codeSig
}

// codeSig is what tells a code object from another one later allocated at
// the same address: its type and the objects its name, qualified name,
// file name and line table point to, and its first line.
type codeSig [6]uint64

// NewStackReader prepares fast stack reads of py's process.
func (py *Python) NewStackReader() *StackReader {
	sr := &StackReader{py: py, codes: map[uint64]*sampledCode{}, known: map[uint64][]uint64{}, nativeOff: -1}
	if vr, ok := py.Proc.(VectorReader); ok {
		sr.vr = vr
	}
	L := py.L
	sr.tsSpan = span(L.TstateNext, L.TstateThreadID, L.TstateNativeID, L.TstateFrame, L.TstateCurrentFrame, L.TstateCframe)
	if L.Frames == layout.FrameObjects {
		sr.frameSpan = span(L.FrameBack, L.FrameCode, L.FrameLasti)
	} else {
		sr.frameSpan = span(L.IFramePrevious, L.IFrameCode, L.IFrameInstr, L.IFrameOwner)
	}
	return sr
}

func span(offs ...int64) int {
	m := int64(0)
	for _, o := range offs {
		if o+8 > m {
			m = o + 8
		}
	}
	return int(m)
}

// readv reads ranges in one call when the target can, else one by one.
func (sr *StackReader) readv(bufs [][]byte, addrs []uint64) []error {
	if len(bufs) == 0 {
		return nil
	}
	if sr.vr != nil {
		sr.Syscalls += (len(bufs) + 1023) / 1024
		return sr.vr.ReadV(bufs, addrs)
	}
	errs := make([]error, len(bufs))
	for i := range bufs {
		sr.Syscalls++
		errs[i] = sr.py.Proc.ReadAt(bufs[i], addrs[i])
	}
	return errs
}

func field(b []byte, off int64) uint64 {
	if off < 0 || int(off)+8 > len(b) {
		return 0
	}
	return binary.LittleEndian.Uint64(b[off:])
}

func field32(b []byte, off int64) uint32 {
	if off < 0 || int(off)+4 > len(b) {
		return 0
	}
	return binary.LittleEndian.Uint32(b[off:])
}

// Sample reads every thread of every interpreter: its ids, whether it
// holds the GIL, and its stack. osThreads (read before any pause) lets it
// find OS thread ids on versions that do not record them.
func (sr *StackReader) Sample(osThreads []target.Thread) ([]*StackThread, error) {
	py := sr.py
	L := py.L
	py.m = newMem(py.Proc) // fresh for the small reads of this sample
	defer func() { sr.Syscalls += py.m.Reads }()
	head, err := py.m.u64(py.interpHead)
	if err != nil {
		return nil, fmt.Errorf("reading the interpreter list: %w", err)
	}
	if head == 0 {
		return nil, fmt.Errorf("process %d: %w", py.Proc.PID(), ErrNoInterpreter)
	}
	var interps []*Interpreter
	var threads []*StackThread
	var tsBufs [][]byte
	seenIs := map[uint64]bool{}
	for is := head; is != 0 && !seenIs[is] && len(interps) < 1024; {
		seenIs[is] = true
		in := &Interpreter{Addr: is, ID: int64(len(interps))}
		if L.InterpID >= 0 {
			in.ID, _ = py.m.i64(is + uint64(L.InterpID))
		}
		first, err := py.m.u64(is + uint64(L.InterpThreadHead))
		if err != nil {
			return nil, err
		}
		list, bufs, err := sr.threadList(is, first)
		if err != nil {
			return nil, err
		}
		for i, ts := range list {
			threads = append(threads, &StackThread{Interp: in.ID, TState: ts})
			tsBufs = append(tsBufs, bufs[i])
		}
		interps = append(interps, in)
		if is, err = py.m.u64(is + uint64(L.InterpNext)); err != nil {
			return nil, err
		}
	}
	holders := py.gilHolders(interps)
	// The first frame of each thread.
	cur := make([]uint64, len(threads))
	var cfIdx []int
	var cfAddr []uint64
	for i, t := range threads {
		b := tsBufs[i]
		t.GIL = holders[t.TState]
		t.ThreadID = field(b, L.TstateThreadID)
		if L.TstateNativeID >= 0 {
			t.NativeID = int(int32(field32(b, L.TstateNativeID)))
		}
		switch {
		case L.Frames == layout.FrameObjects:
			cur[i] = field(b, L.TstateFrame)
		case L.TstateCurrentFrame >= 0:
			cur[i] = field(b, L.TstateCurrentFrame)
		default:
			if cf := field(b, L.TstateCframe); cf != 0 {
				cfIdx = append(cfIdx, i)
				cfAddr = append(cfAddr, cf+uint64(L.CframeCurrent))
			}
		}
	}
	if len(cfIdx) > 0 {
		bufs := make([][]byte, len(cfIdx))
		for k := range bufs {
			bufs[k] = make([]byte, 8)
		}
		errs := sr.readv(bufs, cfAddr)
		for k, i := range cfIdx {
			if errs[k] != nil {
				threads[i].Err = errs[k]
				continue
			}
			cur[i] = binary.LittleEndian.Uint64(bufs[k])
		}
	}
	sr.nativeIDs(threads, osThreads)
	sr.walk(threads, cur)
	sr.checkCodes(threads)
	return threads, nil
}

// threadList returns an interpreter's thread states and their first
// tsSpan bytes: in one call if the list is the one seen last time, else
// by following the chain.
func (sr *StackReader) threadList(is, first uint64) ([]uint64, [][]byte, error) {
	L := sr.py.L
	if known := sr.known[is]; len(known) > 0 && known[0] == first {
		bufs := make([][]byte, len(known))
		for i := range bufs {
			bufs[i] = make([]byte, sr.tsSpan)
		}
		errs := sr.readv(bufs, known)
		ok := true
		for i := range known {
			next := uint64(0)
			if i+1 < len(known) {
				next = known[i+1]
			}
			if errs[i] != nil || field(bufs[i], L.TstateNext) != next {
				ok = false
				break
			}
		}
		if ok {
			return known, bufs, nil
		}
	}
	var list []uint64
	var bufs [][]byte
	seen := map[uint64]bool{}
	for ts := first; ts != 0 && !seen[ts] && len(list) < maxThreads; {
		seen[ts] = true
		b := make([]byte, sr.tsSpan)
		if errs := sr.readv([][]byte{b}, []uint64{ts}); errs[0] != nil {
			return nil, nil, fmt.Errorf("reading thread state 0x%x: %w", ts, errs[0])
		}
		list = append(list, ts)
		bufs = append(bufs, b)
		ts = field(b, L.TstateNext)
	}
	sr.known[is] = list
	return list, bufs, nil
}

// nativeIDs fills OS thread ids where the thread state has none (before
// 3.8), from glibc's struct pthread (see fillNativeIDs); the offset is
// found once.
func (sr *StackReader) nativeIDs(threads []*StackThread, os []target.Thread) {
	var need []int
	for i, t := range threads {
		if t.NativeID == 0 && t.ThreadID != 0 {
			need = append(need, i)
		}
	}
	if len(need) == 0 {
		return
	}
	if sr.nativeOff < 0 {
		if len(os) == 0 {
			return
		}
		ts := make([]*Thread, len(need))
		for k, i := range need {
			ts[k] = &Thread{ThreadID: threads[i].ThreadID}
		}
		sr.nativeOff = sr.py.pthreadTIDOffset(ts, os)
		if sr.nativeOff < 0 {
			return
		}
	}
	bufs := make([][]byte, len(need))
	addrs := make([]uint64, len(need))
	for k, i := range need {
		bufs[k] = make([]byte, 4)
		addrs[k] = threads[i].ThreadID + uint64(sr.nativeOff)
	}
	errs := sr.readv(bufs, addrs)
	for k, i := range need {
		if errs[k] == nil {
			threads[i].NativeID = int(int32(binary.LittleEndian.Uint32(bufs[k])))
		}
	}
}

// walk reads the stacks, one level of every thread per call.
func (sr *StackReader) walk(threads []*StackThread, cur []uint64) {
	L := sr.py.L
	seen := make([]map[uint64]bool, len(threads))
	bufs := make([][]byte, 0, len(threads))
	addrs := make([]uint64, 0, len(threads))
	idx := make([]int, 0, len(threads))
	store := make([]byte, sr.frameSpan*len(threads))
	for depth := 0; depth < maxFrames; depth++ {
		bufs, addrs, idx = bufs[:0], addrs[:0], idx[:0]
		for i, a := range cur {
			if a == 0 {
				continue
			}
			if seen[i] == nil {
				seen[i] = map[uint64]bool{}
			}
			if seen[i][a] {
				threads[i].Err = fmt.Errorf("frame chain loops at 0x%x", a)
				cur[i] = 0
				continue
			}
			seen[i][a] = true
			k := len(bufs)
			bufs = append(bufs, store[k*sr.frameSpan:(k+1)*sr.frameSpan])
			addrs = append(addrs, a)
			idx = append(idx, i)
		}
		if len(bufs) == 0 {
			return
		}
		errs := sr.readv(bufs, addrs)
		for k, i := range idx {
			t := threads[i]
			if errs[k] != nil {
				t.Err = errs[k]
				cur[i] = 0
				continue
			}
			b := bufs[k]
			var f *StackFrame
			var err error
			if L.Frames == layout.FrameObjects {
				cur[i] = field(b, L.FrameBack)
				f, err = sr.frameObject(addrs[k], b)
			} else {
				cur[i] = field(b, L.IFramePrevious)
				f, err = sr.interpreterFrame(addrs[k], b)
			}
			if err != nil {
				t.Frames = append(t.Frames, StackFrame{Addr: addrs[k], Info: unknownCode})
				continue
			}
			if f != nil {
				t.Frames = append(t.Frames, *f)
			}
		}
	}
}

var unknownCode = &CodeInfo{Name: "???", Qualname: "???", File: "?"}

// sigSpan is how many bytes of a code object hold its codeSig fields.
func (sr *StackReader) sigSpan() int {
	L := sr.py.L
	return span(8, L.CodeName, L.CodeQualname, L.CodeFilename, L.CodeLinetable, L.CodeFirstlineno)
}

func (sr *StackReader) sigOf(b []byte) codeSig {
	L := sr.py.L
	return codeSig{field(b, 8), field(b, L.CodeName), field(b, L.CodeQualname), field(b, L.CodeFilename),
		field(b, L.CodeLinetable), uint64(field32(b, L.CodeFirstlineno))}
}

// checkCodes makes sure that the code objects cached by address are still
// the ones at those addresses: a code object freed and another allocated
// in its place (code made by exec or compile in a loop, a module
// reloaded) would otherwise be shown under the old one's name. It reads
// the signature fields of every code object of this sample in one call and
// decodes again the ones that changed, fixing their frames.
func (sr *StackReader) checkCodes(threads []*StackThread) {
	var addrs []uint64
	seen := map[uint64]bool{}
	for _, t := range threads {
		for _, f := range t.Frames {
			if f.Code != 0 && !seen[f.Code] {
				seen[f.Code] = true
				addrs = append(addrs, f.Code)
			}
		}
	}
	if len(addrs) == 0 {
		return
	}
	n := sr.sigSpan()
	store := make([]byte, n*len(addrs))
	bufs := make([][]byte, len(addrs))
	for i := range bufs {
		bufs[i] = store[i*n : (i+1)*n]
	}
	errs := sr.readv(bufs, addrs)
	stale := map[uint64]*sampledCode{}
	for i, a := range addrs {
		sc := sr.codes[a]
		if sc == nil || errs[i] != nil || sr.sigOf(bufs[i]) == sc.sig {
			continue
		}
		delete(sr.codes, a)
		nc, err := sr.code(a)
		if err != nil {
			nc = nil
		}
		stale[a] = nc
	}
	if len(stale) == 0 {
		return
	}
	for _, t := range threads {
		for k := range t.Frames {
			f := &t.Frames[k]
			nc, ok := stale[f.Code]
			if !ok {
				continue
			}
			if nc == nil {
				f.Info, f.Line = unknownCode, 0
				continue
			}
			f.Info, f.Line = nc.info, sr.lineAt(nc, f.pos)
		}
	}
}

// lineAt is the line of a frame at pos (see StackFrame.pos) in c.
func (sr *StackReader) lineAt(c *sampledCode, pos uint64) int {
	L := sr.py.L
	if L.Frames == layout.FrameObjects {
		lasti := int32(pos)
		if lasti < 0 {
			return c.c.firstLine
		}
		return c.line(L.LineTable, int(int64(lasti)*L.LastiUnit))
	}
	return c.line(L.LineTable, int((int64(pos)-int64(c.c.codeStart))/2*2))
}

func (sr *StackReader) code(addr uint64) (*sampledCode, error) {
	if c, ok := sr.codes[addr]; ok {
		return c, nil
	}
	c, err := sr.py.readCode(addr)
	if err != nil {
		return nil, err
	}
	sc := &sampledCode{c: c, lines: map[int]int{}, info: &CodeInfo{Name: c.name, Qualname: c.qualname, File: c.file, FirstLine: c.firstLine}}
	if b, err := sr.py.m.bytes(addr, sr.sigSpan()); err == nil {
		sc.sig = sr.sigOf(b)
	}
	// Line tables are not needed once decoded for the offsets seen; keep
	// them (bounded by the code objects sampled).
	sr.codes[addr] = sc
	return sc, nil
}

func (sc *sampledCode) line(format, offset int) int {
	if l, ok := sc.lines[offset]; ok {
		return l
	}
	l := lineForOffset(format, sc.c.lineTable, sc.c.firstLine, offset)
	if len(sc.lines) < 4096 {
		sc.lines[offset] = l
	}
	return l
}

func (sr *StackReader) frameObject(addr uint64, b []byte) (*StackFrame, error) {
	L := sr.py.L
	codeAddr := field(b, L.FrameCode)
	c, err := sr.code(codeAddr)
	if err != nil {
		return nil, err
	}
	pos := uint64(field32(b, L.FrameLasti))
	return &StackFrame{Addr: addr, Code: codeAddr, Info: c.info, Line: sr.lineAt(c, pos), pos: pos}, nil
}

func (sr *StackReader) interpreterFrame(addr uint64, b []byte) (*StackFrame, error) {
	L := sr.py.L
	var owner int64
	if L.OwnerCStack >= 0 || L.OwnerGenerator >= 0 {
		if L.IFrameOwner >= 0 && int(L.IFrameOwner) < len(b) {
			owner = int64(b[L.IFrameOwner])
		}
	}
	if L.OwnerCStack >= 0 && owner >= L.OwnerCStack {
		return nil, nil // shim frame
	}
	codeAddr := field(b, L.IFrameCode) &^ L.StackRefTag
	c, err := sr.code(codeAddr)
	if err != nil {
		return nil, err
	}
	instr := field(b, L.IFrameInstr)
	unit := (int64(instr) - int64(c.c.codeStart)) / 2
	if unit < c.c.firstTraceable && owner != L.OwnerGenerator {
		return nil, nil // incomplete frame
	}
	return &StackFrame{Addr: addr, Code: codeAddr, Info: c.info, Line: c.line(L.LineTable, int(unit*2)), pos: instr}, nil
}

// ThreadNames reads threading's thread names of every interpreter, by
// thread ident (costly: a walk over sys.modules; a sampler refreshes it
// now and then, not every sample).
func (py *Python) ThreadNames() map[uint64]string {
	py.m = newMem(py.Proc)
	out := map[uint64]string{}
	interps, err := py.Interpreters()
	if err != nil {
		return out
	}
	for _, in := range interps {
		for k, v := range py.threadNames(in.Addr) {
			out[k] = v
		}
	}
	return out
}

// FrameLocalAddrs returns the objects bound to the named locals of a frame
// (0 for one unbound or absent), reading only their slots. The sampler
// uses it on the one frame that tells which web request a thread serves.
func (py *Python) FrameLocalAddrs(frame, codeAddr uint64, names ...string) ([]uint64, error) {
	py.m = newMem(py.Proc)
	return py.frameLocalAddrs(frame, codeAddr, names...)
}

func (py *Python) frameLocalAddrs(frame, codeAddr uint64, names ...string) ([]uint64, error) {
	L := py.L
	c, err := py.codeCached(codeAddr, py.codes)
	if err != nil {
		return nil, err
	}
	out := make([]uint64, len(names))
	for k, name := range names {
		i := -1
		for j, n := range c.names {
			if n == name {
				i = j
				break
			}
		}
		if i < 0 {
			continue
		}
		var p uint64
		if L.Frames == layout.FrameObjects {
			if i >= c.nlocals {
				continue // a cell: not what we look for
			}
			p, err = py.m.u64(frame + uint64(L.FrameLocalsplus) + 8*uint64(i))
		} else {
			p, err = py.m.u64(frame + uint64(L.IFrameLocalsplus) + 8*uint64(i))
			if L.StackRefTag != 0 {
				if p&L.StackRefIntTag == L.StackRefIntTag {
					p = 0
				}
				p &^= L.StackRefTag
			}
		}
		if err != nil {
			return nil, err
		}
		out[k] = p
	}
	return out, nil
}

// FreshRead makes the next Ref reads see memory as it is now.
func (py *Python) FreshRead() { py.m = newMem(py.Proc) }

// pthreadTIDOffset finds the offset of the kernel tid in glibc's struct
// pthread: the one where every thread's struct holds a distinct tid of the
// process; -1 if none.
func (py *Python) pthreadTIDOffset(threads []*Thread, os []target.Thread) int {
	tids := map[int32]bool{}
	for _, o := range os {
		tids[int32(o.TID)] = true
	}
	const span = 2048
	blobs := map[uint64][]byte{}
	for _, t := range threads {
		if t.ThreadID == 0 || blobs[t.ThreadID] != nil {
			continue
		}
		b := make([]byte, span)
		if err := py.Proc.ReadAt(b, t.ThreadID); err == nil {
			blobs[t.ThreadID] = b
		}
	}
	if len(blobs) == 0 {
		return -1
	}
	for off := 0; off+4 <= span; off += 4 {
		ok := true
		used := map[int32]bool{}
		for _, b := range blobs {
			v := int32(binary.LittleEndian.Uint32(b[off:]))
			if !tids[v] || used[v] {
				ok = false
				break
			}
			used[v] = true
		}
		if ok {
			return off
		}
	}
	return -1
}

// NeedsOSThreads says whether Sample needs the OS thread list to find
// thread ids (before 3.8, until it has found where glibc keeps them).
func (sr *StackReader) NeedsOSThreads() bool {
	return sr.py.L.TstateNativeID < 0 && sr.nativeOff < 0
}
