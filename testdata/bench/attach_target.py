"""Benchmark target for tools/benchattach (runs on CPython 3.6+).

    python attach_target.py --report FILE --ready FILE
        [--idle] [--main-thread] [--ticker] [--debugpy-port N]
    python -m pdb attach_target.py -- --report FILE --ready FILE ...

A worker thread runs a call-heavy workload without end: each iteration of
work() makes CALLS_PER_ITER Python function calls (small functions, fib()
recursion, a few method calls). --main-thread runs it on the main thread
instead (for pdb, which traces only the thread it started on); --idle does
not run it at all (the worker waits on an Event).

never_called() is here, in the same file as the workload, and nothing calls
it: the benchmark puts its breakpoint on the line marked below, so a
debugger has a breakpoint armed in the very file whose functions run hot.

--ticker starts one more thread that loops on time.sleep(0.0005) and keeps
the largest gap between consecutive wake-ups: from inside the process, how
long something froze it (as bench_target.py does for tools/benchdump).

--debugpy-port N calls debugpy.listen(("127.0.0.1", N)) before anything
else, so a DAP client can attach (the benchmark's does).

Unless --main-thread, the main thread sleeps (clock_nanosleep), a blocking
call krait can enter through. It answers signals, writing to the report
file (a temporary name, then renamed, so a reader never sees half of it):
  SIGUSR1  start a window: note the time and the call count, reset the
           largest gap; write "0" (an ack)
  SIGUSR2  end the window: write "CALLS_PER_S GAP_MS SECONDS", the
           throughput over the window, the ticker's largest gap in it in
           milliseconds (-1 without --ticker), and its length
Times are taken inside the process, so the window is exact whatever the
signals' delivery delay. The ready file is written (the same way, with the
process id) once the workload runs (or, with --idle, once every thread is
up).

The process exits by itself if its parent dies, so a benchmark that is
killed does not leave it behind.
"""

import argparse
import os
import signal
import sys
import threading
import time

TICK = 0.0005
FIB_N = 10
# work(): 1 (itself) + 10 add() + fib(FIB_N) (2 * fib(FIB_N + 1) - 1 calls,
# 177 for 10) + 3 method calls (bump, reset_if, value; the Counter itself is
# made once, outside the loop).
CALLS_PER_ITER = 1 + 10 + 177 + 3

lock = threading.Lock()
# Protected by lock: the largest gap since reset, and when the last wake-up
# (or the reset, if later) happened.
gap_state = {"max": 0.0, "last": time.perf_counter()}
# Iterations of work() done so far (written by the one workload thread).
progress = [0]
window = {"t": 0.0, "n": 0}


def never_called():
    """Holds the benchmark's breakpoint: nothing calls it."""
    return "never"  # benchattach: breakpoint


def add(a, b):
    return a + b


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


class Counter(object):
    def __init__(self):
        self.n = 0

    def bump(self, k):
        self.n += k
        return self.n

    def value(self):
        return self.n

    def reset_if(self, limit):
        if self.n > limit:
            self.n = 0
        return self.n


def work(c, i):
    s = 0
    for k in range(10):
        s = add(s, k)
    s += fib(FIB_N)
    c.bump(s & 7)
    c.reset_if(1 << 20)
    return c.value() + i


def run_workload(parent):
    c = Counter()
    i = 0
    while True:
        work(c, i)
        i += 1
        progress[0] = i
        if i & 4095 == 0 and os.getppid() != parent:
            os._exit(3)


def ticker(parent):
    checked = time.perf_counter()
    while True:
        time.sleep(TICK)
        now = time.perf_counter()
        with lock:
            gap = now - gap_state["last"]
            if gap > gap_state["max"]:
                gap_state["max"] = gap
            gap_state["last"] = now
        if now - checked > 0.5:
            checked = now
            if os.getppid() != parent:
                os._exit(3)


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--idle", action="store_true")
    ap.add_argument("--main-thread", action="store_true")
    ap.add_argument("--ticker", action="store_true")
    ap.add_argument("--debugpy-port", type=int, default=0)
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        # python -m pdb attach_target.py -- ARGS: 3.13's pdb needs the "--",
        # older ones pass it on.
        argv = argv[1:]
    args = ap.parse_args(argv)
    parent = os.getppid()

    if args.debugpy_port:
        import debugpy
        debugpy.listen(("127.0.0.1", args.debugpy_port))

    def start(signum, frame):
        now = time.perf_counter()
        window["t"], window["n"] = now, progress[0]
        with lock:
            gap_state["max"] = 0.0
            gap_state["last"] = now
        write_atomic(args.report, "0\n")

    def report(signum, frame):
        now = time.perf_counter()
        n = progress[0]
        gap = -1.0
        if args.ticker:
            with lock:
                # A freeze that just ended may not have been seen by the
                # ticker yet: count the gap in progress too.
                gap = max(gap_state["max"], now - gap_state["last"]) * 1000.0
        secs = now - window["t"]
        rate = (n - window["n"]) * CALLS_PER_ITER / secs if secs > 0 else 0.0
        write_atomic(args.report, "%.1f %.3f %.4f\n" % (rate, gap, secs))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, report)

    if args.ticker:
        t = threading.Thread(target=ticker, args=(parent,), name="ticker")
        t.daemon = True
        t.start()
    if args.idle:
        stop = threading.Event()
        w = threading.Thread(target=stop.wait, name="worker")
        w.daemon = True
        w.start()
    elif not args.main_thread:
        w = threading.Thread(target=run_workload, args=(parent,), name="worker")
        w.daemon = True
        w.start()
        while progress[0] == 0:
            time.sleep(0.001)
    write_atomic(args.ready, "%d\n" % os.getpid())
    if args.main_thread:
        run_workload(parent)
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(3)


if __name__ == "__main__":
    sys.exit(main())
