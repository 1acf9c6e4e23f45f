package cli

import (
	"net/netip"
	"time"

	"krait/internal/inflight"
	"krait/internal/sockdiag"
)

// estimateElapsed gives the requests of pid that have no start time from
// their server an estimate from their client connection: how long ago the
// kernel last received data on it (the request, for a server that reads
// the whole request before calling the application).
func estimateElapsed(pid int, reqs []*inflight.Request, now time.Time) {
	need := false
	for _, r := range reqs {
		need = need || r.ElapsedS == nil && r.RemotePort != 0
	}
	if !need {
		return
	}
	conns, asked, err := sockdiag.Own(pid)
	if err != nil {
		return
	}
	taken := asked.Sub(now) // the query came this long after the read
	for _, r := range reqs {
		if r.ElapsedS != nil || r.RemotePort == 0 {
			continue
		}
		want, werr := netip.ParseAddr(r.RemoteAddr)
		for _, c := range conns {
			if int(c.Peer.Port()) != r.RemotePort {
				continue
			}
			if werr == nil && want.Unmap() != c.Peer.Addr().Unmap() {
				continue
			}
			el := (c.LastRecv - taken).Seconds()
			if el < 0 {
				el = 0
			}
			r.ElapsedS, r.ElapsedSource = &el, sp(inflight.ElapsedSocket)
			break
		}
	}
}
