package procinfo

import (
	"os"
	"sort"
	"strconv"
	"strings"
)

// Descendants lists every living descendant of pids (children, theirs, …),
// ascending, from /proc.
func Descendants(pids []int) []int {
	children := childMap()
	seen := map[int]bool{}
	var out []int
	queue := append([]int(nil), pids...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	sort.Ints(out)
	return out
}

// childMap maps each living process's parent to its children.
func childMap() map[int][]int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	return children
}

// workerKinds are the server kinds of processes that serve requests (or
// run tasks) for a master.
var workerKinds = map[string]bool{
	"gunicorn worker": true, "mod_wsgi daemon": true, "uwsgi worker": true, "uvicorn worker": true,
	"hypercorn worker": true, "celery pool worker": true,
}

// IsWorker says whether a process of this server kind is a master's
// worker.
func IsWorker(server string) bool { return workerKinds[server] }

// IsMaster says whether the process is a server's master, standing for its
// workers: a gunicorn arbiter, a uWSGI master, a uvicorn or hypercorn
// supervisor, celery's main process, or an Apache parent (the process of
// an apache2/httpd executable whose parent is not one) with mod_wsgi
// daemons.
func (in *Info) IsMaster() bool {
	switch in.Server {
	case "gunicorn master", "uwsgi master", "uvicorn master", "hypercorn master", "celery worker":
		return true
	}
	if in.isApache() {
		parent, err := Read(in.PPID)
		return err != nil || !parent.isApache()
	}
	return false
}

func (in *Info) isApache() bool {
	base := in.Exe
	if i := strings.LastIndexByte(base, '/'); i >= 0 {
		base = base[i+1:]
	}
	return strings.Contains(base, "apache") || strings.Contains(base, "httpd") || in.Server == "mod_wsgi daemon"
}

// Workers lists the Python workers of a master (see IsMaster) running now,
// ascending: its descendants of a worker kind, and (for a gunicorn or
// uWSGI master, all of whose children are workers) children just forked
// that do not yet show their title.
func Workers(master int) []int {
	mi, err := Read(master)
	if err != nil {
		return nil
	}
	var out []int
	for _, pid := range Descendants([]int{master}) {
		in, err := Read(pid)
		if err != nil {
			continue
		}
		switch {
		case IsWorker(in.Server):
		case in.PPID == master && in.Server == mi.Server && (mi.Server == "gunicorn master" || mi.Server == "uwsgi master"):
			// A fork that has not set its title yet.
		default:
			continue
		}
		out = append(out, pid)
	}
	return out
}

// ExpandServers replaces each PID that is a server's master (a gunicorn
// arbiter, an Apache parent, a uWSGI master, …) by its Python workers
// running now; masters lists the masters found.
func ExpandServers(pids []int) (out, masters []int) {
	seen := map[int]bool{}
	for _, pid := range pids {
		in, err := Read(pid)
		if err != nil || !in.IsMaster() {
			if !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
			continue
		}
		masters = append(masters, pid)
		for _, w := range Workers(pid) {
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	return out, masters
}
