"""Benchmark target for tools/benchrecord (runs on CPython 3.x).

    python record_target.py THREADS [DEPTH]

Starts THREADS worker threads; each recurses DEPTH frames (default 30) of
recurse(), then loops forever on a little CPU-bound work, counting the
loops it finished. The main thread writes one line to standard output every
0.1 s: the monotonic time in seconds and the sum of every worker's count,

    READY <pid>            once every worker is at depth
    <time> <total>         then every 0.1 s

so that a benchmark can tell how much work the target got done while a
profiler sampled it, against a window with none.

The process exits by itself if its parent dies or its standard output is
closed, so a benchmark that is killed does not leave it behind.
"""

import os
import sys
import threading
import time

counts = []


def work(i):
    c = counts
    while True:
        x = 0
        for k in range(200):
            x += k
        c[i] += 1


def recurse(level, depth, i, arrived, go):
    if level < depth:
        return recurse(level + 1, depth, i, arrived, go)
    arrived.release()
    # Work only once every thread is at depth: CPU-bound threads would
    # slow down the start of the others.
    go.wait()
    work(i)


def main():
    n = int(sys.argv[1])
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    parent = os.getppid()
    arrived = threading.Semaphore(0)
    go = threading.Event()
    for i in range(n):
        counts.append(0)
        t = threading.Thread(target=recurse, args=(1, depth, i, arrived, go), name="worker-%d" % i)
        t.daemon = True
        t.start()
    for _ in range(n):
        arrived.acquire()
    go.set()
    out = sys.stdout
    try:
        out.write("READY %d\n" % os.getpid())
        out.flush()
        while True:
            time.sleep(0.1)
            out.write("%.6f %d\n" % (time.monotonic(), sum(counts)))
            out.flush()
            if os.getppid() != parent:
                return
    except (BrokenPipeError, OSError):
        return


if __name__ == "__main__":
    main()
