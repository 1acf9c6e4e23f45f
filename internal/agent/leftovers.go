package agent

import (
	"encoding/json"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// abandonedAge is how old an agent directory with no socket, made by a
// krait that is gone, must be before it counts as abandoned: an agent
// that starts writes its socket within a second or two.
const abandonedAge = 2 * time.Minute

// scanDirs looks at every agent directory (krait-<16 hex>) in a target's
// /tmp, open as tmp, that holds an owner file krait can read and trust:
// a directory and owner file of the same user (or a directory of krait's
// user, which krait had not yet given away), on the same mount as /tmp,
// written by a krait in this pid namespace. visit gets the directory open
// (never through a symbolic link), its fstat and its owner; the
// descriptor is closed after visit returns.
func scanDirs(tmp int, visit func(name string, fd int, st *unix.Stat_t, o owner)) {
	dfd, err := unix.Openat(tmp, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(dfd), "tmp")
	names, _ := f.Readdirnames(-1)
	f.Close()
	ns := pidNS()
	tmpMnt, ok := mountID(tmp)
	if !ok || ns == 0 {
		return
	}
	for _, name := range names {
		if !isDirName(name) {
			continue
		}
		fd, err := unix.Openat(tmp, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		func() {
			defer unix.Close(fd)
			var st unix.Stat_t
			if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o7777 != 0o700 {
				return
			}
			if m, ok := mountID(fd); !ok || m != tmpMnt {
				return // something mounted there: not a directory krait made
			}
			// The owner file is the directory's user's, or the directory
			// is still krait's own (krait gives the files to the target's
			// user first and the directory last; a 0700 directory of
			// krait's user holds only what that user wrote).
			data, ost, err := readFileAt(fd, "owner", 4096)
			if err != nil || ost.Uid != st.Uid && int(st.Uid) != os.Geteuid() {
				return
			}
			var o owner
			if json.Unmarshal(data, &o) != nil || o.PID <= 0 || o.PIDNS != ns {
				return
			}
			visit(name, fd, &st, o)
		}()
	}
}

// mountID identifies the mount a descriptor is on (the device number
// where the kernel does not say).
func mountID(fd int) (uint64, bool) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, false
	}
	if stx.Mask&unix.STATX_MNT_ID != 0 {
		return stx.Mnt_id, true
	}
	return unix.Mkdev(stx.Dev_major, stx.Dev_minor), true
}

// cleanLeftovers removes from the target's /tmp (open as tmp) the agent
// directories krait can prove are leftovers, and returns their names:
// those whose target no longer exists (or is another process with its
// pid), and those of an attach whose krait is gone and whose agent never
// served: no socket after abandonedAge, or no socket and no agent thread
// in idle, the target being attached now (pid, with its start time),
// known to run no agent, or whose agent source is still empty (its krait
// was killed writing it). Only the names krait and the agent create are
// removed, through the directory's descriptor, never following a link.
func cleanLeftovers(tmp int, idle owner) (removed []string) {
	scanDirs(tmp, func(name string, fd int, st *unix.Stat_t, o owner) {
		stale := !same(o.PID, o.Start)
		if !stale && !same(o.Krait, o.KraitStart) {
			var sock unix.Stat_t
			noSock := unix.Fstatat(fd, "sock", &sock, unix.AT_SYMLINK_NOFOLLOW) != nil
			old := time.Since(time.Unix(st.Mtim.Unix())) > abandonedAge
			ours := o.PID == idle.PID && o.Start == idle.Start
			// An agent source left empty: its krait was killed while
			// writing it, so it never sent the agent in (it does only once
			// the source is whole).
			var src unix.Stat_t
			unwritten := unix.Fstatat(fd, "agent.py", &src, unix.AT_SYMLINK_NOFOLLOW) == nil &&
				src.Mode&unix.S_IFMT == unix.S_IFREG && src.Size == 0
			stale = noSock && (old || ours || unwritten)
		}
		if stale && onlyOurs(fd) && removeDir(tmp, fd, name, st.Dev, st.Ino) {
			removed = append(removed, name)
		}
	})
	return removed
}

// entries lists the names in directory fd (read through a descriptor of its
// own, fd's offset untouched).
func entries(fd int) ([]string, bool) {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	f := os.NewFile(uintptr(dfd), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return names, err == nil
}

// onlyOurs says whether directory fd holds nothing but names krait and the
// agent make (a directory holding anything else is left alone).
func onlyOurs(fd int) bool {
	names, ok := entries(fd)
	if !ok {
		return false
	}
	for _, n := range names {
		if !slices.Contains(dirNames, n) {
			return false
		}
	}
	return true
}

// liveSessions returns the agent directories in the target's /tmp (open
// as tmp) of a session with process pid (started at start) whose agent
// has its socket: an agent serving, or waiting for its krait.
func liveSessions(tmp int, pid int, start uint64) (names []string) {
	scanDirs(tmp, func(name string, fd int, st *unix.Stat_t, o owner) {
		var sock unix.Stat_t
		if o.PID == pid && o.Start == start && unix.Fstatat(fd, "sock", &sock, unix.AT_SYMLINK_NOFOLLOW) == nil {
			names = append(names, name)
		}
	})
	return names
}

// unfinishedAge is how old an agent directory with no owner written yet
// must be before krait takes it for the remains of a krait killed while it
// made the directory (that takes it microseconds).
const unfinishedAge = 10 * time.Second

// cleanUnfinished removes from the target's /tmp (open as tmp) the agent
// directories a krait was killed while making: named and made as krait
// makes them (0700, on /tmp's own mount), older than unfinishedAge, with
// no owner written yet (none, or empty) and nothing in them but empty
// files of the names krait makes. They hold nothing of anybody's.
func cleanUnfinished(tmp int) (removed []string) {
	dfd, err := unix.Openat(tmp, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(dfd), "tmp")
	names, _ := f.Readdirnames(-1)
	f.Close()
	tmpMnt, ok := mountID(tmp)
	if !ok {
		return nil
	}
	for _, name := range names {
		if !isDirName(name) {
			continue
		}
		fd, err := unix.Openat(tmp, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Mode&0o7777 == 0o700 &&
			time.Since(time.Unix(st.Mtim.Unix())) > unfinishedAge && unfinished(fd) {
			if m, ok := mountID(fd); ok && m == tmpMnt && removeDir(tmp, fd, name, st.Dev, st.Ino) {
				removed = append(removed, name)
			}
		}
		unix.Close(fd)
	}
	return removed
}

// unfinished says whether directory fd holds only empty regular files of
// the names krait makes (so no owner written yet).
func unfinished(fd int) bool {
	names, ok := entries(fd)
	if !ok {
		return false
	}
	for _, n := range names {
		var st unix.Stat_t
		if !slices.Contains(dirNames, n) || unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil ||
			st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
			return false
		}
	}
	return true
}
