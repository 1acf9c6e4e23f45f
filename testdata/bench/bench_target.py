"""Benchmark target for tools/benchdump (runs on CPython 3.x).

    python bench_target.py THREADS [DEPTH] --gap-file FILE --ready-file FILE

Starts THREADS worker threads; each recurses DEPTH frames (default 50) of
recurse(), with a few locals per frame (ints, a str, a small list and dict),
then blocks on an Event. One more thread, the ticker, loops on
time.sleep(0.0005) and tracks the largest gap between consecutive wake-ups:
from inside the process, how long something froze it.

The main thread waits for signals:
  SIGUSR1  reset the largest gap, then write 0 to the gap file (an ack)
  SIGUSR2  write the largest gap, in milliseconds, since the last reset
The gap file is written to a temporary name and renamed, so a reader never
sees half of it. When every worker is at depth, the ready file is written
(the same way) with the process id.

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

lock = threading.Lock()
# Protected by lock: the largest gap since reset, and when the last wake-up
# (or the reset, if later) happened.
state = {"max": 0.0, "last": time.perf_counter()}


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def ticker(parent):
    checked = time.perf_counter()
    while True:
        time.sleep(TICK)
        now = time.perf_counter()
        with lock:
            gap = now - state["last"]
            if gap > state["max"]:
                state["max"] = gap
            state["last"] = now
        if now - checked > 0.5:
            checked = now
            if os.getppid() != parent:
                os._exit(3)


def recurse(level, depth, arrived, stop):
    count = level * 7
    total = count + depth
    name = "frame-%03d" % level
    items = [level, count, name]
    info = {"level": level, "name": name, "items": len(items)}
    if level < depth:
        return recurse(level + 1, depth, arrived, stop)
    arrived()
    stop.wait()
    return len(info)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("threads", type=int)
    ap.add_argument("depth", type=int, nargs="?", default=50)
    ap.add_argument("--gap-file", required=True)
    ap.add_argument("--ready-file", required=True)
    args = ap.parse_args()
    parent = os.getppid()

    def reset(signum, frame):
        with lock:
            state["max"] = 0.0
            state["last"] = time.perf_counter()
        write_atomic(args.gap_file, "0.000\n")

    def report(signum, frame):
        now = time.perf_counter()
        with lock:
            # A freeze that just ended may not have been seen by the ticker
            # yet: count the gap in progress too.
            gap = max(state["max"], now - state["last"])
        write_atomic(args.gap_file, "%.3f\n" % (gap * 1000.0))

    signal.signal(signal.SIGUSR1, reset)
    signal.signal(signal.SIGUSR2, report)

    stop = threading.Event()
    at_depth = [0]
    cond = threading.Condition()

    def arrived():
        with cond:
            at_depth[0] += 1
            cond.notify_all()

    t = threading.Thread(target=ticker, args=(parent,), name="ticker")
    t.daemon = True
    t.start()
    for i in range(args.threads):
        w = threading.Thread(target=recurse, args=(1, args.depth, arrived, stop),
                             name="worker-%d" % i)
        w.daemon = True
        w.start()
    with cond:
        while at_depth[0] < args.threads:
            cond.wait(1.0)
            if os.getppid() != parent:
                os._exit(3)
    write_atomic(args.ready_file, "%d\n" % os.getpid())
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
