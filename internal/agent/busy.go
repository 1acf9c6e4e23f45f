package agent

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

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
		if len(liveSessions(tmp, o.PID, o.Start)) > 0 {
			// The agent of a krait that was killed waits for a connection
			// that will never come: tell it to leave, and wait for it.
			if n, live := dismissOrphans(tmp, o); n > 0 && !live {
				deadline = time.Now().Add(busyGrace)
				time.Sleep(50 * time.Millisecond)
				continue
			}
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

// dismissOrphans tells the agents in target o's /tmp whose krait is dead
// (no longer running, by pid and start time, in krait's own pid
// namespace) to leave: an agent whose first connection does not say hello
// with its token ends its session at once. It reports how many it told,
// and whether a session of a live krait (or one krait cannot tell about)
// is there.
func dismissOrphans(tmp int, o owner) (dismissed int, live bool) {
	ns := pidNS()
	scanDirs(tmp, func(name string, fd int, st *unix.Stat_t, d owner) {
		var sock unix.Stat_t
		if d.PID != o.PID || d.Start != o.Start || unix.Fstatat(fd, "sock", &sock, unix.AT_SYMLINK_NOFOLLOW) != nil {
			return
		}
		if d.Krait == 0 || d.PIDNS != ns || same(d.Krait, d.KraitStart) {
			live = true
			return
		}
		if conn, err := dialPeer(fmt.Sprintf("/proc/self/fd/%d/sock", fd), o.PID, time.Second); err == nil {
			conn.Close()
			dismissed++
		}
	})
	return dismissed, live
}
