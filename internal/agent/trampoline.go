package agent

import (
	"encoding/binary"
	"fmt"
)

// The ptrace way in (see PROTOCOL.md) sends one thread, parked in a system
// call, through a trampoline: code that is the same for every injection,
// written into a code cave (the unused tail of the last page of an
// executable mapping), and a data block krait writes onto the thread's own
// stack, below its red zone. Entering takes one register write (rip to the
// cave, r12 to the block, rsp below it); krait runs nothing in the target
// before that, so the thread is never left half-way: if krait dies before
// the write the thread resumes its system call untouched, after it the
// thread completes the injection on its own.
//
// The block, at B (64-byte aligned), r12 = B on entry:
const (
	blkRegs    = 0x000 // 16 quadwords popped in order: r15 … r8, rbp, rdi, rsi, rdx, rcx, rbx, rax, rflags
	blkRIP     = 0x080 // where the thread resumes (popped into rcx, then jumped to)
	blkRSP     = 0x088 // its stack pointer (popped into rsp)
	blkRestore = 0x090 // PyEval_RestoreThread
	blkRun     = 0x098 // PyRun_SimpleString
	blkSave    = 0x0a0 // PyEval_SaveThread
	blkTstate  = 0x0a8 // the thread state the thread enters with
	blkBoot    = 0x0c0 // NUL-terminated bootstrap source
	maxBoot    = 0x2000 - blkBoot - 1
	blkXsave   = 0x2000 // 64-byte aligned extended-state save area
	xsaveRoom  = 0x4000 // the largest xsave area (AMX: ~11 KiB) fits
	blkSize    = blkXsave + xsaveRoom
	redZone    = 512       // left untouched below the interrupted rsp (the ABI's red zone is 128)
	callRoom   = 256       // between the block and the trampoline's own rsp
	stackNeed  = 256 << 10 // stack a candidate thread must have below its rsp
	pageSize   = 4096      // a code cave never crosses into another page
	caveAlign  = 16        // where in the cave the code starts
	caveMargin = 16        // bytes left after the segment's end
)

// trampolineFuncs are the addresses the trampoline calls.
type trampolineFuncs struct {
	RestoreThread, RunSimpleString, SaveThread uint64
}

// trampolineCode is the trampoline's code. It uses no absolute address and
// no data of its own: everything it needs is in the block r12 points to.
// It saves the extended CPU state, calls PyEval_RestoreThread(tstate) — the
// thread's own thread state, taking the GIL as the thread itself would on
// leaving its system call —, PyRun_SimpleString(boot), PyEval_SaveThread(),
// restores the extended state and every general register, and jumps to the
// resume address through rcx. rcx is the one register it does not give
// back: the thread resumes either at its interrupted syscall instruction
// (which sets rcx itself) or just after it with -EINTR (where the kernel
// leaves the return address in rcx, which is what the jump leaves there).
var trampolineCode = func() []byte {
	var b []byte
	emit := func(bs ...byte) { b = append(b, bs...) }
	disp := func(d uint32) { b = binary.LittleEndian.AppendUint32(b, d) }
	xsaveArea := func() {
		emit(0xb8, 0xff, 0xff, 0xff, 0xff) // mov eax, -1
		emit(0xba, 0xff, 0xff, 0xff, 0xff) // mov edx, -1
		emit(0x49, 0x8d, 0x8c, 0x24)       // lea rcx, [r12 + disp32]
		disp(blkXsave)                     //
	}
	callSlot := func(off uint32) {
		emit(0x41, 0xff, 0x94, 0x24) // call [r12 + disp32]
		disp(off)
	}
	xsaveArea()
	emit(0x48, 0x0f, 0xae, 0x21) // xsave64 [rcx]
	emit(0x49, 0x8b, 0xbc, 0x24) // mov rdi, [r12 + disp32]
	disp(blkTstate)
	callSlot(blkRestore)
	emit(0x49, 0x8d, 0xbc, 0x24) // lea rdi, [r12 + disp32]
	disp(blkBoot)
	callSlot(blkRun)
	callSlot(blkSave)
	xsaveArea()
	emit(0x48, 0x0f, 0xae, 0x29) // xrstor64 [rcx]
	emit(0x4c, 0x89, 0xe4)       // mov rsp, r12
	emit(
		0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, // pop r15 … r12
		0x41, 0x5b, 0x41, 0x5a, 0x41, 0x59, 0x41, 0x58, // pop r11 … r8
		0x5d, 0x5f, 0x5e, 0x5a, 0x59, 0x5b, 0x58, // pop rbp rdi rsi rdx rcx rbx rax
		0x9d,       // popfq
		0x59,       // pop rcx: the resume address
		0x5c,       // pop rsp
		0xff, 0xe1, // jmp rcx
	)
	return b
}()

// trampolineBlock returns the data block for a thread that resumes with
// registers resume, entering with thread state tstate and running boot.
func trampolineBlock(f trampolineFuncs, tstate uint64, resume Regs, boot string) ([]byte, error) {
	if len(boot) > maxBoot {
		return nil, fmt.Errorf("bootstrap too long (%d bytes)", len(boot))
	}
	// The xsave area is written too: xrstor faults on a header (bytes
	// 512–575) that xsave did not write in full and that is not zero.
	out := make([]byte, blkSize)
	for i, v := range []uint64{
		resume.R15, resume.R14, resume.R13, resume.R12, resume.R11, resume.R10, resume.R9, resume.R8,
		resume.Rbp, resume.Rdi, resume.Rsi, resume.Rdx, resume.Rcx, resume.Rbx, resume.Rax, resume.Eflags,
	} {
		binary.LittleEndian.PutUint64(out[blkRegs+8*i:], v)
	}
	for off, v := range map[int]uint64{
		blkRIP: resume.Rip, blkRSP: resume.Rsp, blkRestore: f.RestoreThread, blkRun: f.RunSimpleString,
		blkSave: f.SaveThread, blkTstate: tstate,
	} {
		binary.LittleEndian.PutUint64(out[off:], v)
	}
	copy(out[blkBoot:], boot)
	return out, nil
}

// blockAddr is where the block goes on a stack whose pointer is rsp, and
// the rsp the trampoline starts with.
func blockAddr(rsp uint64) (block, entryRSP uint64) {
	block = (rsp - redZone - blkSize) &^ 63
	return block, block - callRoom
}
