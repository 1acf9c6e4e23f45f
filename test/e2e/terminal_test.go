package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptySession runs krait attach on a pseudo-terminal, as a user at a
// terminal would, and collects everything it shows.
type ptySession struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
}

func startPTY(t *testing.T, home string, cols uint16, args ...string) *ptySession {
	t.Helper()
	cmd := exec.Command(kraitBin, args...)
	cmd.Env = append(os.Environ(), "HOME="+home, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	s := &ptySession{t: t, cmd: cmd, tty: tty, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			if n > 0 {
				s.mu.Lock()
				s.out.Write(buf[:n])
				s.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); tty.Close() })
	return s
}

func (s *ptySession) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// waitFor waits until the screen output (from offset from) contains want.
func (s *ptySession) waitFor(from int, want string, timeout time.Duration) int {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		txt := s.text()
		if i := strings.Index(txt[from:], want); i >= 0 {
			return from + i + len(want)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the terminal did not show %q within %s; it shows:\n%s", want, timeout, txt[from:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *ptySession) typeKeys(keys string) {
	s.t.Helper()
	if _, err := s.tty.Write([]byte(keys)); err != nil {
		s.t.Fatal(err)
	}
}

// TestTerminal drives krait attach through a pseudo-terminal: a thread
// that hits a breakpoint while the user sits at the prompt is announced at
// once (no command typed); Ctrl-C at the prompt does nothing (twice: it
// never detaches); tab completes commands, info's subcommands, locals, an
// object's attributes and a dict's keys;
// the history file is the user's alone (0600); Ctrl-D detaches and leaves.
func TestTerminal(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" && py.minor != "3.9" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			srv := startAttachServer(t, py)
			home := t.TempDir()
			s := startPTY(t, home, 120, "attach", fmt.Sprint(srv.p.pid()))
			at := s.waitFor(0, "(krait) ", 30*time.Second)
			s.typeKeys(fmt.Sprintf("break views.py:%d\r", srv.marks["report_call"]))
			// The breakpoint's line, not a prompt: readline redraws the
			// prompt as it echoes each key typed.
			at = s.waitFor(at, "Breakpoint 1 at ", 10*time.Second)
			resp := srv.getAsync(t, "/report?n=3")
			// Announced at once, with no command typed, and the prompt back.
			at = s.waitFor(at, "Breakpoint 1, report (n=3)", 15*time.Second)
			at = s.waitFor(at, "(krait) ", 5*time.Second)
			s.typeKeys("\x03")
			s.typeKeys("\x03")
			time.Sleep(300 * time.Millisecond)
			s.typeKeys("info thr\t\r")
			at = s.waitFor(at, "Target Id", 10*time.Second)
			s.typeKeys("print la\t")
			at = s.waitFor(at, "print label", 10*time.Second)
			s.typeKeys("\r")
			at = s.waitFor(at, "$1 = 'report-3'", 10*time.Second)
			// An object's attributes: the first Tab lists them, the
			// second selects the first, Enter takes it, Enter runs it.
			s.typeKeys("print order.\t")
			at = s.waitFor(at, "pk", 10*time.Second)
			at = s.waitFor(at, "total", 10*time.Second)
			s.typeKeys("\t")
			time.Sleep(300 * time.Millisecond)
			s.typeKeys("\r")
			at = s.waitFor(at, "print order.pk", 10*time.Second)
			s.typeKeys("\r")
			at = s.waitFor(at, "$2 = 3", 10*time.Second)
			// A dict's key.
			s.typeKeys("print env['\t")
			at = s.waitFor(at, "print env['HOME", 10*time.Second)
			s.typeKeys("']\r")
			at = s.waitFor(at, "$3 = '/srv/shop'", 10*time.Second)
			// A method of a value in the history.
			s.typeKeys("print $1.up\t")
			at = s.waitFor(at, "print $1.upper", 10*time.Second)
			s.typeKeys("()\r")
			at = s.waitFor(at, "$4 = 'REPORT-3'", 10*time.Second)
			// commands … end at gdb's ">" prompt.
			s.typeKeys("commands\r")
			at = s.waitFor(at, "End with a line saying just \"end\".", 10*time.Second)
			at = s.waitFor(at, "> ", 10*time.Second)
			s.typeKeys("echo hit\\n\r")
			at = s.waitFor(at, "echo hit", 10*time.Second)
			s.typeKeys("end\r")
			s.typeKeys("info breakpoints\r")
			at = s.waitFor(at, "        echo hit\\n", 10*time.Second)
			s.typeKeys("cont\t\r")
			select {
			case body := <-resp:
				if body == nil {
					t.Fatal("the stopped request failed")
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the request did not complete after continue")
			}
			s.typeKeys("\x03") // Ctrl-C ends the wait for a stop; krait stays
			at = s.waitFor(at, "(krait) ", 10*time.Second)
			s.typeKeys("\x04")
			s.waitFor(at, "detached]", 10*time.Second)
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				s.cmd.Process.Signal(syscall.SIGQUIT)
				time.Sleep(time.Second)
				t.Fatalf("krait did not leave after Ctrl-D:\n%s", s.text()[at:])
			}
			fi, err := os.Stat(filepath.Join(home, ".krait_history"))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("history file: %v, mode %v (want 0600)", err, fi.Mode())
			}
			checkClean(t, srv)
		})
	}
}

// TestTerminalNoColumns: a terminal that reports no columns; SIGINT and
// Ctrl-C at the prompt leave krait attached and working.
func TestTerminalNoColumns(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			srv := startAttachServer(t, py)
			s := startPTY(t, t.TempDir(), 0, "attach", fmt.Sprint(srv.p.pid()))
			at := s.waitFor(0, "(krait) ", 30*time.Second)
			s.typeKeys("\x03")
			_ = s.cmd.Process.Signal(syscall.SIGINT)
			time.Sleep(300 * time.Millisecond)
			s.typeKeys("info threads\r")
			at = s.waitFor(at, "Target Id", 10*time.Second)
			s.typeKeys("detach\r")
			s.waitFor(at, "detached]", 10*time.Second)
			checkClean(t, srv)
		})
	}
}
