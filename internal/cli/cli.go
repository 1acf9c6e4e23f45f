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

	"krait/internal/cpython"
	"krait/internal/cpython/layout"
	"krait/internal/dump"
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
	ExitUnsupported = 6 // a Python version krait does not know
)

const usage = `krait — a debugger for live Python processes

Usage:
  krait dump --pid PID [--locals] [--json] [--nonblocking]
  krait version

Commands:
  dump     print every thread's Python stack (and locals) of a running process

Exit codes: 0 ok, 1 error, 2 usage, 3 no such process, 4 permission,
5 not Python, 6 unsupported Python version.
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
	case "debug-trace-config":
		return runTraceConfig(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "krait (Python %v)\n", layout.Supported())
		return ExitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "krait: unknown command %q\n\n%s", args[0], usage)
	return ExitUsage
}

func runDump(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dump", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("pid", 0, "process id to dump")
	fs.IntVar(pid, "p", 0, "short for --pid")
	locals := fs.Bool("locals", false, "show each frame's arguments and local variables")
	fs.BoolVar(locals, "l", false, "short for --locals")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.BoolVar(asJSON, "j", false, "short for --json")
	nonblocking := fs.Bool("nonblocking", false, "read without pausing the process (values may be inconsistent)")
	width := fs.Int("width", 160, "cut each value in text output to this many characters (0: no limit)")
	hold := fs.Duration("debug-hold-pause", 0, "testing: keep the process paused this long after reading")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *pid == 0 && fs.NArg() == 1 {
		if n, err := strconv.Atoi(fs.Arg(0)); err == nil {
			*pid = n
		}
	}
	if *pid <= 0 {
		fmt.Fprintln(stderr, "krait dump: --pid PID is required")
		return ExitUsage
	}
	res, err := dump.Take(*pid, dump.Options{Locals: *locals, NonBlocking: *nonblocking, Limits: cpython.DefaultLimits, HoldPause: *hold})
	if err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fail(stderr, err)
		}
		return ExitOK
	}
	dump.WriteText(stdout, res, *width)
	return ExitOK
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
	case errors.Is(err, cpython.ErrNotPython):
		return ExitNotPython
	case errors.As(err, &unsup):
		return ExitUnsupported
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
