package benchkit

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Procs is what a benchmark tool started and must not leave behind:
// process groups (killed as a group), single processes outside those
// groups (killed only while still theirs), and temporary directories.
type Procs struct {
	mu      sync.Mutex
	groups  map[int]bool
	singles map[int]func() bool // pid → whether that pid is still the process registered
	dirs    map[string]bool
}

// NewProcs returns an empty set.
func NewProcs() *Procs {
	return &Procs{groups: map[int]bool{}, singles: map[int]func() bool{}, dirs: map[string]bool{}}
}

// AddGroup registers a process group (led by pid).
func (s *Procs) AddGroup(pid int) {
	s.mu.Lock()
	s.groups[pid] = true
	s.mu.Unlock()
}

// RemoveGroup forgets a process group that ended.
func (s *Procs) RemoveGroup(pid int) {
	s.mu.Lock()
	delete(s.groups, pid)
	s.mu.Unlock()
}

// AddSingle registers a process outside our groups; ours says whether pid
// is still that process (pids get reused).
func (s *Procs) AddSingle(pid int, ours func() bool) {
	s.mu.Lock()
	s.singles[pid] = ours
	s.mu.Unlock()
}

// KillSingle kills a registered process, if it is still ours, and forgets it.
func (s *Procs) KillSingle(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ours := s.singles[pid]; ours != nil && ours() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	delete(s.singles, pid)
}

// AddDir registers a temporary directory.
func (s *Procs) AddDir(dir string) {
	s.mu.Lock()
	s.dirs[dir] = true
	s.mu.Unlock()
}

// RemoveDir removes a temporary directory and forgets it.
func (s *Procs) RemoveDir(dir string) {
	os.RemoveAll(dir)
	s.mu.Lock()
	delete(s.dirs, dir)
	s.mu.Unlock()
}

// KillAll kills every process group and process still registered and
// removes the temporary directories.
func (s *Procs) KillAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid := range s.groups {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for pid, ours := range s.singles {
		if ours() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for dir := range s.dirs {
		os.RemoveAll(dir)
	}
}

// KillOnSignal makes SIGINT, SIGTERM and SIGHUP kill everything
// registered, say so (as tool) and exit 130.
func (s *Procs) KillOnSignal(tool string) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		s.KillAll()
		fmt.Fprintf(os.Stderr, "%s: %v: stopped every process it started\n", tool, sig)
		os.Exit(130)
	}()
}
