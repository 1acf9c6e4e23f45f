package agent

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"krait/internal/cpython"
	"krait/internal/target"
)

// ErrBusy: another krait session is in the process.
var ErrBusy = errors.New("already being debugged by krait")

// busyError says which process is being debugged, and by which agent
// thread.
type busyError struct {
	pid     int
	threads []string
	gone    bool // the krait of that session is gone (its agent waits for it)
}

func (e *busyError) Error() string {
	if e.gone {
		return fmt.Sprintf("process %d is already being debugged by krait (agent thread %s), whose krait is gone; krait attach --force makes that agent leave", e.pid, strings.Join(e.threads, ", "))
	}
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
	begin := time.Now()
	deadline := begin.Add(busyGrace)
	for {
		ts, err := py.ThreadsNamed(agentThread)
		for i := 0; i < 5 && errors.Is(err, target.ErrBadAddress); i++ {
			// Read while the process runs: a thread state freed as krait
			// followed it. Look again.
			py.Reset()
			ts, err = py.ThreadsNamed(agentThread)
		}
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
		live := len(liveSessions(tmp, o.PID, o.Start)) > 0
		gone := live && abandonedOnly(tmp, o.PID, o.Start)
		if time.Since(begin) < orphanGrace && (gone || !live && time.Now().After(deadline) && orphanStarting(tmp, o.PID, o.Start)) {
			// Only agents of kraits that are gone: one that was serving
			// its krait is leaving (resuming what it held, removing what
			// it set: seconds in a process busy on every core), one still
			// loading will be told to leave once it listens (above).
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if live || time.Now().After(deadline) {
			e := &busyError{pid: o.PID, gone: abandonedOnly(tmp, o.PID, o.Start)}
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

// liveKraitError names the krait whose session --force will not end.
type liveKraitError struct {
	pid, krait int
}

func (e *liveKraitError) Error() string {
	return fmt.Sprintf("process %d is being debugged by krait (process %d), which is still running; detach that session first (--force only ends a session whose krait is gone)", e.pid, e.krait)
}

func (e *liveKraitError) Unwrap() error { return ErrBusy }

// orphanGrace is how long attach waits for the agent of a krait that is
// gone to start listening (and then be told to leave): an agent loads in
// a second or two, up to several seconds in a process busy on every core.
const orphanGrace = 15 * time.Second

// orphanStarting says whether an agent directory for process pid (started
// at start) was made by a krait that is gone and has no socket yet: its
// agent, if one runs, is still loading.
func orphanStarting(tmp int, pid int, start uint64) bool {
	found := false
	scanDirs(tmp, func(name string, fd int, st *unix.Stat_t, o owner) {
		var sock unix.Stat_t
		if o.PID == pid && o.Start == start && !same(o.Krait, o.KraitStart) &&
			unix.Fstatat(fd, "sock", &sock, unix.AT_SYMLINK_NOFOLLOW) != nil {
			found = true
		}
	})
	return found
}

// abandonedOnly says whether every session with a socket for process pid
// (started at start) was made by a krait that is gone (and there is one).
func abandonedOnly(tmp int, pid int, start uint64) bool {
	dead, alive := 0, 0
	scanDirs(tmp, func(name string, fd int, st *unix.Stat_t, o owner) {
		var sock unix.Stat_t
		if o.PID != pid || o.Start != start || unix.Fstatat(fd, "sock", &sock, unix.AT_SYMLINK_NOFOLLOW) != nil {
			return
		}
		if same(o.Krait, o.KraitStart) {
			alive++
		} else {
			dead++
		}
	})
	return dead > 0 && alive == 0
}

// ReleaseAbandoned is attach --force: it makes the agent of a session
// whose krait is gone leave process pid. Such an agent waits for a
// connection that will never come (its krait died before connecting);
// krait connects to its socket (checking with SO_PEERCRED that the target
// listens on it) and closes without a word, which the agent takes, as any
// end of connection, as its cue to clean up and leave. It never touches
// the session of a krait that still runs (a *liveKraitError, ErrBusy),
// nor a directory it cannot trust (see scanDirs). It returns how many
// agents it told to leave; attach then waits for them to go (busyGrace).
func ReleaseAbandoned(pid int) (int, error) {
	start, alive := procStart(pid)
	if !alive {
		return 0, nil
	}
	tmp, err := openTargetTmp(pid)
	if err != nil {
		return 0, err
	}
	defer unix.Close(tmp)
	var live *liveKraitError
	released := 0
	scanDirs(tmp, func(name string, fd int, st *unix.Stat_t, o owner) {
		var sock unix.Stat_t
		if o.PID != pid || o.Start != start || unix.Fstatat(fd, "sock", &sock, unix.AT_SYMLINK_NOFOLLOW) != nil ||
			sock.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return
		}
		if same(o.Krait, o.KraitStart) {
			live = &liveKraitError{pid: pid, krait: o.Krait}
			return
		}
		conn, err := dialPeer(fmt.Sprintf("/proc/self/fd/%d/sock", fd), pid, time.Second)
		if err != nil {
			return
		}
		conn.Close()
		released++
	})
	if live != nil {
		return released, live
	}
	return released, nil
}
