package target

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// capNames are the Linux capabilities by bit, for saying which ones a
// target holds that krait lacks.
var capNames = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}

const capSysPtrace = 19

// statusFields reads the named fields of /proc/PID/status (pid 0: self).
func statusFields(pid int, names ...string) map[string]string {
	path := "/proc/self/status"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	out := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if k == n {
				out[k] = strings.TrimSpace(v)
			}
		}
	}
	return out
}

func firstInt(s string) (int, bool) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(f[0])
	return n, err == nil
}

// TracedBy is the process (not thread) that traces pid's main thread,
// when it is not this one; 0 if none.
func TracedBy(pid int) int {
	tp, ok := firstInt(statusFields(pid, "TracerPid")["TracerPid"])
	if !ok || tp == 0 {
		return 0
	}
	// TracerPid is the tracing thread: name its process.
	if tg, ok := firstInt(statusFields(tp, "Tgid")["Tgid"]); ok && tg > 0 {
		tp = tg
	}
	if tp == os.Getpid() {
		return 0
	}
	return tp
}

// tracedAdvice says, when pid is already traced by another process (krait
// record or top, which hold the threads between samples; gdb; strace),
// that this is why it cannot be traced now: a process has one tracer at a
// time. "" when it is not traced.
func tracedAdvice(pid int) string {
	tp := TracedBy(pid)
	if tp == 0 {
		return ""
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", tp))
	name := strings.TrimSpace(string(comm))
	if name == "" {
		name = "?"
	}
	return fmt.Sprintf("it is already traced by process %d (%s), and a process has one tracer at a time: use --nonblocking, or stop that one first", tp, name)
}

// PermissionAdvice says why krait (as it runs now) may not read or trace
// pid and what would let it: another user's process wants root, that user
// or CAP_SYS_PTRACE; the caller's own process under Yama
// (kernel.yama.ptrace_scope, named only where the kernel has it) wants
// CAP_SYS_PTRACE or a lower scope; root without CAP_SYS_PTRACE (a
// container) wants the capability; a target holding capabilities krait
// lacks (PID 1 often) wants krait run with them.
func PermissionAdvice(pid int) string {
	me := statusFields(0, "Uid", "CapEff")
	them := statusFields(pid, "Uid", "CapPrm")
	euid := -1
	if f := strings.Fields(me["Uid"]); len(f) > 1 {
		euid, _ = strconv.Atoi(f[1])
	}
	myCaps, _ := strconv.ParseUint(me["CapEff"], 16, 64)
	hasPtrace := myCaps&(1<<capSysPtrace) != 0
	uid, uidKnown := firstInt(them["Uid"])
	owner := ""
	if uidKnown {
		owner = fmt.Sprintf("uid %d", uid)
		if u := userName(uid); u != "" {
			owner = u
		}
	}
	scope, hasYama := -1, false
	if data, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			scope, hasYama = n, true
		}
	}
	switch {
	case hasYama && scope >= 3:
		return "kernel.yama.ptrace_scope is 3: no process may be traced until the next boot"
	case euid != 0 && !hasPtrace && uidKnown && uid != euid:
		as := " or as " + owner
		if uid == 0 {
			as = ""
		}
		return fmt.Sprintf("it belongs to %s: run krait as root (sudo)%s, or give krait CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep; in Docker: --cap-add SYS_PTRACE)", owner, as)
	case euid != 0 && !hasPtrace && hasYama && scope >= 1:
		return fmt.Sprintf("kernel.yama.ptrace_scope is %d (only a parent may trace its children): run krait as root, give it CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep), or set kernel.yama.ptrace_scope=0", scope)
	case euid != 0 && !hasPtrace:
		return "it is not dumpable (setuid, or prctl PR_SET_DUMPABLE 0): run krait as root or give it CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep)"
	case !hasPtrace:
		return "krait runs as root without CAP_SYS_PTRACE (a container's default): grant it (in Docker: docker run --cap-add SYS_PTRACE; in Kubernetes: securityContext.capabilities.add SYS_PTRACE)"
	}
	theirCaps, err := strconv.ParseUint(them["CapPrm"], 16, 64)
	if err == nil && theirCaps&^myCaps != 0 {
		var missing []string
		for b := 0; b < 64; b++ {
			if theirCaps&^myCaps&(1<<b) != 0 {
				if b < len(capNames) {
					missing = append(missing, capNames[b])
				} else {
					missing = append(missing, fmt.Sprintf("capability %d", b))
				}
			}
		}
		return fmt.Sprintf("it holds capabilities krait lacks (%s), and CAP_SYS_PTRACE does not make up for them here: run krait with at least the target's capabilities (e.g. outside the container that limits krait's bounding set)", strings.Join(missing, ", "))
	}
	return "krait has CAP_SYS_PTRACE, so a security module (AppArmor, SELinux) or another user namespace forbids it"
}

var (
	users     map[int]string
	usersOnce sync.Once
)

func userName(uid int) string {
	usersOnce.Do(func() {
		users = map[int]string{}
		if data, err := os.ReadFile("/etc/passwd"); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				p := strings.Split(line, ":")
				if len(p) > 3 {
					if id, err := strconv.Atoi(p[2]); err == nil {
						users[id] = p[0]
					}
				}
			}
		}
	})
	return users[uid]
}
