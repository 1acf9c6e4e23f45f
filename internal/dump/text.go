package dump

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
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
				if f.Library != "" && !strings.HasPrefix(f.Function, filepath.Base(f.Library)+"+") {
					fmt.Fprintf(w, "    %s (%s)\n", f.Function, filepath.Base(f.Library))
				} else {
					fmt.Fprintf(w, "    %s\n", f.Function)
				}
				continue
			}
			fn := f.Qualname
			if fn == "" {
				fn = f.Function
			}
			fmt.Fprintf(w, "    %s (%s:%d)\n", fn, f.File, f.Line)
			if f.Error != "" {
				fmt.Fprintf(w, "        <%s>\n", f.Error)
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
				fmt.Fprintf(w, "        %s:\n", grp.title)
				for _, l := range grp.ls {
					v := l.Value
					if width > 0 && len([]rune(v)) > width {
						v = string([]rune(v)[:width]) + "..."
					}
					fmt.Fprintf(w, "            %s: %s\n", l.Name, v)
				}
			}
		}
		if t.NativeError != "" {
			fmt.Fprintf(w, "    <native stack incomplete: %s>\n", t.NativeError)
		}
	}
}
