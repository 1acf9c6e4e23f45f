package repl

import (
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"krait/internal/dprintf"
	"krait/internal/session"
)

// probes is what the REPL keeps of its dprintfs: their formats by
// breakpoint number, and the goroutine printing their lines.
type probes struct {
	mu      sync.Mutex
	formats map[int]*dprintf.Format // by the group's breakpoint number
	started bool
}

func (r *REPL) cmdDprintf(arg string) error {
	spec, err := dprintf.Parse(arg)
	if err != nil {
		return err
	}
	if spec.Location == "" {
		return fmt.Errorf("Format string required")
	}
	r.startProbes()
	bp, err := r.G.Dprintf(spec.Location, "", spec.Format.Text, spec.Args, spec.Format.Modes())
	if err != nil {
		return err
	}
	r.pr.mu.Lock()
	r.pr.formats[bp.ID] = spec.Format
	r.pr.mu.Unlock()
	if bp.Pending {
		r.printf("Dprintf %d (%s) pending.\n", bp.ID, spec.Location)
		return nil
	}
	fn := ""
	if bp.Function != "" {
		fn = " (" + bp.Function + ")"
	}
	if len(bp.Locations) > 1 {
		r.printf("Dprintf %d at %s:%d: %s. (%d locations)\n", bp.ID, bp.File, bp.Line, spec.Location, len(bp.Locations))
	} else {
		r.printf("Dprintf %d at %s:%d%s\n", bp.ID, bp.File, bp.Line, fn)
	}
	if bp.Moved {
		r.printf("(line %s has no code; moved to line %d)\n", spec.Location[strings.LastIndexByte(spec.Location, ':')+1:], bp.Line)
	}
	if bp.Warning != "" {
		r.printf("warning: %s\n", bp.Warning)
	}
	return nil
}

// startProbes starts printing the session's probe events, once.
func (r *REPL) startProbes() {
	r.pr.mu.Lock()
	defer r.pr.mu.Unlock()
	if r.pr.started {
		return
	}
	r.pr.started = true
	r.pr.formats = map[int]*dprintf.Format{}
	go r.printProbes(r.G.Probes())
}

// printProbes prints each dprintf crossing as one line (several, if its
// format has newlines), prefixed with the time, the process and the
// thread, and says how many events were dropped, by kind.
func (r *REPL) printProbes(ch <-chan session.ProbeBatch) {
	for b := range ch {
		if b.Inf == nil {
			continue // (FlushProbes' marker)
		}
		var out strings.Builder
		for _, ev := range b.Events {
			if ev["kind"] != "dprintf" {
				continue
			}
			r.dprintfLine(&out, b.Inf, ev)
		}
		kinds := make([]string, 0, len(b.Dropped))
		for k := range b.Dropped {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			if n := b.Dropped[k]; n > 0 {
				who := ""
				if r.G.Server() {
					who = b.Inf.Label() + " "
				}
				fmt.Fprintf(&out, "%s[%s: %d events dropped]\n", who, k, n)
			}
		}
		if out.Len() > 0 {
			r.printf("%s", out.String())
		}
	}
}

func (r *REPL) dprintfLine(out *strings.Builder, inf *session.Inferior, ev map[string]any) {
	id, _ := ev["bp"].(float64)
	ident, _ := ev["thread"].(float64)
	sec, _ := ev["time"].(float64)
	name, _ := ev["thread_name"].(string)
	r.pr.mu.Lock()
	f := r.pr.formats[int(id)]
	r.pr.mu.Unlock()
	var text string
	switch ce, _ := ev["cond_error"].(string); {
	case ce != "":
		text = fmt.Sprintf("<error in dprintf %d's condition: %s>", int(id), ce)
	case f == nil:
		text = fmt.Sprintf("<dprintf %d>", int(id))
	default:
		text = strings.TrimSuffix(f.Sprint(dprintf.Values(ev["values"], ev["types"])), "\n")
	}
	if name != "" {
		name = fmt.Sprintf(" %q", name)
	}
	t := time.Unix(0, int64(sec*1e9))
	fmt.Fprintf(out, "[%s process %d thread %d%s] %s\n", t.Format("15:04:05.000000"), inf.PID,
		inf.S.ThreadNumber(int64(ident)), name, text)
}

// waitProbes waits (2 s at most) until everything the agents sent before
// they left is printed.
func (r *REPL) waitProbes() {
	r.pr.mu.Lock()
	started := r.pr.started
	r.pr.mu.Unlock()
	if started {
		r.G.FlushProbes(2 * time.Second)
	}
}

// Collect, in batch mode, keeps printing probe output for d, or until the
// session ends or krait is told to stop (SIGINT, SIGTERM, SIGHUP); the
// caller then detaches.
func (r *REPL) Collect(d time.Duration) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.After(d)
	for {
		r.flush(true)
		select {
		case <-end:
			return
		case <-sigs:
			return
		case <-r.G.Done():
			return
		case <-tick.C:
		}
	}
}

// cEscape writes s as the inside of a C string literal, as gdb lists a
// dprintf's format.
func cEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`, "\r", `\r`, "\a", `\a`, "\b", `\b`,
		"\f", `\f`, "\v", `\v`, "\x1b", `\e`)
	return r.Replace(s)
}
