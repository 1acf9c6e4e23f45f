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
        mine = bool(req and req.get('mine'))
        for th in ths:
            if mode == 'continue':
                th.resume = ('continue', None)
            else:
                th.resume = (mode, target if mode == 'finish' else th.top, mine)

        def go():
            with self.cv:
                self.cv.notify_all()
        return go

    def c_continue(self, req):
        if req.get('thread') is None:
            return self._resume(list(self.stopped.values()), 'continue')
        return self._resume([self._thread(req)], 'continue')

    def c_step(self, req):
        return self._resume([self._thread(req)], 'step', req)

    def c_next(self, req):
        return self._resume([self._thread(req)], 'next', req)

    def c_until(self, req):
        return self._resume([self._thread(req)], 'until', req)

    def c_finish(self, req):
        return self._resume([self._thread(req)], 'finish', req)

    def c_cancel(self, req):
        """Cancel a step in progress (Ctrl-C during next): the thread runs
        on and does not stop for it."""
        t = req.get('thread')
        with self.cv:
            st = self.steps.pop(t, None)
            th = self.stopped.get(t)
            if th is not None and th.resume and th.resume[0] != 'continue':
                th.resume = ('continue', None)  # resumed, not yet on its way
                st = st or th
        if st is not None:
            self._steps_changed(False)
        return {'cancelled': st is not None, 'stopped': t in self.stopped and th is None}

    def c_interrupt(self, req):
        """Stop a running thread (all of them without thread) at the next
        line of Python it runs."""
        t = req.get('thread')
        frames = sys._current_frames()
        if t is not None and (t not in frames or t == self.ident):
            raise Err('no thread %s runs Python' % (t,))
        idents = [i for i in ([t] if t is not None else sorted(frames))
                  if i != self.ident and i not in self.stopped]
        if self.backend == 'settrace' and idents:
            self._install()
        with self.cv:
            for i in idents:
                self.steps[i] = Step('interrupt', frames[i])
            # A thread told to continue that is not yet on its way (still
            # in stopped): it leaves with this interrupt as its step, and
            # stops at its next line (else the interrupt would be lost).
            for i in ([t] if t is not None else sorted(self.stopped)):
                th = self.stopped.get(i)
                if th is not None and th.resume and th.resume[0] == 'continue':
                    th.resume = ('interrupt', th.top, False)
                    idents.append(i)
        if self.backend == 'settrace':
            for i in idents:  # trace it, with line events in the frames it runs now
                self._tr_thread(i)
                f = frames[i]
                while f is not None:
                    if f.f_trace is None and not self._hidden(f):
                        f.f_trace = self.lt
                    f = f.f_back
        self._steps_changed(True)
        return {'threads': idents}

    def c_set_local(self, req):
        """name = expr in a stopped thread's frame (gdb's set var): a local
        (or cell) of the frame, a global at module level; or, name being
        an attribute or an item (obj.attr, d['k'], xs[0]), that assignment
        as Python runs it (its __setattr__ or __setitem__: the user asked)."""
        th = self._thread(req)
        f = self._frame(th, req)
        name, expr = req.get('name'), req.get('expr')
        if type(name) is not str or type(expr) is not str:
            raise Err('set_local needs name and expr')
        plain = name.isidentifier()
        if not plain:
            import ast
            try:
                kind = type(ast.parse(name.strip(), mode='eval').body)
            except SyntaxError as e:
                raise Err(exc_line(e))
            if kind not in (ast.Attribute, ast.Subscript):
                raise Err('cannot assign to %s: a name, an attribute or an item' % (name.strip(),))
        history = self.history

        def run(th):
            v = self._eval_in(f, expr)
            c = f.f_code
            if not plain:
                loc = dict(f.f_locals)
                loc['__krait_v'] = v
                try:
                    exec(compile('%s = __krait_v' % name.strip(), '<krait>', 'exec'), f.f_globals, loc)
                except BaseException as e:
                    raise Err(exc_line(e))
                if req.get('store'):
                    history.append(v)
                return named_value(expr_name(name) or '', v)
            if f.f_locals is f.f_globals:
                f.f_globals[name] = v
            elif name not in c.co_varnames + c.co_cellvars + c.co_freevars:
                raise Err('No symbol "%s" in current context.' % name)
            elif sys.version_info >= (3, 13):
                f.f_locals[name] = v  # PEP 667: writes through to the frame
            else:
                # The frame's dict, fresh from its fast locals, then back
                # (clear=0: the others keep their values).
                f.f_locals[name] = v
                fn = ctypes.PyDLL(None).PyFrame_LocalsToFast
                fn.argtypes, fn.restype = [ctypes.py_object, ctypes.c_int], None
                fn(f, 0)
            if req.get('store'):
                history.append(v)
            return named_value(name, v)
        return self._in_thread(th, self._shown(req, run))

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
        return {'frames': self._in_thread(self._thread(req), self._shown(req, run))}

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
                out.append(dict(name=n, arg=n in args, **named_value(n, loc[n])))
            return out
        return {'locals': self._in_thread(th, self._shown(req, run))}

    def _eval_in(self, f, expr):
        """expr's value in frame f (its globals, a copy of its locals, and
        krait's value history as __krait_h: gdb's $N, rewritten by krait);
        what it raises is the request's error."""
        try:
            loc = dict(f.f_locals)
            loc['__krait_h'] = self.history
            return eval(compile(expr, '<krait>', 'eval'), f.f_globals, loc)
        except BaseException as e:
            raise Err(exc_line(e))

    def c_eval(self, req):
        th = self._thread(req)
        f = self._frame(th, req)
        expr, mode = req.get('expr'), req.get('mode') or 'safe'
        if type(expr) is not str or mode not in ('safe', 'repr', 'sql'):
            raise Err('eval needs expr and mode "safe", "repr" or "sql"')
        history = self.history

        def run(th):
            try:
                v = self._eval_in(f, expr)
                if req.get('store'):
                    history.append(v)
                if mode == 'safe':
                    return named_value(expr_name(expr), v)
                if mode == 'sql':
                    return {'type': 'sql', 'value': _sql(v)}
                if _hide(expr_name(expr)):
                    return {'type': type_name(v), 'value': REDACTED}
                return {'type': type_name(v), 'value': repr(v)[:100000]}
            except Err:
                raise
            except BaseException as e:
                raise Err(exc_line(e))
        return self._in_thread(th, self._shown(req, run))

    @staticmethod
    def _shown(req, fn):
        """fn, rendering secrets as the request says (secrets: true shows
        them)."""
        def run(th):
            with _Secrets(req.get('secrets') is True):
                return fn(th)
        return run

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
