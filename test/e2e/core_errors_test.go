package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCoreDamaged: a real core of a Python, cut short or with a wild
// PT_NOTE size, gives a one-line error saying what is wrong (exit 1),
// never a panic, and within a 2 GiB address space (a core claiming more
// must not make krait try to allocate it).
func TestCoreDamaged(t *testing.T) {
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Fatalf("gcore (gdb) is needed: %v", err)
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("prlimit (util-linux) is needed: %v", err)
	}
	bounded := []string{prlimit, "--as=2147483648"}
	p := startCounter(t, pickPython(t), "")
	dir := t.TempDir()
	prefix := filepath.Join(dir, "core")
	if out, err := exec.Command(gcore, "-o", prefix, strconv.Itoa(p.pid())).CombinedOutput(); err != nil {
		t.Fatalf("gcore: %v\n%s", err, out)
	}
	whole, err := os.ReadFile(fmt.Sprintf("%s.%d", prefix, p.pid()))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	check := func(path, want string) {
		t.Helper()
		args := []string{"dump", "--core", path}
		r := kraitAs(t, bounded, args...)
		what := "krait " + strings.Join(args, " ")
		checkNoPanic(t, what, r.stderr)
		checkOneLine(t, what, r.stderr)
		if r.code != exitError || r.stderr != "krait: core file "+path+" "+want+"\n" {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", what, r.code, r.stderr, exitError, want)
		}
	}

	// The whole core dumps, within the same bounds.
	if r := kraitAs(t, bounded, "dump", "--core", write("whole", whole), "--json"); r.code != exitOK || !strings.Contains(r.stdout, fmt.Sprintf(`"pid":%d`, p.pid())) {
		t.Fatalf("the whole core: %v", r)
	}
	size := len(whole)
	for _, cut := range []int{size / 2, size - 1} {
		check(write(fmt.Sprintf("cut%d", cut), whole[:cut]), fmt.Sprintf("is truncated (%d of %d bytes)", cut, size))
	}
	check(write("cut40", whole[:40]), "is truncated (40 of at least 64 bytes)")
	check(write("empty", nil), "is empty")

	le := binary.LittleEndian
	phoff, phnum := le.Uint64(whole[32:]), int(le.Uint16(whole[56:]))
	for _, v := range []uint64{1 << 62, 1 << 36, uint64(size)} {
		bad := bytes.Clone(whole)
		var note, off uint64
		for i := 0; i < phnum; i++ {
			if ph := bad[phoff+uint64(i)*56:]; le.Uint32(ph) == 4 { // PT_NOTE
				note, off = uint64(i), le.Uint64(ph[8:])
				le.PutUint64(ph[32:], v)
			}
		}
		path := write(fmt.Sprintf("note%d", v), bad)
		r := kraitAs(t, bounded, "dump", "--core", path)
		what := fmt.Sprintf("krait dump --core (PT_NOTE size %d)", v)
		checkNoPanic(t, what, r.stderr)
		checkOneLine(t, what, r.stderr)
		want := fmt.Sprintf("krait: core file %s is corrupt: program header %d (PT_NOTE) ", path, note)
		if r.code != exitError || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, strconv.FormatUint(off, 10)) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q…", what, r.code, r.stderr, exitError, want)
		}
	}
	if p.exited() {
		t.Errorf("the target died")
	}
}
