# settrace.py: the settrace backend (< 3.12): trace functions, thread states

class _Settrace(object):
    # settrace (< 3.12) ...................................................
    def _gtrace(self, frame, event, arg):
        try:
            if self.closing or os.getpid() != self.pid:
                # A thread that set us just as the agent left (or a forked
                # child's): untrace it.
                if not self.trick and sys.gettrace() is self.gt:
                    sys.settrace(None)
                return None
            if self.trick and _ident() == self.ident:
                return None
            c = frame.f_code
            hit = self.ccache.get(id(c))
            if hit is None or hit[0] is not c:
                hit = (c, self._code_has_bp(c))
                self.ccache[id(c)] = hit
            if hit[1]:
                return self.lt
            st = self.steps.get(_ident())
            if st is not None and not self._hidden(frame) and (
                    st.mode in ('step', 'interrupt') or frame is st.frame or
                    self._relation(frame, st.frame) == 'gone'):
                return self.lt
            if self.exc_filters and not self._hidden(frame):
                # Exception events only: no line events in this frame.
                if hasattr(frame, 'f_trace_lines'):
                    frame.f_trace_lines = False
                return self.lt
        except Exception:
            pass
        return None

    def _code_has_bp(self, c):
        """Only code objects with a breakpoint on one of their own lines get
        line events (a pending breakpoint's file: every code of it, until
        it resolves)."""
        path = self.fcache.get(c.co_filename) or self._abs(c.co_filename)
        bl = self.lines.get(path)
        if not bl:
            return False
        mine = code_lines(c)
        return any(l in mine for l in bl)

    def _ltrace(self, frame, event, arg):
        try:
            if event == 'return':
                # The frame returns or, a generator's or coroutine's,
                # suspends: it keeps no f_trace of ours (a suspended one
                # would hold it, and the agent, until resumed; the next
                # 'call' event sets it again).
                if self.steps and not self.closing:
                    self._returned(frame, arg, self._yielding(frame))
                frame.f_trace = None
                return None
            if self.closing:
                return None
            if event == 'exception':
                if self.exc_filters:
                    tb = arg[2]
                    if tb is not None and tb.tb_next is None:  # where it is raised
                        self._exception(frame, arg[1], 'raise')
                    if self._outermost(frame):  # it may still catch it
                        self._exception(frame, arg[1], 'uncaught')
            elif event == 'line':
                ident, c = _ident(), frame.f_code
                bl = self.lines.get(self.fcache.get(c.co_filename) or self._abs(c.co_filename))
                line = frame.f_lineno
                bps = bl.get(line) if bl else None
                if bps is not None or ident in self.steps:
                    self._line(frame, line, ident, bps)
            # Keep line events only while this thread is traced: a frame
            # with f_trace set but no events shows a stale f_lineno (3.6-3.9).
            return None if self.closing or sys.gettrace() is not self.gt else self.lt
        except Exception:
            return None

    @staticmethod
    def _yielding(frame):
        """At a 'return' event: whether a coroutine's frame suspends (at a
        yield or await) rather than returns or raises."""
        c = frame.f_code
        if not c.co_flags & CO_AWAITS:
            return False
        try:
            code, i = c.co_code, frame.f_lasti
            # Before 3.11 a suspended YIELD_FROM (await) leaves f_lasti on
            # the instruction before it, to run it again on resuming.
            return code[i] in _YIELD_OPS or (i + 2 < len(code) and code[i + 2] in _YIELD_OPS)
        except Exception:
            return False

    def _tr_install(self):
        T = self.T = self.cfg.get('trace')
        if not T:
            raise Err('no trace configuration (KRAIT["trace"]) for Python %d.%d' % sys.version_info[:2])
        api = self.api = ctypes.PyDLL(None)
        api.PyThreadState_Get.restype, api.PyThreadState_Get.argtypes = _VP, []
        for n in ('PyInterpreterState_ThreadHead', 'PyThreadState_Next'):
            getattr(api, n).restype, getattr(api, n).argtypes = _VP, [_VP]
        for n in ('Py_IncRef', 'Py_DecRef'):
            getattr(api, n).restype, getattr(api, n).argtypes = None, [_VP]
        me = self.me = api.PyThreadState_Get()
        if sys.gettrace() is not None:
            raise Err('the agent thread is traced')
        # Learn the C trampoline, the trace object and use_tracing's value
        # from our own thread state.
        self.trick = True
        try:
            sys.settrace(self.gt)
            self.tfunc = _VP.from_address(me + T['c_tracefunc']).value
            self.tobj = _VP.from_address(me + T['c_traceobj']).value
            # Inline, not through _use_tracing(): on 3.10 a Python call has
            # its own _PyCFrame, gone once the call returns.
            if T.get('use_tracing') is not None:
                self.utv = ctypes.c_int.from_address(me + T['use_tracing']).value
            elif T.get('cframe') is not None and T.get('cframe_use_tracing') is not None:
                self.utv = ctypes.c_ubyte.from_address(
                    _VP.from_address(me + T['cframe']).value + T['cframe_use_tracing']).value
        finally:
            sys.settrace(None)
            self.trick = False
        if self.utv is None:
            self.tobj = None
            raise Err('KRAIT["trace"] locates no use_tracing flag (use_tracing, or cframe '
                      'and cframe_use_tracing) for Python %d.%d' % sys.version_info[:2])
        if not self.tfunc or self.tobj != id(self.gt) or not self.utv or _VP.from_address(
                me + T['c_tracefunc']).value:
            self.tobj = None
            raise Err('KRAIT["trace"] does not match this interpreter')
        self._tr_changed(None)
        for path in list(self.lines):
            self._tr_changed(path)

    def _tr_uninstall(self):
        for k in list(self.wrapped):
            self._unwrap(k)
        if self.glob:
            threading.settrace(self.old_hook)
            self.glob = False
        self.tthreads.clear()
        if self.tobj is None:
            return  # failed before touching any other thread
        self._tr_all(False)
        for f in sys._current_frames().values():
            while f is not None:
                if f.f_trace is self.lt:
                    f.f_trace = None
                f = f.f_back
        # Suspended generators and coroutines hold no f_trace of ours: the
        # local tracer clears it at every 'return' event (see _ltrace).
