package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"krait/internal/target"
)

// The agent's directory is in the target's /tmp, which every user shares,
// and once krait hands it over the target's user owns it. krait therefore
// never uses a path in it: it opens the target's /tmp once, makes the
// directory relative to that descriptor, opens the directory once and does
// everything else through that descriptor — files created with
// O_CREAT|O_EXCL|O_NOFOLLOW, fchown/fchmod on descriptors, lookups that do
// not follow symbolic links, removal by unlinkat. A file or directory
// swapped for a symbolic link (to a file of root's, say) is never written,
// chowned or removed through; the swap is noticed and the attach refused.

// dirNames are the names krait and the agent create in the agent's
// directory, and the only ones krait removes from it: "owner" last, so
// that a removal cut short (krait killed) leaves what proves the
// directory a leftover of krait's to the next attach.
var dirNames = []string{"agent.py", "agent.run", "agent.krait", "bootstrap.py", "pending.py", "sock", "error", "owner"}

// dirPrefix starts the name of every agent directory: krait-<16 hex>.
const dirPrefix = "krait-"

// isDirName says whether name is an agent directory's: krait-<16 hex>.
func isDirName(name string) bool {
	hex, ok := strings.CutPrefix(name, dirPrefix)
	if !ok || len(hex) != 16 {
		return false
	}
	for _, c := range hex {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// privDir is the agent's directory, held open.
type privDir struct {
	tmp      int    // the target's /tmp
	fd       int    // the directory
	name     string // krait-<16 hex>
	dev, ino uint64
	uid, gid int // the target's user, who owns the directory
}

// testHook, set by tests only, runs at each step of making the directory,
// in the window an attacker would use: "dir" once it is made and opened,
// and a file's name once that file is created and before krait writes it.
var testHook func(step string, d *privDir)

func hook(step string, d *privDir) {
	if testHook != nil {
		testHook(step, d)
	}
}

// openTargetTmp opens /tmp as process pid sees it: through its root, a
// symbolic link in the way resolved inside that root, never outside it.
func openTargetTmp(pid int) (int, error) {
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, procErr(pid, "reach the root directory of", err)
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, "tmp", &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		fd, err = unix.Openat(root, "tmp", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, procErr(pid, "open /tmp of", err)
	}
	return fd, nil
}

// procErr words a failure to reach a process's files.
func procErr(pid int, what string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH):
		if _, alive := procStart(pid); !alive {
			return fmt.Errorf("process %d: %w", pid, target.ErrExited)
		}
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return &target.PermissionError{PID: pid, Op: what}
	}
	return fmt.Errorf("cannot %s process %d: %w", what, pid, err)
}

// makePrivDir makes the agent's directory in the target's /tmp (tmp, which
// it takes over), mode 0700, and writes the owner file and files into it
// (mode 0600) before giving the directory and its files to uid:gid.
func makePrivDir(tmp int, uid, gid int, files []dirFile) (d *privDir, err error) {
	d = &privDir{tmp: tmp, fd: -1, name: dirPrefix + randomHex(8), uid: uid, gid: gid}
	made := false
	defer func() {
		if err != nil {
			if d.fd >= 0 {
				d.remove()
			} else if made {
				_ = unix.Unlinkat(tmp, d.name, unix.AT_REMOVEDIR) // empty, or not ours
			}
			d.close()
			d = nil
		}
	}()
	if err := unix.Mkdirat(tmp, d.name, 0o700); err != nil {
		return d, fmt.Errorf("cannot make the agent directory /tmp/%s: %w", d.name, err)
	}
	made = true
	fd, err := unix.Openat(tmp, d.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return d, fmt.Errorf("cannot open the agent directory /tmp/%s: %w", d.name, err)
	}
	d.fd = fd
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return d, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() || st.Nlink == 0 {
		return d, fmt.Errorf("the agent directory /tmp/%s changed under krait (owner %d, mode %o); not attaching", d.name, st.Uid, st.Mode)
	}
	d.dev, d.ino = st.Dev, st.Ino
	if err := unix.Fchmod(fd, 0o700); err != nil {
		return d, err
	}
	hook("dir", d)
	for _, f := range files {
		if err := d.create(f.name, f.data); err != nil {
			return d, err
		}
	}
	if err := d.chown(fd); err != nil {
		return d, err
	}
	return d, d.check()
}

// dirFile is a file to put in the agent's directory.
type dirFile struct {
	name string
	data []byte
}

// chown gives the file open as fd to the target's user (a no-op when krait
// runs as that user).
func (d *privDir) chown(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if int(st.Uid) == d.uid && int(st.Gid) == d.gid {
		return nil
	}
	return unix.Fchown(fd, d.uid, d.gid)
}

// create makes file name in the directory (it must not exist: not even as
// a symbolic link), writes data, gives it to the target's user, mode 0600,
// and checks that the name still leads to it.
func (d *privDir) create(name string, data []byte) error {
	fd, err := unix.Openat(d.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create %s in the agent directory /tmp/%s: %w", name, d.name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	hook(name, d)
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return err
	}
	if err := d.chown(fd); err != nil {
		return err
	}
	var st, now unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if err := unix.Fstatat(d.fd, name, &now, unix.AT_SYMLINK_NOFOLLOW); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return fmt.Errorf("%s in the agent directory /tmp/%s was replaced while krait wrote it; not attaching", name, d.name)
	}
	return nil
}

// check refuses a directory that changed under krait: no longer the
// directory krait made at /tmp/NAME, or no longer a private directory of
// the target's user.
func (d *privDir) check() error {
	var st, at unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return err
	}
	if st.Nlink == 0 {
		return errDirGone
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o7777 != 0o700 || int(st.Uid) != d.uid {
		return fmt.Errorf("the agent directory /tmp/%s changed under krait (owner %d, mode %o); not attaching", d.name, st.Uid, st.Mode&0o7777)
	}
	err := unix.Fstatat(d.tmp, d.name, &at, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return errDirGone
	}
	if err != nil || at.Dev != d.dev || at.Ino != d.ino {
		return fmt.Errorf("the agent directory /tmp/%s was replaced under krait; not attaching", d.name)
	}
	return nil
}

// errDirGone: the agent's directory is no longer in /tmp.
var errDirGone = errors.New("the agent directory was removed")

// exists says whether name is in the directory, and not as a symbolic
// link (which neither krait nor the agent makes).
func (d *privDir) exists(name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK
}

// readFile reads at most max bytes of regular file name (never through a
// symbolic link, never blocking on a FIFO).
func (d *privDir) readFile(name string, max int) ([]byte, error) {
	data, _, err := readFileAt(d.fd, name, max)
	return data, err
}

// readFileAt reads at most max bytes of regular file name in directory
// dir, and returns its fstat too.
func readFileAt(dir int, name string, max int) ([]byte, *unix.Stat_t, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil, fmt.Errorf("%s is not a regular file", name)
	}
	buf := make([]byte, max)
	n := 0
	for n < max {
		m, err := f.Read(buf[n:])
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	return buf[:n], &st, nil
}

// rename renames old to new inside the directory, failing if new exists.
func (d *privDir) rename(old, new string) error {
	return unix.Renameat2(d.fd, old, d.fd, new, unix.RENAME_NOREPLACE)
}

// sockPath is the agent's socket reached through the directory's
// descriptor: a path nobody can redirect to another directory.
func (d *privDir) sockPath() string {
	return fmt.Sprintf("/proc/self/fd/%d/sock", d.fd)
}

// remove deletes krait's and the agent's files from the directory (never
// following a symbolic link, leaving any other name alone) and then the
// directory, if /tmp/NAME is still it. It reports whether the directory
// is gone.
func (d *privDir) remove() bool {
	if d.fd < 0 {
		return false
	}
	return removeDir(d.tmp, d.fd, d.name, d.dev, d.ino)
}

// removeDir empties directory dir (/tmp/name, open as fd; dev and ino from
// its fstat) of the names in dirNames and removes it. The agent may be
// writing its error file meanwhile: a directory not yet empty is tried
// again a few times.
func removeDir(tmp, fd int, name string, dev, ino uint64) bool {
	for try := 0; ; try++ {
		for _, n := range dirNames {
			_ = unix.Unlinkat(fd, n, 0)
		}
		var at unix.Stat_t
		if err := unix.Fstatat(tmp, name, &at, unix.AT_SYMLINK_NOFOLLOW); err != nil || at.Dev != dev || at.Ino != ino {
			var st unix.Stat_t
			return unix.Fstat(fd, &st) == nil && st.Nlink == 0
		}
		err := unix.Unlinkat(tmp, name, unix.AT_REMOVEDIR)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return true
		}
		if !errors.Is(err, unix.ENOTEMPTY) || try >= 4 {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// close closes the directory and /tmp.
func (d *privDir) close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
	if d.tmp >= 0 {
		unix.Close(d.tmp)
		d.tmp = -1
	}
}

// owner is what the file "owner" in an agent directory says: whose
// directory it is, so that a later krait can prove it a leftover.
type owner struct {
	PID        int    `json:"pid"`         // the target
	Start      uint64 `json:"start"`       // its start time (/proc/PID/stat field 22)
	Krait      int    `json:"krait"`       // the krait that made the directory
	KraitStart uint64 `json:"krait_start"` // and its start time
	PIDNS      uint64 `json:"pidns"`       // the pid namespace both pids are in (inode)
}

// newOwner describes target pid and this krait.
func newOwner(pid int) (owner, error) {
	start, alive := procStart(pid)
	if !alive {
		return owner{}, fmt.Errorf("process %d: %w", pid, target.ErrExited)
	}
	self, _ := procStart(os.Getpid())
	return owner{PID: pid, Start: start, Krait: os.Getpid(), KraitStart: self, PIDNS: pidNS()}, nil
}

func (o owner) json() []byte {
	b, _ := json.Marshal(o)
	return append(b, '\n')
}

// pidNS is the inode of krait's pid namespace (0 if unknown).
func pidNS() uint64 {
	var st unix.Stat_t
	if unix.Stat("/proc/self/ns/pid", &st) != nil {
		return 0
	}
	return st.Ino
}

// procStart returns process pid's start time (clock ticks after boot,
// field 22 of /proc/PID/stat) and whether it is alive (not a zombie).
func procStart(pid int) (uint64, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, false
	}
	return start, true
}

// same says whether process pid is alive and is the one that started at
// start.
func same(pid int, start uint64) bool {
	s, alive := procStart(pid)
	return alive && s == start
}
