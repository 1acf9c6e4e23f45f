// Package live is a target.Process backed by a running Linux process: /proc
// for maps and threads, process_vm_readv (or /proc/PID/mem) for memory, and
// ptrace, from one locked OS thread, to pause it.
package live

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"krait/internal/target"
)

// Process is a live process.
type Process struct {
	pid           int
	mem           *os.File // /proc/PID/mem fallback, opened lazily
	vmReadvBroken bool
}

// Open checks that pid names a live, readable process.
func Open(pid int) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("process %d: %w", pid, target.ErrNoProcess)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return nil, fmt.Errorf("process %d: %w", pid, target.ErrNoProcess)
		}
		return nil, err
	}
	if st := statState(stat); st == 'Z' || st == 'X' {
		return nil, fmt.Errorf("process %d: %w", pid, target.ErrZombie)
	}
	if statFlags(stat)&pfKthread != 0 {
		return nil, fmt.Errorf("process %d (%s) %w", pid, statComm(stat), target.ErrKernelThread)
	}
	p := &Process{pid: pid}
	// A one-byte read of the auxv tells us early whether we may read its
	// memory at all (same access check as process_vm_readv).
	if _, err := os.ReadFile(fmt.Sprintf("/proc/%d/auxv", pid)); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, &target.PermissionError{PID: pid, Op: "read"}
		}
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return nil, fmt.Errorf("process %d: %w", pid, target.ErrExited)
		}
	}
	return p, nil
}

// statState extracts the state letter from /proc/…/stat (after the comm,
// which may hold spaces and parentheses).
func statState(stat []byte) byte {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return '?'
	}
	return stat[i+2]
}

// pfKthread is the kernel's PF_KTHREAD in /proc/…/stat's flags.
const pfKthread = 0x00200000

// statFlags extracts the flags field (the 9th) from /proc/…/stat.
func statFlags(stat []byte) uint64 {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 7 {
		return 0
	}
	n, _ := strconv.ParseUint(f[6], 10, 64)
	return n
}

// statComm extracts the command name from /proc/…/stat.
func statComm(stat []byte) string {
	i, j := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if i < 0 || j < i {
		return "?"
	}
	return string(stat[i+1 : j])
}

func (p *Process) PID() int { return p.pid }

// Alive says whether the process still exists (and is not a zombie).
func (p *Process) Alive() bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return false
	}
	st := statState(stat)
	return st != 'Z' && st != 'X'
}

func (p *Process) ReadAt(buf []byte, addr uint64) error {
	if len(buf) == 0 {
		return nil
	}
	if !p.vmReadvBroken {
		local := []unix.Iovec{{Base: &buf[0]}}
		local[0].SetLen(len(buf))
		remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
		n, err := unix.ProcessVMReadv(p.pid, local, remote, 0)
		switch {
		case err == nil && n == len(buf):
			return nil
		case err == nil:
			return &target.ReadError{Addr: addr, Len: len(buf), Err: target.ErrBadAddress}
		case err == unix.EFAULT:
			return &target.ReadError{Addr: addr, Len: len(buf), Err: target.ErrBadAddress}
		case err == unix.ESRCH:
			return &target.ReadError{Addr: addr, Len: len(buf), Err: target.ErrExited}
		case err == unix.EPERM:
			return &target.PermissionError{PID: p.pid, Op: "read memory of"}
		case err == unix.ENOSYS:
			p.vmReadvBroken = true
		default:
			return &target.ReadError{Addr: addr, Len: len(buf), Err: err}
		}
	}
	if p.mem == nil {
		f, err := os.Open(fmt.Sprintf("/proc/%d/mem", p.pid))
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return &target.PermissionError{PID: p.pid, Op: "read memory of"}
			}
			return &target.ReadError{Addr: addr, Len: len(buf), Err: target.ErrExited}
		}
		p.mem = f
	}
	n, err := p.mem.ReadAt(buf, int64(addr))
	if n != len(buf) {
		if err == nil {
			err = target.ErrBadAddress
		}
		return &target.ReadError{Addr: addr, Len: len(buf), Err: err}
	}
	return nil
}

// WriteAt writes data into the process's memory at addr (process_vm_writev,
// else /proc/PID/mem). Only the PEP 768 attach uses it, to set the fields
// CPython reads for a remote debugger; the process need not be stopped.
func (p *Process) WriteAt(data []byte, addr uint64) error {
	if len(data) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &data[0]}}
	local[0].SetLen(len(data))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(data)}}
	n, err := unix.ProcessVMWritev(p.pid, local, remote, 0)
	switch {
	case err == nil && n == len(data):
		return nil
	case err == nil || err == unix.EFAULT:
		return &target.ReadError{Addr: addr, Len: len(data), Err: target.ErrBadAddress}
	case err == unix.ESRCH:
		return &target.ReadError{Addr: addr, Len: len(data), Err: target.ErrExited}
	case err == unix.EPERM:
		return &target.PermissionError{PID: p.pid, Op: "write memory of"}
	case err != unix.ENOSYS:
		return &target.ReadError{Addr: addr, Len: len(data), Err: err}
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", p.pid), os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return &target.PermissionError{PID: p.pid, Op: "write memory of"}
		}
		return &target.ReadError{Addr: addr, Len: len(data), Err: target.ErrExited}
	}
	defer f.Close()
	if _, err := f.WriteAt(data, int64(addr)); err != nil {
		return &target.ReadError{Addr: addr, Len: len(data), Err: err}
	}
	return nil
}

// Maps parses /proc/PID/maps.
func (p *Process) Maps() ([]target.Mapping, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.pid))
	if err != nil {
		return nil, p.procErr(err, "read the memory map of")
	}
	var out []target.Mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		se := strings.SplitN(f[0], "-", 2)
		if len(se) != 2 {
			continue
		}
		start, _ := strconv.ParseUint(se[0], 16, 64)
		end, _ := strconv.ParseUint(se[1], 16, 64)
		off, _ := strconv.ParseUint(f[2], 16, 64)
		m := target.Mapping{Start: start, End: end, Offset: off, Perms: f[1]}
		if len(f) >= 6 {
			m.Path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	return out, nil
}

func (p *Process) procErr(err error, op string) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return &target.PermissionError{PID: p.pid, Op: op}
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ESRCH):
		return fmt.Errorf("process %d: %w", p.pid, target.ErrExited)
	}
	return err
}

// Threads lists the process's threads with their scheduler state.
func (p *Process) Threads() ([]target.Thread, error) {
	dir := fmt.Sprintf("/proc/%d/task", p.pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, p.procErr(err, "list the threads of")
	}
	var out []target.Thread
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		t := target.Thread{TID: tid, State: '?'}
		if stat, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat")); err == nil {
			t.State = statState(stat)
		}
		if comm, err := os.ReadFile(filepath.Join(dir, e.Name(), "comm")); err == nil {
			t.Name = strings.TrimSpace(string(comm))
		}
		out = append(out, t)
	}
	return out, nil
}

// OpenPath returns a path through which this process can open a file the
// target names: /proc/PID/root/… so that containers work, "" meaning the
// executable.
func (p *Process) OpenPath(path string) (string, error) {
	if path == "" {
		return fmt.Sprintf("/proc/%d/exe", p.pid), nil
	}
	rooted := fmt.Sprintf("/proc/%d/root%s", p.pid, path)
	if _, err := os.Stat(rooted); err == nil {
		return rooted, nil
	}
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	return "", fmt.Errorf("cannot open %s of process %d", path, p.pid)
}

// ExeName returns the executable's path in the target's own mount
// namespace (without resolving it here).
func (p *Process) ExeName() string {
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(s, " (deleted)")
}

// Cmdline returns the process's argv.
func (p *Process) Cmdline() []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
	if err != nil {
		return nil
	}
	data = bytes.TrimRight(data, "\x00")
	if len(data) == 0 {
		return nil
	}
	return strings.Split(string(data), "\x00")
}

// Close releases file handles.
func (p *Process) Close() error {
	if p.mem != nil {
		return p.mem.Close()
	}
	return nil
}
