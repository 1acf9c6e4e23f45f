# stopping.py: stopping a thread at a line, step relations, the stop event

class _Stopping(object):
    # stopping
    def _line(self, frame, line, ident, bps):
        """A line event in a traced frame (any backend)."""
        if self._hidden(frame):
            return
        for bp in list(bps or ()):
            if not bp.enabled:
                continue
            err = None
            if bp.ccode is not None:
                try:
                    if not eval(bp.ccode, frame.f_globals, frame.f_locals):
                        continue
                except Exception as e:
                    err = exc_line(e)  # the thread stops, as gdb's does
            bp.hits += 1
            if bp.ignore > 0 and err is None:
                bp.ignore -= 1
                continue
            if bp.temporary:
                self._remove(bp)
            return self._stop(frame, 'breakpoint', bp, extra={'cond_error': err} if err else None)
        st = self.steps.get(ident)
        if st is None:
            return
        if st.mode == 'interrupt':
            if not frame.f_code.co_filename.startswith('<frozen'):
                self._stop(frame, 'interrupt')
            return
        rel = self._relation(frame, st.frame)
        if rel == 'gone' and st.suspended:
            return  # its coroutine awaits: this is another task's code (or the loop's)
        if rel == 'same':
            st.suspended = False
        if st.mode == 'step':
            if not frame.f_code.co_filename.startswith('<frozen'):
                self._stop(frame, 'step')
            return
        if rel == 'same':
            if st.mode == 'next' or (st.mode == 'until' and line > st.line):
                self._stop(frame, 'until' if st.mode == 'until' else 'step')
        elif rel == 'gone':
            self._stop(frame, {'next': 'step'}.get(st.mode, st.mode))

    @staticmethod
    def _relation(frame, target):
        f = frame
        while f is not None:
            if f is target:
                return 'same' if f is frame else 'deeper'
            f = f.f_back
        return 'gone'

    def _returned(self, frame, rv, yielded=False):
        """frame returns, or (yielded) suspends at a yield or await."""
        st = self.steps.get(_ident())
        if st is None or frame is not st.frame:
            return
        if st.co and yielded:
            st.suspended = True  # it awaits: the step carries on when it resumes
            return
        st.suspended = False
        if st.mode == 'finish':
            self._stop(frame, 'finish', None, rv, self._up(frame) or frame)

    def _stop(self, frame, reason, bp=None, rv=_NO, top=None, extra=None):
        ident = _ident()
        if self.closing or ident == self.ident or os.getpid() != self.pid:
            return
        th = Stopped(ident, frame, top or frame, reason)
        with self.cv:
            self.steps.pop(ident, None)
            self.stopped[ident] = th
        self._steps_changed(False)
        ev = {'event': 'stop', 'thread': ident, 'native_id': th.native,
              'thread_name': self._thread_name(ident), 'reason': reason,
              'bp': bp.id if bp else None,
              'return_value': None if rv is _NO else value(rv)}
        ev.update(self._where(th.top))
        ev['args'] = self._args(th.top)
        ev['loop_tasks'] = self._loop_tasks()
        ev.update(extra or {})
        self.send(ev)
        while True:  # run the jobs posted to this thread until resumed
            try:
                with self.cv:
                    while not (th.jobs or th.resume or self.closing):
                        self.cv.wait()
                    if not th.jobs:
                        break
                    fn, box, done = th.jobs.pop(0)
                try:
                    box['res'] = fn(th)
                except BaseException as e:
                    box['err'] = e
                finally:
                    done.set()
            except BaseException:
                if self.closing:
                    break
                # e.g. KeyboardInterrupt while stopped: stay stopped
        with self.cv:
            del self.stopped[ident]
            step = th.resume and th.resume[0] != 'continue' and not self.closing
            if step:
                self.steps[ident] = Step(*th.resume)
        if not step:
            if self.backend == 'settrace':
                self._tr_quiet(ident)
            return
        if self.backend == 'settrace':
            f = frame
            while f is not None:  # line events in the callers too
                if f.f_trace is None and not self._hidden(f):
                    f.f_trace = self.lt
                f = f.f_back
        self._steps_changed(True)

    @staticmethod
    def _loop_tasks():
        """In a thread running an asyncio event loop (this one, stopped):
        how many other tasks that loop has (they wait while it is
        stopped); None without a running loop."""
        aio = sys.modules.get('asyncio')
        try:
            loop = aio.events._get_running_loop() if aio is not None else None
            if loop is None or not hasattr(aio, 'all_tasks'):
                return None
            tasks = aio.all_tasks(loop)
            return len(tasks) - (1 if aio.current_task(loop) in tasks else 0)
        except Exception:
            return None

    @staticmethod
    def _thread_name(ident):
        t = threading._active.get(ident)
        return t.name if t is not None else None

    def _hidden(self, f):
        """The agent's own frames and breakpoint wrappers: never shown,
        never stopped in."""
        return f.f_globals is self.ns or f.f_code.co_filename == WRAPPER_FILE

    def _up(self, f):
        f = f.f_back
        while f is not None and self._hidden(f):
            f = f.f_back
        return f

    def _where(self, f):
        return {'function': self._qualname(f.f_code), 'file': self._abs(f.f_code.co_filename),
                'line': f.f_lineno}

    def _args(self, f):
        loc = f.f_locals
        return [dict(name=n, type=type_name(loc[n]), value=REDACTED if _hide(n) else render(loc[n], attrs=False))
                for n in arg_names(f.f_code) if n in loc]
