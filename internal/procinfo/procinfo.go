// Package procinfo says what a process is from /proc alone: its parent,
// user, command line and which kind of Python server it looks like
// (gunicorn master or worker, a mod_wsgi daemon and its process group,
// uWSGI, uvicorn, hypercorn, daphne, celery, Django's runserver, a plain
// script).
package procinfo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Info is what /proc says of one process.
type Info struct {
	PID     int
	PPID    int
	UID     int
	User    string
	Cmdline []string
	Exe     string
	// Server is "gunicorn master", "gunicorn worker", "mod_wsgi daemon",
	// "uwsgi master", "uwsgi worker", "uwsgi", "uvicorn", "uvicorn master",
	// "uvicorn worker" (and the same three for hypercorn), "daphne",
	// "celery worker", "celery pool worker", "celery beat", "celery",
	// "multiprocessing resource tracker",
	// "runserver", "apache (embedded mod_wsgi)" or "script".
	Server string
	// Group is the mod_wsgi process group or gunicorn's proc_name, when
	// the process title shows it.
	Group string
}

// Read describes pid.
func Read(pid int) (*Info, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	in := &Info{PID: pid, UID: -1}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "PPid:":
			in.PPID, _ = strconv.Atoi(f[1])
		case "Uid:":
			in.UID, _ = strconv.Atoi(f[1])
		}
	}
	in.User = userName(in.UID)
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		data = bytes.TrimRight(data, "\x00")
		if len(data) > 0 {
			in.Cmdline = strings.Split(string(data), "\x00")
		}
	}
	in.Exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	in.Server, in.Group = classify(in)
	return in, nil
}

// Title is the process title as ps shows it.
func (in *Info) Title() string { return strings.Join(in.Cmdline, " ") }

// Line is the title on one line: control characters (a newline or tab in
// an argument) and bytes that are not UTF-8 are shown escaped (\n, \t,
// \x01), so that a table keeps one line per process.
func (in *Info) Line() string { return OneLine(in.Title()) }

// OneLine escapes s's control characters and invalid UTF-8.
func OneLine(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\n':
			b.WriteString("\\n")
		case r == '\t':
			b.WriteString("\\t")
		case r == '\r':
			b.WriteString("\\r")
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func classify(in *Info) (server, group string) {
	title := in.Title()
	switch {
	case strings.HasPrefix(title, "(wsgi:"):
		// mod_wsgi names its daemon processes "(wsgi:GROUP)".
		end := strings.IndexByte(title, ')')
		if end > 6 {
			group = title[6:end]
		}
		return "mod_wsgi daemon", group
	case strings.HasPrefix(title, "gunicorn: master"):
		return "gunicorn master", bracket(title)
	case strings.HasPrefix(title, "gunicorn: worker"):
		return "gunicorn worker", bracket(title)
	case strings.HasPrefix(title, "uWSGI master"), strings.HasPrefix(title, "uWSGI worker"):
		// uWSGI's own titles (auto-procname).
		return "uwsgi " + strings.Fields(title)[1], ""
	case strings.HasPrefix(title, "[celeryd: "), strings.HasPrefix(title, "[celery"):
		// celery's titles with setproctitle: "[celeryd: NODE:MainProcess]
		// -active- (worker ...)", "[celeryd: NODE:ForkPoolWorker-1]",
		// "[celery beat]".
		switch {
		case strings.Contains(title, ":MainProcess]"):
			return "celery worker", nodeName(title)
		case strings.Contains(title, "PoolWorker"):
			return "celery pool worker", nodeName(title)
		case strings.HasPrefix(title, "[celery beat"):
			return "celery beat", ""
		}
		return "celery", ""
	}
	if base := filepath.Base(in.Exe); strings.HasPrefix(base, "uwsgi") {
		// uWSGI forks its workers from the master (the same command line).
		if parent, err := Read0(in.PPID); err == nil && len(parent) > 0 && strings.Contains(filepath.Base(parent[0]), "uwsgi") {
			return "uwsgi worker", ""
		}
		return "uwsgi master", ""
	}
	prog, rest := program(in.Cmdline)
	parentProg := func() string {
		parent, err := Read0(in.PPID)
		if err != nil {
			return ""
		}
		p, _ := program(parent)
		return p
	}
	switch prog {
	case "gunicorn":
		// Without setproctitle: a gunicorn process whose parent is a
		// gunicorn process is a worker.
		if parentProg() == "gunicorn" {
			return "gunicorn worker", ""
		}
		return "gunicorn master", ""
	case "uwsgi":
		if parentProg() == "uwsgi" {
			return "uwsgi worker", ""
		}
		return "uwsgi master", ""
	case "uvicorn", "hypercorn":
		// With --workers N the server is a supervisor of N workers.
		if hasFlag(rest, "--workers", "-w") || hasFlag(rest, "--reload", "") {
			return prog + " master", ""
		}
		return prog, ""
	case "daphne":
		return "daphne", ""
	case "celery":
		sub := ""
		for _, a := range rest {
			if a == "worker" || a == "beat" || a == "flower" || a == "events" {
				sub = a
				break
			}
		}
		switch {
		case sub == "worker" && parentProg() == "celery":
			// The prefork pool's children are forks of the main process.
			return "celery pool worker", ""
		case sub != "":
			return "celery " + sub, ""
		}
		return "celery", ""
	case "multiprocessing resource tracker":
		// The helper multiprocessing's spawn starts beside the workers.
		return prog, ""
	case "multiprocessing":
		// uvicorn and hypercorn start their workers with multiprocessing's
		// spawn: python -c 'from multiprocessing.spawn import spawn_main;
		// …' --multiprocessing-fork.
		switch p := parentProg(); p {
		case "uvicorn", "hypercorn":
			return p + " worker", ""
		}
	}
	for _, a := range in.Cmdline {
		if a == "runserver" {
			return "runserver", ""
		}
	}
	base := filepath.Base(in.Exe)
	if strings.Contains(base, "apache") || strings.Contains(base, "httpd") {
		return "apache (embedded mod_wsgi)", ""
	}
	return "script", ""
}

// program says which program a Python command line runs — the script's or
// module's name ("gunicorn", "uvicorn", "celery", "manage.py", …; a
// multiprocessing child is "multiprocessing") — and that program's
// arguments.
func program(argv []string) (string, []string) {
	if len(argv) == 0 {
		return "", nil
	}
	i := 0
	if base := filepath.Base(argv[0]); strings.HasPrefix(base, "python") || strings.HasPrefix(base, "pypy") {
		// Skip the interpreter's own options up to the script, -m MODULE
		// or -c CODE.
		for i = 1; i < len(argv); i++ {
			a := argv[i]
			switch {
			case a == "-m" && i+1 < len(argv):
				return moduleProgram(argv[i+1]), argv[i+2:]
			case strings.HasPrefix(a, "-m") && len(a) > 2:
				return moduleProgram(a[2:]), argv[i+1:]
			case a == "-c":
				code := ""
				if i+1 < len(argv) {
					code = argv[i+1]
				}
				switch {
				case strings.Contains(code, "resource_tracker"):
					return "multiprocessing resource tracker", nil
				case strings.Contains(code, "multiprocessing"):
					return "multiprocessing", nil
				}
				return "", nil
			case a == "-W" || a == "-X" || a == "-Q":
				i++ // the option's value
			case strings.HasPrefix(a, "-"):
			default:
				return scriptProgram(a), argv[i+1:]
			}
		}
		return "", nil
	}
	return scriptProgram(argv[0]), argv[1:]
}

func moduleProgram(m string) string {
	m, _, _ = strings.Cut(m, ".")
	return m
}

// scriptProgram: /venv/bin/gunicorn and gunicorn-3.11 are gunicorn.
func scriptProgram(path string) string {
	base := filepath.Base(path)
	for _, p := range []string{"gunicorn", "uvicorn", "hypercorn", "daphne", "celery", "uwsgi"} {
		if base == p || strings.HasPrefix(base, p+"-") || strings.HasPrefix(base, p+"3") {
			return p
		}
	}
	return base
}

// hasFlag: args hold the long flag (--workers, --workers=4) or the short
// one.
func hasFlag(args []string, long, short string) bool {
	for _, a := range args {
		if a == long || strings.HasPrefix(a, long+"=") || short != "" && (a == short || strings.HasPrefix(a, short) && len(a) > len(short) && a[len(short)] >= '0' && a[len(short)] <= '9') {
			return true
		}
	}
	return false
}

// nodeName is the celery node in "[celeryd: celery@host:MainProcess]".
func nodeName(title string) string {
	rest, ok := strings.CutPrefix(title, "[celeryd: ")
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, ':'); i > 0 {
		return rest[:i]
	}
	return ""
}

// Read0 returns a process's command line.
func Read0(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(string(bytes.TrimRight(data, "\x00")), "\x00"), nil
}

func bracket(s string) string {
	i, j := strings.IndexByte(s, '['), strings.LastIndexByte(s, ']')
	if i >= 0 && j > i {
		return s[i+1 : j]
	}
	return ""
}

var users map[int]string

func userName(uid int) string {
	if users == nil {
		users = map[int]string{}
		if f, err := os.Open("/etc/passwd"); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				p := strings.Split(sc.Text(), ":")
				if len(p) > 3 {
					if id, err := strconv.Atoi(p[2]); err == nil {
						users[id] = p[0]
					}
				}
			}
			f.Close()
		}
	}
	if u, ok := users[uid]; ok {
		return u
	}
	return strconv.Itoa(uid)
}

// PIDs lists every process id in /proc, ascending.
func PIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	// ReadDir sorts by name ("10" before "9"): sort by number.
	sort.Ints(out)
	return out
}

// MaybePython says, from its memory map alone, whether pid could hold a
// CPython runtime: a libpython is mapped, or the executable's name says
// python. It is a cheap filter before reading the process.
func MaybePython(pid int) bool {
	ok, _ := maybePython(pid)
	return ok
}

// maybePython is MaybePython, with the error when neither the executable
// nor the memory map could be read.
func maybePython(pid int) (bool, error) {
	exe, exeErr := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if strings.Contains(filepath.Base(exe), "python") {
		return true, nil
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		if exeErr != nil {
			return false, exeErr
		}
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "/libpython") {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	return false, nil
}

// Survey goes over /proc once: pids are the processes that may be Python
// (ascending, without skip), denied those krait may not look into whose
// command line (readable by anyone) says Python or a Python server.
func Survey(skip int) (pids []int, denied []*Info) {
	for _, pid := range PIDs() {
		if pid == skip {
			continue
		}
		ok, err := maybePython(pid)
		switch {
		case ok:
			pids = append(pids, pid)
		case err != nil && errors.Is(err, os.ErrPermission):
			if in, err := Read(pid); err == nil && in.LooksPython() {
				denied = append(denied, in)
			}
		}
	}
	return pids, denied
}

// LooksPython says from the command line alone whether the process runs
// Python: the program is a python, or a known Python server or tool.
func (in *Info) LooksPython() bool {
	if len(in.Cmdline) == 0 {
		return false
	}
	if strings.Contains(filepath.Base(in.Cmdline[0]), "python") {
		return true
	}
	return in.Server != "script" && !strings.HasPrefix(in.Server, "apache")
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's start
// time: 100 on every Linux architecture krait runs on.
const clockTicks = 100

// Age is how long ago process pid started.
func Age(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 20 {
		return 0, fmt.Errorf("process %d: unexpected /proc/%d/stat", pid, pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, err
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	secs, err := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(secs*float64(time.Second)) - time.Duration(start)*time.Second/clockTicks, nil
}
