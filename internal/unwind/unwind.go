// Package unwind walks a thread's native (C) stack from outside the
// process: from the thread's registers, through the call-frame information
// (.eh_frame, .debug_frame) of each mapped file, with frame pointers only
// where a function has none, and names each frame from the files' symbols
// (.symtab, .dynsym, separate debug files found by build id). It reads
// memory through target.Memory, so a live process and a core unwind alike.
// x86-64 only.
package unwind

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/go-delve/delve/pkg/dwarf/op"

	"krait/internal/target"
)

// DWARF register numbers of x86-64.
const (
	RAX = iota
	RDX
	RCX
	RBX
	RSI
	RDI
	RBP
	RSP
	R8
	R9
	R10
	R11
	R12
	R13
	R14
	R15
	RIP // the return address column
	NumRegs
)

// Regs are a thread's general registers by DWARF number.
type Regs [NumRegs]uint64

// FromUser converts the kernel's user_regs_struct (as ptrace's GETREGS
// and a core's NT_PRSTATUS give it: r15, r14, r13, r12, rbp, rbx, r11,
// r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, …).
func FromUser(u []uint64) (Regs, error) {
	var r Regs
	if len(u) < 20 {
		return r, fmt.Errorf("register set has %d registers, want at least 20", len(u))
	}
	r[R15], r[R14], r[R13], r[R12], r[RBP], r[RBX] = u[0], u[1], u[2], u[3], u[4], u[5]
	r[R11], r[R10], r[R9], r[R8], r[RAX], r[RCX] = u[6], u[7], u[8], u[9], u[10], u[11]
	r[RDX], r[RSI], r[RDI], r[RIP], r[RSP] = u[12], u[13], u[14], u[16], u[19]
	return r, nil
}

// Frame is one native frame.
type Frame struct {
	PC       uint64 // where the frame is executing (a return address in callers)
	Function string // "" when no symbol covers it
	Offset   uint64 // PC's offset in Function
	Library  string // path of the mapped file, "" if none
	// Address is the PC in the library's own addresses (the link-time
	// address, as addr2line and gdb's `info symbol` take it).
	Address uint64
	// Signal: the kernel's signal frame (__restore_rt).
	Signal bool
	// How the caller of this frame was found: "cfi", "fp" (frame
	// pointer), "signal" or "" for the outermost (or the last one
	// StackN was asked for).
	Via string
	// FuncStart and FuncEnd are the first address of the function the
	// frame runs and one past its last, in the process (run-time
	// addresses), from its call-frame information: known even where no
	// symbol names the function (a stripped binary's static functions);
	// 0 when the frame has none.
	FuncStart, FuncEnd uint64
	// File and Line are the source line the frame runs, from its file's
	// DWARF (Source fills them in), with the directory the file was
	// compiled in (CompDir); "" and 0 where the file has no line for it.
	File    string
	Line    int
	CompDir string
	// Inlined: a function inlined into the frame's function at its PC.
	// Source lists these before the frame they are in, innermost first,
	// with its PC, library and address.
	Inlined bool
	// lookup is the address that names the frame: the PC, or PC-1 (the
	// call instruction) for a return address.
	lookup uint64
}

// Covers says whether the frame runs the function that starts at the
// run-time address start (as its call-frame information says).
func (f Frame) Covers(start uint64) bool { return f.FuncStart != 0 && f.FuncStart == start }

// String renders a frame the way the issue asks: the function, or
// libfoo.so+0x1234.
func (f Frame) String() string {
	if f.Function != "" {
		return f.Function
	}
	if f.Library != "" {
		return fmt.Sprintf("%s+0x%x", filepath.Base(f.Library), f.Address)
	}
	return fmt.Sprintf("0x%x", f.PC)
}

// Unwinder unwinds the threads of one process.
type Unwinder struct {
	mem   target.Memory
	maps  []target.Mapping
	open  func(path string) (string, error)
	objs  map[string]*object
	limit int
}

// New makes an unwinder for a process: its memory, its memory map, and
// how to open a file it maps (target.Process's OpenPath).
func New(mem target.Memory, maps []target.Mapping, open func(string) (string, error)) *Unwinder {
	m := append([]target.Mapping(nil), maps...)
	sort.Slice(m, func(i, j int) bool { return m[i].Start < m[j].Start })
	return &Unwinder{mem: mem, maps: m, open: open, objs: map[string]*object{}, limit: 1024}
}

// Remap gives the unwinder the process's memory map as it is now (the
// process ran since New); what was read of each file stays cached.
func (u *Unwinder) Remap(maps []target.Mapping) {
	m := append([]target.Mapping(nil), maps...)
	sort.Slice(m, func(i, j int) bool { return m[i].Start < m[j].Start })
	u.maps = m
}

// Load reads ahead, before any Stack, the call-frame information and
// symbols of every file mapped executable whose path satisfies want, so
// that unwinding while the process is held does not spend its time
// parsing them. It returns the first file that could not be read.
func (u *Unwinder) Load(want func(path string) bool) error {
	var first error
	for _, m := range u.maps {
		if !strings.Contains(m.Perms, "x") || m.Path == "" || strings.HasPrefix(m.Path, "[") || !want(m.Path) {
			continue
		}
		if _, _, _, err := u.objectAt(m.Start); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// mapping finds the mapping holding address a.
func (u *Unwinder) mapping(a uint64) (target.Mapping, bool) {
	i := sort.Search(len(u.maps), func(i int) bool { return u.maps[i].End > a })
	if i < len(u.maps) && u.maps[i].Start <= a {
		return u.maps[i], true
	}
	return target.Mapping{}, false
}

// objectAt returns the file mapped at a, its load bias, and the mapping.
func (u *Unwinder) objectAt(a uint64) (*object, uint64, target.Mapping, error) {
	m, ok := u.mapping(a)
	if !ok {
		return nil, 0, m, fmt.Errorf("0x%x is not mapped", a)
	}
	if m.Path == "" || strings.HasPrefix(m.Path, "[") {
		name := m.Path
		if name == "" {
			name = "anonymous memory"
		}
		return nil, 0, m, fmt.Errorf("0x%x is in %s, not in a file", a, name)
	}
	o, ok := u.objs[m.Path]
	if !ok {
		opened, err := u.open(m.Path)
		if err != nil {
			o = &object{path: m.Path, err: err}
		} else {
			o = cachedObject(opened, m.Path, u.open)
		}
		u.objs[m.Path] = o
	}
	if o.err != nil {
		return o, 0, m, o.err
	}
	// The bias from this mapping: the file's segment holding its offset.
	return o, o.bias(m.Start, m.Offset), m, nil
}

// describe fills in a frame's library, address and function from its PC;
// lookup is the address to symbolise (PC-1 for a return address).
func (u *Unwinder) describe(f *Frame, lookup uint64) {
	o, bias, m, err := u.objectAt(lookup)
	if o == nil {
		return
	}
	f.Library = m.Path
	if err != nil {
		f.Address = f.PC - m.Start + m.Offset
		return
	}
	f.Address = f.PC - bias
	if name, off, ok := o.symbolize(lookup - bias); ok {
		f.Function, f.Offset = name, off+(f.PC-lookup)
	}
	if fde, err := o.fde(lookup - bias); err == nil {
		f.FuncStart, f.FuncEnd = fde.Begin()+bias, fde.End()+bias
	}
}

// Source gives frames from Stack their source lines and puts before each
// the functions inlined into it at its PC, innermost first (Inlined, Via
// "inline"), as gdb and addr2line -i show them: the first time it asks
// about a file it reads the file's DWARF (or its debug file's), once per
// build. Frames of files without DWARF are returned as they are.
func (u *Unwinder) Source(frames []Frame) []Frame {
	// Read the DWARF of the files on the stack, and look up their frames,
	// file by file side by side (decompressing a debug file's DWARF takes
	// longest); what is found is cached for the loop below.
	type lookup struct {
		o     *object
		addrs []uint64
	}
	var byFile []*lookup
	index := map[*object]*lookup{}
	for _, f := range frames {
		if f.Inlined || f.lookup == 0 {
			continue
		}
		if o, bias, _, err := u.objectAt(f.lookup); err == nil {
			l := index[o]
			if l == nil {
				l = &lookup{o: o}
				index[o] = l
				byFile = append(byFile, l)
			}
			l.addrs = append(l.addrs, f.lookup-bias)
		}
	}
	var wg sync.WaitGroup
	for _, l := range byFile {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := l.o.source()
			for _, a := range l.addrs {
				s.lookup(a)
			}
		}()
	}
	wg.Wait()
	out := make([]Frame, 0, len(frames))
	for _, f := range frames {
		if f.Inlined || f.lookup == 0 {
			out = append(out, f)
			continue
		}
		o, bias, _, err := u.objectAt(f.lookup)
		if err != nil {
			out = append(out, f)
			continue
		}
		src := o.source().lookup(f.lookup - bias)
		for i, s := range src {
			if i == len(src)-1 {
				f.File, f.Line, f.CompDir = s.File, s.Line, s.CompDir
				if f.Function == "" {
					f.Function = s.Function
				}
				break
			}
			in := f
			in.Function, in.Offset, in.File, in.Line, in.CompDir, in.Inlined, in.Via = s.Function, 0, s.File, s.Line, s.CompDir, true, "inline"
			if in.Function == "" {
				in.Function = "??"
			}
			out = append(out, in)
		}
		out = append(out, f)
	}
	return out
}

// Stack unwinds a thread from its registers, innermost frame first. It
// returns the frames it found and, when it stopped before the thread's
// outermost frame, why.
func (u *Unwinder) Stack(regs Regs) ([]Frame, error) {
	return u.stack(regs, 0)
}

// StackN is Stack for the innermost max frames only: it stops, without
// error, once it has them (the last one's caller is not looked for).
func (u *Unwinder) StackN(regs Regs, max int) ([]Frame, error) {
	if max <= 0 {
		return nil, nil
	}
	return u.stack(regs, max)
}

// stack unwinds at most max frames (0: up to the unwinder's limit, past
// which is an error).
func (u *Unwinder) stack(regs Regs, max int) ([]Frame, error) {
	var out []Frame
	var known [NumRegs]bool
	for i := range known {
		known[i] = true
	}
	signal := true // the first frame's PC is where it is, not a return address
	for len(out) < u.limit {
		pc := regs[RIP]
		if pc == 0 {
			return out, nil
		}
		f := Frame{PC: pc}
		lookup := pc
		if !signal {
			lookup = pc - 1
		}
		if isSigreturn(u.mem, pc) {
			// A signal handler "returns" to the start of __restore_rt:
			// name the frame by the PC itself.
			f.Signal = true
			lookup = pc
		}
		f.lookup = lookup
		u.describe(&f, lookup)
		if f.Signal && f.Function == "" {
			f.Function = "__restore_rt"
		}
		out = append(out, f)
		if len(out) == max {
			return out, nil
		}
		last := &out[len(out)-1]
		next, how, done, err := u.step(regs, &known, lookup, f.Signal)
		last.Via = how
		if err != nil {
			return out, err
		}
		if done {
			return out, nil
		}
		if next[RSP] <= regs[RSP] && !f.Signal && len(out) > 1 {
			return out, fmt.Errorf("stack pointer did not move up from 0x%x (in %s)", regs[RSP], f.String())
		}
		signal = f.Signal
		regs = next
	}
	return out, fmt.Errorf("more than %d frames", u.limit)
}

// ErrNoCFI: neither call-frame information nor a frame pointer gives the
// caller.
var ErrNoCFI = errors.New("no call-frame information")

// step computes the caller's registers.
func (u *Unwinder) step(regs Regs, known *[NumRegs]bool, lookup uint64, sig bool) (Regs, string, bool, error) {
	if sig {
		r, err := u.sigframe(regs)
		return r, "signal", false, err
	}
	o, bias, _, oerr := u.objectAt(lookup)
	if oerr == nil {
		fde, err := o.fde(lookup - bias)
		if err == nil {
			next, done, err := u.cfiStep(regs, known, fde, lookup-bias, bias)
			if err == nil {
				return next, "cfi", done, nil
			}
			return regs, "cfi", false, fmt.Errorf("call-frame information of %s at 0x%x: %w", filepath.Base(o.path), lookup-bias, err)
		}
	}
	// No CFI: follow the frame pointer.
	next, err := u.fpStep(regs, known)
	if err != nil {
		why := "no call-frame information"
		if oerr != nil {
			why = oerr.Error()
		}
		return regs, "fp", false, fmt.Errorf("%s, and %v", why, err)
	}
	return next, "fp", false, nil
}

func (u *Unwinder) read64(a uint64) (uint64, error) {
	var b [8]byte
	if err := u.mem.ReadAt(b[:], a); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// cfiStep applies the CFI row for pc.
func (u *Unwinder) cfiStep(regs Regs, known *[NumRegs]bool, fde *frame.FrameDescriptionEntry, pc, bias uint64) (Regs, bool, error) {
	var fctx *frame.FrameContext
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("damaged CFI program (%v)", r)
			}
		}()
		fctx, err = fde.EstablishFrame(pc)
	}()
	if err != nil {
		return regs, false, err
	}
	var cfa uint64
	switch fctx.CFA.Rule {
	case frame.RuleCFA:
		if fctx.CFA.Reg >= NumRegs || !known[fctx.CFA.Reg] {
			return regs, false, fmt.Errorf("CFA from register %d, which is unknown", fctx.CFA.Reg)
		}
		cfa = regs[fctx.CFA.Reg] + uint64(fctx.CFA.Offset)
	case frame.RuleExpression, frame.RuleValExpression:
		v, err := u.eval(regs, fctx.CFA.Expression, 0, false)
		if err != nil {
			return regs, false, fmt.Errorf("CFA expression: %w", err)
		}
		cfa = v
	default:
		return regs, false, fmt.Errorf("CFA rule %d not supported", fctx.CFA.Rule)
	}
	next := regs
	nknown := *known
	for reg := uint64(0); reg < NumRegs; reg++ {
		rule, ok := fctx.Regs[reg]
		if !ok {
			if reg == RIP {
				// No rule for the return address: the outermost frame.
				if _, has := fctx.Regs[fctx.RetAddrReg]; !has && fctx.RetAddrReg == RIP {
					return regs, true, nil
				}
			}
			continue // same value
		}
		switch rule.Rule {
		case frame.RuleUndefined:
			if reg == RIP || reg == fctx.RetAddrReg {
				return regs, true, nil // the outermost frame (_start, clone)
			}
			nknown[reg] = false
		case frame.RuleSameVal:
		case frame.RuleOffset:
			v, err := u.read64(cfa + uint64(rule.Offset))
			if err != nil {
				if reg == RIP || reg == fctx.RetAddrReg {
					return regs, false, fmt.Errorf("return address: %w", err)
				}
				nknown[reg] = false
				continue
			}
			next[reg] = v
		case frame.RuleValOffset:
			next[reg] = cfa + uint64(rule.Offset)
		case frame.RuleRegister:
			if rule.Reg < NumRegs {
				next[reg] = regs[rule.Reg]
				nknown[reg] = known[rule.Reg]
			}
		case frame.RuleExpression, frame.RuleValExpression:
			v, err := u.eval(regs, rule.Expression, cfa, true)
			if err == nil && rule.Rule == frame.RuleExpression {
				v, err = u.read64(v)
			}
			if err != nil {
				if reg == RIP {
					return regs, false, fmt.Errorf("return address expression: %w", err)
				}
				nknown[reg] = false
				continue
			}
			next[reg] = v
		default:
			nknown[reg] = false
		}
	}
	if fctx.RetAddrReg != RIP && fctx.RetAddrReg < NumRegs {
		next[RIP] = next[fctx.RetAddrReg]
	}
	next[RSP] = cfa
	nknown[RSP] = true
	*known = nknown
	return next, false, nil
}

// eval runs a DWARF expression with the frame's registers; a register
// rule's expression starts with the CFA on its stack.
func (u *Unwinder) eval(regs Regs, expr []byte, cfa uint64, pushCFA bool) (uint64, error) {
	dregs := make([]*op.DwarfRegister, NumRegs)
	for i := range dregs {
		dregs[i] = &op.DwarfRegister{Uint64Val: regs[i]}
	}
	dr := op.NewDwarfRegisters(0, dregs, binary.LittleEndian, RIP, RSP, RBP, 0)
	dr.CFA = int64(cfa)
	if pushCFA {
		// DW_OP_call_frame_cfa pushes the CFA: put it first.
		expr = append([]byte{byte(op.DW_OP_call_frame_cfa)}, expr...)
	}
	read := func(b []byte, a uint64) (int, error) {
		if err := u.mem.ReadAt(b, a); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	var v int64
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("damaged expression (%v)", r)
			}
		}()
		v, _, err = op.ExecuteStackProgram(*dr, expr, 8, read)
	}()
	return uint64(v), err
}

// fpStep follows the frame-pointer chain: the caller's frame pointer is
// saved at rbp, the return address above it.
func (u *Unwinder) fpStep(regs Regs, known *[NumRegs]bool) (Regs, error) {
	bp := regs[RBP]
	if !known[RBP] || bp == 0 || bp < regs[RSP] || bp&7 != 0 {
		return regs, fmt.Errorf("no frame pointer (rbp=0x%x, rsp=0x%x)", bp, regs[RSP])
	}
	if m, ok := u.mapping(regs[RSP]); !ok || bp >= m.End {
		return regs, fmt.Errorf("frame pointer 0x%x is not on the stack", bp)
	}
	savedBP, err := u.read64(bp)
	if err != nil {
		return regs, err
	}
	ra, err := u.read64(bp + 8)
	if err != nil {
		return regs, err
	}
	next := regs
	next[RBP], next[RIP], next[RSP] = savedBP, ra, bp+16
	return next, nil
}

// sigreturnCode is x86-64 glibc's __restore_rt: mov $15,%rax; syscall.
var sigreturnCode = []byte{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05}

func isSigreturn(mem target.Memory, pc uint64) bool {
	b := make([]byte, len(sigreturnCode))
	if err := mem.ReadAt(b, pc); err != nil {
		return false
	}
	return string(b) == string(sigreturnCode)
}

// sigframe reads the registers the kernel saved when it delivered a
// signal: __restore_rt runs with rsp at the ucontext, whose mcontext
// (gregs: r8…r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip) starts 40
// bytes in.
func (u *Unwinder) sigframe(regs Regs) (Regs, error) {
	const gregs = 40
	b := make([]byte, 17*8)
	if err := u.mem.ReadAt(b, regs[RSP]+gregs); err != nil {
		return regs, fmt.Errorf("signal frame: %w", err)
	}
	g := func(i int) uint64 { return binary.LittleEndian.Uint64(b[8*i:]) }
	var r Regs
	r[R8], r[R9], r[R10], r[R11], r[R12], r[R13], r[R14], r[R15] = g(0), g(1), g(2), g(3), g(4), g(5), g(6), g(7)
	r[RDI], r[RSI], r[RBP], r[RBX], r[RDX], r[RAX], r[RCX], r[RSP], r[RIP] = g(8), g(9), g(10), g(11), g(12), g(13), g(14), g(15), g(16)
	return r, nil
}
