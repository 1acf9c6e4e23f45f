# threads.py: commands on stopped threads: stack, locals, eval, resume

class _Threads(object):
    # threads
    def _thread(self, req):
        t = req.get('thread')
        if t is None and len(self.stopped) == 1:
            t = list(self.stopped)[0]
        th = self.stopped.get(t)
        if th is None:
            raise Err('thread %s is not stopped' % (t,))
        return th

    def _frame(self, th, req):
        n, f = req.get('frame') or 0, th.top
        if type(n) is not int or n < 0:
            raise Err('bad frame %r' % (n,))
        for _ in range(n):
            f = self._up(f)
            if f is None:
                raise Err('no frame %d' % n)
        return f

    def _in_thread(self, th, fn):
        """Run fn(th) in the stopped thread itself and return its result."""
        box, done = {}, threading.Event()
        with self.cv:
            th.jobs.append((fn, box, done))
            self.cv.notify_all()
        while not done.wait(0.1):
            if self.stopped.get(th.ident) is not th:
                raise Err('thread %s was resumed' % th.ident)
            if self._gone():  # nobody waits for the answer: stop waiting (the job runs on)
                raise Err('the client is gone')
        if 'err' in box:
            raise box['err']
        return box['res']

    def c_threads(self, req):
        out, active = [], dict(threading._active)
        for ident, f in sorted(sys._current_frames().items()):
            if ident == self.ident:
                continue
            th, t = self.stopped.get(ident), active.get(ident)
            if th is not None:
                f = th.top
            while f is not None and self._hidden(f):
                f = f.f_back
            d = {'id': ident, 'native_id': th.native if th is not None else self._lwp(t),
                 'name': t.name if t is not None else None, 'stopped': th is not None,
                 'reason': th.reason if th else None, 'function': None, 'file': None, 'line': None}
            if f is not None:
                d.update(self._where(f))
            out.append(d)
        return {'threads': out}

    @staticmethod
    def _lwp(t):
        """A running thread's OS thread id. threading caches it when the
        thread starts, and before 3.14 never renews it after os.fork(): in
        a forked worker the thread that forked still shows the parent's.
        That thread is the child's first one, whose id is the pid; it is
        the only one whose cached id is no thread of this process."""
        n = getattr(t, 'native_id', None)
        if n is not None and not os.path.exists('/proc/self/task/%d' % n):
            return os.getpid()
        return n

    def _resume(self, ths, mode, req=None):
        if mode == 'finish':
            target = self._frame(ths[0], req)
        for th in ths:
            if mode == 'continue':
                th.resume = ('continue', None)
            else:
                th.resume = (mode, target if mode == 'finish' else th.top)

        def go():
            with self.cv:
                self.cv.notify_all()
        return go

    def c_continue(self, req):
        if req.get('thread') is None:
            return self._resume(list(self.stopped.values()), 'continue')
        return self._resume([self._thread(req)], 'continue')

    def c_step(self, req):
        return self._resume([self._thread(req)], 'step')

    def c_next(self, req):
        return self._resume([self._thread(req)], 'next')

    def c_until(self, req):
        return self._resume([self._thread(req)], 'until')

    def c_finish(self, req):
        return self._resume([self._thread(req)], 'finish', req)

    def c_stack(self, req):
        def run(th):
            out, f = [], th.top
            while f is not None:
                d = {'index': len(out)}
                d.update(self._where(f))
                d['args'] = self._args(f)
                out.append(d)
                f = self._up(f)
            return out
        return {'frames': self._in_thread(self._thread(req), run)}

    def c_locals(self, req):
        th = self._thread(req)
        f = self._frame(th, req)

        def run(th):
            c, loc = f.f_code, f.f_locals
            args = set(arg_names(c))
            if loc is f.f_globals:
                names = [k for k in loc if type(k) is str and not k.startswith('__')]
            else:
                names = list(c.co_varnames) + list(c.co_cellvars) + list(c.co_freevars) + list(loc)
            out, seen = [], set()
            for n in names:
                if n in seen or n not in loc or len(out) >= 500:
                    continue
                seen.add(n)
                out.append(dict(name=n, arg=n in args, **value(loc[n])))
            return out
        return {'locals': self._in_thread(th, run)}

    def c_eval(self, req):
        th = self._thread(req)
        f = self._frame(th, req)
        expr, mode = req.get('expr'), req.get('mode') or 'safe'
        if type(expr) is not str or mode not in ('safe', 'repr', 'sql'):
            raise Err('eval needs expr and mode "safe", "repr" or "sql"')
        history = self.history

        def run(th):
            try:
                loc = dict(f.f_locals)
                loc['__krait_h'] = history  # gdb's $N, rewritten by krait
                v = eval(compile(expr, '<krait>', 'eval'), f.f_globals, loc)
                if req.get('store'):
                    history.append(v)
                if mode == 'safe':
                    return value(v)
                if mode == 'sql':
                    return {'type': 'sql', 'value': _sql(v)}
                return {'type': type_name(v), 'value': repr(v)[:100000]}
            except Err:
                raise
            except BaseException as e:
                raise Err(exc_line(e))
        return self._in_thread(th, run)

    def c_source(self, req):
        spec, line, count = req.get('file'), req.get('line') or 1, req.get('count') or 10
        if type(spec) is not str:
            raise Err('source needs file')
        path = spec
        if not os.path.isabs(spec):
            found = self._match(spec, self._files())
            if not found:
                raise Err('no loaded file matches %s' % spec)
            path = found[0]
        lines = linecache.getlines(path)
        if not lines:
            raise Err('no source for %s' % path)
        return {'file': path, 'lines': [[n, lines[n - 1].rstrip('\r\n')]
                                        for n in range(max(1, line), min(len(lines), line + count - 1) + 1)]}

    def c_detach(self, req):
        return None
