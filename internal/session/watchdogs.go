package session

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"krait/internal/procinfo"
)

// Watchdog is something that kills a request, or its process, when a
// thread of it stays stopped too long.
type Watchdog struct {
	// Name as its server calls it: "gunicorn timeout", "mod_wsgi
	// request-timeout", "uWSGI harakiri", …
	Name    string
	Timeout time.Duration
	// Held: krait holds it off while a thread is stopped (it fires only
	// if the process is stuck for another reason).
	Held bool
	// What it does when it fires, or how krait holds it off.
	What string
	// FromStart: counted from the request's start (else from the stop).
	FromStart bool
}

// findWatchdogs reads, from the process and its server's command line and
// configuration, what will kill a request of pid or pid itself.
func findWatchdogs(pid int) []Watchdog {
	in, err := procinfo.Read(pid)
	if err != nil {
		return nil
	}
	switch in.Server {
	case "gunicorn worker":
		return gunicornWatchdogs(in)
	case "mod_wsgi daemon":
		return modWSGIWatchdogs(in)
	case "uwsgi worker", "uwsgi master", "uwsgi":
		return uwsgiWatchdogs(in)
	}
	return nil
}

// flagValue is the value of a command-line option (--name V, --name=V,
// or the short -s V / -sV).
func flagValue(args []string, long, short string) (string, bool) {
	for i, a := range args {
		switch {
		case a == long || short != "" && a == short:
			if i+1 < len(args) {
				return args[i+1], true
			}
		case strings.HasPrefix(a, long+"="):
			return a[len(long)+1:], true
		case short != "" && strings.HasPrefix(a, short) && len(a) > len(short) && !strings.HasPrefix(a, "--"):
			return a[len(short):], true
		}
	}
	return "", false
}

func seconds(v string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// gunicornWatchdogs: the arbiter kills a worker whose heartbeat (its
// temporary file's change time, which the worker's loop updates through
// WorkerTmp.notify) is older than --timeout (30 s by default). A sync
// worker serves its request on its only thread, so a stopped request
// stops the heartbeat; krait touches the file from outside (through
// /proc/PID/fd, the worker's own descriptor) every second while a thread
// is stopped. A gthread worker's main thread notifies while its pool
// threads serve, so a stopped request thread does not stop its heartbeat;
// krait keeps it all the same, for when the main thread itself is
// stopped.
func gunicornWatchdogs(in *procinfo.Info) []Watchdog {
	timeout := 30 * time.Second
	src := "gunicorn's default"
	// The master's command line, unless setproctitle replaced it (then
	// the first stop reads the worker's own configuration: see
	// Inferior.WatchdogsAt).
	if args, err := procinfo.Read0(in.PPID); err == nil {
		if v, ok := flagValue(args, "--timeout", "-t"); ok {
			if d, ok := seconds(v); ok {
				timeout, src = d, "--timeout"
			}
		}
	}
	return []Watchdog{gunicornWatchdog(in.PID, timeout, src)}
}

func gunicornWatchdog(pid int, timeout time.Duration, src string) Watchdog {
	if heartbeatFile(pid) == "" {
		return Watchdog{Name: "gunicorn timeout", Timeout: timeout, What: fmt.Sprintf("the arbiter kills this worker %s after its last heartbeat (%s); krait found no heartbeat file to keep", Secs(timeout), src)}
	}
	return Watchdog{Name: "gunicorn timeout", Timeout: timeout, Held: true,
		What: fmt.Sprintf("the arbiter kills a worker whose heartbeat is older than %s (%s); krait keeps the heartbeat while a thread is stopped", Secs(timeout), src)}
}

// Secs writes a duration in seconds, as servers' settings give them:
// "30s", "0.5s".
func Secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s" }

// WatchdogsAt are the inferior's watchdogs as they stand at a stop of
// thread (selected in the session). A gunicorn worker's timeout is read
// once, at its first stop, from the worker itself (self.cfg.timeout in a
// frame of gunicorn's worker class): its settings may come from a
// configuration file, and its master's command line is often its title.
func (inf *Inferior) WatchdogsAt() []Watchdog {
	inf.g.mu.Lock()
	list := append([]Watchdog(nil), inf.Watchdogs...)
	done := inf.readConf
	inf.readConf = true
	inf.g.mu.Unlock()
	if done || inf.Server != "gunicorn worker" || inf.S.Stopped() == nil {
		return list
	}
	frames, err := inf.S.Stack()
	if err != nil {
		return list
	}
	for _, f := range frames {
		if !strings.Contains(f.File, "/gunicorn/workers/") || len(f.Args) == 0 || f.Args[0].Name != "self" {
			continue
		}
		r, err := inf.S.call("eval", map[string]any{"thread": inf.S.Thread, "frame": f.Index, "expr": "self.cfg.timeout", "mode": "safe"})
		if err != nil {
			break
		}
		if d, ok := seconds(str(r, "value")); ok {
			for i, w := range list {
				if w.Name == "gunicorn timeout" {
					list[i] = gunicornWatchdog(inf.PID, d, "the worker's configuration")
				}
			}
			if d == 0 {
				list = nil
			}
			inf.g.mu.Lock()
			inf.Watchdogs = list
			inf.g.mu.Unlock()
		}
		break
	}
	return list
}

// heartbeatFile is the /proc path of a gunicorn worker's heartbeat file
// (its one open, deleted "wgunicorn-" temporary file), or "".
func heartbeatFile(pid int) string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var found []string
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.Contains(filepath.Base(link), "wgunicorn-") {
			found = append(found, filepath.Join(dir, e.Name()))
		}
	}
	if len(found) != 1 { // a worker closes its siblings' files as it starts
		return ""
	}
	return found[0]
}

// startHeartbeat keeps a gunicorn worker's heartbeat while any of its
// threads is stopped: every second, and at once on a stop.
func startHeartbeat(inf *Inferior) {
	keep := false
	for _, w := range inf.Watchdogs {
		keep = keep || w.Held && w.Name == "gunicorn timeout"
	}
	if !keep {
		return
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-inf.S.Done():
				return
			case <-t.C:
			case <-inf.hb:
			}
			if inf.S.HasStops() {
				touchHeartbeat(inf.PID)
			}
		}
	}()
}

func (inf *Inferior) heartbeatNow() {
	select {
	case inf.hb <- struct{}{}:
	default:
	}
}

// touchHeartbeat does what WorkerTmp.notify does: it changes the file's
// times (its change time moves to now, which gunicorn up to 20 reads) and
// sets its modification time to the monotonic clock (which gunicorn 21
// and later write and read).
func touchHeartbeat(pid int) {
	path := heartbeatFile(pid)
	if path == "" {
		return
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return
	}
	_ = unix.UtimesNano(path, []unix.Timespec{ts, ts})
}

// modWSGIWatchdogs reads the daemon's WSGIDaemonProcess options from the
// configuration file its Apache parent was started with.
func modWSGIWatchdogs(in *procinfo.Info) []Watchdog {
	args, err := procinfo.Read0(in.PPID)
	if err != nil {
		return nil
	}
	root, _ := flagValue(args, "-d", "")
	conf, ok := flagValue(args, "-f", "")
	if !ok {
		conf = "/etc/apache2/apache2.conf"
		if _, err := os.Stat(conf); err != nil {
			conf = "/etc/httpd/conf/httpd.conf"
		}
	}
	if root == "" {
		root = filepath.Dir(conf)
	}
	if !filepath.IsAbs(conf) {
		conf = filepath.Join(root, conf)
	}
	return modWSGIConf(conf, root, in.Group)
}

// modWSGIConf reads the watchdogs of mod_wsgi daemon group from Apache's
// configuration file conf (relative includes from root).
func modWSGIConf(conf, root, group string) []Watchdog {
	var lines []string
	readApacheConf(conf, root, &lines, 0)
	apacheTimeout := 60 * time.Second
	var opts map[string]string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch strings.ToLower(f[0]) {
		case "timeout":
			if len(f) > 1 {
				if d, ok := seconds(f[1]); ok {
					apacheTimeout = d
				}
			}
		case "wsgidaemonprocess":
			if len(f) > 1 && f[1] == group {
				opts = map[string]string{}
				for _, o := range f[2:] {
					if k, v, ok := strings.Cut(o, "="); ok {
						opts[strings.ToLower(k)] = strings.Trim(v, `"`)
					}
				}
			}
		}
	}
	if opts == nil {
		return nil
	}
	var out []Watchdog
	if d, ok := seconds(opts["request-timeout"]); ok && d > 0 {
		out = append(out, Watchdog{Name: "mod_wsgi request-timeout", Timeout: d, FromStart: true,
			What: "mod_wsgi restarts the daemon process once its requests have run this long (an average over its threads), ending this request"})
	}
	if d, ok := seconds(opts["inactivity-timeout"]); ok && d > 0 {
		out = append(out, Watchdog{Name: "mod_wsgi inactivity-timeout", Timeout: d,
			What: "mod_wsgi restarts the daemon process when its requests read and write nothing this long"})
	}
	if d, ok := seconds(opts["deadlock-timeout"]); ok && d > 0 {
		out = append(out, Watchdog{Name: "mod_wsgi deadlock-timeout", Timeout: d, Held: true,
			What: "fires only if the GIL stays held; a stopped thread waits without it"})
	}
	sock := apacheTimeout
	src := "Apache's Timeout"
	if d, ok := seconds(opts["socket-timeout"]); ok && d > 0 {
		sock, src = d, "socket-timeout"
	}
	out = append(out, Watchdog{Name: "mod_wsgi socket-timeout", Timeout: sock,
		What: fmt.Sprintf("Apache gives up waiting for this request's response after %s without data (%s); the client gets an error", Secs(sock), src)})
	return out
}

// readApacheConf appends the configuration's directives, one a line
// (continuations joined, comments dropped), following Include and
// IncludeOptional.
func readApacheConf(path, root string, out *[]string, depth int) {
	if depth > 8 {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	cur := ""
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		l = cur + l
		cur = ""
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		fs := strings.Fields(l)
		if k := strings.ToLower(fs[0]); (k == "include" || k == "includeoptional") && len(fs) > 1 {
			pat := strings.Trim(fs[1], `"`)
			if !filepath.IsAbs(pat) {
				pat = filepath.Join(root, pat)
			}
			matches, _ := filepath.Glob(pat)
			for _, m := range matches {
				readApacheConf(m, root, out, depth+1)
			}
			continue
		}
		*out = append(*out, l)
	}
}

// uwsgiWatchdogs: harakiri (--harakiri N) kills a worker whose request
// runs longer than N seconds.
func uwsgiWatchdogs(in *procinfo.Info) []Watchdog {
	args := in.Cmdline
	if in.Server == "uwsgi worker" {
		if a, err := procinfo.Read0(in.PPID); err == nil {
			args = a
		}
	}
	if v, ok := flagValue(args, "--harakiri", ""); ok {
		if d, ok := seconds(v); ok && d > 0 {
			return []Watchdog{{Name: "uWSGI harakiri", Timeout: d, FromStart: true, What: "the master kills the worker whose request runs this long"}}
		}
	}
	return nil
}
