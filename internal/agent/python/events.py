# events.py: probe events: a bounded buffer any thread appends to, flushed
# to krait by the agent thread (PROTOCOL.md, "Probe events")
#
# A probe (dprintf, a cache or SQL tracer) runs in the application's own
# threads and must never slow or stop them: ev_put appends to a deque
# (atomic under the GIL, no lock) and returns; when the buffer is full the
# event is dropped and counted by kind. The agent thread sends what is
# queued at least every EV_PERIOD seconds while events are queued or a
# probe is active, EV_CHUNK events per message, so that no single
# encoding holds the GIL for long; encoding takes the GIL from the
# application, so it gets at most EV_BUDGET of each second: events beyond
# what that sends are dropped (and counted) rather than slowing requests.
# Events go as marshal data (_ev_encode: a tenth of json.dumps's time or
# less), as JSON when marshal refuses them.

EV_MAX = 50000     # events held between flushes (cfg 'ev_max' may say fewer); more are dropped (and counted)
EV_CHUNK = 1000    # events per "events" message
EV_PERIOD = 0.05   # seconds between flushes while probes are active
EV_BUDGET = 0.1    # at most this share of each second is spent encoding events (holding the GIL)


def _ev_encode(evs, dropped):
    """One "events" message: a JSON line whose "marshal" says how many bytes
    of marshal data (format 4) follow it, the events; marshal.dumps is many
    times cheaper than json.dumps, and its time is the application's. An
    event holding what marshal does not take (an instance of a subclass,
    an object) sends the batch as JSON instead."""
    try:
        blob = marshal.dumps(evs, 4)
        head = json.dumps({'event': 'events', 'marshal': len(blob), 'n': len(evs), 'dropped': dropped})
        return head.encode('utf-8') + b'\n' + blob
    except Exception:
        pass
    try:
        data = json.dumps({'event': 'events', 'events': evs, 'dropped': dropped}, default=_ev_default)
    except Exception as e:  # e.g. a circular structure: the batch is lost, and said so
        for ev in evs:
            kind = ev.get('kind') if type(ev) is dict else None
            dropped[kind] = dropped.get(kind, 0) + 1
        data = json.dumps({'event': 'events', 'events': [], 'dropped': dropped, 'error': exc_line(e)})
    return (data + '\n').encode('utf-8')


def _ev_default(o):
    """json.dumps of an event meets a value that is not JSON: its type's
    name in its place (no user code runs)."""
    return '<%s>' % type_name(o)


class _Events(object):
    # probe events
    def _ev_init(self):
        self.ev_buf = collections.deque()
        self.ev_max = min(int(self.cfg.get('ev_max') or EV_MAX), EV_MAX)
        self.ev_dropped = {}               # kind -> events dropped since the last flush
        self.ev_dlock = threading.Lock()   # ev_dropped (taken only when the buffer is full)
        self.ev_users = set()              # active producers: the agent thread polls every EV_PERIOD
        self.ev_last = 0.0
        self.ev_window, self.ev_spent = 0.0, 0.0  # the current second, and encoding time spent in it

    def ev_put(self, ev):
        """Queue ev (a JSON-able dict with a "kind") for krait, from any
        thread. Never blocks and does no I/O: when the buffer is full the
        event is dropped and counted; once the agent is leaving (or gone)
        it does nothing."""
        try:
            if self.closing:
                return
            buf = self.ev_buf
            if len(buf) < self.ev_max:
                buf.append(ev)
                return
            if os.getpid() != self.pid:  # a forked child: no agent thread flushes its copy
                buf.clear()
                return
            k = ev.get('kind')
            with self.ev_dlock:
                d = self.ev_dropped
                d[k] = d.get(k, 0) + 1
        except Exception:
            pass  # the agent left meanwhile (its dict is cleared)

    def ev_use(self, name, on):
        """A producer named name starts (on) or stops: while any is
        active, the agent thread wakes every EV_PERIOD to flush."""
        if on:
            self.ev_users.add(name)
        else:
            self.ev_users.discard(name)

    def _ev_timeout(self, default):
        """How long the serving loop may wait for a request."""
        if self.ev_users or self.ev_buf or self.ev_dropped:
            return EV_PERIOD
        return default

    def _ev_flush(self, force=False):
        """Send what is queued (agent thread): the events queued now, in
        messages of EV_CHUNK, the first carrying the counts dropped since
        the previous flush. False if the connection is gone."""
        now = time.time()
        if not force and now - self.ev_last < EV_PERIOD:
            return True
        self.ev_last = now
        buf = self.ev_buf
        n = len(buf)
        dropped = {}
        if self.ev_dropped:
            with self.ev_dlock:
                dropped, self.ev_dropped = self.ev_dropped, {}
        if not n and not dropped:
            return True
        if now - self.ev_window >= 1:
            self.ev_window, self.ev_spent = now, 0.0
        while True:
            k = min(n, EV_CHUNK)
            evs = [buf.popleft() for _ in range(k)]
            n -= k
            if self.ev_spent >= EV_BUDGET:  # over budget: this second's rest is dropped
                for ev in evs:
                    kind = ev.get('kind') if type(ev) is dict else None
                    dropped[kind] = dropped.get(kind, 0) + 1
                if n > 0:
                    continue
                if not dropped:
                    return True
                evs = []
            t0 = time.time()
            data = _ev_encode(evs, dropped)
            self.ev_spent += time.time() - t0
            if not self._send_data(data):
                return False
            dropped = {}
            if n <= 0:
                return True

    def _ev_clear(self):
        """Leaving: no more events (ev_put does nothing once closing)."""
        self.ev_users.clear()
        self.ev_buf.clear()
        self.ev_dropped = {}
