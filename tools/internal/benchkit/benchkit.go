// Package benchkit is what krait's benchmark tools share: process
// attributes, pyenv lookup, machine facts and statistics.
package benchkit

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

func ReadTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func Output(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown (" + err.Error() + ")"
	}
	return string(out)
}

func Loadavg() string {
	f := strings.Fields(ReadTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// Percentile is the nearest-rank percentile of xs (p in (0, 100]).
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if p == 50 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	if i < 0 {
		i = 0
	}
	return s[i]
}

func FmtMS(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func PyenvRoot() string {
	if r := os.Getenv("PYENV_ROOT"); r != "" {
		return r
	}
	if out, err := exec.Command("pyenv", "root").Output(); err == nil {
		if r := strings.TrimSpace(string(out)); r != "" {
			return r
		}
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".pyenv")
}

// PyenvPython is the python3 of the newest pyenv version named arg or
// starting with arg+"." ("3.12" → 3.12.1).
func PyenvPython(arg string) (string, error) {
	root := PyenvRoot()
	ents, err := os.ReadDir(filepath.Join(root, "versions"))
	if err != nil {
		return "", fmt.Errorf("python %s: no pyenv versions under %s: %v", arg, Tidy(root), err)
	}
	best := ""
	for _, e := range ents {
		n := e.Name()
		if (n == arg || strings.HasPrefix(n, arg+".")) && (best == "" || VersionLess(best, n)) {
			if _, err := os.Stat(filepath.Join(root, "versions", n, "bin", "python3")); err == nil {
				best = n
			}
		}
	}
	if best == "" {
		return "", fmt.Errorf("python %s: no matching pyenv version under %s", arg, Tidy(root))
	}
	return filepath.Join(root, "versions", best, "bin", "python3"), nil
}

// Tidy hides this machine's paths in s: $PYENV_ROOT and ~ instead of
// their values, paths under the working directory made relative.
func Tidy(s string) string {
	if r := PyenvRoot(); r != "" && r != "/" {
		s = strings.ReplaceAll(s, strings.TrimRight(r, "/"), "$PYENV_ROOT")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" && home != "/" {
		s = strings.ReplaceAll(s, strings.TrimRight(home, "/"), "~")
	}
	if wd, err := os.Getwd(); err == nil && wd != "/" {
		s = strings.ReplaceAll(s, wd+"/", "")
	}
	return s
}

// VersionLess compares dotted version strings numerically.
func VersionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, errx := strconv.Atoi(as[i])
		y, erry := strconv.Atoi(bs[i])
		if errx != nil || erry != nil {
			if as[i] != bs[i] {
				return as[i] < bs[i]
			}
			continue
		}
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}

func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// OwnAttr puts a child in its own process group (so the whole group can be
// killed) and asks the kernel to kill it if we die.
func OwnAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// MachineBasics describes the machine: CPU model, cores, kernel, memory.
func MachineBasics() [][2]string {
	var info [][2]string
	add := func(k, v string) { info = append(info, [2]string{k, v}) }
	model, nproc := "unknown", 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				model = strings.TrimSpace(v)
			case "processor":
				nproc++
			}
		}
	}
	add("CPU", model)
	add("cores", fmt.Sprintf("%d online (/proc/cpuinfo), Go sees %d", nproc, runtime.NumCPU()))
	kernel := ReadTrim("/proc/sys/kernel/osrelease")
	if v := ReadTrim("/proc/sys/kernel/version"); v != "" {
		kernel += " " + v
	}
	add("kernel", kernel)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if l, _, _ := strings.Cut(string(b), "\n"); strings.HasPrefix(l, "MemTotal:") {
			add("memory", strings.Join(strings.Fields(strings.TrimPrefix(l, "MemTotal:")), " "))
		}
	}
	return info
}
