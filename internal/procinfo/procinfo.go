// Package procinfo says what a process is from /proc alone: its parent,
// user, command line and which kind of Python server it looks like
// (gunicorn master or worker, a mod_wsgi daemon and its process group,
// uWSGI, Django's runserver, a plain script).
package procinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	// "uwsgi", "runserver", "celery" or "script".
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
	}
	base := filepath.Base(in.Exe)
	if strings.Contains(base, "uwsgi") || strings.Contains(title, "uwsgi") && !strings.Contains(title, "gunicorn") {
		return "uwsgi", ""
	}
	for _, a := range in.Cmdline {
		if strings.HasSuffix(a, "gunicorn") || strings.Contains(a, "/gunicorn") {
			// Without setproctitle: a gunicorn process whose parent is a
			// gunicorn process is a worker.
			if parent, err := Read0(in.PPID); err == nil && strings.Contains(strings.Join(parent, " "), "gunicorn") {
				return "gunicorn worker", ""
			}
			return "gunicorn master", ""
		}
		if a == "runserver" {
			return "runserver", ""
		}
		if strings.HasSuffix(a, "celery") {
			return "celery", ""
		}
	}
	if strings.Contains(base, "apache") || strings.Contains(base, "httpd") {
		return "apache (embedded mod_wsgi)", ""
	}
	return "script", ""
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
	return out
}

// MaybePython says, from its memory map alone, whether pid could hold a
// CPython runtime: a libpython is mapped, or the executable's name says
// python. It is a cheap filter before reading the process.
func MaybePython(pid int) bool {
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if strings.Contains(filepath.Base(exe), "python") {
		return true
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "/libpython") {
			return true
		}
	}
	return false
}
