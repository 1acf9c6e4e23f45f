# Target program for internal/agent's tests: it loads krait's agent itself,
# without injection, the way krait's bootstrap does, and reports on stdout
# what a test needs to check from the inside.
#
# Protocol (one line each way):
#   stdout first: {"pid": PID, "version": "3.x.y"}
#   stdin:  load {"agent": PATH, "cfg": {...KRAIT...}, "mmap": bool}
#           exec the agent; with mmap, first map 3 pages for it to unmap
#           (as krait's trampoline pages), reported as "page"
#   stdin:  import          import lazy_mod, start thread "late" calling it
#   stdin:  cthread         start a thread with pthread_create (unknown to
#                           threading) that calls c_body in a loop
#   stdin:  flood           start thread "flood": flood_body in a loop as
#                           fast as it can, counting its iterations (FLOOD)
#   stdin:  count           print {"count": {...}} (see count()): what the
#                           process holds, counted by the process itself
#   stdout every 100 ms: {"status": {...}} (see status())
#
# With a tracing_possible address in the agent's trace configuration
# (Python < 3.9), the status carries that counter as it was before the
# agent was loaded and as it is now: the agent must leave it as it found it.
#
# The worker and counter threads start before the agent is loaded, so the
# agent must install itself on threads that are already running. Lines are
# found by the tests through their "@name" markers.

import ctypes
import functools
import gc
import json
import os
import select
import sys
import threading
import time

COUNT = 0
ITER = 0
TRACES = {}
LAZY = None
CYCLE = [1]
CYCLE.append(CYCLE)
LONG = "x" * 5000
TP = None  # [address of tracing_possible, its value before the last load]
PAGE = 0
FLOOD = 0
PROBES = {}  # ITER -> repr of what the worker passed probe_me: the truth for a dprintf's output


class Thing(object):
    def __init__(self):
        self.a = 1
        self.name = "thing"

    def __repr__(self):
        return "Thing!"

    def poke(self):
        return self.a  # @poke

    @staticmethod
    def smeth(v):
        return v + 2  # @static-body

    @property
    def prop(self):
        return self.a * 5  # @prop-body


class Sub(Thing):
    def poke(self, by=2):
        base = super().poke()  # @sub-poke: a method with a free variable (__class__)
        return base + by


def evens(n):
    return [k * k
            for k in range(n)
            if k % 2 == 0]  # @comp-line: only in <listcomp>'s code before 3.12


def deco(f):
    @functools.wraps(f)
    def inner(*a, **k):
        return f(*a, **k)
    return inner


@deco
def decorated(v):
    return v - 1  # @decorated-body


def gen(n):
    for i in range(n):
        yield i * 10  # @gen-body


SPY_CALLS = []  # what Spy's hooks recorded: completing its attributes must run none of them


class Spy(object):
    """An object whose every hook records being called, and raises."""
    token = "t"

    def __init__(self):
        self.total = 3
        self.to_ship = True
        self._hidden = 1

    def __getattribute__(self, name):
        if name not in ("total", "to_ship", "_hidden", "__class__", "__dict__"):
            SPY_CALLS.append("getattribute " + name)
        return object.__getattribute__(self, name)

    def __getattr__(self, name):
        SPY_CALLS.append("getattr " + name)
        raise AttributeError(name)

    def __dir__(self):
        SPY_CALLS.append("dir")
        raise RuntimeError("dir")

    @property
    def topping(self):
        SPY_CALLS.append("topping")
        raise RuntimeError("topping")


class Holder(object):
    def __init__(self, **kw):
        self.__dict__.update(kw)


ENV = {"HOME": "/home/k", "HOSTNAME": "box", "PATH": "/bin", "_PRIVATE": 1, 3: "an int key"}
DATA = Holder(order=Spy(), env=ENV, items=[Holder(sku="a")])
THING = Thing()
SUB = Sub()


def helper(v):  # @def-helper
    w = v + 3  # @helper-first
    return w


def compute(x):
    y = x * 2  # @compute-first

    # @comment-line: a breakpoint here moves to the next line with code
    z = helper(y)  # @call-helper
    return z + 1  # @compute-return


def probe_me(i, obj):
    return i  # @probe


def flood_body(i):
    return i  # @flood-body


def flood():
    global FLOOD
    while True:
        FLOOD += 1
        flood_body(FLOOD)


def looper(n):
    total = 0
    for k in range(n):  # @loop-head
        total += k  # @loop-body
    return total  # @loop-end


def report(name):
    TRACES[name] = sys.gettrace() is not None


def worker():
    global ITER
    while True:
        ITER += 1
        compute(ITER)  # @worker-call
        obj = (ITER, "s%d" % ITER, {"k": ITER / 4.0, "l": [None, True, -ITER]})
        PROBES[ITER] = repr(obj)
        PROBES.pop(ITER - 50, None)
        probe_me(ITER, obj)
        looper(3)
        THING.poke()
        SUB.poke()  # @worker-sub
        decorated(ITER)
        Thing.smeth(ITER)
        THING.prop
        sum(gen(2))
        evens(3)
        if LAZY is not None:
            LAZY.lazy_func(ITER)
        report("worker")  # @worker-report
        time.sleep(0.005)  # @worker-sleep


def late():
    n = 0
    while True:
        n -= 1
        report("late")
        LAZY.lazy_func(n)
        time.sleep(0.005)


def c_body(i):
    return i * 3  # @c-body


def c_thread(_):
    i = 0
    while True:
        i += 1
        c_body(i)
        report("cthread")
        time.sleep(0.005)


C_THREAD = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(c_thread)


def counter():
    global COUNT
    while True:
        COUNT += 1
        report("counter")
        time.sleep(0.002)


def status(loads):
    tools = None
    if hasattr(sys, "monitoring"):
        tools = [sys.monitoring.get_tool(i) for i in range(6)]
    return {
        "count": COUNT,
        "iter": ITER,
        "flood": FLOOD,
        "probes": dict(PROBES),
        "traces": dict(TRACES),
        "agents": [t.name for t in threading.enumerate() if t.name == "krait-agent"],
        "tools": tools,
        "loads": loads,
        "page": PAGE,
        "tp": TP and [TP[1], ctypes.c_int.from_address(TP[0]).value],
        "wrapped": wrapped(),
        # every live function running a krait wrapper (a wrapper around a
        # wrapper would show as one more)
        "wrappers": sum(1 for o in gc.get_objects()
                        if type(o) is type(wrapped) and o.__code__.co_filename == "<krait-wrapper>"),
    }


def count():
    """What the process holds, counted by itself: function objects of this
    program's files and the code objects they reach (code objects are not
    tracked by gc before 3.12), as they are, without a collection; then,
    after a collection, krait's functions and objects (its classes are
    cyclic, as every class is, so they last until a collection), RSS and
    the number of objects gc tracks."""
    files = {__file__}
    if LAZY is not None:
        files.add(LAZY.__file__)

    def functions(keep):
        fs, codes, seen = 0, 0, set()
        for o in gc.get_objects():
            if type(o) is type(count) and keep(o.__code__.co_filename):
                fs += 1
                todo = [o.__code__]
                while todo:
                    c = todo.pop()
                    if id(c) not in seen:
                        seen.add(id(c))
                        codes += 1
                        todo += [k for k in c.co_consts if type(k) is type(c)]
        return fs, codes
    funcs, codes = functions(lambda f: f in files)
    gc.collect()
    kfuncs, kcodes = functions(lambda f: f.startswith("<krait"))
    krait = sum(1 for o in gc.get_objects() if getattr(type(o), "__module__", None) == "__krait_agent__" or (
        isinstance(o, type) and o.__module__ == "__krait_agent__"))
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return {"funcs": funcs, "codes": codes, "krait_funcs": kfuncs, "krait_codes": kcodes,
            "krait": krait, "rss_kb": rss, "objects": len(gc.get_objects())}


def wrapped():
    """Functions of this file whose __code__ is not their own (the settrace
    backend swaps in a wrapper while they hold a breakpoint)."""
    fs = [(n, f) for n, f in list(globals().items()) if type(f) is type(wrapped) and n != "decorated"]
    fs += [("Thing.poke", Thing.poke), ("Sub.poke", Sub.poke), ("Thing.smeth", Thing.smeth),
           ("Thing.prop", Thing.__dict__["prop"].fget), ("decorated", decorated.__wrapped__)]
    if LAZY is not None:
        fs += [("lazy_func", LAZY.lazy_func)]
    return sorted(n for n, f in fs if f.__code__.co_filename != f.__globals__["__file__"])


def main():
    global LAZY, TP, PAGE
    threading.Thread(target=worker, name="worker", daemon=True).start()
    threading.Thread(target=counter, name="counter", daemon=True).start()
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
            if cmd == "load":
                req = json.loads(arg)
                with open(req["agent"]) as f:
                    src = f.read()
                addr = (req["cfg"]["trace"] or {}).get("tracing_possible")
                if addr:
                    TP = [addr, ctypes.c_int.from_address(addr).value]
                PAGE = 0
                if req.get("mmap"):
                    mmap = ctypes.CDLL(None).mmap
                    mmap.restype = ctypes.c_void_p
                    mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                     ctypes.c_int, ctypes.c_int, ctypes.c_long]
                    PAGE = mmap(None, 3 * 4096, 3, 0x22, -1, 0)  # RW, private|anonymous
                    req["cfg"]["page"], req["cfg"]["page_size"] = PAGE, 3 * 4096
                # What krait's bootstrap does.
                exec(compile(src, "<krait-agent>", "exec"),
                     {"__name__": "__krait_agent__", "KRAIT": req["cfg"]})
                loads += 1
            elif cmd == "import":
                import lazy_mod
                LAZY = lazy_mod
                threading.Thread(target=late, name="late", daemon=True).start()
            elif cmd == "flood":
                threading.Thread(target=flood, name="flood", daemon=True).start()
            elif cmd == "count":
                print(json.dumps({"count": count()}))
            elif cmd == "cthread":
                tid = ctypes.c_ulong()
                ctypes.CDLL(None).pthread_create(ctypes.byref(tid), None, C_THREAD, None)
        report("main")
        print(json.dumps({"status": status(loads)}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
