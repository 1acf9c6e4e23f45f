package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"krait/internal/cpython"
	"krait/internal/dump"
	"krait/internal/inflight"
	"krait/internal/procinfo"
	"krait/internal/render"
	"krait/internal/target"
)

// psEntry is one process in krait ps's JSON contract.
type psEntry struct {
	PID            int     `json:"pid"`
	PPID           int     `json:"ppid"`
	User           string  `json:"user"`
	PythonVersion  string  `json:"python_version"`
	Server         string  `json:"server"`
	Group          *string `json:"group"`
	DjangoSettings *string `json:"django_settings"`
	Threads        int     `json:"threads"`
	BusyThreads    int     `json:"busy_threads"`
	Command        string  `json:"command"`
	Error          string  `json:"error,omitempty"`
}

var requestRead = cpython.Options{Locals: true, LocalNames: inflight.LocalNames, Tasks: true,
	Limits: cpython.Limits{Items: 50, Chars: 4096, Depth: 2}}

// djangoSettings reads settings.SETTINGS_MODULE from django.conf in any of
// the process's interpreters, if Django is loaded and configured.
func djangoSettings(rd *dump.Reading) *string {
	for _, in := range rd.Interps {
		mods, ok := rd.Py.Modules(in)
		if !ok {
			continue
		}
		conf, ok := mods.DictGet("django.conf")
		if !ok {
			continue
		}
		if sm, ok := conf.Path("settings", "_wrapped", "SETTINGS_MODULE"); ok {
			if s, ok := sm.Str(); ok {
				return &s
			}
		}
	}
	return nil
}

// unreadable collects the processes krait may not read, to name them on
// stderr and say so in the exit status.
type unreadable struct {
	infos []*procinfo.Info
}

func (u *unreadable) add(pid int) {
	in, err := procinfo.Read(pid)
	if err != nil {
		in = &procinfo.Info{PID: pid}
	}
	u.infos = append(u.infos, in)
}

// report prints one line naming the processes krait could not read, and
// returns the exit code to end with.
func (u *unreadable) report(stderr io.Writer, cmd string, code int) int {
	if len(u.infos) == 0 {
		return code
	}
	sort.Slice(u.infos, func(i, j int) bool { return u.infos[i].PID < u.infos[j].PID })
	var names []string
	for i, in := range u.infos {
		if i == 8 {
			names = append(names, fmt.Sprintf("and %d more", len(u.infos)-i))
			break
		}
		title := in.Line()
		if len(title) > 40 {
			title = title[:37] + "..."
		}
		names = append(names, fmt.Sprintf("%d (%s)", in.PID, title))
	}
	what := "Python process"
	if len(u.infos) > 1 {
		what += "es"
	}
	advice := target.PermissionAdvice(u.infos[0].PID)
	// Several owners (a survey of the host): name them all.
	var owners []string
	seen := map[string]bool{}
	for _, in := range u.infos {
		if in.User != "" && !seen[in.User] {
			seen[in.User] = true
			owners = append(owners, in.User)
		}
	}
	if len(owners) > 1 && strings.HasPrefix(advice, "it belongs to ") {
		sort.Strings(owners)
		advice = fmt.Sprintf("they belong to %s: run krait as root (sudo), or give krait CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep; in Docker: --cap-add SYS_PTRACE)",
			strings.Join(owners, ", "))
	}
	fmt.Fprintf(stderr, "krait %s: %d %s could not be read (permission denied): %s — %s\n", cmd, len(u.infos), what,
		strings.Join(names, ", "), advice)
	if code == ExitOK {
		return ExitPermission
	}
	return code
}

func runPs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ps", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	fs.BoolVar(asJSON, "j", false, "short for --json")
	if code := parseFlags(fs, "ps", args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "ps", "unexpected argument %q", fs.Arg(0))
	}
	pids, denied := procinfo.Survey(os.Getpid())
	var bad unreadable
	bad.infos = denied
	out := []psEntry{}
	entry := func(info *procinfo.Info) psEntry {
		e := psEntry{PID: info.PID, PPID: info.PPID, User: info.User, Server: info.Server, Command: info.Title()}
		if info.Group != "" {
			g := info.Group
			e.Group = &g
		}
		return e
	}
	for _, info := range denied {
		e := entry(info)
		e.Error = "permission denied"
		out = append(out, e)
	}
	// ps reads without pausing anyone: it is a survey.
	readEach(pids, dump.ReadOptions{NonBlocking: true, Snapshot: requestRead, Survey: true}, func(pid int, rd *dump.Reading, err error) {
		info, ierr := procinfo.Read(pid)
		if ierr != nil {
			if err == nil {
				rd.Proc.Close()
			}
			return
		}
		e := entry(info)
		if err != nil {
			switch {
			case errors.Is(err, cpython.ErrNotPython), errors.Is(err, target.ErrNoProcess), errors.Is(err, target.ErrExited), errors.Is(err, target.ErrZombie):
				return
			case errors.Is(err, target.ErrPermission):
				bad.infos = append(bad.infos, info)
				e.Error = "permission denied"
			case errors.Is(err, cpython.ErrNoInterpreter):
				e.Error = "Python not initialised in this process"
			default:
				e.Error = err.Error()
			}
			out = append(out, e)
			return
		}
		e.PythonVersion = rd.Py.Version.String()
		e.Threads = len(rd.OSThreads)
		e.DjangoSettings = djangoSettings(rd)
		busy := map[uint64]bool{} // an event loop's thread serves many ASGI requests
		for _, r := range inflight.FromThreads(rd.Py, pid, rd.Interps, time.Now(), render.Options{}) {
			busy[r.ThreadID] = true
		}
		e.BusyThreads = len(busy)
		rd.Proc.Close()
		out = append(out, e)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	if *asJSON {
		if code := writeJSON(stdout, stderr, map[string]any{"processes": out}); code != ExitOK {
			return code
		}
		return bad.report(stderr, "ps", ExitOK)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tPPID\tUSER\tPYTHON\tSERVER\tDJANGO\tTHREADS\tBUSY\tCOMMAND")
	for _, e := range out {
		server := e.Server
		if e.Group != nil {
			server += " (" + *e.Group + ")"
		}
		server = procinfo.OneLine(server)
		dj := "-"
		if e.DjangoSettings != nil {
			dj = procinfo.OneLine(*e.DjangoSettings)
		}
		cmd := procinfo.OneLine(e.Command)
		if e.Error != "" {
			fmt.Fprintf(tw, "%d\t%d\t%s\t?\t%s\t-\t-\t-\t%s  [%s]\n", e.PID, e.PPID, e.User, server, cmd, procinfo.OneLine(e.Error))
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", e.PID, e.PPID, e.User, e.PythonVersion, server, dj, e.Threads, e.BusyThreads, cmd)
	}
	tw.Flush()
	return bad.report(stderr, "ps", ExitOK)
}

func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	if f, ok := stdout.(*os.File); ok && isTerminal(f) {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return fail(stderr, err)
	}
	return ExitOK
}

// starting says whether pid started within the last few seconds: a survey
// that finds it half-way through loading its Python passes it over.
func starting(pid int) bool {
	age, err := procinfo.Age(pid)
	return err == nil && age < 5*time.Second
}

// pauseNote is how long a read may hold a process before text output says
// how long it did.
const pauseNote = 50 * time.Millisecond

func runRequests(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("requests", flag.ContinueOnError)
	var pids pidList
	fs.Var(&pids, "pid", "process id (repeatable)")
	fs.Var(&pids, "p", "short for --pid")
	all := fs.Bool("all", false, "every Python process on the host")
	corePath := fs.String("core", "", "the requests a core file was serving")
	fs.StringVar(corePath, "c", "", "short for --core")
	sysroot := fs.String("sysroot", "", "with --core: where the core's mapped files are")
	watch := fs.Bool("watch", false, "refresh every --interval until Ctrl-C")
	interval := fs.Duration("interval", time.Second, "refresh interval with --watch")
	asJSON := fs.Bool("json", false, "print JSON (one document per refresh with --watch)")
	fs.BoolVar(asJSON, "j", false, "short for --json")
	nonblocking := fs.Bool("nonblocking", false, "read without pausing the processes")
	showSecrets := fs.Bool("show-secrets", false, "show values that look secret")
	hold := fs.Duration("debug-hold-pause", 0, "testing: keep each process paused this long after reading")
	if code := parsePIDFlags(fs, "requests", args, &pids, stdout, stderr); code >= 0 {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(stderr, "requests", "unexpected argument %q", fs.Arg(0))
	case *interval <= 0:
		return usageError(stderr, "requests", "bad --interval %v (a positive duration)", *interval)
	case *corePath != "" && (len(pids.pids) > 0 || *all || *watch):
		return usageError(stderr, "requests", "--core reads one core file: no --pid, --all or --watch with it")
	case *corePath == "" && len(pids.pids) == 0 && !*all:
		fmt.Fprintln(stderr, "krait requests: give --pid PID (repeatable), --all or --core FILE")
		return ExitUsage
	}
	ropt := render.Options{ShowSecrets: *showSecrets}
	if *corePath != "" {
		return requestsFromCore(*corePath, *sysroot, *asJSON, ropt, stdout, stderr)
	}
	term := false
	if f, ok := stdout.(*os.File); ok && isTerminal(f) {
		term = true
	}
	firstSeen := map[[2]uint64]time.Time{}
	for {
		now := time.Now()
		// A server's master stands for its workers (found again at each
		// refresh: new workers appear).
		list, _ := procinfo.ExpandServers(pids.pids)
		var bad unreadable
		if *all {
			// One pass over /proc per refresh.
			found, denied := procinfo.Survey(os.Getpid())
			list = append(append([]int{}, list...), found...)
			bad.infos = denied
		}
		code := ExitOK
		var reqs []*inflight.Request
		var held, traced []string
		failed := -1
		// Several processes are a survey: one that another tracer holds
		// (gdb, krait record) is read running, with a note, not left out.
		readEach(list, dump.ReadOptions{NonBlocking: *nonblocking, Snapshot: requestRead, HoldPause: *hold, Survey: *all || len(list) > 1,
			Native: !*nonblocking, NativeOnly: inflight.Serving}, func(pid int, rd *dump.Reading, err error) {
			if err != nil {
				if len(pids.pids) == 1 && len(list) == 1 && !*watch && !*all {
					failed = fail(stderr, err)
					return
				}
				switch {
				case errors.Is(err, target.ErrPermission) && target.TracedBy(pid) == 0:
					bad.add(pid)
				case *all && (errors.Is(err, cpython.ErrNotPython) || errors.Is(err, target.ErrNoProcess) || errors.Is(err, target.ErrExited) ||
					errors.Is(err, target.ErrZombie) || errors.Is(err, cpython.ErrNoInterpreter) || starting(pid)):
					// A survey: processes come and go (and one that has
					// just started may not have loaded its Python yet).
				default:
					if c := fail(stderr, err); code == ExitOK {
						code = c
					}
				}
				return
			}
			if rd.Paused && rd.Held > pauseNote {
				held = append(held, fmt.Sprintf("process %d was held %s", pid, rd.Held.Round(100*time.Microsecond)))
			}
			if rd.TracedBy != 0 {
				traced = append(traced, fmt.Sprintf("process %d is traced by process %d: krait read it without pausing it", pid, rd.TracedBy))
			}
			found := inflight.FromThreads(rd.Py, pid, rd.Interps, now, ropt)
			addWaiting(rd, found)
			rd.Proc.Close()
			if info, err := procinfo.Read(pid); err == nil && info.Server != "script" {
				s := info.Server
				if info.Group != "" {
					s += " (" + info.Group + ")"
				}
				for _, r := range found {
					r.Server = &s
				}
			}
			estimateElapsed(pid, found, now)
			reqs = append(reqs, found...)
		})
		if failed >= 0 {
			return failed
		}
		seen := map[[2]uint64]time.Time{}
		for _, r := range reqs {
			k := [2]uint64{uint64(r.PID), r.Key}
			t, ok := firstSeen[k]
			if !ok {
				t = now
			}
			seen[k] = t
			if r.ElapsedS == nil && *watch && ok {
				el := now.Sub(t).Seconds()
				r.ElapsedS = &el
				r.ElapsedSource = sp(inflight.ElapsedWatch)
			}
		}
		firstSeen = seen
		sort.Slice(reqs, func(i, j int) bool {
			if reqs[i].PID != reqs[j].PID {
				return reqs[i].PID < reqs[j].PID
			}
			return reqs[i].ThreadID < reqs[j].ThreadID
		})
		if *asJSON {
			if reqs == nil {
				reqs = []*inflight.Request{}
			}
			if c := writeJSON(stdout, stderr, map[string]any{"requests": reqs}); c != ExitOK {
				return c
			}
		} else {
			if *watch {
				if term {
					// Redraw in place: home, clear the screen.
					fmt.Fprint(stdout, "\x1b[H\x1b[2J")
				} else {
					fmt.Fprintln(stdout)
				}
				fmt.Fprintf(stdout, "%s — %d requests in flight\n", now.Format("15:04:05"), len(reqs))
			}
			writeRequests(stdout, reqs)
			for _, h := range held {
				fmt.Fprintf(stdout, "(%s while krait read it)\n", h)
			}
			for _, h := range traced {
				fmt.Fprintf(stdout, "(%s)\n", h)
			}
		}
		code = bad.report(stderr, "requests", code)
		if !*watch {
			return code
		}
		time.Sleep(*interval)
	}
}

func sp(s string) *string { return &s }

// requestsFromCore: krait requests --core FILE. Elapsed times are as of
// when the core was written (its modification time).
func requestsFromCore(path, sysroot string, asJSON bool, ropt render.Options, stdout, stderr io.Writer) int {
	rd, err := dump.ReadCore(path, sysroot, dump.ReadOptions{Snapshot: requestRead, Native: true, NativeOnly: inflight.Serving})
	if err != nil {
		return fail(stderr, err)
	}
	defer rd.Proc.Close()
	when := time.Now()
	if st, err := os.Stat(path); err == nil {
		when = st.ModTime()
	}
	reqs := inflight.FromThreads(rd.Py, rd.Proc.PID(), rd.Interps, when, ropt)
	addWaiting(rd, reqs)
	if reqs == nil {
		reqs = []*inflight.Request{}
	}
	if asJSON {
		return writeJSON(stdout, stderr, map[string]any{"requests": reqs})
	}
	fmt.Fprintf(stdout, "Core file %s (process %d, written %s)\n", path, rd.Proc.PID(), when.Format(time.RFC3339))
	writeRequests(stdout, reqs)
	return ExitOK
}

// addWaiting says, for each request whose thread is not running Python,
// what it waits on (from its native stack).
func addWaiting(rd *dump.Reading, reqs []*inflight.Request) {
	for _, r := range reqs {
		// An ASGI request is a task: its thread is the event loop's,
		// waiting for any of them.
		if r.NativeID != nil && r.Task == nil {
			if w := rd.Waiting(*r.NativeID); w != "" {
				r.Waiting = &w
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return procinfo.OneLine(*s)
}

func writeRequests(w io.Writer, reqs []*inflight.Request) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// ASGI requests are handled by asyncio tasks: a TASK column then.
	tasks := false
	for _, r := range reqs {
		tasks = tasks || r.Task != nil
	}
	if tasks {
		fmt.Fprintln(tw, "PID\tTID\tTASK\tELAPSED\tMETHOD\tPATH\tVIEW\tWAITING\tSQL")
	} else {
		fmt.Fprintln(tw, "PID\tTID\tELAPSED\tMETHOD\tPATH\tVIEW\tWAITING\tSQL")
	}
	estimated := false
	for _, r := range reqs {
		tid := "-"
		if r.NativeID != nil {
			tid = fmt.Sprint(*r.NativeID)
		}
		el := "-"
		if r.ElapsedS != nil {
			el = fmt.Sprintf("%.1fs", *r.ElapsedS)
			if r.ElapsedSource != nil && *r.ElapsedSource != inflight.ElapsedServer {
				// Not the server's own start time: an estimate.
				el = "~" + el
				estimated = true
			}
		}
		path := deref(r.Path)
		if r.Query != nil && *r.Query != "" {
			path += "?" + deref(r.Query)
		}
		sql := "-"
		if r.SQL != nil {
			sql = strings.Join(strings.Fields(*r.SQL), " ")
			if r.SQLParams != nil {
				sql += "  " + procinfo.OneLine(*r.SQLParams)
			}
		}
		if sql == "-" && r.Awaiting != nil {
			sql = "(awaiting " + procinfo.OneLine(*r.Awaiting) + ")"
		}
		if tasks {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.PID, tid, deref(r.Task), el, deref(r.Method), path, deref(r.View), deref(r.Waiting), sql)
		} else {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.PID, tid, el, deref(r.Method), path, deref(r.View), deref(r.Waiting), sql)
		}
	}
	tw.Flush()
	if estimated {
		fmt.Fprintln(w, "(~: estimated from the client socket's last received data, or since krait first saw the request)")
	}
}
