// Package cli is krait's command line: subcommands, flags, exit codes and
// error messages.
package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"krait/internal/agent"
	"krait/internal/cpython"
	"krait/internal/cpython/layout"
	"krait/internal/dump"
	"krait/internal/procinfo"
	"krait/internal/repl"
	"krait/internal/session"
	"krait/internal/target"
	"krait/internal/target/live"
)

// Exit codes, stable for scripts.
const (
	ExitOK          = 0
	ExitError       = 1 // anything else
	ExitUsage       = 2 // bad command line
	ExitNoProcess   = 3 // no such process, zombie, or it exited
	ExitPermission  = 4 // not allowed to read or trace it
	ExitNotPython   = 5 // not a Python process
	ExitUnsupported = 6 // a Python version krait does not know (or attach cannot serve, or the target opted out)
	ExitInjection   = 7 // attach could not get into the process (no safe thread, timed out, another krait's session there)
	// ExitInterrupted: Ctrl-C, SIGTERM or SIGHUP ended a paused dump or an
	// attach before it was done (the process was left as it was).
	ExitInterrupted = 130
)

const usage = `krait — a debugger for live Python processes

Usage:
  krait dump (--pid PID... | --all) [--native] [--locals] [--json] [--nonblocking]
  krait dump --core FILE [--sysroot DIR] [--native] [--locals] [--json]
  krait attach (PID... | --all) [--batch [--duration D]] [-ex CMD]... [-x FILE] [--timeout D] [--method auto|pep768|ptrace] [--force]
  krait ps [--json]
  krait requests (--pid PID... | --all) [--watch] [--json] [--nonblocking]
  krait record (--pid PID... | --all [--server S] | -- COMMAND ARGS...) [--rate N] [--duration D] [-o FILE] [--format flamegraph|speedscope|pprof|raw] [--idle] [--gil] [--threads] [--subprocesses] [--nonblocking] [--by view] [--json]
  krait top (--pid PID... | --all [--server S] | -- COMMAND ARGS...) [--rate N] [--duration D] [--delay D] [--idle] [--gil] [--subprocesses] [--nonblocking] [--by view] [--json]
  krait cache (--pid PID... | --all) [--subprocesses] [--duration D] [--watch] [--json] [--events]
  krait version

Commands:
  dump     print every thread's Python stack (and locals) of a running process
  attach   debug a running process: breakpoints, stepping, printing (gdb-style)
  ps       list the Python processes on this host: server kind, Django, busy threads
  requests show the web requests in flight: path, view, elapsed time, SQL running now
  record   sample stacks of processes (whole servers) into a flame graph or profile, time charged to Django views
  top      live view of where processes spend their time, by function or by view
  cache    trace every Django cache operation and SQL write across workers; name the entries served stale
  dap      Debug Adapter Protocol server on stdin/stdout, for editors (attach by processId)

Exit codes: 0 ok, 1 error, 2 usage, 3 no such process (or it exited),
4 permission, 5 not Python, 6 unsupported Python version (or attach
refused: Python 2, a 3.14+ target that opted out of remote debugging),
7 attach could not get in (try again; or another krait is debugging
the process), 130 interrupted.
`

// Main runs krait with args (without the program name) and returns the
// exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	switch args[0] {
	case "dump":
		return runDump(args[1:], stdout, stderr)
	case "attach":
		return runAttach(args[1:], stdout, stderr)
	case "ps":
		return runPs(args[1:], stdout, stderr)
	case "requests":
		return runRequests(args[1:], stdout, stderr)
	case "record":
		return runRecord(args[1:], stdout, stderr)
	case "top":
		return runTop(args[1:], stdout, stderr)
	case "cache":
		return runCache(args[1:], stdout, stderr)
	case "dap":
		return runDap(args[1:], stdout, stderr)
	case "debug-trace-config":
		return runTraceConfig(args[1:], stdout, stderr)
	case "version", "--version":
		return runVersion(args[1:], stdout, stderr)
	case "help":
		return runHelp(args[1:], stdout, stderr)
	case "-h", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "krait: unknown command %q\n\n%s", args[0], usage)
	return ExitUsage
}

func runDump(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dump", flag.ContinueOnError)
	var pids pidList
	fs.Var(&pids, "pid", "process id to dump (repeatable)")
	fs.Var(&pids, "p", "short for --pid")
	locals := fs.Bool("locals", false, "show each frame's arguments and local variables")
	fs.BoolVar(locals, "l", false, "short for --locals")
	native := fs.Bool("native", false, "show each thread's native stack merged with its Python one")
	fs.BoolVar(native, "n", false, "short for --native")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.BoolVar(asJSON, "j", false, "short for --json")
	nonblocking := fs.Bool("nonblocking", false, "read without pausing the process (values may be inconsistent)")
	width := fs.Int("width", 160, "cut each value in text output to this many characters (0: no limit)")
	hold := fs.Duration("debug-hold-pause", 0, "testing: keep the process paused this long after reading")
	corePath := fs.String("core", "", "dump an ELF core file (gcore, a crash) instead of a live process")
	fs.StringVar(corePath, "c", "", "short for --core")
	sysroot := fs.String("sysroot", "", "with --core: where the core's mapped files are (another machine's or a container's root)")
	showSecrets := fs.Bool("show-secrets", false, "show values under names that look secret (by default <redacted>)")
	all := fs.Bool("all", false, "every Python process krait ps finds")
	if code := parsePIDFlags(fs, "dump", args, &pids, stdout, stderr); code >= 0 {
		return code
	}
	// The pid may also come first, before the other flags: krait dump PID
	// --locals.
	if len(pids.pids) == 0 && fs.NArg() > 0 {
		if n, err := strconv.Atoi(fs.Arg(0)); err == nil {
			if n <= 0 {
				return badPID(stderr, "dump", fs.Arg(0))
			}
			pids.pids = append(pids.pids, n)
			if code := parseFlags(fs, "dump", fs.Args()[1:], stdout, stderr); code >= 0 {
				return code
			}
			if pids.bad != "" {
				return badPID(stderr, "dump", pids.bad)
			}
		}
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "dump", "unexpected argument %q", fs.Arg(0))
	}
	if *width < 0 {
		return usageError(stderr, "dump", "bad --width %d (a number of characters, 0 for no limit)", *width)
	}
	if *all {
		if len(pids.pids) > 0 || *corePath != "" {
			return usageError(stderr, "dump", "--all goes without --pid and --core")
		}
		pids.pids, _ = procinfo.Survey(os.Getpid())
		if len(pids.pids) == 0 {
			fmt.Fprintln(stderr, "krait dump: no Python process found")
			return ExitNoProcess
		}
	}
	if len(pids.pids) == 0 && *corePath == "" || len(pids.pids) > 0 && *corePath != "" {
		fmt.Fprintln(stderr, "krait dump: give --pid PID, --all or --core FILE")
		return ExitUsage
	}
	if *native && *nonblocking {
		return usageError(stderr, "dump", "--native needs the process paused; it cannot be used with --nonblocking")
	}
	// A server's master (gunicorn arbiter, Apache parent, …) stands for
	// its workers.
	pids.pids, _ = procinfo.ExpandServers(pids.pids)
	opts := dump.Options{Locals: *locals, NonBlocking: *nonblocking, Limits: cpython.DefaultLimits, HoldPause: *hold, ShowSecrets: *showSecrets, Native: *native}
	write := func(res *dump.Result) int {
		if *asJSON {
			// One document per process, one per line (indented for people
			// at a terminal; scripts get it compact).
			return writeJSON(stdout, stderr, res)
		}
		dump.WriteText(stdout, res, *width)
		return ExitOK
	}
	if *corePath != "" {
		res, err := dump.TakeCore(*corePath, *sysroot, opts)
		if err != nil {
			return fail(stderr, err)
		}
		return write(res)
	}
	// Several processes are dumped in turn; one that fails is reported and
	// the others are still dumped; the exit status is the first failure's.
	code := ExitOK
	for i, pid := range pids.pids {
		res, err := dump.Take(pid, opts)
		if err != nil {
			if c := fail(stderr, err); code == ExitOK {
				code = c
			}
			continue
		}
		if i > 0 && !*asJSON {
			fmt.Fprintln(stdout)
		}
		if c := write(res); c != ExitOK {
			return c
		}
	}
	return code
}

// badPID reports a process id that is not one (exit 2): 0, negative, or
// not a number. The same for every command.
func badPID(stderr io.Writer, cmd, arg string) int {
	fmt.Fprintf(stderr, "krait %s: bad process id %q (a process id is a positive number)\n", cmd, arg)
	return ExitUsage
}

// parsePIDFlags is parseFlags for a command that takes process ids
// (--pid, repeatable): a negative or bad id is badPID's one line. It
// returns -1 when parsing succeeded.
func parsePIDFlags(fs *flag.FlagSet, cmd string, args []string, pids *pidList, stdout, stderr io.Writer) int {
	if neg, ok := negativeArg(fs, args); ok {
		return badPID(stderr, cmd, neg)
	}
	if code := parseFlags(fs, cmd, args, stdout, stderr); code >= 0 {
		return code
	}
	if pids.bad != "" {
		return badPID(stderr, cmd, pids.bad)
	}
	return -1
}

// isSet: one of the named flags was given.
func isSet(fs *flag.FlagSet, names ...string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		for _, n := range names {
			set = set || f.Name == n
		}
	})
	return set
}

// negativeArg finds a negative number among args where the flag package
// would take it for an unknown flag ("krait attach -5"): a process id given
// wrong, to be reported as one. A flag's value ("--interpreter -1") is not
// one.
func negativeArg(fs *flag.FlagSet, args []string) (string, bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		if _, err := strconv.Atoi(a); err == nil {
			return a, true
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f := fs.Lookup(name); f != nil && !hasValue {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				i++ // its value
			}
		}
	}
	return "", false
}

// fail prints a one-line error and picks the exit code.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "krait: %v\n", err)
	var unsup *layout.ErrUnsupported
	switch {
	case errors.Is(err, target.ErrNoProcess), errors.Is(err, target.ErrZombie), errors.Is(err, target.ErrExited):
		return ExitNoProcess
	case errors.Is(err, target.ErrPermission):
		return ExitPermission
	case errors.Is(err, cpython.ErrNotPython), errors.Is(err, target.ErrKernelThread):
		return ExitNotPython
	case errors.As(err, &unsup), errors.Is(err, agent.ErrUnsupported), errors.Is(err, agent.ErrRemoteDebugDisabled):
		return ExitUnsupported
	case errors.Is(err, agent.ErrNoSafeThread), errors.Is(err, agent.ErrTimeout), errors.Is(err, agent.ErrBusy):
		return ExitInjection
	case errors.Is(err, agent.ErrInterrupted):
		return ExitInterrupted
	}
	return ExitError
}

// Run is main's body.
func Run() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// runTraceConfig prints the agent's tracing configuration for a process
// (hidden; for developing and testing the agent).
func runTraceConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("debug-trace-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("pid", 0, "process id")
	if err := fs.Parse(args); err != nil || *pid <= 0 {
		return ExitUsage
	}
	proc, err := live.Open(*pid)
	if err != nil {
		return fail(stderr, err)
	}
	py, err := cpython.Open(proc)
	if err != nil {
		return fail(stderr, err)
	}
	tc, err := py.AgentTraceConfig()
	if err != nil {
		return fail(stderr, err)
	}
	if err := json.NewEncoder(stdout).Encode(tc); err != nil {
		return fail(stderr, err)
	}
	return ExitOK
}

type scriptStep struct {
	text string
	file bool
}

type stepFlag struct {
	steps *[]scriptStep
	file  bool
}

func (f stepFlag) String() string { return "" }
func (f stepFlag) Set(v string) error {
	*f.steps = append(*f.steps, scriptStep{v, f.file})
	return nil
}

// runAttach: krait attach PID [--batch [--duration D]] [-ex CMD]… [-x FILE] [--timeout D].
func runAttach(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("attach", flag.ContinueOnError)
	pid := fs.Int("pid", 0, "process id to attach to (or give it as an argument)")
	fs.IntVar(pid, "p", 0, "short for --pid")
	batch := fs.Bool("batch", false, "run the -ex/-x commands, then detach and exit (as gdb --batch)")
	// -ex and -x run in the order given, as gdb runs them.
	var steps []scriptStep
	fs.Var(stepFlag{&steps, false}, "ex", "execute a command (repeatable)")
	fs.Var(stepFlag{&steps, true}, "x", "execute commands from a file (repeatable)")
	timeout := fs.Duration("timeout", 60*time.Second, "in batch mode, how long continue/step wait for a stop")
	duration := fs.Duration("duration", 0, "in batch mode, after the commands, keep printing dprintf output for this long, then detach (Ctrl-C ends it sooner)")
	attachTimeout := fs.Duration("attach-timeout", 10*time.Second, "how long to wait for the agent to start")
	interp := fs.Int64("interpreter", -1, "the (sub-)interpreter to debug, by id as krait dump shows it (default: the one running Django, else the main one)")
	force := fs.Bool("force", false, "when another krait's session is in the process but that krait is gone, make its agent leave and attach (a session whose krait runs is never disturbed)")
	all := fs.Bool("all", false, "every Django process krait ps finds (and the new workers of their servers)")
	method := fs.String("method", agent.MethodAuto, "how the agent gets in: auto (PEP 768 on Python 3.14+, or ptrace when no thread runs Python within a second; ptrace before 3.14, and on 3.7–3.13 a pending call when no thread is parked where ptrace can enter), pep768, or ptrace (a parked thread only); a target that opted out of remote debugging is refused either way")
	if neg, ok := negativeArg(fs, args); ok {
		return badPID(stderr, "attach", neg)
	}
	// Accept the PID anywhere among the flags.
	var rest []string
	for len(args) > 0 {
		if code := parseFlags(fs, "attach", args, stdout, stderr); code >= 0 {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	var pids []int
	if isSet(fs, "pid", "p") {
		if *pid <= 0 {
			return badPID(stderr, "attach", strconv.Itoa(*pid))
		}
		pids = append(pids, *pid)
	}
	for _, a := range rest {
		n, err := strconv.Atoi(a)
		if err != nil || n <= 0 {
			return badPID(stderr, "attach", a)
		}
		pids = append(pids, n)
	}
	switch {
	case *all && len(pids) > 0:
		return usageError(stderr, "attach", "give process ids or --all, not both")
	case !*all && len(pids) == 0:
		return usageError(stderr, "attach", "give a process id (several, or a server's master PID, or --all)")
	}
	switch {
	case *method != agent.MethodAuto && *method != agent.MethodPEP768 && *method != agent.MethodPtrace:
		return usageError(stderr, "attach", "bad --method %q (auto, pep768 or ptrace)", *method)
	case *interp < -1:
		return usageError(stderr, "attach", "bad --interpreter %d (an interpreter id, as krait dump shows it)", *interp)
	case *timeout <= 0:
		return usageError(stderr, "attach", "bad --timeout %v (a positive duration)", *timeout)
	case *attachTimeout <= 0:
		return usageError(stderr, "attach", "bad --attach-timeout %v (a positive duration)", *attachTimeout)
	case *duration < 0:
		return usageError(stderr, "attach", "bad --duration %v (a positive duration)", *duration)
	case isSet(fs, "duration") && !*batch:
		return usageError(stderr, "attach", "--duration needs --batch (interactively, detach when you are done)")
	}
	// The script: each -ex command, and each -x file's lines (src: which
	// -x file, 0 for -ex).
	type scriptLine struct {
		text string
		src  int
	}
	var script []scriptLine
	for i, st := range steps {
		if !st.file {
			script = append(script, scriptLine{st.text, 0})
			continue
		}
		data, err := os.ReadFile(st.text)
		if err != nil {
			fmt.Fprintf(stderr, "krait: %v\n", err)
			return ExitUsage
		}
		for _, l := range strings.Split(string(data), "\n") {
			script = append(script, scriptLine{l, i + 1})
		}
	}

	g, code := attachGroup(pids, *all, session.AttachOptions{Interp: *interp, Method: *method, Timeout: *attachTimeout, Force: *force}, stdout, stderr)
	if g == nil {
		return code
	}
	defer g.Close() // after detach, or once the processes are gone: krait's files go
	single := len(g.Inferiors()) == 1 && !g.Server()
	exited := func(code int) int {
		if single {
			return exitedCode(pids[0], code)
		}
		return code
	}
	r := &repl.REPL{G: g, S: g.Selected().S, Out: stdout, Timeout: *timeout, Batch: *batch}
	r.OnEnd = func(gone bool) {
		if gone {
			os.Exit(ExitNoProcess)
		}
		os.Exit(ExitError)
	}
	failedFile := -1
	for _, line := range script {
		if strings.TrimSpace(line.text) == "" || line.src != 0 && line.src == failedFile {
			continue
		}
		err := r.Exec(line.text)
		if err != nil {
			if r.Report(err) {
				return exited(code)
			}
			// As gdb: an error is reported and the next -ex command still
			// runs; an error in a -x file ends that file. The exit status
			// says that something failed.
			code = ExitError
			if line.src != 0 {
				failedFile = line.src
			}
		}
		if r.Report(nil) {
			return code
		}
	}
	if *batch {
		if *duration > 0 {
			r.Collect(*duration)
			if ended, _ := r.Ended(); ended { // the processes exited meanwhile, or the agents let go
				return exited(code)
			}
		}
		r.Flush()
		if err := r.Exec("detach"); err != nil {
			return fail(stderr, err)
		}
		return code
	}
	if err := r.Run(os.Stdin); err != nil {
		return fail(stderr, err)
	}
	return exited(code)
}

// attachGroup attaches to the processes: each PID, a server's master
// standing for its workers (which are then followed: new ones are attached
// as they start), or with all every Django process krait ps finds. It
// prints a line per process attached; nil and an exit code if none could
// be.
func attachGroup(pids []int, all bool, opt session.AttachOptions, stdout, stderr io.Writer) (*session.Group, int) {
	g := session.NewGroup(opt)
	targets, masters := procinfo.ExpandServers(pids)
	if all {
		targets, masters = djangoProcesses()
		if len(targets) == 0 {
			fmt.Fprintln(stderr, "krait attach: no Django process found (krait ps lists the Python processes)")
			return nil, ExitNoProcess
		}
	}
	if len(targets) == 0 {
		fmt.Fprintf(stderr, "krait attach: server %d has no Python workers running\n", masters[0])
		return nil, ExitNoProcess
	}
	if len(targets) > 1 || len(masters) > 0 || all {
		g.SetServer()
	}
	type result struct {
		pid  int
		s    *session.Session
		err  error
		took time.Duration
	}
	results := make([]result, len(targets))
	var wg sync.WaitGroup
	for i, pid := range targets {
		wg.Add(1)
		go func(i, pid int) {
			defer wg.Done()
			start := time.Now()
			s, err := session.AttachForce(pid, opt.Interp, opt.Method, opt.Timeout, opt.Force)
			results[i] = result{pid, s, err, time.Since(start)}
		}(i, pid)
	}
	wg.Wait()
	code := ExitOK
	var intr *session.Interrupted
	for _, res := range results {
		if errors.As(res.err, &intr) {
			for _, r := range results {
				if r.s != nil {
					_ = r.s.Detach()
					r.s.Close()
				}
			}
			fmt.Fprintf(stderr, "krait: %v\n", res.err)
			return nil, 128 + int(intr.Signal)
		}
	}
	attached := 0
	for _, res := range results {
		if res.err != nil {
			if len(targets) == 1 {
				return nil, fail(stderr, res.err)
			}
			if c := fail(stderr, fmt.Errorf("process %d: %w", res.pid, res.err)); code == ExitOK {
				code = c
			}
			continue
		}
		inf := g.Add(res.s)
		attached++
		s := res.s
		where := ""
		if s.Inject.InterpID != 0 {
			where = fmt.Sprintf(", interpreter %d", s.Inject.InterpID)
		}
		via := fmt.Sprintf("thread %d (%s)", s.Inject.Thread, s.Inject.Syscall)
		if s.Inject.Note != "" {
			via = fmt.Sprintf("thread %d (%s; %s)", s.Inject.Thread, s.Inject.Syscall, s.Inject.Note)
		}
		if s.Inject.Method == agent.MethodPEP768 {
			via = fmt.Sprintf("PEP 768 (%s)", s.Inject.Syscall)
		}
		if s.Inject.Method == agent.MethodPending {
			via = fmt.Sprintf("a pending call (%s; %s)", s.Inject.Syscall, s.Inject.Note)
		}
		paused := s.Inject.Paused.Round(10 * time.Microsecond).String()
		if s.Inject.Tries > 1 {
			paused = fmt.Sprintf("%s in %d pauses", paused, s.Inject.Tries)
		}
		what := ""
		if g.Server() && inf.Server != "" && inf.Server != "script" {
			what = fmt.Sprintf(", %s", inf.Server)
			if inf.Group != "" {
				what += " " + inf.Group
			}
		}
		fmt.Fprintf(stdout, "Attached to process %d (Python %s, %s backend%s%s) in %s; process paused %s while krait entered via %s.\n",
			res.pid, s.Version, s.Backend, where, what, res.took.Round(time.Millisecond), paused, via)
	}
	if attached == 0 {
		return nil, code
	}
	for _, m := range masters {
		g.Follow(m)
		title := ""
		if in, err := procinfo.Read(m); err == nil {
			title = " (" + in.Server + ")"
		}
		fmt.Fprintf(stdout, "Following server %d%s: its new workers are attached and get the breakpoints as they start.\n", m, title)
	}
	if g.Server() {
		what := fmt.Sprintf("%d processes", attached)
		if attached == 1 {
			what = "1 process"
		}
		fmt.Fprintf(stdout, "%s; info inferiors lists them, inferior N selects one. Breakpoints apply to all.\n", what)
	}
	return g, ExitOK
}

// exitedCode: a session that ended because the process died says so in
// its exit code.
func exitedCode(pid, code int) int {
	if p, err := os.FindProcess(pid); err == nil {
		if p.Signal(syscall.Signal(0)) != nil {
			return ExitNoProcess
		}
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(data), ") Z ") {
		return ExitNoProcess
	}
	return code
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
