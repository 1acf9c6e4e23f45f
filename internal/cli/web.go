package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"krait/internal/cpython"
	"krait/internal/dump"
	"krait/internal/inflight"
	"krait/internal/procinfo"
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

var requestRead = cpython.Options{Locals: true, LocalNames: inflight.LocalNames,
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

func pythonPIDs() []int {
	self := os.Getpid()
	var out []int
	for _, pid := range procinfo.PIDs() {
		if pid != self && procinfo.MaybePython(pid) {
			out = append(out, pid)
		}
	}
	return out
}

func runPs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ps", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	var out []psEntry
	for _, pid := range pythonPIDs() {
		info, err := procinfo.Read(pid)
		if err != nil {
			continue
		}
		e := psEntry{PID: pid, PPID: info.PPID, User: info.User, Server: info.Server, Command: info.Title()}
		if info.Group != "" {
			g := info.Group
			e.Group = &g
		}
		// ps reads without pausing anyone: it is a survey.
		rd, err := dump.Read(pid, dump.ReadOptions{NonBlocking: true, Snapshot: requestRead})
		if err != nil {
			if strings.Contains(err.Error(), "not a Python process") {
				continue
			}
			e.Error = err.Error()
			if errors.Is(err, cpython.ErrNoInterpreter) {
				e.Error = "Python not initialised in this process"
			}
			out = append(out, e)
			continue
		}
		e.PythonVersion = rd.Py.Version.String()
		e.Threads = len(rd.OSThreads)
		e.DjangoSettings = djangoSettings(rd)
		e.BusyThreads = len(inflight.FromThreads(rd.Py, pid, rd.Interps, time.Now()))
		rd.Proc.Close()
		out = append(out, e)
	}
	if *asJSON {
		if out == nil {
			out = []psEntry{}
		}
		return writeJSON(stdout, stderr, map[string]any{"processes": out})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tPPID\tUSER\tPYTHON\tSERVER\tDJANGO\tTHREADS\tBUSY\tCOMMAND")
	for _, e := range out {
		server := e.Server
		if e.Group != nil {
			server += " (" + *e.Group + ")"
		}
		dj := "-"
		if e.DjangoSettings != nil {
			dj = *e.DjangoSettings
		}
		if e.Error != "" {
			fmt.Fprintf(tw, "%d\t%d\t%s\t?\t%s\t-\t-\t-\t%s  [%s]\n", e.PID, e.PPID, e.User, server, e.Command, e.Error)
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", e.PID, e.PPID, e.User, e.PythonVersion, server, dj, e.Threads, e.BusyThreads, e.Command)
	}
	tw.Flush()
	return ExitOK
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

func runRequests(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("requests", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var pidFlags multiFlag
	fs.Var(&pidFlags, "pid", "process id (repeatable)")
	all := fs.Bool("all", false, "every Python process on the host")
	watch := fs.Bool("watch", false, "refresh every --interval until Ctrl-C")
	interval := fs.Duration("interval", time.Second, "refresh interval with --watch")
	asJSON := fs.Bool("json", false, "print JSON (one document per refresh with --watch)")
	nonblocking := fs.Bool("nonblocking", false, "read without pausing the processes")
	if neg, ok := negativeArg(fs, args); ok {
		return badPID(stderr, "requests", neg)
	}
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	var pids []int
	for _, p := range pidFlags {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return badPID(stderr, "requests", p)
		}
		pids = append(pids, n)
	}
	if *all {
		pids = append(pids, pythonPIDs()...)
	}
	if len(pids) == 0 {
		fmt.Fprintln(stderr, "krait requests: give --pid PID (repeatable) or --all")
		return ExitUsage
	}
	firstSeen := map[[2]uint64]time.Time{}
	for {
		now := time.Now()
		var reqs []*inflight.Request
		for _, pid := range pids {
			rd, err := dump.Read(pid, dump.ReadOptions{NonBlocking: *nonblocking, Snapshot: requestRead})
			if err != nil {
				if len(pids) == 1 && !*watch {
					return fail(stderr, err)
				}
				continue
			}
			found := inflight.FromThreads(rd.Py, pid, rd.Interps, now)
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
			reqs = append(reqs, found...)
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
			if code := writeJSON(stdout, stderr, map[string]any{"requests": reqs}); code != ExitOK {
				return code
			}
		} else {
			if *watch {
				fmt.Fprintf(stdout, "\n%s — %d requests in flight\n", now.Format("15:04:05"), len(reqs))
			}
			writeRequests(stdout, reqs)
		}
		if !*watch {
			return ExitOK
		}
		time.Sleep(*interval)
	}
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func writeRequests(w io.Writer, reqs []*inflight.Request) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tTID\tELAPSED\tMETHOD\tPATH\tVIEW\tSQL")
	for _, r := range reqs {
		tid := "-"
		if r.NativeID != nil {
			tid = fmt.Sprint(*r.NativeID)
		}
		el := "-"
		if r.ElapsedS != nil {
			el = fmt.Sprintf("%.1fs", *r.ElapsedS)
		}
		path := deref(r.Path)
		if r.Query != nil && *r.Query != "" {
			path += "?" + *r.Query
		}
		sql := "-"
		if r.SQL != nil {
			sql = strings.Join(strings.Fields(*r.SQL), " ")
			if r.SQLParams != nil {
				sql += "  " + *r.SQLParams
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.PID, tid, el, deref(r.Method), path, deref(r.View), sql)
	}
	tw.Flush()
}
