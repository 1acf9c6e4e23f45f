# monitoring.py: the sys.monitoring backend (3.12+)

class _Monitoring(object):
    # sys.monitoring (3.12+) .............................................
    def _mon_install(self):
        mon = sys.monitoring
        for tid in [mon.DEBUGGER_ID] + list(range(6)):
            if mon.get_tool(tid) is None:
                try:
                    mon.use_tool_id(tid, 'krait')
                except ValueError:
                    continue
                self.tool = tid
                break
        else:
            raise Err('no free sys.monitoring tool id')
        E = mon.events
        mon.register_callback(tid, E.LINE, self._m_line)
        mon.register_callback(tid, E.PY_START, self._m_start)
        mon.register_callback(tid, E.PY_RESUME, self._m_start)
        mon.register_callback(tid, E.PY_RETURN, self._m_return)
        mon.register_callback(tid, E.PY_YIELD, self._m_yield)
        mon.register_callback(tid, E.PY_UNWIND, self._m_unwind)
        mon.register_callback(tid, E.RAISE, self._m_raise)

    def _mon_uninstall(self):
        mon, tid = sys.monitoring, self.tool
        if tid is None:
            return
        mon.set_events(tid, 0)
        for c in self.mcodes.values():
            mon.set_local_events(tid, c, 0)
        self.mcodes.clear()
        E = mon.events
        for e in (E.LINE, E.PY_START, E.PY_RESUME, E.PY_RETURN, E.PY_YIELD, E.PY_UNWIND, E.RAISE):
            mon.register_callback(tid, e, None)
        mon.free_tool_id(tid)

    def _mon_events(self, restart):
        E = sys.monitoring.events
        ev = E.PY_START | E.PY_RESUME if (self.lines or self.pending) else 0
        if self.steps:
            ev |= E.LINE | E.PY_RETURN | E.PY_YIELD | E.PY_UNWIND
        for _, kind, _, _ in self.exc_filters:
            ev |= E.RAISE if kind == 'raise' else E.PY_UNWIND
        sys.monitoring.set_events(self.tool, ev)
        if restart:
            sys.monitoring.restart_events()

    def _mon_code(self, c):
        """Local LINE events on c iff it holds a breakpoint line."""
        ls = self.clines.get(id(c))
        if ls is None:
            ls = self.clines[id(c)] = code_lines(c)
        self.mcodes[id(c)] = c
        bl = self.lines.get(self._abs(c.co_filename))
        on = bool(bl) and not ls.isdisjoint(bl)
        sys.monitoring.set_local_events(self.tool, c, sys.monitoring.events.LINE if on else 0)

    def _mon_changed(self, path):
        """Breakpoints of path changed. No heap walk: code that starts from
        now on is seen by PY_START (PY_RESUME for a suspended generator or
        coroutine), and only code running now is looked for, in the
        threads' frames."""
        with self.lock:
            if path in self.lines:
                for f in sys._current_frames().values():
                    while f is not None:
                        c = f.f_code
                        if id(c) not in self.mcodes and self._abs(c.co_filename) == path:
                            self._mon_code(c)
                        f = f.f_back
            for c in list(self.mcodes.values()):
                self._mon_code(c)
            self._mon_events(True)

    def _m_start(self, code, offset):
        """PY_START or PY_RESUME: the first time each code object runs after
        a change (DISABLE until the next restart_events)."""
        try:
            if not self.closing and os.getpid() == self.pid and self._abs(code.co_filename) in self.lines:
                with self.lock:
                    if id(code) not in self.mcodes:
                        self._mon_code(code)
        except Exception:
            pass
        return _DISABLE

    def _m_line(self, code, line):
        try:
            if self.closing or os.getpid() != self.pid:
                return _DISABLE
            ident = _ident()
            bl = self.lines.get(self.fcache.get(code.co_filename) or self._abs(code.co_filename))
            bps = bl.get(line) if bl else None
            if bps is None and ident not in self.steps:
                return None if self.steps else _DISABLE
            if ident != self.ident:
                self._line(sys._getframe(1), line, ident, bps)
        except Exception:
            pass
        return None

    def _m_yield(self, code, offset, rv):
        try:
            if self.steps and not self.closing:
                self._returned(sys._getframe(1), rv, True)
        except Exception:
            pass

    def _m_unwind(self, code, offset, exc):
        try:
            if self.closing:
                return
            f = sys._getframe(1)
            if self.steps:
                self._returned(f, None)
            if self.exc_filters and self._outermost(f):
                self._exception(f, exc, 'uncaught')
        except Exception:
            pass

    def _m_raise(self, code, offset, exc):
        try:
            if self.exc_filters and not self.closing:
                self._exception(sys._getframe(1), exc, 'raise')
        except Exception:
            pass

    def _m_return(self, code, offset, rv):
        try:
            if self.steps and not self.closing:
                self._returned(sys._getframe(1), rv)
        except Exception:
            pass
