package layout

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// generatedBuild is one row of the generated tables.
type generatedBuild struct {
	from         string           // full version and library the row was read from
	offsets      Offsets          // struct offsets
	debugOffsets map[string]int64 // where _Py_DebugOffsets publishes each field (3.13+)
}

// PyenvRoot returns pyenv's root folder ($PYENV_ROOT, else ~/.pyenv).
func PyenvRoot() string {
	if r := os.Getenv("PYENV_ROOT"); r != "" {
		return r
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".pyenv")
}

// PyenvPrefixes lists the installation prefixes of pyenv's builds.
func PyenvPrefixes() ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join(PyenvRoot(), "versions", "*"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range dirs {
		if _, err := PrefixLibpython(d); err == nil {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no pyenv builds with a shared libpython under %s", PyenvRoot())
	}
	sort.Strings(out)
	return out, nil
}

// PrefixLibpython finds the shared libpython of an installation prefix.
func PrefixLibpython(prefix string) (string, error) {
	libs, _ := filepath.Glob(filepath.Join(prefix, "lib", "libpython*.so.1.0"))
	if len(libs) == 0 {
		return "", fmt.Errorf("%s: no lib/libpython*.so.1.0", prefix)
	}
	return libs[0], nil
}

// PrefixExtension finds an extension module (such as "_asyncio") of an
// installation prefix, in lib/pythonX.Y/lib-dynload.
func PrefixExtension(prefix, name string) (string, error) {
	libs, _ := filepath.Glob(filepath.Join(prefix, "lib", "python*", "lib-dynload", name+".*so"))
	if len(libs) == 0 {
		return "", fmt.Errorf("%s: no extension module %s", prefix, name)
	}
	return libs[0], nil
}

// PrefixVersion asks a prefix's interpreter for its version ("3.12",
// "3.12.1"). It is for tooling and tests; krait itself reads versions from
// target memory.
func PrefixVersion(prefix string) (minor, full string, err error) {
	out, err := exec.Command(filepath.Join(prefix, "bin", "python"), "-c",
		"import sys; v = sys.version_info; print('%d.%d %d.%d.%d' % (v[0], v[1], v[0], v[1], v[2]))").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s: %v", prefix, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return "", "", fmt.Errorf("%s: odd version output %q", prefix, out)
	}
	return f[0], f[1], nil
}

// LessMinor orders "X.Y" strings numerically.
func LessMinor(a, b string) bool {
	va, _ := ParseVersion(a)
	vb, _ := ParseVersion(b)
	return va.Less(vb)
}
