package agent

import (
	"encoding/binary"
)

// The trampoline's pages (see PROTOCOL.md): code and the register block in
// the first page (made read+execute), the done flag and the extended-state
// save area in the writable pages after it.
const (
	pageSize    = 4096
	mapPages    = 16 // room for the largest xsave area (AMX: ~11 KiB)
	mapSize     = mapPages * pageSize
	offRegs     = 0x400 // 16 quadwords popped in order
	offRSP      = 0x480
	offRIP      = 0x488
	offBoot     = 0x500 // NUL-terminated bootstrap source
	maxBoot     = pageSize - offBoot - 1
	offDone     = pageSize      // byte set to 1 when the calls returned
	offXsave    = pageSize + 64 // 64-byte aligned xsave area
	stackMargin = 512           // below the interrupted rsp (red zone is 128)
)

// asm assembles the trampoline at a known address.
type asm struct {
	base uint64
	b    []byte
}

func (a *asm) emit(bs ...byte) { a.b = append(a.b, bs...) }

// ripRel emits prefix, a 32-bit displacement to target relative to the end
// of the instruction, then suffix.
func (a *asm) ripRel(prefix []byte, target uint64, suffix ...byte) {
	end := a.base + uint64(len(a.b)+len(prefix)+4+len(suffix))
	a.emit(prefix...)
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], uint32(int32(int64(target)-int64(end))))
	a.emit(d[:]...)
	a.emit(suffix...)
}

func (a *asm) movabsRAX(v uint64) {
	a.emit(0x48, 0xb8)
	var d [8]byte
	binary.LittleEndian.PutUint64(d[:], v)
	a.emit(d[:]...)
}

// trampolineFuncs are the addresses the trampoline calls.
type trampolineFuncs struct {
	RestoreThread, RunSimpleString, SaveThread uint64
}

// buildTrampoline returns the first page's contents: code that saves the
// extended CPU state, calls PyEval_RestoreThread(tstate) — the thread's own
// thread state in the interpreter the agent is for, taking the GIL as the
// thread itself would on leaving its system call —, then
// PyRun_SimpleString(boot) and PyEval_SaveThread(), restores the extended
// state, sets the done flag, restores every general register from resume
// and jumps to resume.Rip.
func buildTrampoline(page uint64, f trampolineFuncs, tstate uint64, resume Regs, boot string) []byte {
	a := &asm{base: page}
	xsaveMask := func() {
		a.emit(0xb8, 0xff, 0xff, 0xff, 0xff)              // mov eax, -1
		a.emit(0xba, 0xff, 0xff, 0xff, 0xff)              // mov edx, -1
		a.ripRel([]byte{0x48, 0x8d, 0x0d}, page+offXsave) // lea rcx, [xsave area]
	}
	xsaveMask()
	a.emit(0x48, 0x0f, 0xae, 0x21) // xsave64 [rcx]
	a.emit(0x48, 0xbf)             // movabs rdi, tstate
	var ts [8]byte
	binary.LittleEndian.PutUint64(ts[:], tstate)
	a.emit(ts[:]...)
	a.movabsRAX(f.RestoreThread)
	a.emit(0xff, 0xd0)                               // call rax
	a.ripRel([]byte{0x48, 0x8d, 0x3d}, page+offBoot) // lea rdi, [boot]
	a.movabsRAX(f.RunSimpleString)
	a.emit(0xff, 0xd0) // call rax
	a.movabsRAX(f.SaveThread)
	a.emit(0xff, 0xd0) // call rax
	xsaveMask()
	a.emit(0x48, 0x0f, 0xae, 0x29)                   // xrstor64 [rcx]
	a.ripRel([]byte{0xc6, 0x05}, page+offDone, 0x01) // mov byte [done], 1
	a.ripRel([]byte{0x48, 0x8d, 0x25}, page+offRegs) // lea rsp, [regs]
	a.emit(
		0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, // pop r15 … r12
		0x41, 0x5b, 0x41, 0x5a, 0x41, 0x59, 0x41, 0x58, // pop r11 … r8
		0x5d, 0x5f, 0x5e, 0x5a, 0x59, 0x5b, 0x58, // pop rbp rdi rsi rdx rcx rbx rax
		0x9d, // popfq
	)
	a.ripRel([]byte{0x48, 0x8b, 0x25}, page+offRSP) // mov rsp, [saved rsp]
	a.ripRel([]byte{0xff, 0x25}, page+offRIP)       // jmp [saved rip]
	if len(a.b) > offRegs {
		panic("trampoline code too long")
	}
	out := make([]byte, pageSize)
	copy(out, a.b)
	for i, v := range []uint64{
		resume.R15, resume.R14, resume.R13, resume.R12, resume.R11, resume.R10, resume.R9, resume.R8,
		resume.Rbp, resume.Rdi, resume.Rsi, resume.Rdx, resume.Rcx, resume.Rbx, resume.Rax, resume.Eflags,
	} {
		binary.LittleEndian.PutUint64(out[offRegs+8*i:], v)
	}
	binary.LittleEndian.PutUint64(out[offRSP:], resume.Rsp)
	binary.LittleEndian.PutUint64(out[offRIP:], resume.Rip)
	copy(out[offBoot:], boot)
	return out
}
