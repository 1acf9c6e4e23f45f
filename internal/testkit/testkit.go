// Package testkit is what krait's end-to-end test packages share: building
// the krait binary once, and driving `krait attach` through its standard
// input the way gdb is driven from a pipe.
package testkit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ModuleRoot finds the module's root from a test package's directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// BuildKrait builds cmd/krait into dir and returns the binary's path.
func BuildKrait(root, dir string) (string, error) {
	bin := filepath.Join(dir, "krait")
	build := exec.Command("go", "build", "-o", bin, "./cmd/krait")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building krait: %v\n%s", err, out)
	}
	return bin, nil
}

// Short cuts very long lines for test logs.
func Short(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if len(l) > 400 {
			lines[i] = l[:400] + fmt.Sprintf("…[%d more bytes]", len(l)-400)
		}
	}
	return strings.Join(lines, "\n")
}

// MustMatch reports an error unless s matches pattern, and returns the
// submatches.
func MustMatch(t *testing.T, what, pattern, s string) []string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(s)
	if m == nil {
		t.Errorf("%s: output does not match %q:\n%s", what, pattern, Short(s))
	}
	return m
}

// Session drives krait attach through its standard input: each command is
// followed by `echo` of a marker, and its output is everything before the
// marker.
type Session struct {
	T     *testing.T
	Cmd   *exec.Cmd
	In    io.WriteCloser
	Lines chan string
	n     int
}

// Attach starts `krait attach PID` and waits for its first line.
func Attach(t *testing.T, bin string, pid int) *Session {
	t.Helper()
	return AttachArgs(t, bin, strconv.Itoa(pid))
}

// AttachArgs starts `krait attach ARGS...` (several PIDs, --all, …) and
// waits for its first line.
func AttachArgs(t *testing.T, bin string, args ...string) *Session {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"attach"}, args...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Session{T: t, Cmd: cmd, In: in, Lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			s.Lines <- sc.Text()
		}
		close(s.Lines)
	}()
	t.Cleanup(func() {
		// End of input: krait detaches and exits, and the agent leaves
		// the process with everything of krait's before the test kills
		// it. (Killed while a thread is stopped, krait's agent resumes it
		// and removes itself too, unless the process dies first.)
		in.Close()
		ended := make(chan struct{})
		go func() {
			for range s.Lines { // until krait's output ends
			}
			close(ended)
		}()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	first := s.ReadUntil(func(l string) bool { return strings.HasPrefix(l, "Attached to process") }, 30*time.Second)
	t.Logf("%s", first)
	return s
}

// ReadUntil reads lines until done accepts one; it fails the test if krait
// ends or the timeout passes first.
func (s *Session) ReadUntil(done func(string) bool, timeout time.Duration) string {
	s.T.Helper()
	var got []string
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-s.Lines:
			if !ok {
				s.T.Fatalf("krait attach ended; output so far:\n%s", Short(strings.Join(got, "\n")))
			}
			if done(l) {
				return strings.Join(got, "\n") + "\n" + l
			}
			got = append(got, l)
		case <-deadline:
			s.T.Fatalf("timed out after %s waiting for krait; output so far:\n%s", timeout, Short(strings.Join(got, "\n")))
		}
	}
}

// ReadUntilEnd reads until krait's output ends.
func (s *Session) ReadUntilEnd(timeout time.Duration) string {
	s.T.Helper()
	var got []string
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-s.Lines:
			if !ok {
				return strings.Join(got, "\n")
			}
			got = append(got, l)
		case <-deadline:
			s.T.Fatalf("krait did not end within %s:\n%s", timeout, Short(strings.Join(got, "\n")))
		}
	}
}

// Send writes a command followed by an echo of a fresh marker, and
// returns the marker.
func (s *Session) Send(cmd string) string {
	s.n++
	marker := fmt.Sprintf("@@end-%d@@", s.n)
	fmt.Fprintf(s.In, "%s\necho %s\\n\n", cmd, marker)
	return marker
}

// Output reads a command's output up to its marker.
func (s *Session) Output(cmd, marker string, timeout time.Duration) string {
	s.T.Helper()
	out := s.ReadUntil(func(l string) bool { return strings.HasSuffix(l, marker) }, timeout)
	out = strings.TrimSuffix(out, marker)
	s.T.Logf("(krait) %s\n%s", cmd, Short(out))
	return out
}

// Do runs one command and returns its output.
func (s *Session) Do(cmd string) string {
	s.T.Helper()
	return s.Output(cmd, s.Send(cmd), 60*time.Second)
}

// Setup finds the module root, makes a world-enterable temporary directory
// (other users — nobody, postgres, www-data — must reach what tests put
// there) and builds krait into it. cleanup removes the directory.
func Setup(prefix string) (root, dir, bin string, cleanup func(), err error) {
	if root, err = ModuleRoot(); err != nil {
		return
	}
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return
	}
	cleanup = func() { os.RemoveAll(dir) }
	if err = os.Chmod(dir, 0o755); err == nil {
		bin, err = BuildKrait(root, dir)
	}
	if err != nil {
		cleanup()
	}
	return
}
