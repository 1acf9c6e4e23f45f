// Package sockdiag asks the kernel about TCP connections the way `ss -ti`
// does, through a NETLINK_SOCK_DIAG socket: for each connection its peer,
// its socket inode and how long ago data last arrived on it (tcp_info's
// tcpi_last_data_recv). krait requests uses it to estimate how long a
// request has been running on servers that do not record its start.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one TCP connection.
type Conn struct {
	Inode uint32
	Local netip.AddrPort
	Peer  netip.AddrPort
	// LastRecv is how long ago the kernel last received data on it.
	LastRecv time.Duration
}

const (
	inetDiagInfo = 2  // INET_DIAG_INFO: struct tcp_info
	diagMsgLen   = 72 // struct inet_diag_msg
	reqLen       = 56 // struct inet_diag_req_v2
	// tcp_info: tcpi_last_data_recv follows 8 bytes of u8 fields and 9
	// u32s, then last_data_sent and last_ack_sent.
	lastDataRecvOff = 52
)

// TCP lists the TCP connections (established, or closed by the peer) of
// pid's network namespace: krait enters it for the query when it is not
// its own (root can; otherwise its own namespace is asked).
func TCP(pid int) ([]Conn, error) {
	var out []Conn
	err := inNetns(pid, func() error {
		for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
			conns, err := query(fam)
			if err != nil {
				return err
			}
			out = append(out, conns...)
		}
		return nil
	})
	return out, err
}

// inNetns runs f with the calling thread in pid's network namespace, if it
// differs from krait's and krait may enter it.
func inNetns(pid int, f func() error) error {
	mine, err1 := os.Readlink("/proc/self/ns/net")
	theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err1 != nil || err2 != nil || mine == theirs {
		return f()
	}
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return f()
	}
	defer self.Close()
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		runtime.UnlockOSThread()
		return f()
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return f()
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
		// Back home: the thread may serve other goroutines again. (If not,
		// it stays locked and ends with this goroutine.)
		runtime.UnlockOSThread()
	}
	return ferr
}

func query(family uint8) ([]Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}); err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	msg := make([]byte, unix.NLMSG_HDRLEN+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(msg[8:], 1)
	req := msg[unix.NLMSG_HDRLEN:]
	req[0], req[1], req[2] = family, unix.IPPROTO_TCP, 1<<(inetDiagInfo-1)
	// TCP_ESTABLISHED (1) and TCP_CLOSE_WAIT (8): a client that sent its
	// request and shut down its side still waits for the answer.
	ne.PutUint32(req[4:], 1<<1|1<<8)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	var out []Conn
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(ne.Uint32(m.Data)); e != 0 {
						return nil, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
					}
				}
				return out, nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if c, ok := parse(family, m.Data); ok {
					out = append(out, c)
				}
			}
		}
	}
}

// parse reads one inet_diag_msg and its attributes.
func parse(family uint8, b []byte) (Conn, bool) {
	if len(b) < diagMsgLen {
		return Conn{}, false
	}
	ne := binary.NativeEndian
	id := b[4:52]
	addr := func(a []byte, port []byte) netip.AddrPort {
		p := binary.BigEndian.Uint16(port)
		if family == unix.AF_INET {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[:4])), p)
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[:16])), p)
	}
	c := Conn{Local: addr(id[4:20], id[0:2]), Peer: addr(id[20:36], id[2:4]), Inode: ne.Uint32(b[68:72])}
	found := false
	for attrs := b[diagMsgLen:]; len(attrs) >= 4; {
		l, typ := int(ne.Uint16(attrs[0:])), ne.Uint16(attrs[2:])
		if l < 4 || l > len(attrs) {
			break
		}
		if typ == inetDiagInfo && l-4 >= lastDataRecvOff+4 {
			c.LastRecv = time.Duration(ne.Uint32(attrs[4+lastDataRecvOff:])) * time.Millisecond
			found = true
		}
		next := (l + 3) &^ 3
		if next > len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	return c, found
}

// Own lists the TCP connections of pid's own open sockets, and when they
// were asked for (a connection's LastRecv is counted back from then).
func Own(pid int) ([]Conn, time.Time, error) {
	inodes, err := SocketInodes(pid)
	if err != nil {
		return nil, time.Time{}, err
	}
	conns, err := TCP(pid)
	if err != nil {
		return nil, time.Time{}, err
	}
	asked := time.Now()
	out := conns[:0]
	for _, c := range conns {
		if inodes[c.Inode] {
			out = append(out, c)
		}
	}
	return out, asked, nil
}

// SocketInodes lists the inodes of pid's open sockets (from /proc/PID/fd).
func SocketInodes(pid int) (map[uint32]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[uint32]bool{}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(l, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 32); err == nil {
				out[uint32(n)] = true
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no sockets")
	}
	return out, nil
}
