package repl

import (
	"fmt"
	"strconv"
	"strings"

	"krait/internal/session"
)

// Breakpoint commands, gdb's `commands [N…]` … `end`: lines run each time
// one of those breakpoints stops a thread, after the stop is reported
// (`silent` first: not reported). A command that resumes the thread
// (continue, step, next, finish, until) resumes it without waiting and
// ends the list, as in gdb; the wait that saw the stop then goes on
// waiting.

// bpCommands are the REPL's breakpoint command lists, by breakpoint.
type bpCommands struct {
	lists map[int][]string
	last  int // the breakpoint set last: commands without N apply to it
	// collecting: the lines of a commands … end being typed, for ids.
	collecting bool
	ids        []int
	lines      []string
}

// resumers are the commands that let the stopped thread go.
var resumers = map[string]string{"continue": "continue", "c": "continue", "cont": "continue",
	"step": "step", "s": "step", "next": "next", "n": "next", "finish": "finish", "fin": "finish",
	"until": "until", "u": "until"}

// cmdCommands starts collecting the commands of breakpoints N… (the last
// one set without N).
func (r *REPL) cmdCommands(arg string) error {
	var ids []int
	for _, f := range strings.Fields(arg) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return fmt.Errorf("Invalid breakpoint number: %s", f)
		}
		ids = append(ids, n)
	}
	if len(ids) == 0 {
		if r.bc.last == 0 {
			return fmt.Errorf("No breakpoints specified.")
		}
		ids = []int{r.bc.last}
	}
	bps, err := r.G.Breakpoints()
	if err != nil {
		return err
	}
	known := map[int]bool{}
	for _, b := range bps {
		known[b.ID] = true
	}
	for _, id := range ids {
		if !known[id] {
			return fmt.Errorf("No breakpoint number %d.", id)
		}
	}
	r.bc.collecting, r.bc.ids, r.bc.lines = true, ids, nil
	if r.rl != nil {
		var s []string
		for _, id := range ids {
			s = append(s, strconv.Itoa(id))
		}
		r.printf("Type commands for breakpoint(s) %s, one per line.\nEnd with a line saying just \"end\".\n", strings.Join(s, " "))
	}
	return nil
}

// collect takes one line while commands are being typed; false when none
// are.
func (r *REPL) collect(line string) bool {
	if !r.bc.collecting {
		return false
	}
	if line = strings.TrimSpace(line); line == "end" {
		if r.bc.lists == nil {
			r.bc.lists = map[int][]string{}
		}
		for _, id := range r.bc.ids {
			if len(r.bc.lines) == 0 {
				delete(r.bc.lists, id)
			} else {
				r.bc.lists[id] = r.bc.lines
			}
		}
		r.bc.collecting, r.bc.ids, r.bc.lines = false, nil, nil
	} else if line != "" {
		r.bc.lines = append(r.bc.lines, line)
	}
	return true
}

// prompt is the terminal's prompt: gdb's ">" while commands are typed.
func (r *REPL) prompt() string {
	if r.bc.collecting {
		return ">"
	}
	return "(krait) "
}

// stopCommands are the commands of the breakpoint st stopped at, if any.
func (r *REPL) stopCommands(st *session.Stop) []string {
	if st.Reason != "breakpoint" {
		return nil
	}
	return r.bc.lists[st.BP]
}

// runStopCommands runs a stop's breakpoint commands; it says whether one
// of them resumed the thread.
func (r *REPL) runStopCommands(cmds []string) bool {
	for _, line := range cmds {
		name := strings.Fields(line)[0]
		if name == "silent" {
			continue
		}
		if cmd, ok := resumers[name]; ok {
			if r.Report(r.S.Resume(cmd, false)) {
				return false
			}
			return true
		}
		if r.Report(r.Exec(line)) {
			return false
		}
	}
	return false
}

// listCommands prints breakpoint id's commands for info breakpoints, as
// gdb does.
func (r *REPL) listCommands(id int) {
	for _, l := range r.bc.lists[id] {
		r.printf("        %s\n", l)
	}
}
