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
            if bp.every > 1 and err is None and bp.hits % bp.every:
                continue
            if bp.printf is not None:
                try:
                    self._dprintf(frame, bp, err)
                except Exception:
                    pass  # never an error in the application's thread
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
        elif st.mine and self._library(frame):
            return  # justMyCode: on through library code, to the user's next line
        if st.mode == 'step':
            if not frame.f_code.co_filename.startswith('<frozen'):
                self._stop(frame, 'step')
            return
        if rel == 'same':
            if st.mode == 'next' or (st.mode == 'until' and line > st.line):
                self._stop(frame, 'until' if st.mode == 'until' else 'step')
        elif rel == 'gone':
            self._stop(frame, {'next': 'step'}.get(st.mode, st.mode))

    def _dprintf(self, frame, bp, err):
        """A dprintf's location is reached: its event, and the thread goes
        on. Its args are evaluated here (as a condition is) and rendered
        safely, bounded; an exception becomes the value's text."""
        ident = _ident()
        if ident == self.ident or self.closing or os.getpid() != self.pid:
            return
        vals, types = [], []
        if err is None:
            _, _, codes, hide, rep = bp.printf
            g = frame.f_globals
            loc = frame.f_locals if codes else None
            for i, c in enumerate(codes):
                try:
                    v = eval(c, g, loc)
                except Exception as ex:
                    vals.append(['error', '<error: %s>' % exc_line(ex)])
                    types.append(None)
                    continue
                vals.append(printf_value(v, hide[i], rep[i]))
                types.append(type_name(v))
        t = threading._active.get(ident)
        ev = {'kind': 'dprintf', 'bp': bp.id, 'time': time.time(), 'thread': ident,
              'native_id': _native() if _native else None, 'thread_name': t.name if t is not None else None,
              'values': vals, 'types': types}
        if err is not None:
            ev['cond_error'] = err
        self.ev_put(ev)

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
            up = self._up(frame)
            if st.mine and up is not None and self._library(up):
                # justMyCode: it returns into library code; the step out
                # lands on the next line of the user's code instead
                st.mode = 'step'
                return
            self._stop(frame, 'finish', None, rv, up or frame)

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
        self._sig_guard()  # a stop signal now lets every thread go
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
                if hasattr(f, 'f_trace_lines'):
                    f.f_trace_lines = True  # traced for exceptions only, until now
                f = f.f_back
        self._steps_changed(True)

    def _exception(self, frame, exc, kind):
        """exc is raised in frame (kind 'raise'), or leaves the thread's
        outermost frame (kind 'uncaught'): stop if a filter wants it."""
        ident = _ident()
        if ident == self.ident or ident in self.stopped or self.closing or os.getpid() != self.pid or \
                self._hidden(frame):
            return  # (a stopped thread raises in what krait evaluates there: not a stop)
        if kind == 'uncaught':
            if self.exc_seen.get(ident) == id(exc):
                return  # stopped for it already, in the frame it left first
        hit = None
        for fid, k, names, user in list(self.exc_filters):
            if user and self._library(frame):
                continue
            if k == kind and (not names or any(_tname(c) in names or _cls_name(c) in names
                                               for c in _tmro(type(exc)))):
                hit = fid
                break
        if hit is None:
            return
        if kind == 'uncaught':
            self.exc_seen[ident] = id(exc)
        self._stop(frame, 'exception', extra={'catch': hit, 'catch_kind': kind,
                                              'exception': {'type': _cls_name(type(exc)), 'value': exc_value(exc)}})

    @staticmethod
    def _library(f):
        """Whether a frame runs library code: the standard library (the
        directory of os's source), an installed package, a frozen module."""
        p = f.f_code.co_filename
        if p.startswith('<') or '/site-packages/' in p or '/dist-packages/' in p:
            return True
        lib = os.path.dirname(getattr(os, '__file__', '') or '')
        return bool(lib) and p.startswith(lib + os.sep)

    @staticmethod
    def _outermost(f):
        """Whether f is the thread's outermost frame of its own code: no
        caller, or called by threading.Thread's run or bootstrap."""
        b = f.f_back
        if b is None:
            return True
        T = threading.Thread
        return b.f_code is T.run.__code__ or b.f_code is getattr(T._bootstrap_inner, '__code__', None)

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
