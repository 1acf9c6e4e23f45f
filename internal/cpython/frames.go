package cpython

import (
	"fmt"

	"krait/internal/cpython/layout"
	"krait/internal/value"
)

// Frame is one Python frame.
type Frame struct {
	Addr     uint64
	Code     uint64
	Function string // co_name
	Qualname string // co_qualname (3.11+), else co_name
	File     string
	Line     int
	Locals   []Local
	// Err is set when the frame could not be read completely.
	Err string
	// Entry: the frame is the outermost one its call of the evaluation
	// loop runs (every frame before 3.11), so that native stacks can be
	// split where each _PyEval_EvalFrameDefault begins.
	Entry bool
}

// Local is one argument or local variable of a frame.
type Local struct {
	Name  string
	Arg   bool
	Value *value.Value
}

// code is what krait keeps of one code object.
type code struct {
	name, qualname, file string
	firstLine            int
	lineTable            []byte
	codeStart            uint64 // first instruction in memory (3.11+)
	firstTraceable       int64
	argCount             int // arguments, including *args and **kwargs
	names                []string
	kinds                []byte // 3.11+: localspluskinds
	nlocals, ncells      int    // ≤3.10
}

const (
	coVarargs   = 0x4
	coVarkwargs = 0x8
)

func (py *Python) readCode(addr uint64) (*code, error) {
	L := py.L
	t, err := py.typeOf(addr)
	if err != nil {
		return nil, err
	}
	if t.kind != kindCode {
		return nil, fmt.Errorf("frame executes a %s, not code", t.name)
	}
	c := &code{}
	str := func(off int64) string {
		if off < 0 {
			return ""
		}
		p, err := py.m.u64(addr + uint64(off))
		if err != nil {
			return ""
		}
		s, _ := py.strValue(p, 1024)
		return s
	}
	i32 := func(off int64) int {
		if off < 0 {
			return 0
		}
		v, _ := py.m.i32(addr + uint64(off))
		return int(v)
	}
	c.name = str(L.CodeName)
	c.qualname = str(L.CodeQualname)
	if c.qualname == "" {
		c.qualname = c.name
	}
	c.file = str(L.CodeFilename)
	c.firstLine = i32(L.CodeFirstlineno)
	if p, err := py.m.u64(addr + uint64(L.CodeLinetable)); err == nil {
		c.lineTable, _, _ = py.bytesValue(p, 1<<20)
	}
	flags := i32(L.CodeFlags)
	c.argCount = i32(L.CodeArgcount) + i32(L.CodeKwonlyArgcount)
	if flags&coVarargs != 0 {
		c.argCount++
	}
	if flags&coVarkwargs != 0 {
		c.argCount++
	}
	names := func(off int64) []string {
		if off < 0 {
			return nil
		}
		p, err := py.m.u64(addr + uint64(off))
		if err != nil || p == 0 {
			return nil
		}
		items, _, err := (&reader{py: py, lim: Limits{Items: 1 << 16}}).seqItems(p, false)
		if err != nil {
			return nil
		}
		out := make([]string, len(items))
		for i, it := range items {
			out[i], _ = py.strValue(it, 256)
		}
		return out
	}
	if L.Frames == layout.InterpreterFrames {
		c.names = names(L.CodeLocalsplusNames)
		if p, err := py.m.u64(addr + uint64(L.CodeLocalsplusKinds)); err == nil {
			c.kinds, _, _ = py.bytesValue(p, 1<<16)
		}
		c.codeStart = addr + uint64(L.CodeCodeAdaptive)
		if L.CodeFirstTraceable >= 0 {
			c.firstTraceable = int64(i32(L.CodeFirstTraceable))
		}
	} else {
		c.nlocals = i32(L.CodeNlocals)
		vars := names(L.CodeVarnames)
		cells := names(L.CodeCellvars)
		frees := names(L.CodeFreevars)
		c.ncells = len(cells) + len(frees)
		c.names = append(append(append([]string{}, vars...), cells...), frees...)
	}
	return c, nil
}

func (py *Python) codeCached(addr uint64, cache map[uint64]*code) (*code, error) {
	if c, ok := cache[addr]; ok {
		return c, nil
	}
	c, err := py.readCode(addr)
	if err != nil {
		return nil, err
	}
	cache[addr] = c
	return c, nil
}

// maxFrames bounds a stack walk (a corrupt chain must not loop forever).
const maxFrames = 4096

// Frames walks a thread's stack from its innermost frame.
func (py *Python) Frames(tstate uint64, locals bool, lim Limits, cache map[uint64]*code) ([]Frame, error) {
	L := py.L
	var frame uint64
	var err error
	switch {
	case L.Frames == layout.FrameObjects:
		frame, err = py.m.u64(tstate + uint64(L.TstateFrame))
	case L.TstateCurrentFrame >= 0:
		frame, err = py.m.u64(tstate + uint64(L.TstateCurrentFrame))
	default:
		var cf uint64
		if cf, err = py.m.u64(tstate + uint64(L.TstateCframe)); err == nil && cf != 0 {
			frame, err = py.m.u64(cf + uint64(L.CframeCurrent))
		}
	}
	if err != nil {
		return nil, err
	}
	var out []Frame
	seen := map[uint64]bool{}
	for frame != 0 && len(out) < maxFrames {
		if seen[frame] {
			return out, fmt.Errorf("frame chain loops at 0x%x", frame)
		}
		seen[frame] = true
		var f *Frame
		var next uint64
		shim := false
		if L.Frames == layout.FrameObjects {
			f, next, err = py.frameObject(frame, locals, lim, cache)
		} else {
			f, next, shim, err = py.interpreterFrame(frame, locals, lim, cache)
		}
		if err != nil {
			out = append(out, Frame{Addr: frame, Err: err.Error(), Function: "???", Entry: L.Frames == layout.FrameObjects})
			return out, nil
		}
		if f != nil {
			out = append(out, *f)
		}
		if shim && len(out) > 0 {
			out[len(out)-1].Entry = true
		}
		frame = next
	}
	return out, nil
}

func (py *Python) frameObject(addr uint64, locals bool, lim Limits, cache map[uint64]*code) (*Frame, uint64, error) {
	L := py.L
	back, err := py.m.u64(addr + uint64(L.FrameBack))
	if err != nil {
		return nil, 0, err
	}
	codeAddr, err := py.m.u64(addr + uint64(L.FrameCode))
	if err != nil {
		return nil, 0, err
	}
	c, err := py.codeCached(codeAddr, cache)
	if err != nil {
		return nil, back, err
	}
	lasti, err := py.m.i32(addr + uint64(L.FrameLasti))
	if err != nil {
		return nil, back, err
	}
	f := &Frame{Addr: addr, Code: codeAddr, Function: c.name, Qualname: c.qualname, File: c.file, Entry: true}
	if lasti < 0 {
		f.Line = c.firstLine
	} else {
		f.Line = lineForOffset(L.LineTable, c.lineTable, c.firstLine, int(int64(lasti)*L.LastiUnit))
	}
	if locals {
		n := c.nlocals + c.ncells
		if n > len(c.names) {
			n = len(c.names)
		}
		slots, err := py.m.bytes(addr+uint64(L.FrameLocalsplus), 8*n)
		if err == nil {
			for i := 0; i < n; i++ {
				p := le64(slots[8*i:])
				if i >= c.nlocals && p != 0 {
					if p, err = py.cellContents(p); err != nil {
						continue
					}
				}
				if p == 0 || py.localFilter != nil && !py.localFilter[c.names[i]] {
					continue // unbound, or not asked for
				}
				f.Locals = append(f.Locals, Local{Name: c.names[i], Arg: i < c.argCount && i < c.nlocals, Value: py.Value(p, lim)})
			}
		} else {
			f.Err = "locals: " + err.Error()
		}
	}
	return f, back, nil
}

// interpreterFrame reads one _PyInterpreterFrame; shim says it is the
// entry frame of a call of the evaluation loop (3.12+).
func (py *Python) interpreterFrame(addr uint64, locals bool, lim Limits, cache map[uint64]*code) (*Frame, uint64, bool, error) {
	f, prev, shim, err := py.interpreterFrame1(addr, locals, lim, cache)
	if f != nil && py.L.IFrameIsEntry >= 0 {
		if e, err := py.m.u8(addr + uint64(py.L.IFrameIsEntry)); err == nil && e != 0 {
			f.Entry = true
		}
	}
	return f, prev, shim, err
}

func (py *Python) interpreterFrame1(addr uint64, locals bool, lim Limits, cache map[uint64]*code) (*Frame, uint64, bool, error) {
	L := py.L
	prev, err := py.m.u64(addr + uint64(L.IFramePrevious))
	if err != nil {
		return nil, 0, false, err
	}
	if L.OwnerCStack >= 0 {
		owner, err := py.m.u8(addr + uint64(L.IFrameOwner))
		if err != nil {
			return nil, prev, false, err
		}
		if int64(owner) >= L.OwnerCStack {
			return nil, prev, int64(owner) == L.OwnerEntry, nil // shim frame of a C call into Python
		}
	}
	codeAddr, err := py.m.u64(addr + uint64(L.IFrameCode))
	if err != nil {
		return nil, prev, false, err
	}
	codeAddr &^= L.StackRefTag
	c, err := py.codeCached(codeAddr, cache)
	if err != nil {
		return nil, prev, false, err
	}
	instr, err := py.m.u64(addr + uint64(L.IFrameInstr))
	if err != nil {
		return nil, prev, false, err
	}
	unit := (int64(instr) - int64(c.codeStart)) / 2
	if unit < c.firstTraceable {
		// Incomplete frame: the function has not started running its
		// own code yet (CPython's _PyFrame_IsIncomplete).
		owner, _ := py.m.u8(addr + uint64(L.IFrameOwner))
		if int64(owner) != L.OwnerGenerator {
			return nil, prev, false, nil
		}
	}
	f := &Frame{Addr: addr, Code: codeAddr, Function: c.name, Qualname: c.qualname, File: c.file}
	f.Line = lineForOffset(L.LineTable, c.lineTable, c.firstLine, int(unit*2))
	if locals {
		n := len(c.names)
		slots, err := py.m.bytes(addr+uint64(L.IFrameLocalsplus), 8*n)
		if err != nil {
			f.Err = "locals: " + err.Error()
			return f, prev, false, nil
		}
		for i := 0; i < n; i++ {
			var kind byte
			if i < len(c.kinds) {
				kind = c.kinds[i]
			}
			if kind&L.FastHidden != 0 && L.FastHidden != 0 {
				continue
			}
			p := le64(slots[8*i:])
			if L.StackRefTag != 0 {
				if p&L.StackRefIntTag == L.StackRefIntTag {
					continue // a tagged int: interpreter state, never a variable
				}
				p &^= L.StackRefTag
			}
			if p == 0 || py.localFilter != nil && !py.localFilter[c.names[i]] {
				continue
			}
			if kind&(L.FastCell|L.FastFree) != 0 {
				if t, err := py.typeOf(p); err == nil && t.kind == kindCell {
					if p, err = py.cellContents(p); err != nil || p == 0 {
						continue
					}
				}
			}
			f.Locals = append(f.Locals, Local{Name: c.names[i], Arg: i < c.argCount, Value: py.Value(p, lim)})
		}
	}
	return f, prev, false, nil
}
