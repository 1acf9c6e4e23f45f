// Package repl is krait attach's gdb-style command line: a table of
// commands over a session, line editing on a terminal, commands from a pipe
// or a script, and batch mode.
package repl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chzyer/readline"

	"krait/internal/agent"
	"krait/internal/session"
)

// REPL runs commands against a group of sessions (one per process: gdb's
// inferiors). S is the selected inferior's session, which most commands
// act on; breakpoints, stops, threads and detach go through G.
type REPL struct {
	G   *session.Group
	S   *session.Session
	Out io.Writer
	// Timeout bounds waiting for a stop in batch mode (0: forever).
	Timeout     time.Duration
	Batch       bool
	quit        bool
	displays    []display // display EXPR, in order
	nextDisplay int
	// listed remembers where `list` continues.
	listFile string
	listLine int
	// intr receives Ctrl-C (SIGINT) for the whole session once Run has
	// started, so that one pressed while a command resumes the target is
	// not lost before the wait begins.
	intr chan os.Signal
	// OnEnd, if set, is called (from another goroutine) once the session
	// ends by itself while the REPL waits for input — the process exited,
	// or the agent let go — after the REPL said so; gone: the process is
	// gone or going. It does not return (krait exits).
	OnEnd func(gone bool)
	ended sync.Once
	rl    *readline.Instance // the line editor, at a terminal
	outMu sync.Mutex
	pr    probes // dprintfs
	// told: queued stops of other processes already mentioned at the
	// prompt.
	told map[*session.Stop]bool
	bc   bpCommands // breakpoint commands
}

// sayEnd prints why the session ended by itself, once, and reports
// whether it has.
func (r *REPL) sayEnd() (ended, gone bool) {
	msg, gone := r.G.End()
	if msg == "" {
		return false, false
	}
	r.ended.Do(func() {
		r.printf("%s\n", msg)
	})
	r.quit = true
	return true, gone
}

// Ended says, once, why the session ended by itself (the process
// exited, or the agent let go), and whether it has.
func (r *REPL) Ended() (ended, gone bool) { return r.sayEnd() }

// watch says at once when the session ends by itself (the process exits,
// or the agent lets go), even while the REPL waits for input.
func (r *REPL) watch(stop <-chan struct{}) {
	select {
	case <-r.G.Done():
	case <-stop:
		return
	}
	if ended, gone := r.sayEnd(); ended && r.OnEnd != nil {
		if r.rl != nil {
			r.rl.Terminal.ExitRawMode() // the process goes: leave the terminal as it was
			fmt.Fprintln(os.Stdout)     // below the prompt readline redrew
		}
		r.OnEnd(gone)
	}
}

type command struct {
	names []string
	help  string
	run   func(r *REPL, arg string) error
}

var commands []command

func init() {
	commands = []command{
		{[]string{"break", "b", "br"}, "break FILE:LINE | FUNCTION | LINE [if COND] — set a breakpoint", (*REPL).cmdBreak},
		{[]string{"tbreak"}, "tbreak LOCATION [if COND] — set a breakpoint that is deleted when hit", (*REPL).cmdTbreak},
		{[]string{"dprintf"}, "dprintf LOCATION,\"FORMAT\",ARG... — print FORMAT (C printf: %d %s %x %f…; %r: the value as print shows it) with the ARGs' values each time a thread passes LOCATION, without stopping it; a breakpoint for delete, condition, ignore, disable", (*REPL).cmdDprintf},
		{[]string{"commands"}, "commands [N…] — the commands to run each time breakpoint N (the last one set) stops a thread, one per line, ending with \"end\"; silent first: the stop is not shown; continue (or a step) lets the thread go and ends the list", (*REPL).cmdCommands},
		{[]string{"condition"}, "condition N [COND] — set or remove breakpoint N's condition", (*REPL).cmdCondition},
		{[]string{"catch"}, "catch raise [TYPE…] | catch uncaught [TYPE…] — stop where an exception (of those classes) is raised, or as it leaves a thread uncaught; catch: list; catch delete [N]", (*REPL).cmdCatch},
		{[]string{"ignore"}, "ignore N COUNT — let breakpoint N's next COUNT crossings go without stopping", (*REPL).cmdIgnore},
		{[]string{"interrupt"}, "interrupt [N | -a] — stop the selected running thread (thread N, every thread) at the next line of Python it runs", (*REPL).cmdInterrupt},
		{[]string{"delete", "d"}, "delete [N…] — delete breakpoints (all without N)", bpCmd("delete")},
		{[]string{"disable"}, "disable N… — disable breakpoints", bpCmd("disable")},
		{[]string{"enable"}, "enable N… — enable breakpoints", bpCmd("enable")},
		{[]string{"continue", "c", "cont"}, "continue — resume every stopped thread and wait for the next stop", (*REPL).cmdContinue},
		{[]string{"step", "s"}, "step — run to the next line, entering calls", resume("step")},
		{[]string{"next", "n"}, "next — run to the next line in this function, stepping over calls", resume("next")},
		{[]string{"finish", "fin"}, "finish — run until the selected frame returns and show its value", (*REPL).cmdFinish},
		{[]string{"until", "u"}, "until — like next, but never stops at an earlier line (leaves loops)", resume("until")},
		{[]string{"backtrace", "bt", "where", "py-bt"}, "bt [full] [N | -N] — the selected thread's stack (innermost N, or outermost N frames; full: with each frame's locals)", (*REPL).cmdBacktrace},
		{[]string{"display"}, "display [EXPR] — print EXPR (safely, as print) at every stop; without EXPR, print them all now", (*REPL).cmdDisplay},
		{[]string{"undisplay"}, "undisplay [N…] — stop displaying expressions N (all without N)", (*REPL).cmdUndisplay},
		{[]string{"whatis"}, "whatis EXPR — the type of EXPR", (*REPL).cmdWhatis},
		{[]string{"up", "py-up"}, "up [N] — select an outer frame", (*REPL).cmdUp},
		{[]string{"down", "py-down"}, "down [N] — select an inner frame", (*REPL).cmdDown},
		{[]string{"frame", "f"}, "frame [N] — select frame N / show the selected frame", (*REPL).cmdFrame},
		{[]string{"info", "i"}, "info breakpoints|locals|args|threads|frame|source|display|inferiors", (*REPL).cmdInfo},
		{[]string{"print", "p", "inspect", "py-print"}, "print EXPR — evaluate in the selected frame without running user __repr__; print/r EXPR uses repr(); print/s EXPR shows values under secret-looking names (else <redacted>); print/sql QS shows a QuerySet's SQL (compiled, not run)", (*REPL).cmdPrint},
		{[]string{"set"}, "set var NAME = EXPR — assign to a local of the selected frame (or to an attribute or item: set var order.total = 0, set var d['k'] = 1); set print secrets on|off — show values under secret-looking names in print, info locals and bt (off: <redacted>)", (*REPL).cmdSet},
		{[]string{"list", "l", "py-list"}, "list [FILE:]LINE — show source around a line (again: the next lines)", (*REPL).cmdList},
		{[]string{"thread", "t"}, "thread [N | I.N] — select thread N (of inferior I) / show the selected thread; thread apply all|N… CMD — run CMD in each of those threads (thread apply all bt)", (*REPL).cmdThread},
		{[]string{"inferior"}, "inferior [N] — select inferior N (a process; info inferiors lists them) / show the selected one", (*REPL).cmdInferior},
		{[]string{"detach"}, "detach — remove krait from every process and leave", (*REPL).cmdDetach},
		{[]string{"quit", "q", "exit"}, "quit — detach and leave", (*REPL).cmdDetach},
		{[]string{"py-bt-full"}, "py-bt-full, py-locals — bt full and info locals, by the names CPython's gdb extension (libpython.py) gives them; py-bt, py-up, py-down, py-print and py-list are bt, up, down, print and list", func(r *REPL, arg string) error { return r.cmdBacktrace("full " + arg) }},
		{[]string{"py-locals"}, "py-locals — info locals", func(r *REPL, arg string) error { return r.cmdInfo("locals") }},
		{[]string{"echo"}, "echo TEXT — print TEXT (\\n for a newline), as gdb's echo", (*REPL).cmdEcho},
		{[]string{"help", "h"}, "help [COMMAND]", (*REPL).cmdHelp},
	}
}

func bpCmd(name string) func(*REPL, string) error {
	return func(r *REPL, arg string) error {
		ids := strings.Fields(arg)
		if len(ids) == 0 {
			if name != "delete" {
				return fmt.Errorf("Argument required (breakpoint number).")
			}
			return r.G.BPCommand("delete", 0)
		}
		for _, a := range ids {
			n, err := strconv.Atoi(a)
			if err != nil {
				return fmt.Errorf("Convenience variable must have integer value.\nBad breakpoint argument: '%s'", a)
			}
			if err := r.G.BPCommand(name, n); err != nil {
				return err
			}
		}
		return nil
	}
}

func lookup(name string) *command {
	for i := range commands {
		for _, n := range commands[i].names {
			if n == name {
				return &commands[i]
			}
		}
	}
	return nil
}

// Exec runs one command line.
func (r *REPL) Exec(line string) error {
	if r.collect(line) {
		return nil
	}
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return nil
	}
	name, arg := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		name, arg = line[:i], strings.TrimSpace(line[i+1:])
	}
	// print/r, p/r
	if i := strings.IndexByte(name, '/'); i > 0 {
		arg = name[i:] + " " + arg
		name = name[:i]
	}
	r.sync()
	c := lookup(name)
	if c == nil {
		return fmt.Errorf("Undefined command: \"%s\".  Try \"help\".", name)
	}
	return c.run(r, arg)
}

func (r *REPL) printf(format string, a ...any) {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	fmt.Fprintf(r.Out, format, a...)
}

// Flush prints stops and notices that arrived while nothing waited.
func (r *REPL) Flush() {
	r.flush(true)
}

// flush prints notices and, with stops set, stops not yet reported (at a
// terminal prompt, as they happen; from a script, stops wait for the next
// command that waits, so a script's continue meets the stop it expects).
func (r *REPL) flush(stops bool) {
	for _, n := range r.G.TakeNotes() {
		r.printf("%s\n", n)
	}
	for stops {
		var only *session.Inferior
		if sel := r.G.Selected(); r.G.Server() && sel != nil && sel.S.HasStops() {
			// A thread of the selected process is being examined: the
			// stops of other processes wait to be reported in order by
			// continue (gdb's all-stop); each is mentioned once.
			only = sel
			for _, q := range r.G.Queued() {
				if q.Inf != sel && !r.told[q.Stop] {
					if r.told == nil {
						r.told = map[*session.Stop]bool{}
					}
					r.told[q.Stop] = true
					r.printf("%s has stopped too (%s at %s:%d); continue reports it\n", q.Inf.Label(), stopWhat(q.Stop), q.Stop.File, q.Stop.Line)
				}
			}
		}
		inf, st := r.G.NextStopOf(only)
		if st == nil {
			r.sync()
			return
		}
		r.S = inf.S
		r.reportStop(st, true)
	}
}

// stopWhat names why a thread stopped, briefly.
func stopWhat(st *session.Stop) string {
	switch st.Reason {
	case "breakpoint":
		return fmt.Sprintf("breakpoint %d", st.BP)
	case "exception":
		return fmt.Sprintf("catchpoint %d", st.Catch)
	}
	return st.Reason
}

// sync makes S the selected inferior's session (the selection changes
// with stops, and when an inferior exits).
func (r *REPL) sync() {
	if inf := r.G.Selected(); inf != nil {
		r.S = inf.S
	}
}

func splitCond(arg string) (loc, cond string) {
	if i := strings.Index(arg, " if "); i >= 0 {
		return strings.TrimSpace(arg[:i]), strings.TrimSpace(arg[i+4:])
	}
	if strings.HasPrefix(arg, "if ") {
		return "", strings.TrimSpace(arg[3:])
	}
	return arg, ""
}

func (r *REPL) cmdBreak(arg string) error  { return r.setBreak(arg, false) }
func (r *REPL) cmdTbreak(arg string) error { return r.setBreak(arg, true) }

func (r *REPL) setBreak(arg string, temp bool) error {
	loc, cond := splitCond(arg)
	if loc == "" {
		st := r.S.Stopped()
		if st == nil {
			return fmt.Errorf("No default breakpoint location: select a stopped thread or give FILE:LINE.")
		}
		loc = fmt.Sprintf("%s:%d", st.File, st.Line)
	}
	bp, err := r.G.Break(loc, cond, temp)
	if err != nil {
		return err
	}
	r.bc.last = bp.ID
	kind := "Breakpoint"
	if temp {
		kind = "Temporary breakpoint"
	}
	if bp.Pending {
		r.printf("%s %d (%s) pending.\n", kind, bp.ID, loc)
		return nil
	}
	fn := ""
	if bp.Function != "" {
		fn = " (" + bp.Function + ")"
	}
	if len(bp.Locations) > 1 {
		// gdb: "Breakpoint 1 at 0x1139: handle. (3 locations)"
		r.printf("%s %d at %s:%d: %s. (%d locations)\n", kind, bp.ID, bp.File, bp.Line, loc, len(bp.Locations))
	} else {
		r.printf("%s %d at %s:%d%s\n", kind, bp.ID, bp.File, bp.Line, fn)
	}
	if bp.Moved {
		r.printf("(line %s has no code; moved to line %d)\n", loc[strings.LastIndexByte(loc, ':')+1:], bp.Line)
	}
	if bp.Warning != "" {
		r.printf("warning: %s\n", bp.Warning)
	}
	return nil
}

func (r *REPL) cmdCatch(arg string) error {
	f := strings.Fields(arg)
	if len(f) == 0 {
		bps, err := r.G.Breakpoints()
		if err != nil {
			return err
		}
		n := 0
		for _, b := range bps {
			if c := b.Catch; c != nil {
				r.printf("Catchpoint %d (%s %s)\n", c.ID, c.Kind, catchTypes(c.Types))
				n++
			}
		}
		if n == 0 {
			r.printf("No catchpoints.\n")
		}
		return nil
	}
	switch f[0] {
	case "raise", "throw", "uncaught":
		kind := f[0]
		if kind == "throw" {
			kind = "raise"
		}
		b, err := r.G.Catch(kind, f[1:])
		if err != nil {
			return err
		}
		r.printf("Catchpoint %d (%s %s)\n", b.ID, b.Catch.Kind, catchTypes(b.Catch.Types))
		return nil
	case "delete":
		// The catchpoints given, or all of them (not the breakpoints).
		bps, err := r.G.Breakpoints()
		if err != nil {
			return err
		}
		var ids []int
		for _, a := range f[1:] {
			n, err := strconv.Atoi(a)
			if err != nil {
				return fmt.Errorf("Bad catchpoint argument: '%s'", a)
			}
			ids = append(ids, n)
		}
		if len(ids) == 0 {
			for _, b := range bps {
				if b.Catch != nil {
					ids = append(ids, b.ID)
				}
			}
		}
		for _, id := range ids {
			isCatch := false
			for _, b := range bps {
				isCatch = isCatch || b.ID == id && b.Catch != nil
			}
			if !isCatch {
				return fmt.Errorf("No catchpoint number %d.", id)
			}
			if err := r.G.BPCommand("delete", id); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("Undefined catch command: \"%s\".  Try \"help catch\".", f[0])
}

func catchTypes(types []string) string {
	if len(types) == 0 {
		return "any exception"
	}
	return strings.Join(types, ", ")
}

func (r *REPL) cmdIgnore(arg string) error {
	f := strings.Fields(arg)
	if len(f) == 0 {
		return fmt.Errorf("Argument required (a breakpoint number).")
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return fmt.Errorf("Bad breakpoint argument: '%s'", f[0])
	}
	if len(f) < 2 {
		return fmt.Errorf("Second argument (specified ignore-count) is missing.")
	}
	c, err := strconv.Atoi(f[1])
	if err != nil {
		return fmt.Errorf("Invalid number \"%s\".", f[1])
	}
	if c < 0 {
		c = 0
	}
	if err := r.G.Ignore(n, c); err != nil {
		return err
	}
	switch c {
	case 0:
		r.printf("Will stop next time breakpoint %d is reached.\n", n)
	case 1:
		r.printf("Will ignore next crossing of breakpoint %d.\n", n)
	default:
		r.printf("Will ignore next %d crossings of breakpoint %d.\n", c, n)
	}
	return nil
}

// cmdInterrupt is gdb's interrupt in non-stop mode: the thread stops at
// the next line of Python it runs (a thread blocked in a call stops when
// the call returns). krait waits a moment for the stops, then they are
// announced as they come.
func (r *REPL) cmdInterrupt(arg string) error {
	arg = strings.TrimSpace(arg)
	all := arg == "-a"
	thread := r.S.Thread
	if arg != "" && !all {
		n, err := strconv.Atoi(arg)
		if err != nil {
			return fmt.Errorf("Invalid thread ID: %s", arg)
		}
		ts, err := r.S.Threads()
		if err != nil {
			return err
		}
		thread = 0
		for _, t := range ts {
			if t.Number == n {
				thread = t.Ident
			}
		}
		if thread == 0 {
			return fmt.Errorf("Invalid thread ID: %d", n)
		}
	} else if !all {
		if thread == 0 {
			return fmt.Errorf("No thread selected.")
		}
		if r.S.Stopped() != nil {
			return fmt.Errorf("The selected thread is stopped already.")
		}
	}
	asked, err := r.S.Interrupt(thread, all)
	if err != nil {
		return err
	}
	if len(asked) == 0 {
		r.printf("No running thread to interrupt.\n")
		return nil
	}
	left := map[int64]bool{}
	for _, t := range asked {
		left[t] = true
	}
	deadline := time.After(time.Second)
	for len(left) > 0 {
		select {
		case <-r.S.Updates():
		case <-deadline:
			for t := range left {
				r.printf("Thread %d runs no Python line yet (blocked in a call); it stops at its next one.\n", r.S.ThreadNumber(t))
			}
			return nil
		case <-time.After(50 * time.Millisecond):
		}
		for {
			st := r.S.NextStop()
			if st == nil {
				break
			}
			delete(left, st.Thread)
			r.reportStop(st, false)
		}
	}
	return nil
}

func (r *REPL) cmdCondition(arg string) error {
	f := strings.SplitN(arg, " ", 2)
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return fmt.Errorf("Argument required (breakpoint number).")
	}
	cond := ""
	if len(f) == 2 {
		cond = strings.TrimSpace(f[1])
	}
	if err := r.G.Condition(n, cond); err != nil {
		return err
	}
	if cond == "" {
		r.printf("Breakpoint %d now unconditional.\n", n)
	}
	return nil
}

func (r *REPL) cmdContinue(arg string) error {
	r.flush(false)
	if r.S.HasPendingStop() {
		// A thread stopped since the last report: report it rather than
		// run on past it.
		return r.wait(0)
	}
	// continue resumes the selected inferior's threads; a stop queued in
	// another inferior is reported next.
	if err := r.S.Resume("continue", true); err != nil {
		return err
	}
	r.printf("Continuing.\n")
	return r.wait(0)
}

func resume(cmd string) func(*REPL, string) error {
	return func(r *REPL, arg string) error {
		thread := r.S.Thread
		if err := r.S.Resume(cmd, false); err != nil {
			return err
		}
		return r.wait(thread)
	}
}

// cmdInferior is gdb's inferior: select a process of the group.
func (r *REPL) cmdInferior(arg string) error {
	arg = strings.TrimSpace(arg)
	if arg == "" {
		inf := r.G.Selected()
		if inf == nil {
			return fmt.Errorf("No inferior.")
		}
		r.printf("[Current inferior is %d [process %d]]\n", inf.Num, inf.PID)
		return nil
	}
	n, err := strconv.Atoi(arg)
	if err != nil {
		return fmt.Errorf("Invalid inferior ID: %s", arg)
	}
	inf, err := r.G.Select(n)
	if err != nil {
		return err
	}
	r.S = inf.S
	r.printf("[Switching to inferior %d [process %d]]\n", inf.Num, inf.PID)
	if st := r.S.Stopped(); st != nil {
		r.printf("#0  %s (%s) at %s:%d\n", st.Function, argsText(st.Args), st.File, st.Line)
		r.printSourceLine(st.File, st.Line)
	}
	listedOnce = false
	return nil
}

// infoInferiors is gdb's info inferiors, with what krait knows of each
// process: server, group, interpreter, threads and stopped threads.
func (r *REPL) infoInferiors() error {
	sel := r.G.Selected()
	r.printf("  Num  Description       Server           Group            Python             Threads  Stopped\n")
	for _, inf := range r.G.Inferiors() {
		cur := " "
		if inf == sel {
			cur = "*"
		}
		threads, stopped := "?", 0
		if ts, err := inf.S.Threads(); err == nil {
			threads = strconv.Itoa(len(ts))
			for _, t := range ts {
				if t.Stopped {
					stopped++
				}
			}
		}
		server, group := inf.Server, inf.Group
		if server == "" {
			server = "-"
		}
		if group == "" {
			group = "-"
		}
		py := inf.S.Version
		if inf.S.Inject != nil && inf.S.Inject.InterpID != 0 {
			py += fmt.Sprintf(" (interp %d)", inf.S.Inject.InterpID)
		}
		r.printf("%s %-4d %-17s %-16s %-16s %-18s %-8s %d\n", cur, inf.Num, fmt.Sprintf("process %d", inf.PID), server, group, py, threads, stopped)
	}
	return nil
}

func (r *REPL) cmdFinish(arg string) error {
	if r.S.Stopped() == nil {
		return session.ErrNotStopped
	}
	frames, err := r.S.Stack()
	if err != nil {
		return err
	}
	if len(frames) > 0 {
		f := frames[0]
		r.printf("Run till exit from #0  %s\n", frameText(f))
	}
	return resume("finish")(r, arg)
}

// wait waits for the next stop and reports it. Ctrl-C stops waiting (the
// process keeps running); when the wait is for a step of thread stepping
// (next, step, finish, until), Ctrl-C also cancels that step in the agent,
// so that the thread does not stop for it later, unseen.
func (r *REPL) wait(stepping int64) error {
	cancel := make(chan struct{})
	sig := r.intr
	if sig == nil {
		sig = make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		defer signal.Stop(sig)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-sig:
			close(cancel)
		case <-r.G.Done():
		case <-stop:
		}
	}()
	timeout := time.Duration(0)
	if r.Batch {
		timeout = r.Timeout
	}
	stepper := r.S
	for {
		inf, st, err := r.G.WaitStop(timeout, cancel)
		if err != nil {
			return err
		}
		if inf != nil {
			r.S = inf.S
		}
		if st == nil && stepping != 0 {
			cancelled, err := stepper.Cancel(stepping)
			if err != nil {
				return err
			}
			if cancelled || !stepper.HasPendingStop() {
				r.printf("\nQuit: the step is cancelled; thread %d runs on (breakpoints stay set).\n", stepper.ThreadNumber(stepping))
				return nil
			}
			st = stepper.NextStop() // it stopped as the step was cancelled: report it
			r.S = stepper
			r.G.SelectSession(stepper)
		}
		if st == nil {
			r.printf("\nStopped waiting; the process keeps running (breakpoints stay set).\n")
			return nil
		}
		if !r.reportStop(st, false) {
			return nil
		}
		// Its breakpoint's commands let the thread go: wait on, as gdb does.
		stepping, stepper = 0, r.S
	}
}

// argsText renders a frame's arguments for a location line, each cut to a
// readable length (print shows a value whole).
func argsText(args []session.Var) string {
	const width = 80
	var parts []string
	for _, a := range args {
		v := a.Value
		if r := []rune(v); len(r) > width {
			v = string(r[:width-3]) + "..."
		}
		parts = append(parts, a.Name+"="+v)
	}
	return strings.Join(parts, ", ")
}

func frameText(f session.Frame) string {
	return fmt.Sprintf("%s (%s) at %s:%d", f.Function, argsText(f.Args), f.File, f.Line)
}

var lastStopThread int64
var lastStopPID int

func (r *REPL) reportStop(st *session.Stop, async bool) (resumed bool) {
	cmds := r.stopCommands(st)
	silent := len(cmds) > 0 && strings.Fields(cmds[0])[0] == "silent"
	say := r.printf
	if silent {
		say = func(string, ...any) {} // gdb's silent: the commands say what they say
	}
	n := r.S.ThreadNumber(st.Thread)
	if lastStopThread != 0 && (lastStopThread != st.Thread || lastStopPID != r.S.PID) || async {
		name := ""
		if st.ThreadName != "" {
			name = fmt.Sprintf(" %q", st.ThreadName)
		}
		say("[Switching to thread %d (LWP %d)%s]\n", n, st.NativeID, name)
	}
	lastStopThread, lastStopPID = st.Thread, r.S.PID
	loc := fmt.Sprintf("%s (%s) at %s:%d", st.Function, argsText(st.Args), st.File, st.Line)
	// With several processes, every stop line names its process.
	who := ""
	var inf *session.Inferior
	if r.G.Server() {
		for _, x := range r.G.Inferiors() {
			if x.S == r.S {
				inf = x
				who = x.Label() + " "
			}
		}
	}
	switch st.Reason {
	case "breakpoint":
		if st.CondError != "" {
			say("Error in testing condition for breakpoint %d: %s\n", st.BP, st.CondError)
		}
		kind := "Breakpoint"
		say("\n%s%s %d, %s\n", who, kind, st.BP, loc)
	case "exception":
		what := "raised"
		if st.CatchKind == "uncaught" {
			what = "not caught"
		}
		exc := ""
		if st.Exception != nil {
			exc = st.Exception.Value
		}
		say("\n%sCatchpoint %d (%s), %s %s in %s\n", who, st.Catch, st.CatchKind, exc, what, loc)
	case "interrupt":
		name := ""
		if st.ThreadName != "" {
			name = fmt.Sprintf(" %q", st.ThreadName)
		}
		say("\n%sThread %d%s stopped.\n%s\n", who, n, name, loc)
	case "finish":
		say("%s%s\n", who, loc)
	default:
		say("%s%s\n", who, loc)
	}

	if st.LoopTasks >= 0 {
		tasks := "tasks"
		if st.LoopTasks == 1 {
			tasks = "task"
		}
		say("[this thread runs an event loop with %d other %s; they wait while it is stopped]\n", st.LoopTasks, tasks)
	}
	if !silent {
		r.printSourceLine(st.File, st.Line)
	}
	if st.Return != nil {
		r.S.History = append(r.S.History, st.Return.Value)
		say("Value returned is $%d = %s\n", len(r.S.History), st.Return.Value)
	}
	r.listFile, r.listLine = st.File, st.Line
	if !silent {
		r.doDisplays()
	}
	if inf == nil {
		for _, x := range r.G.Inferiors() {
			if x.S == r.S {
				inf = x
			}
		}
	}
	if inf != nil {
		r.watchdogLines(inf)
	}
	return r.runStopCommands(cmds)
}

func (r *REPL) printSourceLine(file string, line int) {
	lines, err := r.S.Source(file, line, 1)
	if err == nil && len(lines) == 1 {
		text, _ := lines[0][1].(string)
		r.printf("%d\t%s\n", line, strings.TrimRight(text, "\n"))
	}
}

func (r *REPL) cmdBacktrace(arg string) error {
	frames, err := r.S.Stack()
	if err != nil {
		return err
	}
	if r.S.Running() {
		r.printf("(thread %d is running: its stack as read from outside just now)\n", r.S.ThreadNumber(r.S.Thread))
	}
	full := false
	limit := 0
	for _, a := range strings.Fields(arg) {
		if a == "full" || a == "-full" {
			full = true
		} else if n, err := strconv.Atoi(a); err == nil {
			limit = n
		} else {
			return fmt.Errorf("No symbol \"%s\" in current context.", a)
		}
	}
	more := ""
	switch {
	case limit > 0 && limit < len(frames):
		frames, more = frames[:limit], "(More stack frames follow...)\n"
	case limit < 0 && -limit < len(frames):
		frames = frames[len(frames)+limit:] // the outermost -limit frames
	}
	for _, f := range frames {
		r.printf("#%-2d %s\n", f.Index, frameText(f))
		if full {
			vs, err := r.S.LocalsAt(f.Index)
			if err != nil {
				r.printf("        <%v>\n", err)
				continue
			}
			n := 0
			for _, v := range vs {
				if !v.Arg {
					r.printf("        %s = %s\n", v.Name, v.Value)
					n++
				}
			}
			if n == 0 {
				r.printf("No locals.\n")
			}
		}
	}
	r.printf("%s", more)
	return nil
}

func (r *REPL) selectFrame(n int) error {
	frames, err := r.S.Stack()
	if err != nil {
		return err
	}
	if n < 0 || n >= len(frames) {
		if n < 0 {
			return fmt.Errorf("Bottom (innermost) frame selected; you cannot go down.")
		}
		return fmt.Errorf("Initial frame selected; you cannot go up.")
	}
	r.S.Frame = n
	f := frames[n]
	r.printf("#%-2d %s\n", n, frameText(f))
	r.printSourceLine(f.File, f.Line)
	r.listFile, r.listLine = f.File, f.Line
	return nil
}

func count(arg string) int {
	if n, err := strconv.Atoi(strings.TrimSpace(arg)); err == nil {
		return n
	}
	return 1
}

func (r *REPL) cmdUp(arg string) error   { return r.selectFrame(r.S.Frame + count(arg)) }
func (r *REPL) cmdDown(arg string) error { return r.selectFrame(r.S.Frame - count(arg)) }
func (r *REPL) cmdFrame(arg string) error {
	if strings.TrimSpace(arg) == "" {
		return r.selectFrame(r.S.Frame)
	}
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil {
		return fmt.Errorf("Invalid frame number %q.", arg)
	}
	return r.selectFrame(n)
}

func (r *REPL) cmdInfo(arg string) error {
	f := strings.Fields(arg)
	if len(f) == 0 {
		return fmt.Errorf("List of info subcommands: breakpoints, locals, args, threads, frame, display, source.")
	}
	switch f[0] {
	case "breakpoints", "break", "b", "br":
		return r.infoBreakpoints()
	case "locals":
		return r.infoVars(false)
	case "args":
		return r.infoVars(true)
	case "threads", "thread":
		return r.infoThreads()
	case "frame", "f":
		return r.cmdFrame("")
	case "display":
		return r.infoDisplay()
	case "source":
		return r.infoSource()
	case "inferiors", "inferior":
		return r.infoInferiors()
	}
	return fmt.Errorf("Undefined info command: \"%s\".  Try \"help info\".", f[0])
}

func (r *REPL) infoBreakpoints() error {
	bps, err := r.G.Breakpoints()
	if err != nil {
		return err
	}
	if len(bps) == 0 {
		r.printf("No breakpoints or watchpoints.\n")
		return nil
	}
	r.printf("Num     Type           Disp Enb What\n")
	for _, b := range bps {
		disp := "keep"
		if b.Temporary {
			disp = "del"
		}
		enb := "y"
		if !b.Enabled {
			enb = "n"
		}
		what := fmt.Sprintf("%s:%d", b.File, b.Line)
		if b.Pending {
			what = fmt.Sprintf("<PENDING> %s:%d", b.File, b.Line)
		} else if b.Function != "" {
			what = fmt.Sprintf("in %s at %s:%d", b.Function, b.File, b.Line)
		}
		if len(b.Locations) > 1 {
			what = "<MULTIPLE>"
		}
		kind := "breakpoint"
		if b.Dprintf != nil {
			kind = "dprintf"
		}
		if c := b.Catch; c != nil {
			// gdb: "2       catchpoint     keep y   exception throw"
			kind, what = "catchpoint", "exception "+c.Kind
			if len(c.Types) > 0 {
				what += " " + strings.Join(c.Types, ", ")
			}
			if c.Kind == "raise" && len(c.Types) == 0 {
				what = "exception raise (any exception)"
			}
		}
		r.printf("%-7d %-14s %-4s %-3s %s\n", b.ID, kind, disp, enb, what)
		for i, l := range b.Locations {
			r.printf("%-7s %-14s %-4s %-3s in %s at %s:%d\n", fmt.Sprintf("%d.%d", b.ID, i+1), "", "", enb, l.Function, l.File, l.Line)
		}
		if b.Ignore > 0 {
			r.printf("\tWill ignore next %d crossings of breakpoint.\n", b.Ignore)
		}
		if b.Cond != "" {
			r.printf("\tstop only if %s\n", b.Cond)
		}
		if b.Hits > 0 {
			times := "times"
			if b.Hits == 1 {
				times = "time"
			}
			what := "breakpoint"
			if b.Catch != nil {
				what = "catchpoint"
			}
			r.printf("\t%s already hit %d %s\n", what, b.Hits, times)
		}
		if b.Dprintf != nil {
			r.printf("        printf \"%s\"%s\n", cEscape(b.Dprintf.Format), strings.Join(append([]string{""}, b.Dprintf.Args...), ","))
		}
		r.listCommands(b.ID)
	}
	return nil
}

func (r *REPL) infoVars(args bool) error {
	vs, err := r.S.Locals()
	if err != nil {
		return err
	}
	n := 0
	for _, v := range vs {
		if v.Arg != args {
			continue
		}
		r.printf("%s = %s\n", v.Name, v.Value)
		n++
	}
	if n == 0 {
		if args {
			r.printf("No arguments.\n")
		} else {
			r.printf("No locals.\n")
		}
	}
	return nil
}

func (r *REPL) infoThreads() error {
	if infs := r.G.Inferiors(); r.G.Server() && len(infs) > 0 {
		return r.infoThreadsAll(infs)
	}
	ts, err := r.S.Threads()
	if err != nil {
		return err
	}
	r.printf("  Id   Target Id                                   Frame\n")
	for _, t := range ts {
		cur := " "
		if t.Ident == r.S.Thread {
			cur = "*"
		}
		name := ""
		if t.Name != "" {
			name = fmt.Sprintf(" %q", t.Name)
		}
		state := "running"
		if t.Stopped {
			state = "stopped"
		}
		target := fmt.Sprintf("Thread 0x%x (LWP %d)%s", t.Ident, t.NativeID, name)
		r.printf("%s %-4d %-43s %s: %s at %s:%d\n", cur, t.Number, target, state, t.Function, t.File, t.Line)
	}
	return nil
}

func (r *REPL) cmdPrint(arg string) error {
	mode, show := "safe", r.S.ShowSecrets
	if strings.HasPrefix(arg, "/") {
		f := strings.SplitN(arg, " ", 2)
		switch f[0] {
		case "/r":
			mode = "repr"
		case "/s":
			show = true
		case "/rs", "/sr":
			mode, show = "repr", true
		case "/sql":
			mode = "sql"
		default:
			return fmt.Errorf("Undefined output format \"%s\".", strings.TrimPrefix(f[0], "/"))
		}
		arg = ""
		if len(f) == 2 {
			arg = f[1]
		}
	}
	arg = strings.TrimSpace(arg)
	if arg == "" {
		if len(r.S.History) == 0 {
			return fmt.Errorf("History is empty.")
		}
		arg = "$"
	}
	var n int
	var v session.Var
	var err error
	if target, expr, ok := session.SplitAssign(arg); ok && mode == "safe" {
		n, v, err = r.S.SetVar(target, expr, true) // print TARGET = EXPR
	} else {
		n, v, err = r.S.PrintSecrets(arg, mode, show)
	}
	if err != nil {
		return err
	}
	r.printf("$%d = %s\n", n, v.Value)
	return nil
}

// cmdSet is gdb's set: set var NAME = EXPR, set print secrets on|off.
func (r *REPL) cmdSet(arg string) error {
	f := strings.Fields(arg)
	if len(f) > 0 && (f[0] == "var" || f[0] == "variable") {
		target, expr, ok := session.SplitAssign(strings.TrimPrefix(strings.TrimSpace(arg), f[0]))
		if !ok {
			return fmt.Errorf("Argument required (NAME = EXPRESSION).")
		}
		_, _, err := r.S.SetVar(target, expr, false)
		return err
	}
	if target, expr, ok := session.SplitAssign(arg); ok && f[0] != "print" {
		_, _, err := r.S.SetVar(target, expr, false)
		return err
	}
	switch {
	case len(f) == 3 && f[0] == "print" && f[1] == "secrets" && (f[2] == "on" || f[2] == "off"):
		r.S.ShowSecrets = f[2] == "on"
		return nil
	case len(f) >= 2 && f[0] == "print" && f[1] == "secrets":
		return fmt.Errorf("\"on\" or \"off\" expected.")
	}
	return fmt.Errorf("Undefined set command: \"%s\".  Try \"help set\".", arg)
}

func (r *REPL) cmdList(arg string) error {
	arg = strings.TrimSpace(arg)
	file, line := r.listFile, 0
	switch {
	case arg == "":
		if r.listFile == "" {
			return fmt.Errorf("No default source file; stop somewhere first or give FILE:LINE.")
		}
		line = r.listLine
	case strings.Contains(arg, ":"):
		i := strings.LastIndexByte(arg, ':')
		n, err := strconv.Atoi(arg[i+1:])
		if err != nil {
			return fmt.Errorf("Bad line number %q.", arg[i+1:])
		}
		file, line = arg[:i], n
	default:
		n, err := strconv.Atoi(arg)
		if err != nil {
			return fmt.Errorf("Function lookup is not supported by list; give a line or FILE:LINE.")
		}
		line = n
	}
	start := line - 5
	if arg == "" && r.listed() {
		start = line
	}
	if start < 1 {
		start = 1
	}
	lines, err := r.S.Source(file, start, 10)
	if err != nil {
		return err
	}
	if len(lines) == 0 {
		return fmt.Errorf("Line number %d out of range; %q has fewer lines.", start, filepath.Base(file))
	}
	for _, l := range lines {
		text, _ := l[1].(string)
		r.printf("%d\t%s\n", l[0], strings.TrimRight(text, "\n"))
	}
	last, _ := lines[len(lines)-1][0].(int)
	r.listFile, r.listLine, listedOnce = file, last+1, true
	return nil
}

var listedOnce bool

func (r *REPL) listed() bool { return listedOnce }

// infoThreadsAll lists, with several inferiors, every thread of the
// selected one and the stopped threads of the others, as gdb numbers them
// (INFERIOR.THREAD).
func (r *REPL) infoThreadsAll(infs []*session.Inferior) error {
	sel := r.G.Selected()
	r.printf("  Id     Target Id                                               Frame\n")
	for _, inf := range infs {
		ts, err := inf.S.Threads()
		if err != nil {
			r.printf("  %d.*    process %d: %v\n", inf.Num, inf.PID, err)
			continue
		}
		for _, t := range ts {
			if inf != sel && !t.Stopped {
				continue
			}
			cur := " "
			if inf == sel && t.Ident == inf.S.Thread {
				cur = "*"
			}
			name := ""
			if t.Name != "" {
				name = fmt.Sprintf(" %q", t.Name)
			}
			state := "running"
			if t.Stopped {
				state = "stopped"
			}
			target := fmt.Sprintf("process %d Thread 0x%x (LWP %d)%s", inf.PID, t.Ident, t.NativeID, name)
			r.printf("%s %-6s %-55s %s: %s at %s:%d\n", cur, fmt.Sprintf("%d.%d", inf.Num, t.Number), target, state, t.Function, t.File, t.Line)
		}
	}
	return nil
}

func (r *REPL) cmdThread(arg string) error {
	arg = strings.TrimSpace(arg)
	if rest, ok := strings.CutPrefix(arg, "apply"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
		return r.threadApply(strings.TrimSpace(rest))
	}
	if i, n, ok := strings.Cut(arg, "."); ok {
		// thread I.N: thread N of inferior I.
		num, err := strconv.Atoi(i)
		if err != nil {
			return fmt.Errorf("Invalid thread ID: %s", arg)
		}
		inf, err := r.G.Select(num)
		if err != nil {
			return err
		}
		r.S = inf.S
		arg = n
	}
	if arg == "" {
		ts, err := r.S.Threads()
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.Ident == r.S.Thread {
				r.printf("[Current thread is %d (Thread 0x%x (LWP %d))]\n", t.Number, t.Ident, t.NativeID)
				return nil
			}
		}
		return fmt.Errorf("No thread selected.")
	}
	n, err := strconv.Atoi(arg)
	if err != nil {
		return fmt.Errorf("Invalid thread ID: %s", arg)
	}
	t, err := r.S.SelectThread(n)
	if err != nil {
		return err
	}
	state := "running"
	if t.Stopped {
		state = "stopped"
	}
	r.printf("[Switching to thread %d (Thread 0x%x (LWP %d))] (%s)\n", t.Number, t.Ident, t.NativeID, state)
	if st := r.S.Stopped(); st != nil {
		r.printf("#0  %s (%s) at %s:%d\n", st.Function, argsText(st.Args), st.File, st.Line)
		r.printSourceLine(st.File, st.Line)
	}
	listedOnce = false
	return nil
}

// threadApply is gdb's thread apply (all | N…) COMMAND: COMMAND run with
// each of those threads selected in turn (all: the highest number first,
// as gdb does), each under a "Thread N (…):" header; a thread where it
// fails says why and the others go on. The selection is restored.
func (r *REPL) threadApply(arg string) error {
	f := strings.Fields(arg)
	var nums []int
	i := 0
	for ; i < len(f); i++ {
		n, err := strconv.Atoi(f[i])
		if err != nil || n <= 0 {
			break
		}
		nums = append(nums, n)
	}
	all := len(nums) == 0 && len(f) > 0 && f[0] == "all"
	if all {
		i = 1
	}
	if len(nums) == 0 && !all {
		return fmt.Errorf("Please specify a thread ID list or \"all\".")
	}
	if i >= len(f) {
		return fmt.Errorf("Please specify a command following the thread ID list")
	}
	cmd := strings.Join(f[i:], " ")
	ts, err := r.S.Threads()
	if err != nil {
		return err
	}
	byNum := map[int]session.Thread{}
	for _, t := range ts {
		byNum[t.Number] = t
	}
	if all {
		for _, t := range ts {
			nums = append(nums, t.Number)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(nums)))
	}
	s, thread, frame := r.S, r.S.Thread, r.S.Frame
	defer func() { s.Thread, s.Frame = thread, frame }()
	for _, n := range nums {
		t, ok := byNum[n]
		if !ok {
			r.printf("warning: Unknown thread %d\n", n)
			continue
		}
		name := ""
		if t.Name != "" {
			name = fmt.Sprintf(" %q", t.Name)
		}
		r.printf("\nThread %d (Thread 0x%x (LWP %d)%s):\n", t.Number, t.Ident, t.NativeID, name)
		s.Thread, s.Frame = t.Ident, 0
		if err := r.Exec(cmd); err != nil {
			if r.Report(err) {
				return nil
			}
		}
	}
	return nil
}

func (r *REPL) cmdDetach(arg string) error {
	r.quit = true
	if ended, _ := r.sayEnd(); ended {
		return nil
	}
	infs, err := r.G.Detach()
	r.waitProbes() // what the agents sent before they left
	for _, inf := range infs {
		r.printf("[Inferior %d (process %d) detached]\n", inf.Num, inf.PID)
	}
	return err
}

func (r *REPL) cmdEcho(arg string) error {
	r.printf("%s", strings.ReplaceAll(arg, `\n`, "\n"))
	return nil
}

func (r *REPL) cmdHelp(arg string) error {
	if c := lookup(strings.TrimSpace(arg)); c != nil {
		r.printf("%s\n", c.help)
		return nil
	}
	var lines []string
	for _, c := range commands {
		lines = append(lines, fmt.Sprintf("  %-10s %s", c.names[0], c.help))
	}
	sort.Strings(lines)
	r.printf("Commands (gdb names and abbreviations):\n%s\n", strings.Join(lines, "\n"))
	return nil
}

// Report prints a command's error the way gdb does (one line), and says
// whether the session is over.
func (r *REPL) Report(err error) bool {
	if err == nil {
		return r.quit
	}
	if errors.Is(err, agent.ErrClosed) {
		if ended, _ := r.sayEnd(); !ended {
			r.printf("The process exited or the agent ended; krait detached.\n")
		}
		r.quit = true
		return true
	}
	r.printf("%s\n", err)
	return false
}

// Run reads commands until quit: with line editing and history when stdin
// is a terminal, else line by line (as gdb does).
func (r *REPL) Run(in *os.File) error {
	// krait killed politely: detach first.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		if _, ok := <-sigs; ok {
			_, _ = r.G.Detach()
			os.Exit(1)
		}
	}()
	defer signal.Stop(sigs)
	stop := make(chan struct{})
	defer close(stop)
	if isTerminal(in) {
		return r.runTerminal(stop) // in is os.Stdin: readline reads it
	}
	go r.watch(stop)
	// As gdb: Ctrl-C stops a wait for a stop, and is otherwise ignored.
	r.intr = make(chan os.Signal, 1)
	signal.Notify(r.intr, os.Interrupt)
	defer signal.Stop(r.intr)
	sc := bufio.NewScanner(in)
	for {
		r.flush(false)
		if !sc.Scan() {
			break
		}
		select { // a Ctrl-C at the prompt is not meant for the next wait
		case <-r.intr:
		default:
		}
		if r.Report(r.Exec(sc.Text())) {
			return nil
		}
	}
	return r.cmdDetach("")
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
