# wrapping.py: the settrace backend: __code__ wrappers for the functions holding breakpoints

class _Wrapping(object):
    # Where it can, the settrace backend traces only the calls of functions
    # that hold a breakpoint: their __code__ is swapped for a wrapper (see
    # wrapper_code) that turns tracing on for the calling thread for the
    # call's duration. Every other call runs untraced, at full speed.
    # Every thread is traced (self.glob) for what a wrapper cannot reach:
    # pending breakpoints (code not loaded yet), generators and coroutines,
    # closures made at run time; _tr_relax ends that once it is no longer
    # needed. A thread already running a breakpoint's code when it is armed
    # is traced too.

    def _tr_changed(self, path):
        """Make the breakpoints of path (None: the pending ones) reachable,
        and release the functions of path that hold none any more. Returns
        whether they need every thread traced."""
        with self.lock:
            if self.pending:
                self._tr_global()
            if path is None:
                return bool(self.pending)
            funcs, codes, seen = {}, [], set()

            parent = {}  # id(code) -> the code whose co_consts hold it

            def add(c):
                if id(c) not in seen and self._abs(c.co_filename) == path:
                    seen.add(id(c))
                    for x in nested_codes(c):
                        codes.append(x)
                        for k in x.co_consts:
                            if type(k) is _CODE:
                                parent[id(k)] = x
            if path in self.lines:
                for o in gc.get_objects():
                    t = type(o)
                    if t is _FUNC:
                        if self.clones.get(id(o)) is o:
                            continue  # what a wrapper calls: never wrapped itself
                        w = self.wrapped.get(id(o))
                        c = w[1] if w is not None and w[0] is o else o.__code__
                        if self._abs(c.co_filename) == path:
                            funcs.setdefault(id(c), []).append(o)
                            add(c)
                    elif t in _GENS:
                        add(getattr(o, _GENS[t]))
            frames = sys._current_frames()
            keep, glob = set(), False
            todo = [c for c in codes if self._code_has_bp(c)]
            while todo:
                c = todo.pop()
                fl = c.co_flags
                if not (fl & CO_OPTIMIZED):
                    continue  # module and class bodies run once: frames below
                if fl & CO_NESTED and c.co_name in _COMPREHENSIONS and c.co_name != '<genexpr>':
                    # Runs inside the call of the function around it (which
                    # need not hold the breakpoint line itself): wrap that.
                    up = parent.get(id(c))
                    if up is not None and up.co_flags & CO_OPTIMIZED:
                        todo.append(up)
                    continue
                fs = funcs.get(id(c))
                w = wrapper_code(c) if fs and not fl & (CO_NESTED | CO_SUSPENDS) else None
                if w is None:
                    glob = glob or bool(fs) or bool(fl & (CO_NESTED | CO_SUSPENDS))
                    continue
                for f in fs:
                    if self._wrap(f, c, w):
                        keep.add(id(f))
            for k, (f, c, _) in list(self.wrapped.items()):
                if k not in keep and self._abs(c.co_filename) == path:
                    self._unwrap(k)
            if glob:
                self._tr_global()
            if path not in self.lines:
                return glob
            for ident, f in frames.items():  # frames running that code now
                hit = False
                while f is not None and ident != self.ident:
                    if not self._hidden(f) and self._abs(f.f_code.co_filename) == path and \
                            self._code_has_bp(f.f_code):
                        hit = True
                        if f.f_trace is None:
                            f.f_trace = self.lt
                    f = f.f_back
                if hit:
                    self._tr_thread(ident)
            return glob

    def _tr_relax(self):
        """Every thread is traced (a pending breakpoint, or code no wrapper
        reaches): once nothing needs that any more, go back to tracing
        wrapped calls only (stopped and stepping threads stay traced). Not
        while the body of a module holding breakpoints still runs (its
        functions are not all defined yet)."""
        with self.lock:
            if not self.glob or self.pending or self.T.get('thread_id') is None:
                return
            for f in sys._current_frames().values():
                while f is not None:
                    if not f.f_code.co_flags & CO_OPTIMIZED and self._importing(f) and \
                            self._abs(f.f_code.co_filename) in self.lines:
                        return
                    f = f.f_back
            # Threads that ran a breakpoint's code when it was armed: only
            # those running it now stay traced.
            self.tthreads = set()
            if any([self._tr_changed(p) for p in list(self.lines)]):
                return
            with self.cv:
                keep = self.tthreads | set(self.inwrap) | set(self.stopped) | set(self.steps)
                threading.settrace(self.old_hook)
                self.glob = False
            self._tr_all(False, keep=keep)
            for ident, f in sys._current_frames().items():
                if ident not in keep and ident != self.ident:
                    self._untrace_frames(f)

    def _wrap(self, f, c, w):
        k = id(f)
        if k in self.wrapped:
            return True
        if f.__code__ is not c:
            return False
        g = _FUNC(c, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        self.clones[id(g)] = g
        h = _Hook()
        h.enter, h.call, h.exit = self._w_enter, g, self._w_exit
        wb = bind_wrapper(w, h)
        self.wcodes[id(wb)] = wb
        self.wrapped[k] = (f, c, wb)
        f.__code__ = wb
        return True

    def _unwrap(self, k):
        f, c, wb = self.wrapped.pop(k)
        if f.__code__ is wb:  # else someone replaced it since: theirs stays
            f.__code__ = c

    def _w_enter(self):
        """A wrapped function is called: trace this thread for the call
        (unless another tool traces it: we leave that alone). Counted per
        thread, so that nothing untraces a thread inside a wrapped call.
        Raises nothing of its own into the application's call."""
        try:
            if self.closing or os.getpid() != self.pid:
                return False  # (a forked child inherits the wrapper, not the agent)
            cur, ident = sys.gettrace(), _ident()
            if cur is None:
                sys.settrace(self.gt)
                self.inwrap[ident] = [1, True]
            elif cur is self.gt:
                e = self.inwrap.get(ident)
                if e is None:
                    self.inwrap[ident] = [1, False]
                else:
                    e[0] += 1
            else:
                return False
            return True
        except Exception:
            return False

    def _w_exit(self):
        try:
            ident = _ident()
            e = self.inwrap.get(ident)
            if e is None:
                return
            e[0] -= 1
            if e[0] > 0:
                return
            del self.inwrap[ident]
            if not e[1] or not self.closing and (
                    self.glob or ident in self.tthreads or ident in self.steps):
                return  # traced before the call, or still wanted (a step goes on)
            if sys.gettrace() is self.gt:
                sys.settrace(None)
                self._untrace_frames(sys._getframe(1))
        except Exception:
            pass

    def _untrace_frames(self, f):
        """A thread is no longer traced: its frames lose our f_trace, which
        would otherwise freeze their f_lineno (3.6-3.9)."""
        while f is not None:
            if f.f_trace is self.lt:
                f.f_trace = None
            f = f.f_back

    def _tr_quiet(self, ident):
        """A thread resumed with continue: untrace it unless something
        still needs it traced (while inside a wrapped call it stays)."""
        if self.glob or ident in self.inwrap or ident in self.tthreads or self.closing:
            return
        if sys.gettrace() is self.gt:
            sys.settrace(None)
            self._untrace_frames(sys._getframe(1))

    def _tr_global(self):
        if self.glob:
            return
        self.glob = True
        self.old_hook = getattr(threading, '_trace_hook', None)
        threading.settrace(self.gt)
        self._tr_all(True)

    @staticmethod
    def _importing(f):
        """Whether module frame f is an import still in progress (not, say,
        __main__'s body running the program)."""
        try:
            m = sys.modules.get(f.f_globals.get('__name__'))
            return bool(getattr(getattr(m, '__spec__', None), '_initializing', False))
        except Exception:
            return True

    def _tr_prune(self):
        """Threads traced because they ran a breakpoint's code when it was
        armed: untraced once none of their frames runs it."""
        if self.glob or not self.tthreads:
            return
        with self.lock:
            frames = sys._current_frames()
            done = set()
            for ident in self.tthreads:
                f = frames.get(ident)
                while f is not None and not (not self._hidden(f) and self._code_has_bp(f.f_code)):
                    f = f.f_back
                if f is None and ident not in self.inwrap and ident not in self.stopped and \
                        ident not in self.steps:
                    done.add(ident)
            for ident in done:
                self.tthreads.discard(ident)
                self._tr_all(False, ident)
                self._untrace_frames(frames.get(ident))

    def _tr_thread(self, ident):
        """Keep thread ident traced (already traced while self.glob)."""
        if ident in self.tthreads:
            return
        if self.T.get('thread_id') is None:
            return self._tr_global()
        self.tthreads.add(ident)
        if not self.glob:
            self._tr_all(True, ident)

    def _use_tracing(self, t):
        T = self.T
        if T.get('use_tracing') is not None:
            return ctypes.c_int.from_address(t + T['use_tracing'])
        if T.get('cframe') is not None and T.get('cframe_use_tracing') is not None:
            cf = _VP.from_address(t + T['cframe']).value
            if cf:
                return ctypes.c_ubyte.from_address(cf + T['cframe_use_tracing'])
        return None

    def _tr_set(self, t, on):
        """Write (on) or clear our trace function into thread state t."""
        T = self.T
        fp = _VP.from_address(t + T['c_tracefunc'])
        op = _VP.from_address(t + T['c_traceobj'])
        ut = self._use_tracing(t)
        if on:
            if fp.value:
                return 0  # traced already: by us, or by someone we leave alone
            self.api.Py_IncRef(self.tobj)
            op.value, fp.value = self.tobj, self.tfunc
            if ut is not None:
                ut.value = self.utv
            return 1
        if fp.value != self.tfunc or op.value != self.tobj:
            return 0
        fp.value = op.value = None
        self.api.Py_DecRef(self.tobj)
        if ut is not None:  # c_profilefunc sits just before c_tracefunc
            ut.value = self.utv if _VP.from_address(t + T['c_tracefunc'] - 8).value else 0
        return 1

    def _tr_all(self, on, only=None, keep=()):
        """Install on (or clear from) every other thread state (only: the
        one of that thread ident; keep: idents left as they are). No other
        thread may run meanwhile (one could free its state): no GIL switch
        request for a few ms (the walk takes microseconds), no garbage
        collection."""
        old, gcon = sys.getswitchinterval(), gc.isenabled()
        n = 0
        try:
            sys.setswitchinterval(max(old, 0.005))
            time.sleep(0)
            gc.disable()
            interp = _VP.from_address(self.me + self.T['interp']).value
            t, now = self.api.PyInterpreterState_ThreadHead(interp), set()
            while t:
                if only is not None:
                    if ctypes.c_ulong.from_address(t + self.T['thread_id']).value == only:
                        n += self._tr_set(t, on)
                elif t != self.me and not (keep and ctypes.c_ulong.from_address(
                        t + self.T['thread_id']).value in keep):
                    now.add(t)
                    if not on or t not in self.seen:
                        n += self._tr_set(t, on)
                t = self.api.PyThreadState_Next(t)
            if only is None:
                self.seen = now if on else set()
        finally:
            if gcon:
                gc.enable()
            sys.setswitchinterval(old)
            self._bump(n if on else -n)

    def _bump(self, n):
        """tracing_possible += n (3.6-3.9): at its address when krait knows
        it, else through sys.settrace on our own thread state, which counts
        each change from no trace function to one and back."""
        if not n or sys.version_info >= (3, 10):
            return
        tp = self.T.get('tracing_possible')
        if tp:
            ctypes.c_int.from_address(tp).value += n
            return
        me, T = self.me, self.T
        fp, op, ut = (_VP.from_address(me + T['c_tracefunc']), _VP.from_address(me + T['c_traceobj']),
                      self._use_tracing(me))
        self.trick = True
        try:
            for _ in range(abs(n)):
                if n > 0:
                    sys.settrace(self.gt)
                    fp.value = op.value = None
                    self.api.Py_DecRef(self.tobj)
                    ut.value = self.utv if _VP.from_address(me + T['c_tracefunc'] - 8).value else 0
                else:
                    self.api.Py_IncRef(self.tobj)
                    op.value, fp.value, ut.value = self.tobj, self.tfunc, self.utv
                    sys.settrace(None)
        finally:
            self.trick = False
