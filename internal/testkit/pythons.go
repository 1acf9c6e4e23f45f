package testkit

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Python is one interpreter the tests run: Name is the pyenv version
// ("3.12.1") or "system3.11", Minor "3.12".
type Python struct {
	Name, Minor, Path string
}

var pyenvRelease = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`)

// AttachPythons lists the interpreters krait attach supports (CPython
// 3.6+: pyenv builds and Debian's /usr/bin/python3.11), oldest first. A
// KRAIT_REQUIRE_PYTHONS interpreter (2.7 aside: attach refuses Python 2)
// that is missing fails the test; none at all skips it.
func AttachPythons(t *testing.T) []Python {
	t.Helper()
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".pyenv")
	}
	var found []Python
	ents, _ := os.ReadDir(filepath.Join(root, "versions"))
	for _, e := range ents {
		m := pyenvRelease.FindStringSubmatch(e.Name())
		if m == nil || m[1] != "3" {
			continue
		}
		minor := m[1] + "." + m[2]
		if n, _ := strconv.Atoi(m[2]); n < 6 {
			continue
		}
		p := filepath.Join(root, "versions", e.Name(), "bin", "python"+minor)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			found = append(found, Python{Name: e.Name(), Minor: minor, Path: p})
		}
	}
	sort.Slice(found, func(i, j int) bool { return versionLess(found[i].Name, found[j].Name) })
	if st, err := os.Stat("/usr/bin/python3.11"); err == nil && st.Mode()&0o111 != 0 {
		found = append(found, Python{Name: "system3.11", Minor: "3.11", Path: "/usr/bin/python3.11"})
	}
	var missing []string
	for _, tok := range strings.Fields(os.Getenv("KRAIT_REQUIRE_PYTHONS")) {
		if strings.HasPrefix(tok, "2.") {
			continue
		}
		ok := false
		for _, p := range found {
			ok = ok || (strings.HasPrefix(tok, "system") && p.Name == tok) || (!strings.HasPrefix(p.Name, "system") && p.Minor == tok)
		}
		if !ok {
			missing = append(missing, tok)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("KRAIT_REQUIRE_PYTHONS: required interpreters missing: %s", strings.Join(missing, " "))
	}
	if len(found) == 0 {
		t.Skip("no Python 3.6+ interpreters found (set PYENV_ROOT or install pyenv builds)")
	}
	return found
}

func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x < y
		}
	}
	return len(pa) < len(pb)
}

// FixtureLine is the number of the line of file that holds marker.
func FixtureLine(t *testing.T, file, marker string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("%s: no line with %q", file, marker)
	return 0
}
