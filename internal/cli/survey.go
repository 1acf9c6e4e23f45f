package cli

import (
	"runtime"
	"sync"

	"krait/internal/dump"
)

// readEach reads the processes of pids, several at a time (each is paused
// only for its own read), and hands each reading, or the error, to fn, one
// call at a time. fn closes rd.Proc.
func readEach(pids []int, opt dump.ReadOptions, fn func(pid int, rd *dump.Reading, err error)) {
	n := runtime.NumCPU()
	if n > 4 {
		n = 4
	}
	if n > len(pids) {
		n = len(pids)
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pid := range next {
				rd, err := dump.Read(pid, opt)
				mu.Lock()
				fn(pid, rd, err)
				mu.Unlock()
			}
		}()
	}
	for _, pid := range pids {
		next <- pid
	}
	close(next)
	wg.Wait()
}
