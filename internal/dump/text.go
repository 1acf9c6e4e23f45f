package dump

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"krait/internal/unwind"
)

// PauseNoteMillis: a pause longer than this is shown in text output.
const PauseNoteMillis = 50

// WriteText prints a dump the way py-spy dump does: a header, then each
// thread with its frames, innermost first, and locals under their frame.
func WriteText(w io.Writer, r *Result, width int) {
	fmt.Fprintf(w, "Process %d: %s\n", r.PID, strings.Join(r.Command, " "))
	fmt.Fprintf(w, "Python v%s (%s)\n", r.PythonVersion, r.Binary)
	if r.Core != "" {
		fmt.Fprintf(w, "Core file %s\n", r.Core)
	}
	if r.Interpreters > 1 {
		fmt.Fprintf(w, "%d interpreters\n", r.Interpreters)
	}
	if r.Paused && r.PauseMillis > PauseNoteMillis {
		// A pause people could notice: say how long the process was held.
		fmt.Fprintf(w, "Process held %.1fms while krait read it\n", r.PauseMillis)
	}
	for _, t := range r.Threads {
		fmt.Fprintln(w)
		var state []string
		switch {
		case r.Core != "": // a core does not say what threads were doing
		case t.Idle:
			state = append(state, "idle")
		default:
			state = append(state, "active")
		}
		if t.GIL {
			state = append(state, "gil")
		}
		if t.NativeOnly {
			state = append(state, "no Python")
		}
		name := ""
		if t.Name != nil {
			name = fmt.Sprintf(" %q", *t.Name)
		}
		native := ""
		if t.NativeID != nil {
			native = fmt.Sprintf(" [tid %d]", *t.NativeID)
		}
		interp := ""
		if r.Interpreters > 1 && !t.NativeOnly {
			interp = fmt.Sprintf(" interpreter %d", t.Interpreter)
		}
		st := ""
		if len(state) > 0 {
			st = " (" + strings.Join(state, ", ") + ")"
		}
		fmt.Fprintf(w, "Thread 0x%x%s%s%s%s\n", t.ThreadID, native, name, interp, st)
		if t.Error != "" {
			fmt.Fprintf(w, "    <stack incomplete: %s>\n", t.Error)
		}
		for _, f := range t.Frames {
			if f.Native {
				writeNativeFrame(w, f)
				continue
			}
			writeFrame(w, f, "    ", width)
		}
		if t.NativeError != "" {
			fmt.Fprintf(w, "    <native stack incomplete: %s>\n", t.NativeError)
		}
		if len(t.Tasks) > 0 {
			fmt.Fprintf(w, "    asyncio event loop 0x%x, %d tasks:\n", *t.Loop, len(t.Tasks))
			writeTaskTree(w, t.Tasks, "    ", width)
		}
	}
	if len(r.Tasks) > 0 {
		fmt.Fprintf(w, "\nasyncio tasks of loops no thread is running (%d):\n", len(r.Tasks))
		writeTaskTree(w, r.Tasks, "", width)
	}
	if r.TasksError != "" {
		fmt.Fprintf(w, "\n<asyncio tasks unreadable: %s>\n", r.TasksError)
	}
}

// writeNativeFrame prints a native frame: its function (marked when
// inlined, as PyStack marks it), its library, and where the library has
// DWARF its source line, as gdb shows it:
// "pysleep (inlined) (libpython3.12.so.1.0) at Modules/timemodule.c:2182".
func writeNativeFrame(w io.Writer, f *Frame) {
	line := "    " + f.Function
	if f.Inlined {
		line += " (inlined)"
	}
	if f.Library != "" && !strings.HasPrefix(f.Function, filepath.Base(f.Library)+"+") {
		line += " (" + filepath.Base(f.Library) + ")"
	}
	if f.File != "" {
		line += " at " + unwind.ShortFile(f.File, f.compDir)
		if f.Line > 0 {
			line += fmt.Sprintf(":%d", f.Line)
		}
	}
	fmt.Fprintln(w, line)
}

// writeFrame prints one frame and its locals at an indentation.
func writeFrame(w io.Writer, f *Frame, indent string, width int) {
	fn := f.Qualname
	if fn == "" {
		fn = f.Function
	}
	fmt.Fprintf(w, "%s%s (%s:%d)\n", indent, fn, f.File, f.Line)
	if f.Error != "" {
		fmt.Fprintf(w, "%s    <%s>\n", indent, f.Error)
	}
	var args, locals []*Local
	for _, l := range f.Locals {
		if l.Arg {
			args = append(args, l)
		} else {
			locals = append(locals, l)
		}
	}
	for _, grp := range []struct {
		title string
		ls    []*Local
	}{{"Arguments", args}, {"Locals", locals}} {
		if len(grp.ls) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s    %s:\n", indent, grp.title)
		for _, l := range grp.ls {
			v := l.Value
			if width > 0 && len([]rune(v)) > width {
				v = string([]rune(v)[:width]) + "..."
			}
			fmt.Fprintf(w, "%s        %s: %s\n", indent, l.Name, v)
		}
	}
}

// writeTaskTree prints tasks as a tree of who awaits whom (as CPython's
// `python -m asyncio pstree`): tasks nobody awaits at the top, each
// followed by its coroutine stack and the tasks it awaits. A task awaited
// by several is shown under each; one met again on its own path (a cycle)
// is named, not expanded.
func writeTaskTree(w io.Writer, tasks []*Task, indent string, width int) {
	byID := map[uint64]*Task{}
	for _, t := range tasks {
		byID[t.ID] = t
	}
	var roots []*Task
	for _, t := range tasks {
		awaited := false
		for _, a := range t.AwaitedBy {
			if byID[a] != nil {
				awaited = true
			}
		}
		if !awaited {
			roots = append(roots, t)
		}
	}
	if len(roots) == 0 { // every task in a cycle
		roots = tasks
	}
	onPath := map[uint64]bool{}
	var walk func(t *Task, prefix string, last bool)
	walk = func(t *Task, prefix string, last bool) {
		branch, cont := "├── ", "│   "
		if last {
			branch, cont = "└── ", "    "
		}
		fmt.Fprintf(w, "%s%s%s\n", prefix, branch, taskHeadline(t))
		if onPath[t.ID] {
			fmt.Fprintf(w, "%s%s<awaits itself through the tasks above>\n", prefix, cont)
			return
		}
		onPath[t.ID] = true
		defer delete(onPath, t.ID)
		var kids []*Task
		for _, a := range t.Awaits {
			if k := byID[a]; k != nil {
				kids = append(kids, k)
			}
		}
		bar := "    "
		if len(kids) > 0 {
			bar = "│   "
		}
		if t.Error != "" {
			fmt.Fprintf(w, "%s%s%s<%s>\n", prefix, cont, bar, t.Error)
		}
		for _, f := range t.Stack {
			writeFrame(w, f, prefix+cont+bar, width)
		}
		for i, k := range kids {
			walk(k, prefix+cont, i == len(kids)-1)
		}
	}
	for i, t := range roots {
		walk(t, indent, i == len(roots)-1)
	}
}

func taskHeadline(t *Task) string {
	name := "Task"
	if t.Name != nil {
		name = fmt.Sprintf("Task %q", *t.Name)
	}
	state := t.State
	if t.Running {
		state += ", running"
	}
	s := fmt.Sprintf("%s (0x%x, %s)", name, t.ID, state)
	if t.Awaiting != "" {
		s += " awaiting " + t.Awaiting
	}
	return s
}
