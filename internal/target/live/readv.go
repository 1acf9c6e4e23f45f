package live

import (
	"golang.org/x/sys/unix"
)

// iovMax is the kernel's limit on iovecs per process_vm_readv call.
const iovMax = 1024

// ReadV reads many ranges of the target's memory with as few
// process_vm_readv calls as it can: bufs[i] is filled from addrs[i], and
// errs[i] says why a range could not be read (nil when it was). A sampler
// uses it to read one frame of every thread in a single system call.
func (p *Process) ReadV(bufs [][]byte, addrs []uint64) (errs []error) {
	errs = make([]error, len(bufs))
	if p.vmReadvBroken {
		for i := range bufs {
			errs[i] = p.ReadAt(bufs[i], addrs[i])
		}
		return errs
	}
	local := make([]unix.Iovec, 0, iovMax)
	remote := make([]unix.RemoteIovec, 0, iovMax)
	for start := 0; start < len(bufs); {
		local, remote = local[:0], remote[:0]
		var idx []int
		for i := start; i < len(bufs) && len(local) < iovMax; i++ {
			if len(bufs[i]) == 0 {
				continue
			}
			v := unix.Iovec{Base: &bufs[i][0]}
			v.SetLen(len(bufs[i]))
			local = append(local, v)
			remote = append(remote, unix.RemoteIovec{Base: uintptr(addrs[i]), Len: len(bufs[i])})
			idx = append(idx, i)
		}
		if len(idx) == 0 {
			break
		}
		n, err := unix.ProcessVMReadv(p.pid, local, remote, 0)
		if err != nil {
			// The first range already fails (or the process is gone):
			// let ReadAt say why, and go on after it.
			errs[idx[0]] = p.ReadAt(bufs[idx[0]], addrs[idx[0]])
			start = idx[0] + 1
			continue
		}
		// The kernel stops at the first range it cannot read completely.
		done := 0
		for _, i := range idx {
			if n >= len(bufs[i]) {
				n -= len(bufs[i])
				done++
				continue
			}
			break
		}
		if done == len(idx) {
			start = idx[len(idx)-1] + 1
			continue
		}
		bad := idx[done]
		// Read alone, it may work (its mapping changed meanwhile).
		errs[bad] = p.ReadAt(bufs[bad], addrs[bad])
		start = bad + 1
	}
	return errs
}
