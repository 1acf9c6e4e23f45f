package repl

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// display is one expression shown at every stop (gdb's display).
type display struct {
	n    int
	expr string
}

func (r *REPL) cmdDisplay(arg string) error {
	expr := strings.TrimSpace(arg)
	if expr == "" {
		r.doDisplays()
		return nil
	}
	r.nextDisplay++
	d := display{r.nextDisplay, expr}
	r.displays = append(r.displays, d)
	if r.S.Stopped() != nil {
		r.showDisplay(d)
	}
	return nil
}

func (r *REPL) cmdUndisplay(arg string) error {
	if strings.TrimSpace(arg) == "" {
		r.displays = nil
		return nil
	}
	for _, a := range strings.Fields(arg) {
		n, err := strconv.Atoi(a)
		if err != nil {
			return fmt.Errorf("Arguments must be display numbers.")
		}
		found := false
		for i, d := range r.displays {
			if d.n == n {
				r.displays = append(r.displays[:i], r.displays[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("No display number %d.", n)
		}
	}
	return nil
}

// doDisplays shows every display expression (after a stop).
func (r *REPL) doDisplays() {
	if r.S.Stopped() == nil {
		return
	}
	for _, d := range r.displays {
		r.showDisplay(d)
	}
}

func (r *REPL) showDisplay(d display) {
	v, err := r.S.Eval(d.expr, "safe")
	if err != nil {
		r.printf("%d: %s = <error: %v>\n", d.n, d.expr, err)
		return
	}
	r.printf("%d: %s = %s\n", d.n, d.expr, v.Value)
}

func (r *REPL) infoDisplay() error {
	if len(r.displays) == 0 {
		r.printf("There are no auto-display expressions now.\n")
		return nil
	}
	r.printf("Auto-display expressions now in effect:\nNum Enb Expression\n")
	for _, d := range r.displays {
		r.printf("%d:   y  %s\n", d.n, d.expr)
	}
	return nil
}

func (r *REPL) cmdWhatis(arg string) error {
	expr := strings.TrimSpace(arg)
	if expr == "" {
		return fmt.Errorf("Argument required (expression to compute).")
	}
	v, err := r.S.Eval(expr, "safe")
	if err != nil {
		return err
	}
	r.printf("type = %s\n", v.Type)
	return nil
}

// infoSource describes the selected frame's source file, as gdb does.
func (r *REPL) infoSource() error {
	if r.S.Stopped() == nil {
		r.printf("No current source file.\n")
		return nil
	}
	frames, err := r.S.Stack()
	if err != nil {
		return err
	}
	if r.S.Frame >= len(frames) {
		r.printf("No current source file.\n")
		return nil
	}
	f := frames[r.S.Frame].File
	r.printf("Current source file is %s\nLocated in %s\n", filepath.Base(f), f)
	if lines, err := r.S.Source(f, 1, 100000); err == nil {
		r.printf("Contains %d lines.\n", len(lines))
	}
	r.printf("Source language is python.\n")
	return nil
}
