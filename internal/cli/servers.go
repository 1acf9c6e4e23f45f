package cli

import (
	"os"
	"sort"

	"krait/internal/dump"
	"krait/internal/procinfo"
)

// djangoProcesses lists the processes krait ps shows with Django loaded
// and configured (read without pausing them), and the masters of those
// that are a server's workers.
func djangoProcesses() (pids, masters []int) {
	found, _ := procinfo.Survey(os.Getpid())
	seenMaster := map[int]bool{}
	readEach(found, dump.ReadOptions{NonBlocking: true, Survey: true}, func(pid int, rd *dump.Reading, err error) {
		if err != nil {
			return
		}
		dj := djangoSettings(rd) != nil
		rd.Proc.Close()
		if !dj {
			return
		}
		in, err := procinfo.Read(pid)
		if err != nil {
			return
		}
		if in.IsMaster() { // a master that preloaded the app stands for its workers
			if !seenMaster[pid] {
				seenMaster[pid] = true
				masters = append(masters, pid)
			}
			return
		}
		pids = append(pids, pid)
		if procinfo.IsWorker(in.Server) && !seenMaster[in.PPID] {
			if p, err := procinfo.Read(in.PPID); err == nil && p.IsMaster() {
				seenMaster[in.PPID] = true
				masters = append(masters, in.PPID)
			}
		}
	})
	sort.Ints(pids)
	sort.Ints(masters)
	// Workers of a master found only through the master (preload_app).
	have := map[int]bool{}
	for _, p := range pids {
		have[p] = true
	}
	for _, m := range masters {
		for _, w := range procinfo.Workers(m) {
			if !have[w] {
				have[w] = true
				pids = append(pids, w)
			}
		}
	}
	return pids, masters
}
