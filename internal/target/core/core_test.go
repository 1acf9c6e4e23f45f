package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"krait/internal/target"
)

var layouts = []struct {
	name string
	set  func(*fakeCore)
}{
	{"kernel", func(*fakeCore) {}},
	{"gdb", func(fc *fakeCore) { fc.gdb = true }},
	{"xnum", func(fc *fakeCore) { fc.xnum = true }},
}

// allocated is how many bytes f allocates (in the whole process: tests
// that use it do not run in parallel).
func allocated(f func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	f()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// openChecked opens path as a core and fails the test on a panic, on an
// allocation beyond the file's size (and a little), or on an error of more
// than one line.
func openChecked(t *testing.T, path string) (c *Core, err error) {
	t.Helper()
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	return checked(t, size, func() (*Core, error) { return Open(path) })
}

func checked(t *testing.T, size int64, open func() (*Core, error)) (c *Core, err error) {
	t.Helper()
	grown := allocated(func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Open panicked: %v", r)
			}
		}()
		c, err = open()
	})
	// The runtime counts allocations process-wide and a span at a time
	// (in a fuzz worker the fuzzing machinery allocates beside us): an
	// opening over the limit is measured twice more, and the least of the
	// three counts. (Once in CI: 1,157,144 bytes counted for an input that
	// allocates 65,536 here.)
	limit := uint64(1<<20 + 4*size)
	for i := 0; i < 2 && grown > limit; i++ {
		grown = min(grown, allocated(func() {
			defer func() { _ = recover() }()
			if c2, _ := open(); c2 != nil {
				c2.Close()
			}
		}))
	}
	if grown > limit {
		t.Errorf("Open allocated %d bytes for a %d-byte file (limit %d)", grown, size, limit)
	}
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("error of more than one line: %q", err)
	}
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// inMemory is a core file held in memory (fuzzing without file I/O).
type inMemory struct{ *bytes.Reader }

func (inMemory) Close() error { return nil }

func TestOpenSample(t *testing.T) {
	sysroot := sampleSysroot(t)
	for _, lay := range layouts {
		t.Run(lay.name, func(t *testing.T) {
			fc := sampleCore()
			lay.set(&fc)
			data, _ := fc.build()
			c, err := openChecked(t, writeTemp(t, data))
			if err != nil {
				t.Fatal(err)
			}
			c.Sysroot = sysroot
			if c.PID() != samplePID {
				t.Errorf("PID %d, want %d", c.PID(), samplePID)
			}
			threads, _ := c.Threads()
			if len(threads) != 2 || threads[0].TID != samplePID || threads[1].TID != samplePID+1 {
				t.Errorf("threads %v, want %d and %d", threads, samplePID, samplePID+1)
			}
			if got := strings.Join(c.Cmdline(), " "); got != sampleArgs {
				t.Errorf("command line %q, want %q", got, sampleArgs)
			}
			if exe := c.ExeName(); exe != sampleExe {
				t.Errorf("ExeName %q, want %q", exe, sampleExe)
			}
			if p, err := c.OpenPath(""); err != nil || p != filepath.Join(sysroot, sampleExe) {
				t.Errorf("OpenPath(\"\") = %q, %v", p, err)
			}
			buf := make([]byte, 16)
			if err := c.ReadAt(buf, sampleText+32); err != nil || buf[0] != 32 || buf[15] != 47 {
				t.Errorf("reading the executable's page through the file: %v %v", buf, err)
			}
			if err := c.ReadAt(buf, sampleStack+1); err != nil || buf[0] != 13 || buf[1] != 26 {
				t.Errorf("reading the dumped stack: %v %v", buf, err)
			}
			if err := c.ReadAt(buf, sampleStack+4096); err != nil || !bytes.Equal(buf, make([]byte, 16)) {
				t.Errorf("reading the stack's undumped page: %v %v, want zeros", buf, err)
			}
			if err := c.ReadAt(buf, 0x1000); !errors.Is(err, target.ErrBadAddress) {
				t.Errorf("reading unmapped memory: %v", err)
			}
			maps, _ := c.Maps()
			if len(maps) != 2 || maps[0].Path != sampleExe || maps[1].Start != sampleStack {
				t.Errorf("maps %+v", maps)
			}
		})
	}
}

// TestTruncated: a core cut anywhere says it is truncated, and by how much.
func TestTruncated(t *testing.T) {
	for _, lay := range layouts {
		t.Run(lay.name, func(t *testing.T) {
			fc := sampleCore()
			lay.set(&fc)
			data, l := fc.build()
			phEnd := l.phoff + uint64(1+len(fc.loads))*phdrSize
			cuts := []uint64{0, 1, 3, 4, 20, ehdrSize - 1, ehdrSize, ehdrSize + 30, phEnd - 1, phEnd, phEnd + 5,
				l.notesOff + 13, l.loadOffs[1] + 100, l.totalSize - 1}
			if l.shoff != 0 {
				cuts = append(cuts, l.shoff, l.shoff+10)
			}
			for _, cut := range cuts {
				path := writeTemp(t, data[:cut])
				_, err := openChecked(t, path)
				var want string
				switch {
				case cut == 0:
					want = "is empty"
				case cut < ehdrSize:
					want = fmt.Sprintf("is truncated (%d of at least %d bytes)", cut, ehdrSize)
				case fc.xnum:
					// The program header count is in the section header
					// at the end.
					want = fmt.Sprintf("is truncated (%d of at least %d bytes)", cut, l.totalSize)
				case cut < phEnd:
					want = fmt.Sprintf("is truncated (%d of at least %d bytes)", cut, phEnd)
				default:
					want = fmt.Sprintf("is truncated (%d of %d bytes)", cut, l.totalSize)
				}
				if !errors.Is(err, ErrTruncated) || err.Error() != "core file "+path+" "+want {
					t.Errorf("cut at %d of %d: %v, want %q", cut, l.totalSize, err, want)
				}
			}
		})
	}
}

// TestWildSizes: sizes and offsets no file holds, in the program headers,
// give a one-line error, never a panic or an allocation of what they say.
func TestWildSizes(t *testing.T) {
	const (
		phOff    = 8
		phFilesz = 32
		phMemsz  = 40
	)
	for _, lay := range layouts {
		fc := sampleCore()
		lay.set(&fc)
		data, l := fc.build()
		notesLen := uint64(len(fc.notes))
		for _, tc := range []struct {
			what  string
			ph    int // 0 is the PT_NOTE, 2 the stack's PT_LOAD
			field int
			value uint64
			kind  error
		}{
			{"note size 2^62", 0, phFilesz, 1 << 62, ErrCorrupt},
			{"note size 64 GiB", 0, phFilesz, 1 << 36, ErrCorrupt},
			{"note size 2 GiB", 0, phFilesz, 1 << 31, ErrCorrupt},
			{"note size of the file", 0, phFilesz, l.totalSize, ErrCorrupt},
			{"note size one too many", 0, phFilesz, notesLen + 1, ErrCorrupt},
			{"note size -1", 0, phFilesz, ^uint64(0), ErrCorrupt},
			{"note offset 2^62", 0, phOff, 1 << 62, ErrCorrupt},
			{"note offset 1 TiB", 0, phOff, 1 << 40, ErrCorrupt},
			{"note offset inside the headers", 0, phOff, 8, ErrCorrupt},
			{"load size beyond its mapping", 2, phFilesz, 1 << 36, ErrCorrupt},
			{"load mapping past the address space", 2, phMemsz, ^uint64(0) - 100, ErrCorrupt},
		} {
			t.Run(lay.name+"/"+tc.what, func(t *testing.T) {
				bad := bytes.Clone(data)
				binary.LittleEndian.PutUint64(bad[l.phoff+uint64(tc.ph)*phdrSize+uint64(tc.field):], tc.value)
				_, err := openChecked(t, writeTemp(t, bad))
				if !errors.Is(err, tc.kind) {
					t.Errorf("error %v, want %v", err, tc.kind)
				}
			})
		}
	}
	// A last segment that says more than the file holds, right where the
	// file ends, cannot be told from a truncated core: it is called one.
	fc := sampleCore()
	data, l := fc.build()
	bad := bytes.Clone(data)
	binary.LittleEndian.PutUint64(bad[l.phoff+2*phdrSize+phFilesz:], 1<<36)
	binary.LittleEndian.PutUint64(bad[l.phoff+2*phdrSize+phMemsz:], 1<<36)
	path := writeTemp(t, bad)
	_, err := openChecked(t, path)
	want := fmt.Sprintf("core file %s is truncated (%d of %d bytes)", path, l.totalSize, l.loadOffs[1]+1<<36)
	if err == nil || err.Error() != want {
		t.Errorf("a 64 GiB last segment: %v, want %q", err, want)
	}
}

// TestWildNotes: notes whose sizes or contents do not fit give a one-line
// error, never a panic or an allocation of what they say.
func TestWildNotes(t *testing.T) {
	le := binary.LittleEndian
	wildDesc := note(ntFile, "CORE", make([]byte, 16))
	le.PutUint32(wildDesc[4:], 0xffffffff)
	wildName := note(ntPrstatus, "CORE", prstatus(1))
	le.PutUint32(wildName, 0xfffffffd) // namesz+3 wraps in 32 bits
	manyFiles := filesNote(fileMap{0x1000, 0x2000, 0, "/x"})
	le.PutUint64(manyFiles, 1<<60)
	bigFile := note(ntFile, "CORE", nil)
	le.PutUint32(bigFile[4:], maxFileNote+1)
	bigFile = append(bigFile, make([]byte, maxFileNote+4)...)
	for _, tc := range []struct {
		what  string
		notes []byte
	}{
		{"desc size 2^32-1", wildDesc},
		{"name size 2^32-3", wildName},
		{"NT_FILE count 2^60", note(ntFile, "CORE", manyFiles)},
		{"NT_FILE of 8 bytes", note(ntFile, "CORE", make([]byte, 8))},
		{"NT_FILE without names", note(ntFile, "CORE", filesNote(fileMap{0x1000, 0x2000, 0, ""})[:16+24])},
		{"NT_FILE mapping ending before it starts", note(ntFile, "CORE", filesNote(fileMap{0x2000, 0x1000, 0, "/x"}))},
		{"NT_FILE over 64 MiB", bigFile},
	} {
		t.Run(tc.what, func(t *testing.T) {
			fc := sampleCore()
			fc.notes = append(note(ntPrstatus, "CORE", prstatus(7)), tc.notes...)
			data, _ := fc.build()
			_, err := openChecked(t, writeTemp(t, data))
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %v, want %v", err, ErrCorrupt)
			}
		})
	}
	// Padding missing after the last note, or a few stray bytes after it,
	// is not damage.
	for _, tail := range [][]byte{nil, {1, 2, 3}, make([]byte, 11)} {
		fc := sampleCore()
		last := note(ntPrstatus, "CORE", prstatus(9)[:37])
		fc.notes = append(append(fc.notes, last[:len(last)-3]...), tail...)
		data, _ := fc.build()
		c, err := openChecked(t, writeTemp(t, data))
		if err != nil {
			t.Errorf("an unpadded last note and %d stray bytes: %v", len(tail), err)
			continue
		}
		if th, _ := c.Threads(); len(th) != 3 || th[2].TID != 9 {
			t.Errorf("an unpadded last note: threads %v", th)
		}
	}
}

func TestNotACore(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		what string
		path string
		want string
	}{
		{"text", writeTemp(t, []byte("this is not a core file, just text\n")), "not an ELF core file"},
		{"ELF magic only", writeTemp(t, []byte("\x7fEL")), "is truncated"},
		{"an executable", exe, "not an ELF core file"},
		{"a directory", dir, "not a regular file"},
		{"missing", filepath.Join(dir, "missing"), "no such file"},
	} {
		_, err := openChecked(t, tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.what, err, tc.want)
		}
	}
	// A FIFO is refused at once, not waited on.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Open(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("a FIFO: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open of a FIFO blocked")
	}
}

// TestMappedPaths: a path the core names stays under the sysroot, and only
// a regular file is read.
func TestMappedPaths(t *testing.T) {
	c := &Core{Sysroot: "/sysroot"}
	for path, want := range map[string]string{
		"/usr/lib/libpython3.12.so": "/sysroot/usr/lib/libpython3.12.so",
		"/../../etc/passwd":         "/sysroot/etc/passwd",
		"lib/../../../x":            "/sysroot/x",
	} {
		if got := c.hostPath(path); got != want {
			t.Errorf("hostPath(%q) = %q, want %q", path, got, want)
		}
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fc := sampleCore()
	fc.notes = append(fc.notes, note(ntFile, "CORE", filesNote(fileMap{0x10000, 0x11000, 0, "/fifo"}))...)
	fc.loads = append(fc.loads, fakeLoad{vaddr: 0x10000, memsz: 4096})
	data, _ := fc.build()
	c, err := openChecked(t, writeTemp(t, data))
	if err != nil {
		t.Fatal(err)
	}
	c.Sysroot = dir
	if _, err := c.OpenPath("/fifo"); err == nil {
		t.Errorf("OpenPath of a FIFO succeeded")
	}
	if err := c.ReadAt(make([]byte, 8), 0x10000); err == nil {
		t.Errorf("reading memory mapped from a FIFO succeeded")
	}
}

// realCore takes a core of a running command with gdb's gcore.
func realCore(t testing.TB, argv ...string) (path string, pid int) {
	t.Helper()
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Fatalf("gcore (gdb) is needed: %v", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid = cmd.Process.Pid
	// Wait for the exec, so that the core is of the command and not of a
	// copy of the test.
	want, _ := filepath.EvalSymlinks(cmd.Path)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start", argv[0])
		}
	}
	time.Sleep(100 * time.Millisecond)
	prefix := filepath.Join(t.TempDir(), "core")
	if out, err := exec.Command(gcore, "-o", prefix, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("gcore: %v\n%s", err, out)
	}
	return fmt.Sprintf("%s.%d", prefix, pid), pid
}

// minimise keeps a real core's headers and notes, and of its memory only
// the first few small segments: a seed small enough to fuzz.
func minimise(t testing.TB, data []byte) []byte {
	le := binary.LittleEndian
	phoff, phnum := le.Uint64(data[32:]), int(le.Uint16(data[56:]))
	fc := fakeCore{gdb: le.Uint64(data[40:]) != 0}
	budget := 4 << 10
	for i := 0; i < phnum; i++ {
		p := data[phoff+uint64(i)*phdrSize:]
		off, vaddr, filesz, memsz := le.Uint64(p[8:]), le.Uint64(p[16:]), le.Uint64(p[32:]), le.Uint64(p[40:])
		switch le.Uint32(p) {
		case 4:
			fc.notes = append(fc.notes, data[off:off+filesz]...)
		case 1:
			l := fakeLoad{vaddr: vaddr, memsz: memsz}
			if int(filesz) <= budget {
				l.data = data[off : off+filesz]
				budget -= int(filesz)
			}
			fc.loads = append(fc.loads, l)
		}
	}
	out, _ := fc.build()
	return out
}

// TestRealCore: a core gdb wrote, whole, minimised, cut and damaged.
func TestRealCore(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	path, pid := realCore(t, sleep, "60")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"whole": data, "minimised": minimise(t, data)} {
		c, err := openChecked(t, writeTemp(t, b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		th, _ := c.Threads()
		if c.PID() != pid || len(th) != 1 || th[0].TID != pid || filepath.Base(c.ExeName()) != "sleep" || c.Cmdline()[0] != sleep {
			t.Errorf("%s: pid %d, threads %v, executable %q, command %q; want %d, %s", name, c.PID(), th, c.ExeName(), c.Cmdline(), pid, sleep)
		}
		maps, _ := c.Maps()
		buf := make([]byte, 4)
		if err := c.ReadAt(buf, maps[0].Start); err != nil || string(buf) != "\x7fELF" {
			t.Errorf("%s: the first mapping starts with %q, %v", name, buf, err)
		}
	}
	size := len(data)
	for _, cut := range []int{size / 3, size - 100, size - 1} {
		p := writeTemp(t, data[:cut])
		_, err := openChecked(t, p)
		want := fmt.Sprintf("core file %s is truncated (%d of %d bytes)", p, cut, size)
		if err == nil || err.Error() != want {
			t.Errorf("cut at %d: %v, want %q", cut, err, want)
		}
	}
	for _, v := range []uint64{1 << 62, 1 << 36, uint64(size)} {
		bad := bytes.Clone(data)
		phoff := binary.LittleEndian.Uint64(bad[32:])
		for i := 0; i < int(binary.LittleEndian.Uint16(bad[56:])); i++ {
			if p := bad[phoff+uint64(i)*phdrSize:]; binary.LittleEndian.Uint32(p) == 4 {
				binary.LittleEndian.PutUint64(p[32:], v)
			}
		}
		if _, err := openChecked(t, writeTemp(t, bad)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("PT_NOTE size %d: %v, want %v", v, err, ErrCorrupt)
		}
	}
}

// FuzzNotes: the note parser must survive any bytes a damaged core holds.
func FuzzNotes(f *testing.F) {
	file := filesNote(fileMap{0x400000, 0x401000, 0, "/usr/bin/python3"})
	f.Add(note(ntFile, "CORE", file))
	f.Add(note(ntPrstatus, "CORE", make([]byte, 336)))
	f.Add(note(ntPrpsinfo, "CORE", make([]byte, 136)))
	f.Add(note(ntAuxv, "CORE", make([]byte, 32)))
	f.Add(sampleCore().notes)
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Core{opened: map[string]*os.File{}, Sysroot: t.TempDir()}
		_ = c.notes(bytes.NewReader(data), uint64(len(data)))
		_, _ = c.Maps()
		_ = c.ReadAt(make([]byte, 16), 0x400000)
	})
}

// inFuzzWorker: a fuzzing worker process does not use the seeds; it need
// not take real cores to make them.
func inFuzzWorker() bool {
	fl := flag.Lookup("test.fuzzworker")
	return fl != nil && fl.Value.String() == "true"
}

// FuzzCore opens arbitrary bytes as a core file and reads it every way
// krait does: a one-line error or a core, never a panic, a hang or an
// allocation beyond the file's size. Seeds: synthetic cores in the three
// layouts, and minimised real cores of sleep and of a Python.
func FuzzCore(f *testing.F) {
	for _, lay := range layouts {
		fc := sampleCore()
		lay.set(&fc)
		data, _ := fc.build()
		f.Add(data)
	}
	if !inFuzzWorker() {
		var cmds [][]string
		if sleep, err := exec.LookPath("sleep"); err == nil {
			cmds = append(cmds, []string{sleep, "60"})
		}
		// The interpreter itself, not a wrapper (pyenv's shim) that would
		// exec it.
		if out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output(); err == nil {
			py := strings.TrimSpace(string(out))
			cmds = append(cmds, []string{py, "-c", "import time; time.sleep(60)"})
		}
		for _, argv := range cmds {
			path, _ := realCore(f, argv...)
			data, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(minimise(f, data))
		}
	}
	sysroot := sampleSysroot(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := checked(t, int64(len(data)), func() (*Core, error) {
			return read("fuzz", inMemory{bytes.NewReader(data)}, uint64(len(data)))
		})
		if err != nil {
			return
		}
		c.Sysroot = sysroot
		_, _ = c.Threads()
		_ = c.Cmdline()
		_ = c.ExeName()
		_, _ = c.OpenPath("")
		maps, _ := c.Maps()
		buf := make([]byte, 4096)
		for i, m := range maps {
			if i == 32 {
				break
			}
			n := min(uint64(len(buf)), m.End-m.Start)
			_ = c.ReadAt(buf[:n], m.Start)
			_ = c.ReadAt(buf[:16], m.End-8) // across its end
		}
	})
}
