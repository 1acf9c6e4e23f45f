// Package core is a target.Process backed by an ELF core file (from gcore,
// a crash, or systemd-coredump): the memory the core holds, completed from
// the files it says were mapped (read-only pages are usually not dumped),
// its threads and its command line. krait's whole CPython layer reads a
// core exactly as it reads a live process.
package core

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"krait/internal/target"
)

// Core is an opened core file.
type Core struct {
	path    string
	f       *os.File
	loads   []load
	files   []fileMap
	threads []target.Thread
	pid     int
	psargs  string
	fname   string
	execfn  uint64
	// Sysroot prefixes the paths of mapped files (for cores from another
	// machine or container); "" uses them as they are.
	Sysroot string
	opened  map[string]*os.File
}

type load struct {
	vaddr, memsz, filesz, off uint64
}

type fileMap struct {
	start, end, off uint64
	path            string
}

// ErrNotCore: the file is not an ELF core file.
var ErrNotCore = errors.New("not an ELF core file")

// Open reads a core file's segments and notes.
func Open(path string) (*Core, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(fh)
	if err != nil || f.Type != elf.ET_CORE {
		fh.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrNotCore)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		fh.Close()
		return nil, fmt.Errorf("%s: only 64-bit little-endian cores are supported", path)
	}
	c := &Core{path: path, f: fh, opened: map[string]*os.File{}}
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			c.loads = append(c.loads, load{p.Vaddr, p.Memsz, p.Filesz, p.Off})
		case elf.PT_NOTE:
			data := make([]byte, p.Filesz)
			if _, err := fh.ReadAt(data, int64(p.Off)); err == nil {
				c.notes(data)
			}
		}
	}
	sort.Slice(c.loads, func(i, j int) bool { return c.loads[i].vaddr < c.loads[j].vaddr })
	if c.pid == 0 && len(c.threads) > 0 {
		c.pid = c.threads[0].TID
	}
	return c, nil
}

const (
	ntPrstatus = 1
	ntPrpsinfo = 3
	ntAuxv     = 6
	ntFile     = 0x46494c45
	atExecfn   = 31
)

func (c *Core) notes(data []byte) {
	le := binary.LittleEndian
	for len(data) >= 12 {
		namesz, descsz, typ := le.Uint32(data), le.Uint32(data[4:]), le.Uint32(data[8:])
		off := 12 + int(namesz+3)&^3
		end := off + int(descsz+3)&^3
		if off > len(data) || off+int(descsz) > len(data) {
			return
		}
		desc := data[off : off+int(descsz)]
		switch typ {
		case ntPrstatus:
			if len(desc) >= 36 {
				// elf_prstatus: siginfo (12), cursig (2+2), sigpend,
				// sighold (8+8), then pr_pid.
				c.threads = append(c.threads, target.Thread{TID: int(int32(le.Uint32(desc[32:]))), State: '?'})
			}
		case ntPrpsinfo:
			if len(desc) >= 136 {
				c.pid = int(int32(le.Uint32(desc[24:])))
				c.fname = cstr(desc[40:56])
				c.psargs = cstr(desc[56:136])
			}
		case ntAuxv:
			for i := 0; i+16 <= len(desc); i += 16 {
				if le.Uint64(desc[i:]) == atExecfn {
					c.execfn = le.Uint64(desc[i+8:])
				}
			}
		case ntFile:
			if len(desc) < 16 {
				break
			}
			n, page := le.Uint64(desc), le.Uint64(desc[8:])
			if n > 1<<20 || 16+n*24 > uint64(len(desc)) {
				break
			}
			names := strings.Split(string(desc[16+n*24:]), "\x00")
			for i := uint64(0); i < n && int(i) < len(names); i++ {
				e := desc[16+i*24:]
				c.files = append(c.files, fileMap{le.Uint64(e), le.Uint64(e[8:]), le.Uint64(e[16:]) * page, names[i]})
			}
		}
		if end > len(data) {
			return
		}
		data = data[end:]
	}
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// PID is the process id the core was taken from.
func (c *Core) PID() int { return c.pid }

// ReadAt reads memory: from the core where it holds the page, else from
// the file that was mapped there.
func (c *Core) ReadAt(p []byte, addr uint64) error {
	for done := 0; done < len(p); {
		a := addr + uint64(done)
		n, err := c.readSome(p[done:], a)
		if err != nil {
			return &target.ReadError{Addr: addr, Len: len(p), Err: err}
		}
		done += n
	}
	return nil
}

func (c *Core) readSome(p []byte, a uint64) (int, error) {
	i := sort.Search(len(c.loads), func(i int) bool { return c.loads[i].vaddr+c.loads[i].memsz > a })
	if i < len(c.loads) && c.loads[i].vaddr <= a {
		l := c.loads[i]
		rel := a - l.vaddr
		if rel < l.filesz {
			n := min(uint64(len(p)), l.filesz-rel)
			if _, err := c.f.ReadAt(p[:n], int64(l.off+rel)); err != nil {
				return 0, err
			}
			return int(n), nil
		}
		// Not dumped: a file's page, or memory never touched.
		lim := l.memsz - rel
		if fm, ok := c.fileAt(a); ok {
			n := min(uint64(len(p)), lim, fm.end-a)
			return c.readFile(p[:n], fm, a)
		}
		n := min(uint64(len(p)), lim)
		clear(p[:n])
		return int(n), nil
	}
	if fm, ok := c.fileAt(a); ok {
		n := min(uint64(len(p)), fm.end-a)
		return c.readFile(p[:n], fm, a)
	}
	return 0, target.ErrBadAddress
}

func (c *Core) fileAt(a uint64) (fileMap, bool) {
	for _, fm := range c.files {
		if fm.start <= a && a < fm.end {
			return fm, true
		}
	}
	return fileMap{}, false
}

func (c *Core) readFile(p []byte, fm fileMap, a uint64) (int, error) {
	f, ok := c.opened[fm.path]
	if !ok {
		var err error
		if f, err = os.Open(c.hostPath(fm.path)); err != nil {
			c.opened[fm.path] = nil
			return 0, fmt.Errorf("%s (mapped in the core) is not readable here: %w", fm.path, err)
		}
		c.opened[fm.path] = f
	}
	if f == nil {
		return 0, fmt.Errorf("%s (mapped in the core) is not readable here", fm.path)
	}
	n, _ := f.ReadAt(p, int64(fm.off+(a-fm.start)))
	clear(p[n:]) // past the end of the file the page is zeros
	return len(p), nil
}

func (c *Core) hostPath(p string) string {
	if c.Sysroot == "" {
		return p
	}
	return filepath.Join(c.Sysroot, p)
}

// Maps lists the mapped files and the dumped anonymous memory.
func (c *Core) Maps() ([]target.Mapping, error) {
	var out []target.Mapping
	for _, fm := range c.files {
		out = append(out, target.Mapping{Start: fm.start, End: fm.end, Offset: fm.off, Perms: "r--p", Path: fm.path})
	}
	for _, l := range c.loads {
		if _, ok := c.fileAt(l.vaddr); !ok {
			out = append(out, target.Mapping{Start: l.vaddr, End: l.vaddr + l.memsz, Perms: "rw-p"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}

// Threads lists the threads the core recorded (their state is unknown).
func (c *Core) Threads() ([]target.Thread, error) { return c.threads, nil }

// OpenPath returns where to read a mapped file ("" is the executable).
func (c *Core) OpenPath(path string) (string, error) {
	if path == "" {
		path = c.ExeName()
	}
	p := c.hostPath(path)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s (mapped in the core) is not readable here: %w", path, err)
	}
	return p, nil
}

// ExeName is the executable's path as mapped: the file the auxiliary
// vector's AT_EXECFN names (symbolic links resolved), else the first mapped
// file (where a position-independent executable is loaded).
func (c *Core) ExeName() string {
	if c.execfn != 0 {
		buf := make([]byte, 256)
		for n := len(buf); n >= 32; n /= 2 {
			if err := c.ReadAt(buf[:n], c.execfn); err != nil {
				continue
			}
			name := cstr(buf[:n])
			if resolved, err := filepath.EvalSymlinks(c.hostPath(name)); err == nil {
				for _, fm := range c.files {
					if c.hostPath(fm.path) == resolved || fm.path == name {
						return fm.path
					}
				}
			}
			break
		}
	}
	if len(c.files) > 0 {
		return c.files[0].path
	}
	return ""
}

// Cmdline is the process's command line as the core recorded it (at most
// 80 characters, split on spaces).
func (c *Core) Cmdline() []string { return strings.Fields(c.psargs) }

// Close releases the files.
func (c *Core) Close() error {
	for _, f := range c.opened {
		if f != nil {
			f.Close()
		}
	}
	return c.f.Close()
}
