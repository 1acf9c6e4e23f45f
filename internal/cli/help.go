package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"krait/internal/cpython/layout"
)

// commandHelp is each command's own help: krait CMD --help and krait help
// CMD print it on stdout.
var commandHelp = map[string]string{
	"dump": `Usage:
  krait dump --pid PID [--pid PID]... [--native] [--locals] [--json] [--nonblocking] [--show-secrets]
  krait dump PID [--locals] ...
  krait dump --all [--native] [--locals] ...
  krait dump --core FILE [--sysroot DIR] [--native] [--locals] [--json] [--show-secrets]

Print every thread's Python stack of a running process (or a core file),
read from outside: nothing runs in the target.

  -p, --pid PID      the process (repeatable: each is dumped in turn); a
                     server's master (gunicorn arbiter, Apache parent, uWSGI
                     master) stands for its workers
  --all              every Python process krait ps finds
  -l, --locals       each frame's arguments and local variables
  -n, --native       each thread's native (C) stack too, merged with its Python one;
                     source lines and inlined functions where a file has DWARF
  -j, --json         JSON (one document per process)
  --nonblocking      read without pausing the process
  --width N          cut each value in text output to N characters (0: no limit)
  -c, --core FILE    dump an ELF core file instead (gcore, a crash)
  --sysroot DIR      with --core: where the core's mapped files are
  --show-secrets     show values that look secret (by default <redacted>)
`,
	"attach": `Usage:
  krait attach PID... [--batch [--duration D]] [-ex CMD]... [-x FILE] [--timeout D] [--method auto|pep768|ptrace] [--interpreter N] [--force]
  krait attach --all ...

Debug a running process as gdb does: breakpoints, stepping, printing.
Several PIDs, or a server's master (gunicorn arbiter, Apache parent, uWSGI
master) standing for all its workers, are debugged as one session (gdb's
inferiors): breakpoints apply to every process, each stop line names its
process, new workers are attached and armed as they start.

  -p, --pid PID          the process (or give it, or several, as arguments)
  --all                  every Django process krait ps finds, and its server's new workers
  --batch                run the -ex/-x commands, then detach and exit
  --duration D           with --batch, keep printing dprintf output for D after
                         the commands, then detach (Ctrl-C ends it sooner)
  -ex CMD                execute a command (repeatable, in order with -x)
  -x FILE                execute the commands in FILE (repeatable)
  --timeout D            in batch mode, how long continue/step wait (default 1m0s)
  --attach-timeout D     how long to wait for the agent to start (default 10s)
  --method M             auto, pep768 or ptrace: how the agent gets in (auto
                         on 3.7–3.13: ptrace, or a pending call when every
                         thread is busy; ptrace: a parked thread only)
  --interpreter N        the (sub-)interpreter to debug, by id as dump shows it
`,
	"cache": `Usage:
  krait cache (--pid PID... | --all) [--subprocesses] [--duration D] [--watch] [--json] [--events]

Trace, in every worker given, every Django cache operation (each alias and
backend: get, set, add, delete, get_many, set_many, delete_many, incr,
decr, touch, clear, get_or_set), every SQL statement run through Django's
connections and every commit, with the request in flight and the
application line that made the call; then report the cache entries served
stale (computed from tables a committed write changed since, with no
invalidation following the write) and a summary per key pattern. No code
change, no restart; on exit every worker is left exactly as it was.

  -p, --pid PID          a worker (repeatable, or comma-separated)
  --all                  every Django worker on the host
  -s, --subprocesses     also the processes' children (a gunicorn master's or
                         Apache's workers), including workers started later
  -d, --duration D       how long to trace (seconds, or e.g. 1m30s; default:
                         until Ctrl-C)
  --watch                show the summary live, refreshed every second
  -j, --json             the report as JSON
  --events               every event as a JSON line on stdout (report on stderr)
  --attach-timeout D     how long to wait for each agent to start (default 10s)
`,
	"ps": `Usage:
  krait ps [--json]

List the Python processes on this host: server kind (gunicorn, uWSGI,
uvicorn, hypercorn, daphne, celery, mod_wsgi, runserver), Django settings,
threads and busy threads. Never pauses anything. Processes krait may not
read are named on stderr and make the exit status 4.

  -j, --json         JSON
`,
	"requests": `Usage:
  krait requests (--pid PID... | --all) [--watch] [--json] [--nonblocking] [--show-secrets]
  krait requests --core FILE [--sysroot DIR] [--json]

Show the web requests in flight: path, view, elapsed time, the SQL each
is waiting on, and what its thread waits on in C when it is not running
Python (from its native stack, e.g. _pq_execute_sync → … → poll).

  -p, --pid PID      a process (repeatable)
  --all              every Python process on the host
  -c, --core FILE    the requests a core file was serving
  --sysroot DIR      with --core: where the core's mapped files are
  --watch            refresh every --interval until Ctrl-C
  --interval D       refresh interval with --watch (default 1s)
  -j, --json         JSON (one document per refresh with --watch)
  --nonblocking      read without pausing the processes (no WAITING then)
  --show-secrets     show query-string values that look secret
`,
	"record": `Usage:
  krait record (--pid PID... | --all [--server S] | -- COMMAND ARGS...) [--rate N] [--duration D] [-o FILE] [--format F] [--idle] [--gil] [--threads] [--subprocesses] [--nonblocking] [--by view] [--json]

Sample the Python stacks of processes (a whole server) from outside, as
dump reads them, and write a profile; every sample taken on a thread that
serves a web request is charged to its Django view. Ctrl-C writes the
profile and exits 0.

  -p, --pid PID          a process (repeatable, or comma-separated); a
                         server's master stands for its workers
  --all                  every Python process krait ps finds
  --server S             with --all: only servers of this kind (gunicorn, mod_wsgi, …)
  -- COMMAND ARGS...     run COMMAND and sample it (and its children with -s)
  -r, --rate N           samples per second (default 100)
  -d, --duration D       how long (seconds, or e.g. 1m30s; default: until Ctrl-C)
  -o, --output FILE      where to write (- for stdout; default krait-PID-TIME.EXT)
  -f, --format F         flamegraph (interactive SVG, the default), speedscope,
                         pprof (gzipped profile.proto, labels pid, thread,
                         view, method, route) or raw (collapsed stacks)
  -i, --idle             include threads that are not running
  -g, --gil              only the thread holding the GIL
  -t, --threads          a root frame per thread
  -s, --subprocesses     also the processes' children, including later ones
  --nonblocking          never pause the processes (stacks may be torn)
  --by view              the Django view as the root frame
  -j, --json             a JSON summary on stdout
`,
	"top": `Usage:
  krait top (--pid PID... | --all [--server S] | -- COMMAND ARGS...) [--rate N] [--duration D] [--delay D] [--idle] [--gil] [--subprocesses] [--nonblocking] [--by view] [--json]

A live view of where processes spend their time, by function (own and
total time) or, with --by view, by Django view; refreshed every --delay.

  -p, --pid PID          a process (repeatable, or comma-separated)
  --all                  every Python process krait ps finds
  --server S             with --all: only servers of this kind
  -- COMMAND ARGS...     run COMMAND and sample it
  -r, --rate N           samples per second (default 100)
  -d, --duration D       stop after D (default: until Ctrl-C or q)
  --delay D              refresh interval (default 1s)
  -i, --idle             include threads that are not running
  -g, --gil              only the thread holding the GIL
  -s, --subprocesses     also the processes' children
  --nonblocking          never pause the processes
  --by view              group by the Django view of each thread's request
  -j, --json             one JSON document per refresh
`,
	"dap": `Usage:
  krait dap [--attach-timeout D]

Serve the Debug Adapter Protocol on stdin and stdout, for editors (VS Code,
nvim-dap, Emacs dape): an attach request names the process (processId),
and optionally method, interpreter, justMyCode and pathMappings. Only the
thread that hits a breakpoint stops; values are shown without running user
code. Disconnecting, or krait dap ending any way, detaches: the process is
never killed.

  --attach-timeout D     how long to wait for the agent to start (default 10s)
`,
	"version": `Usage:
  krait version [--json]

Print krait's version, the Go version it was built with and the Python
versions it knows.
`,
	"help": `Usage:
  krait help [COMMAND]

Print the usage, or one command's help.
`,
}

// commands lists the commands that have help, in usage order.
var commands = []string{"dump", "attach", "record", "top", "cache", "ps", "requests", "dap", "version", "help"}

// runHelp: krait help [CMD].
func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	if h, ok := commandHelp[args[0]]; ok && len(args) == 1 {
		fmt.Fprint(stdout, h)
		return ExitOK
	}
	fmt.Fprintf(stderr, "krait help: no command %q (commands: %s)\n", strings.Join(args, " "), strings.Join(commands, ", "))
	return ExitUsage
}

// parseFlags parses args into fs for command cmd: --help prints the
// command's help (exit 0), a bad flag or value is one line on stderr
// (exit 2). It returns -1 when parsing succeeded.
func parseFlags(fs *flag.FlagSet, cmd string, args []string, stdout, stderr io.Writer) int {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, commandHelp[cmd])
		return ExitOK
	}
	fmt.Fprintf(stderr, "krait %s: %v (see krait help %s)\n", cmd, err, cmd)
	return ExitUsage
}

// usageError reports a bad flag value in one line (exit 2).
func usageError(stderr io.Writer, cmd, format string, a ...any) int {
	fmt.Fprintf(stderr, "krait %s: %s (see krait help %s)\n", cmd, fmt.Sprintf(format, a...), cmd)
	return ExitUsage
}

// versionInfo is krait version's JSON.
type versionInfo struct {
	Version  string   `json:"version"`
	Revision string   `json:"revision,omitempty"`
	Time     string   `json:"time,omitempty"`
	Modified bool     `json:"modified,omitempty"`
	Go       string   `json:"go"`
	Pythons  []string `json:"pythons"`
}

func buildVersion() versionInfo {
	v := versionInfo{Version: "(devel)", Go: runtime.Version(), Pythons: layout.Supported()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// runVersion: krait version [--json].
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	fs.BoolVar(asJSON, "j", false, "short for --json")
	if code := parseFlags(fs, "version", args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "version", "unexpected argument %q", fs.Arg(0))
	}
	v := buildVersion()
	if *asJSON {
		return writeJSON(stdout, stderr, v)
	}
	line := "krait " + v.Version
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		line += " (" + rev
		if v.Time != "" {
			line += ", " + v.Time
		}
		if v.Modified {
			line += ", modified"
		}
		line += ")"
	}
	fmt.Fprintf(stdout, "%s\nbuilt with %s %s/%s\nPython versions: %s\n", line, v.Go, runtime.GOOS, runtime.GOARCH, strings.Join(v.Pythons, ", "))
	return ExitOK
}
