package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// victim is a file of root's outside the agent's directory: whatever a
// target's user plants, its content, owner and mode never change, and
// nothing appears beside it.
type victim struct {
	dir, file string
	data      []byte
}

func newVictim(t *testing.T) *victim {
	t.Helper()
	v := &victim{dir: t.TempDir(), data: []byte("root's own file\n")}
	v.file = filepath.Join(v.dir, "victim")
	if err := os.WriteFile(v.file, v.data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(v.dir, 0o755); err != nil { // so that a symlink to it leads somewhere
		t.Fatal(err)
	}
	return v
}

func (v *victim) check(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(v.file)
	if err != nil || string(data) != string(v.data) {
		t.Errorf("the victim file's content changed: %q, %v", data, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(v.file, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 || st.Mode != unix.S_IFREG|0o600 || st.Nlink != 1 {
		t.Errorf("the victim file changed: owner %d:%d, mode %o, %d links; want 0:0, 100600, 1", st.Uid, st.Gid, st.Mode, st.Nlink)
	}
	ents, _ := os.ReadDir(v.dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the victim's directory holds %v, want only victim", names)
	}
}

// asNobody is the command prefix that runs the target as nobody.
func asNobody(t *testing.T) (string, []string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: krait as root, the target as another user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux)")
	}
	// pyenv's builds are under root's home; Debian's python3.11 is for all.
	if _, err := os.Stat("/usr/bin/python3.11"); err != nil {
		t.Skip("no /usr/bin/python3.11 to run as nobody")
	}
	return setpriv, []string{"--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3.11"}
}

// TestAgentDirSymlinkRace: the target's user swaps a file krait is about
// to write, or the whole directory, for a symbolic link to a file of
// root's (the test plants it in that window, through testHook). krait
// writes nothing through the link, chowns nothing outside its directory,
// refuses the attach with one line and leaves the target untouched.
func TestAgentDirSymlinkRace(t *testing.T) {
	setpriv, pre := asNobody(t)
	saved := agentSource
	defer func() { agentSource, testHook = saved, nil }()
	agentSource = []byte("open(KRAIT['dir'] + '/ran', 'w').write('ran')\n")
	for _, step := range []string{"agent.py", "owner", "dir"} {
		t.Run(step, func(t *testing.T) {
			v := newVictim(t)
			tg := startTarget(t, setpriv, pre, nil, "import time\ntime.sleep(3600)\n", 300*time.Millisecond)
			pid := tg.proc.PID()
			var planted string
			testHook = func(at string, d *privDir) {
				if at != step {
					return
				}
				planted = fmt.Sprintf("/proc/%d/root/tmp/%s", pid, d.name)
				p := planted
				if step == "dir" {
					// The directory itself: moved aside, a link in its place.
					if err := os.Rename(p, p+".moved"); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { os.Remove(p); os.RemoveAll(p + ".moved") })
					if err := os.Symlink(v.dir, p); err != nil {
						t.Fatal(err)
					}
					return
				}
				p = filepath.Join(p, step)
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(v.file, p); err != nil {
					t.Fatal(err)
				}
			}
			defer func() { testHook = nil }()
			inj, err := Inject(tg.proc, tg.py, -1, MethodPtrace)
			testHook = nil
			if err == nil {
				inj.Abort()
				t.Fatal("attached through a directory whose files were swapped for symbolic links")
			}
			if planted == "" {
				t.Fatalf("the hook never ran (step %s): %v", step, err)
			}
			if !strings.Contains(err.Error(), "replaced") || strings.Contains(err.Error(), "\n") {
				t.Errorf("want one line saying the file was replaced: %v", err)
			}
			t.Logf("refused: %v", err)
			v.check(t)
			if step != "dir" {
				if _, err := os.Lstat(planted); !os.IsNotExist(err) {
					t.Errorf("krait's directory is left behind: %v", err)
				}
			} else if fi, err := os.Lstat(planted); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("krait removed what was planted in its directory's place (a link of the user's): %v", err)
			}
			time.Sleep(200 * time.Millisecond)
			if !tg.proc.Alive() {
				t.Fatal("the target died")
			}
			if ts, err := tg.py.ThreadsNamed("krait-agent"); err != nil || len(ts) != 0 {
				t.Errorf("the target runs an agent after a refused attach: %v %v", ts, err)
			}
		})
	}
}

// TestAgentDirHandedOver: attaching to another user's process, the
// directory (0700), its owner file and agent.py (0600) belong to that
// user, the owner file says whose they are, and an aborted attach removes
// them.
func TestAgentDirHandedOver(t *testing.T) {
	setpriv, pre := asNobody(t)
	saved := agentSource
	defer func() { agentSource = saved }()
	agentSource = []byte("open(KRAIT['dir'] + '/sock', 'w').write('up')\n")
	tg := startTarget(t, setpriv, pre, nil, "import time\ntime.sleep(3600)\n", 300*time.Millisecond)
	inj, err := Inject(tg.proc, tg.py, -1, MethodPtrace)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(inj)
	for _, c := range []struct {
		name string
		mode uint32
	}{{"", unix.S_IFDIR | 0o700}, {"owner", unix.S_IFREG | 0o600}, {"agent.py", unix.S_IFREG | 0o600}} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(inj.HostDir, c.name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 65534 || st.Gid != 65534 || st.Mode != c.mode {
			t.Errorf("%s/%s: owner %d:%d mode %o, want 65534:65534 %o", inj.Dir, c.name, st.Uid, st.Gid, st.Mode, c.mode)
		}
	}
	var o owner
	data, _ := os.ReadFile(filepath.Join(inj.HostDir, "owner"))
	if err := json.Unmarshal(data, &o); err != nil || o.PID != tg.proc.PID() || o.Krait != os.Getpid() || !same(o.PID, o.Start) || !same(o.Krait, o.KraitStart) || o.PIDNS == 0 {
		t.Errorf("owner file %q: %+v, %v", data, o, err)
	}
	if strings.Contains(string(data), inj.Token) {
		t.Error("the owner file holds the session's token")
	}
	sock, err := inj.WaitSocket(30 * time.Second) // generous: a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	// The stand-in agent's file exists from its open(), before its write.
	retry(t, 10*time.Second, "the stand-in agent's socket file", func() error {
		if got, _ := os.ReadFile(sock); string(got) != "up" {
			return fmt.Errorf("%s reads %q", sock, got)
		}
		return nil
	})
	inj.Abort()
	if _, err := os.Lstat(inj.HostDir); !os.IsNotExist(err) {
		t.Errorf("the agent directory is left after Abort: %v", err)
	}
}

// TestOwnerRemovedLast: krait removes the owner file after every other
// name, so that a removal cut short (krait killed in it, as the Django
// soak does) leaves a directory the next attach can still prove a
// leftover (a directory with no owner file and something in it is left
// alone forever).
func TestOwnerRemovedLast(t *testing.T) {
	if dirNames[len(dirNames)-1] != "owner" {
		t.Fatalf("dirNames %v: the owner file is not removed last", dirNames)
	}
}

// TestRemoveDirNoFollow: removing an agent directory whose entries are
// symbolic links to root's files removes the links, never their targets,
// and leaves names krait does not make alone.
func TestRemoveDirNoFollow(t *testing.T) {
	v := newVictim(t)
	tmp := t.TempDir()
	name := dirPrefix + randomHex(8)
	dir := filepath.Join(tmp, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range dirNames {
		if err := os.Symlink(v.file, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	tfd, fd := openDirs(t, tmp, name)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if !removeDir(tfd, fd, name, st.Dev, st.Ino) {
		t.Error("the directory was not removed")
	}
	v.check(t)
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("directory left: %v", err)
	}

	// A name krait never makes stays, and so does the directory.
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "theirs"), nil, 0o600)
	os.Symlink(v.file, filepath.Join(dir, "agent.py"))
	tfd, fd = openDirs(t, tmp, name)
	unix.Fstat(fd, &st)
	if removeDir(tfd, fd, name, st.Dev, st.Ino) {
		t.Error("removed a directory holding a file krait did not make")
	}
	if got := listDir(t, dir); strings.Join(got, " ") != "theirs" {
		t.Errorf("left %v, want only theirs", got)
	}
	v.check(t)
}

func openDirs(t *testing.T, tmp, name string) (int, int) {
	t.Helper()
	tfd, err := unix.Open(tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(tfd) })
	fd, err := unix.Openat(tfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return tfd, fd
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// TestCleanLeftovers: of the agent directories in a /tmp, krait removes
// exactly those it can prove are leftovers of its own — a dead target's,
// or an abandoned attach's (its krait gone, no socket, and old or of the
// target being attached, known to run no agent) — and in them only the
// names krait and the agent make, never through a link.
func TestCleanLeftovers(t *testing.T) {
	v := newVictim(t)
	tmp := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid
	self, _ := procStart(os.Getpid())
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	time.Sleep(50 * time.Millisecond)
	liveStart, _ := procStart(live.Process.Pid)
	ns := pidNS()
	old := time.Now().Add(-3 * abandonedAge)

	type dir struct {
		what   string
		owner  *owner
		extra  []string // files besides owner ("name" or "name->victim")
		mtime  time.Time
		link   bool // krait-<hex> is a symbolic link to such a directory
		remove bool
		// uids to give the owner file and the directory (0: krait's)
		ownerUID, dirUID int
	}
	o := func(pid int, start uint64, krait int, kstart uint64, pidns uint64) *owner {
		return &owner{PID: pid, Start: start, Krait: krait, KraitStart: kstart, PIDNS: pidns}
	}
	cases := []dir{
		{what: "dead target", owner: o(deadPID, 1, os.Getpid(), self, ns), extra: []string{"agent.py", "sock"}, remove: true},
		{what: "target's pid reused", owner: o(live.Process.Pid, liveStart+1, os.Getpid(), self, ns), extra: []string{"sock"}, remove: true},
		{what: "dead target, links inside", owner: o(deadPID, 1, deadPID, 1, ns), extra: []string{"agent.py->victim", "error->victim", "sock->victim"}, remove: true},
		{what: "live session", owner: o(live.Process.Pid, liveStart, os.Getpid(), self, ns), extra: []string{"sock"}},
		{what: "attach under way", owner: o(live.Process.Pid, liveStart, os.Getpid(), self, ns), extra: []string{"agent.py"}, mtime: old},
		{what: "abandoned attach, old", owner: o(live.Process.Pid, liveStart, deadPID, 1, ns), extra: []string{"agent.py"}, mtime: old, remove: true},
		{what: "abandoned attach, recent", owner: o(live.Process.Pid, liveStart, deadPID, 1, ns), extra: []string{"agent.py=source"}},
		{what: "krait killed writing the agent's source", owner: o(live.Process.Pid, liveStart, deadPID, 1, ns), extra: []string{"agent.py"}, remove: true},
		{what: "live krait writing the agent's source", owner: o(live.Process.Pid, liveStart, os.Getpid(), self, ns), extra: []string{"agent.py"}},
		{what: "agent waiting for a dead krait", owner: o(live.Process.Pid, liveStart, deadPID, 1, ns), extra: []string{"sock"}, mtime: old},
		{what: "other pid namespace", owner: o(deadPID, 1, deadPID, 1, ns+1), extra: []string{"agent.py"}},
		{what: "no owner file", extra: []string{"agent.py"}, mtime: old},
		{what: "a file krait does not make", owner: o(deadPID, 1, deadPID, 1, ns), extra: []string{"theirs"}},
		{what: "a link to a leftover", owner: o(deadPID, 1, deadPID, 1, ns), extra: []string{"agent.py"}, link: true},
		// krait gives the owner file to the target's user first and the
		// directory last: killed in between, the directory is still
		// krait's own (0700: nobody else wrote in it).
		{what: "krait killed before giving the directory away", owner: o(live.Process.Pid, liveStart, deadPID, 1, ns), extra: []string{"agent.py"}, ownerUID: 65534, remove: true},
		{what: "an owner file of another user in a third user's directory", owner: o(deadPID, 1, deadPID, 1, ns), extra: []string{"agent.py"}, ownerUID: 65533, dirUID: 65534},
	}
	names := map[string]dir{}
	for _, c := range cases {
		name := dirPrefix + randomHex(8)
		path := filepath.Join(tmp, name)
		if c.link {
			path = filepath.Join(tmp, "elsewhere-"+name)
			if err := os.Symlink(path, filepath.Join(tmp, name)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if c.owner != nil {
			if err := os.WriteFile(filepath.Join(path, "owner"), c.owner.json(), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range c.extra {
			if n, ok := strings.CutSuffix(e, "->victim"); ok {
				if err := os.Symlink(v.file, filepath.Join(path, n)); err != nil {
					t.Fatal(err)
				}
			} else if n, content, ok := strings.Cut(e, "="); ok {
				if err := os.WriteFile(filepath.Join(path, n), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(filepath.Join(path, e), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if c.ownerUID != 0 {
			if err := os.Chown(filepath.Join(path, "owner"), c.ownerUID, c.ownerUID); err != nil {
				t.Fatal(err)
			}
		}
		if c.dirUID != 0 {
			if err := os.Chown(path, c.dirUID, c.dirUID); err != nil {
				t.Fatal(err)
			}
		}
		if !c.mtime.IsZero() {
			if err := os.Chtimes(path, c.mtime, c.mtime); err != nil {
				t.Fatal(err)
			}
		}
		names[name] = c
	}
	// Not an agent directory's name: never looked at.
	os.Mkdir(filepath.Join(tmp, "krait-e2e-123"), 0o700)

	tfd, err := unix.Open(tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tfd)
	removed := cleanLeftovers(tfd, owner{})
	sort.Strings(removed)
	for name, c := range names {
		_, err := os.Lstat(filepath.Join(tmp, name))
		gone := os.IsNotExist(err)
		if gone != c.remove {
			t.Errorf("%s: removed %v, want %v", c.what, gone, c.remove)
		}
		if c.what == "a file krait does not make" {
			if got := listDir(t, filepath.Join(tmp, name)); strings.Join(got, " ") != "owner theirs" {
				t.Errorf("%s: left %v", c.what, got)
			}
		}
		if c.link {
			if got := listDir(t, filepath.Join(tmp, "elsewhere-"+name)); len(got) != 2 {
				t.Errorf("%s: the linked directory was touched: %v", c.what, got)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "krait-e2e-123")); err != nil {
		t.Errorf("removed a directory that is not an agent's: %v", err)
	}
	v.check(t)
	t.Logf("removed %d: %v", len(removed), removed)

	// The target being attached, known to run no agent: its abandoned
	// attach goes at once, however recent.
	for name, c := range names {
		if c.what == "abandoned attach, recent" {
			cleanLeftovers(tfd, owner{PID: live.Process.Pid, Start: liveStart})
			if _, err := os.Lstat(filepath.Join(tmp, name)); !os.IsNotExist(err) {
				t.Errorf("%s, of the target being attached: not removed", c.what)
			}
		}
	}
}
