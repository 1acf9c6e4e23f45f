package binfmt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"krait/internal/testkit"
)

// TestOpenObjectDamaged opens a real ELF file cut short and with wild
// offsets and sizes in its headers: an error or an object, never a panic,
// never an allocation of what the headers claim.
func TestOpenObjectDamaged(t *testing.T) {
	path, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	o, err := OpenObject(path, path)
	if err != nil || len(o.Loads) == 0 {
		t.Fatalf("%s: %v", path, err)
	}
	dir := t.TempDir()
	open := func(what string, b []byte) {
		t.Helper()
		p := filepath.Join(dir, "elf")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panic: %v", what, r)
				}
			}()
			if o, err := OpenObject(p, p); err == nil {
				o.Symbol("no_such_symbol") // loads .symtab
			}
		}()
		runtime.ReadMemStats(&after)
		// debug/elf reads a section of up to 10 MB at once.
		if grown, limit := after.TotalAlloc-before.TotalAlloc, uint64(16<<20+4*len(b)); grown > limit {
			t.Errorf("%s: allocated %d bytes for a %d-byte file", what, grown, len(b))
		}
	}
	for _, cut := range []int{0, 10, 64, 100, len(data) / 2, len(data) - 1} {
		open("cut", data[:cut])
	}
	le := binary.LittleEndian
	shoff, shnum := le.Uint64(data[40:]), int(le.Uint16(data[60:]))
	wild := []uint64{1 << 62, 1 << 40, 1 << 31, 9 << 20, uint64(len(data)), ^uint64(0)}
	for _, v := range wild {
		for _, field := range []int{24, 32} { // sh_offset, sh_size
			for i := 0; i < shnum; i++ {
				b := bytes.Clone(data)
				le.PutUint64(b[shoff+uint64(i)*64+uint64(field):], v)
				open("section header", b)
			}
		}
		for _, field := range []int{32, 40} { // e_phoff, e_shoff
			b := bytes.Clone(data)
			le.PutUint64(b[field:], v)
			open("ELF header", b)
		}
	}
	// Sections marked compressed are not read (their stated size could be
	// anything).
	b := bytes.Clone(data)
	for i := 0; i < shnum; i++ {
		sh := b[shoff+uint64(i)*64:]
		le.PutUint64(sh[8:], le.Uint64(sh[8:])|uint64(elf.SHF_COMPRESSED))
	}
	open("compressed", b)
}

// TestOpenObjectFIFO: a path that names a FIFO (a core can name anything)
// is refused at once, not waited on.
func TestOpenObjectFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := OpenObject(fifo, fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("OpenObject of a FIFO succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OpenObject of a FIFO blocked")
	}
}

// TestObjectConcurrent: krait shares one Object among the processes it
// reads at once (`requests --pid A --pid B`), so lookups from several
// goroutines, the first of which loads .symtab, must not race (run with
// -race to see it; without, the runtime may catch the map written while
// read).
func TestObjectConcurrent(t *testing.T) {
	// A libpython of a pyenv build is not stripped: frame_dealloc, a
	// static function, is in its .symtab only.
	var lib string
	for _, py := range testkit.AttachPythons(t) {
		if m, _ := filepath.Glob(filepath.Join(filepath.Dir(py.Path), "..", "lib", "libpython3*.so.1.0")); len(m) > 0 {
			lib = m[0]
		}
	}
	if lib == "" {
		t.Fatal("no libpython of a pyenv build")
	}
	for round := 0; round < 10; round++ {
		o, err := OpenObject(lib, lib)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		found := make([]bool, 8)
		for i := range found {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o.Symbol("no_such_symbol")
				_, found[i] = o.Symbol("frame_dealloc")
			}()
		}
		wg.Wait()
		for i, ok := range found {
			if !ok {
				t.Fatalf("%s, round %d, goroutine %d: frame_dealloc not found", lib, round, i)
			}
		}
	}
}
