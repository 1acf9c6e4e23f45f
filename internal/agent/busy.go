package agent

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"krait/internal/cpython"
)

// ErrBusy: another krait session is in the process.
var ErrBusy = errors.New("already being debugged by krait")

// busyError says which process is being debugged, and by which agent
// thread.
type busyError struct {
	pid     int
	threads []string
}

func (e *busyError) Error() string {
	return fmt.Sprintf("process %d is already being debugged by krait (agent thread %s); detach that session first", e.pid, strings.Join(e.threads, ", "))
}

func (e *busyError) Unwrap() error { return ErrBusy }

// agentThread is the name of the thread krait's agent runs in.
const agentThread = "krait-agent"

// busyGrace is how long krait waits for an agent thread with no socket
// (an agent leaving after its session, or one still starting) to end
// before it calls the process busy.
const busyGrace = 2 * time.Second

// checkNoSession refuses a process that already runs krait's agent: a
// thread named krait-agent that has its socket in the target's /tmp
// (open as tmp), or that is still there after busyGrace. known says
// whether krait could read the thread names (and so knows there is no
// agent).
func checkNoSession(py *cpython.Python, tmp int, o owner) (known bool, err error) {
	deadline := time.Now().Add(busyGrace)
	for {
		ts, err := py.ThreadsNamed(agentThread)
		if err != nil {
			return false, nil // no names to go by: let the attach tell
		}
		if len(ts) == 0 {
			return true, nil
		}
		if len(liveSessions(tmp, o.PID, o.Start)) > 0 || time.Now().After(deadline) {
			e := &busyError{pid: o.PID}
			for _, t := range ts {
				if t.NativeID != 0 {
					e.threads = append(e.threads, fmt.Sprint(t.NativeID))
				} else {
					e.threads = append(e.threads, fmt.Sprintf("0x%x", t.ThreadID))
				}
			}
			return true, e
		}
		time.Sleep(50 * time.Millisecond)
	}
}
