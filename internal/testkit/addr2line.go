package testkit

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Addr2Line asks elfutils' eu-addr2line (-a -i -f: the functions inlined
// at each address, innermost first, then the function itself) about
// addresses of the ELF file lib, all at once, and returns per address its
// functions as "name file:line" (gcc's .cold/.isra suffixes dropped, the
// file cleaned). elfutils reads DWARF with libdw, as PyStack does;
// binutils' addr2line 2.40 names the compilation unit's file instead of
// the header a function is defined in for some DWARF 5 lines (where gdb,
// llvm-addr2line and elfutils agree).
func Addr2Line(t *testing.T, lib string, addrs []uint64) [][]string {
	t.Helper()
	if _, err := exec.LookPath("eu-addr2line"); err != nil {
		t.Fatalf("eu-addr2line is needed (.ci/run installs elfutils): %v", err)
	}
	args := []string{"-a", "-i", "-f", "-e", lib}
	for _, a := range addrs {
		args = append(args, fmt.Sprintf("%#x", a))
	}
	out, err := exec.Command("eu-addr2line", args...).Output()
	if err != nil {
		t.Fatalf("eu-addr2line %v: %v", args, err)
	}
	var res [][]string
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for k := 0; k < len(lines); k++ {
		if strings.HasPrefix(lines[k], "0x") {
			res = append(res, []string{})
			continue
		}
		if len(res) == 0 || k+1 >= len(lines) {
			t.Fatalf("eu-addr2line %v: odd output:\n%s", args, out)
		}
		name, _, _ := strings.Cut(lines[k], " inlined at ")
		res[len(res)-1] = append(res[len(res)-1], BareName(name)+" "+fileLine(lines[k+1]))
		k++
	}
	if len(res) != len(addrs) {
		t.Fatalf("eu-addr2line %v: %d answers for %d addresses:\n%s", args, len(res), len(addrs), out)
	}
	return res
}

// fileLine turns "path:line:column" (or "path:line", "??:0") into
// "path:line" with the path cleaned.
func fileLine(s string) string {
	parts := strings.Split(s, ":")
	if len(parts) >= 3 {
		parts = parts[:len(parts)-1] // the column
	}
	if len(parts) < 2 {
		return s
	}
	file := strings.Join(parts[:len(parts)-1], ":")
	if file != "??" {
		file = filepath.Clean(file)
	}
	return file + ":" + parts[len(parts)-1]
}
