// Package target is krait's access to a process it inspects: memory, the
// list of mapped files and threads, and typed errors for what can go wrong.
// A live process (package live) implements it; a core file can too.
package target

import (
	"errors"
	"fmt"
)

// Memory reads the target's address space.
type Memory interface {
	// ReadAt fills p from address addr; a short read is an error.
	ReadAt(p []byte, addr uint64) error
}

// Mapping is one line of the target's memory map.
type Mapping struct {
	Start, End, Offset uint64
	Perms              string // "r-xp"
	Path               string // as the target sees it; "" for anonymous
}

// Thread is one OS thread of the target.
type Thread struct {
	TID   int
	State byte   // /proc state letter: R running, S sleeping, D disk wait, …
	Name  string // OS thread name (comm)
}

// Process is a target process.
type Process interface {
	Memory
	PID() int
	Maps() ([]Mapping, error)
	Threads() ([]Thread, error)
	// Open opens a file by the path the target sees (through its root, so
	// processes in other mount namespaces work). "" opens its executable.
	OpenPath(path string) (string, error)
	// ExeName is the executable's path as the target sees it.
	ExeName() string
	Cmdline() []string
}

// Typed errors, recognisable with errors.Is.
var (
	ErrNoProcess  = errors.New("no such process")
	ErrZombie     = errors.New("process is a zombie")
	ErrPermission = errors.New("permission denied")
	ErrExited     = errors.New("process exited")
	ErrBadAddress = errors.New("address not mapped")
	// ErrKernelThread: the pid is a kernel thread (no memory of its own to
	// read), so not a Python process.
	ErrKernelThread = errors.New("is a kernel thread, not a Python process")
)

// PermissionError carries the advice that goes with ErrPermission.
type PermissionError struct {
	PID int
	Op  string
}

func (e *PermissionError) Error() string {
	if e.Op == "ptrace" {
		if adv := tracedAdvice(e.PID); adv != "" {
			return fmt.Sprintf("cannot %s process %d: %s", e.Op, e.PID, adv)
		}
	}
	return fmt.Sprintf("cannot %s process %d: permission denied — %s", e.Op, e.PID, PermissionAdvice(e.PID))
}

func (e *PermissionError) Unwrap() error { return ErrPermission }

// ReadError says what could not be read and why.
type ReadError struct {
	Addr uint64
	Len  int
	Err  error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("cannot read %d bytes at 0x%x: %v", e.Len, e.Addr, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }
