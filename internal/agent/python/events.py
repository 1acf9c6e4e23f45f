# events.py: the non-blocking event stream from application threads to krait

EV_TICK = 0.05  # seconds between two flushes
EV_MAX = 20000  # events buffered between two flushes; beyond, dropped and counted


class _Events(object):
    # Any application thread hands the agent an event (a JSON-able dict
    # with a "kind") through ev_put, which never blocks and never raises:
    # the buffer is bounded, and an event that does not fit is dropped and
    # counted by kind. The agent thread sends what was buffered as one
    # {"event": "events", "events": [...], "dropped": {kind: n}} message
    # every EV_TICK seconds while someone uses the stream.

    def ev_put(self, ev):
        buf = self.ev_buf
        if len(buf) < EV_MAX:
            buf.append(ev)  # list.append is atomic under the GIL
        else:
            d = self.ev_drop
            k = ev.get('kind', '?')
            d[k] = d.get(k, 0) + 1

    def _ev_flush(self):
        """Agent thread: send what was buffered (swapped for an empty
        buffer first, so that putters never wait for the send)."""
        buf, self.ev_buf = self.ev_buf, []
        drop, self.ev_drop = self.ev_drop, {}
        if not buf and not drop:
            return
        for i in range(0, max(len(buf), 1), 2000):
            msg = {'event': 'events', 'events': buf[i:i + 2000], 'dropped': drop if i == 0 else {}}
            self.send(msg)
