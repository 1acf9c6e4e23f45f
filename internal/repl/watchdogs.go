package repl

import (
	"time"

	"krait/internal/session"
)

// watchdogLines say, under a stop line, what will kill the stopped
// request (or its process) and when, or that krait holds it off.
func (r *REPL) watchdogLines(inf *session.Inferior) {
	now := time.Now()
	for _, w := range inf.WatchdogsAt() {
		switch {
		case w.Held:
			r.printf("[%s %s: %s]\n", w.Name, session.Secs(w.Timeout), w.What)
		case w.FromStart:
			r.printf("warning: %s %s will fire by %s at the latest (%s after the request began): %s\n",
				w.Name, session.Secs(w.Timeout), now.Add(w.Timeout).Format("15:04:05"), session.Secs(w.Timeout), w.What)
		default:
			r.printf("warning: %s %s will fire at %s if the thread stays stopped: %s\n",
				w.Name, session.Secs(w.Timeout), now.Add(w.Timeout).Format("15:04:05"), w.What)
		}
	}
}
