# A loaded target for internal/agent's tests (issue 14): threads that build
# tuples of unknown length in a tight loop (tuple(generator) goes through
# _PyTuple_Resize, which fails with SystemError if anything else holds a
# reference to the tuple being built), CPU-busy threads, a large heap, and
# a caller thread calling target() for breakpoints. It loads krait's agent
# itself, as fixture.py does, and never walks its own heap (that would be
# the very fault the tuple threads detect).
#
# Protocol (one line each way):
#   stdout first: {"pid": PID, "version": "3.x.y"}
#   stdin:  start {"tuples": N, "busy": N, "objects": N}
#   stdin:  load {"agent": PATH, "cfg": {...KRAIT...}}
#   stdin:  held            start a non-daemon thread "held" calling held()
#                           until exit (threading's shutdown joins it)
#   stdin:  fork            fork; the child prints {"child": {"pid": PID,
#                           "sockets": [inodes of the sockets it holds]}}
#                           and exits normally (sys.exit: atexit and
#                           threading's shutdown run in it)
#   stdin:  exit            sys.exit(0) from the main thread
#   stdout every 100 ms: {"status": {...}} (see status())

import json
import os
import select
import sys
import threading
import time
import warnings

SYSERR = 0      # SystemErrors caught by the tuple builders
LAST = None     # the last one's message
BUILT = 0       # tuples built
CALLS = 0       # calls of target()
SPINS = 0       # iterations of the CPU-busy threads
HEAP = []
EXITING = False


def held(i):
    return i + 2  # @busy-held


def held_loop():
    i = 0
    while not EXITING:
        i = held(i)
        time.sleep(0.001)


def target(i):
    return i + 1  # @busy-target


def caller():
    global CALLS
    while True:
        CALLS = target(CALLS)
        time.sleep(0.001)


def tuples(k):
    global SYSERR, LAST, BUILT
    n = 0
    while True:
        n = (n + 7) % (40 + k)
        try:
            t = tuple(x for x in range(n))
            BUILT += 1
            del t
        except SystemError as e:
            SYSERR += 1
            LAST = str(e)


def busy():
    global SPINS
    x = 0
    while True:
        for i in range(1000):
            x = (x * 31 + i) % 1000003
        SPINS += 1


class Item(object):
    def __init__(self, i):
        self.i = i
        self.name = "item%d" % i


def status(loads):
    return {"syserr": SYSERR, "last": LAST, "built": BUILT, "calls": CALLS, "spins": SPINS,
            "loads": loads, "heap": len(HEAP),
            "agents": [t.name for t in threading.enumerate() if t.name == "krait-agent"]}


def main():
    global EXITING
    threading.Thread(target=caller, name="caller", daemon=True).start()
    print(json.dumps({"pid": os.getpid(), "version": "%d.%d.%d" % sys.version_info[:3]}))
    sys.stdout.flush()
    buf, loads = b"", 0
    while True:
        r, _, _ = select.select([0], [], [], 0.1)
        if r:
            data = os.read(0, 65536)
            if not data:
                return
            buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            cmd, _, arg = line.decode().partition(" ")
            if cmd == "start":
                req = json.loads(arg)
                HEAP.extend(Item(i) for i in range(req.get("objects", 0)))
                for k in range(req.get("tuples", 0)):
                    threading.Thread(target=tuples, args=(k,), name="tuples-%d" % k, daemon=True).start()
                for k in range(req.get("busy", 0)):
                    threading.Thread(target=busy, name="busy-%d" % k, daemon=True).start()
            elif cmd == "load":
                req = json.loads(arg)
                with open(req["agent"]) as f:
                    src = f.read()
                exec(compile(src, "<krait-agent>", "exec"),
                     {"__name__": "__krait_agent__", "KRAIT": req["cfg"]})
                loads += 1
            elif cmd == "held":
                threading.Thread(target=held_loop, name="held").start()
            elif cmd == "fork":
                with warnings.catch_warnings():  # 3.12+: forking with threads
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
                if pid == 0:
                    socks = []
                    for fd in os.listdir("/proc/self/fd"):
                        try:
                            link = os.readlink("/proc/self/fd/" + fd)
                        except OSError:
                            continue
                        if link.startswith("socket:["):
                            socks.append(int(link[8:-1]))
                    print(json.dumps({"child": {"pid": os.getpid(), "sockets": socks}}))
                    sys.stdout.flush()
                    sys.exit(0)
                os.waitpid(pid, 0)
            elif cmd == "exit":
                EXITING = True
                sys.exit(0)
        print(json.dumps({"status": status(loads)}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
