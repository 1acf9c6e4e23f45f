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
            want, glob = self._tr_targets(path) if path in self.lines else ({}, False)
            keep, wcache = set(), {}
            found = self._reach(path, want) if want else {}
            for key in want:
                fs = found.get(key)
                if not fs:
                    glob = True  # not reachable from its module: trace every thread
                    continue
                for f, c in fs:
                    w = wcache.get(id(c), _NO)
                    if w is _NO:
                        w = wcache[id(c)] = wrapper_code(c)
                    if w is None:
                        glob = True
                    elif self._wrap(f, c, w):
                        keep.add(id(f))
            for k, wr in list(self.wrapped.items()):
                if k not in keep and self._abs(wr[1].co_filename) == path:
                    self._unwrap(k)
            if glob:
                self._tr_global()
            if path not in self.lines:
                return glob
            for ident, f in sys._current_frames().items():  # frames running that code now
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

    def _tr_targets(self, path):
        """({(name, first line): code}, glob): the functions of path (as
        compiled from its source) whose calls must be traced for its
        breakpoints, and whether some breakpoint is in code no wrapper can
        reach (a generator or coroutine, a closure made at run time)."""
        info = self._file_info(path)
        parent = {}  # id(code) -> the code whose co_consts hold it
        for c, _, _, _ in info:
            for k in c.co_consts:
                if type(k) is _CODE:
                    parent[id(k)] = c
        want, glob = {}, False
        todo = [c for c, _, _, _ in info if self._code_has_bp(c)]
        while todo:
            c = todo.pop()
            fl = c.co_flags
            if not (fl & CO_OPTIMIZED):
                continue  # module and class bodies run once: running frames are traced
            if fl & CO_NESTED and c.co_name in _COMPREHENSIONS and c.co_name != '<genexpr>':
                # Runs inside the call of the function around it (which
                # need not hold the breakpoint line itself): wrap that.
                up = parent.get(id(c))
                if up is not None and up.co_flags & CO_OPTIMIZED:
                    todo.append(up)
                continue
            if fl & (CO_NESTED | CO_SUSPENDS):
                glob = True
                continue
            want[(c.co_name, c.co_firstlineno)] = c
        return want, glob

    def _reach(self, path, want):
        """{key: [(function, its own code)]}: the function objects whose code
        is one of want's (by name and first line), found from the modules
        whose file is path without a heap walk (gc.get_objects() would hand
        out references to objects other threads are still building) and
        without running any code of theirs: the modules' globals; classes
        of those modules (their own __dict__, nested classes); staticmethod,
        classmethod, property, bound methods, functools.partial; decorators'
        wrappers through __wrapped__ and closure cells; an object's
        instance dict entries __wrapped__, func, fget (lru_cache,
        cached_property...). Bounded in depth and in objects visited."""
        names, stack = set(), []
        for m in list(sys.modules.values()):
            f = module_file(m, self.mcache)
            if f == path:
                d = _oga(m, '__dict__')
                names.add(d.get('__name__'))
                stack.append((d, 0))
        out, seen, budget = {}, set(), REACH_BUDGET
        while stack and budget > 0:
            o, depth = stack.pop()
            if id(o) in seen:
                continue
            seen.add(id(o))
            budget -= 1
            t, kids = type(o), ()
            try:
                if t is _FUNC:
                    if self.clones.get(id(o)) is o:
                        continue  # what a wrapper calls: never wrapped itself
                    w = self.wrapped.get(id(o))
                    c = w[1] if w is not None and w[0] is o else o.__code__
                    key = (c.co_name, c.co_firstlineno)
                    if key in want and self._abs(c.co_filename) == path:
                        out.setdefault(key, []).append((o, c))
                    kids = [_cell(x) for x in (o.__closure__ or ())]
                    kids.append(_dict_attr(o, '__wrapped__'))
                elif t is dict:
                    kids = list(dict.values(o))
                elif issubclass(t, type):
                    if _tmod(o) in names:
                        kids = list(_tdict(o).values())
                elif issubclass(t, staticmethod):
                    kids = [_SM_FUNC(o)]
                elif issubclass(t, classmethod):
                    kids = [_CM_FUNC(o)]
                elif issubclass(t, property):
                    kids = [_PGET(o), _PSET(o), _PDEL(o)]
                elif t is types.MethodType:
                    kids = [o.__func__]
                elif t is functools.partial:
                    kids = [o.func]
                else:
                    d = _instance_dict(o)
                    if d:
                        kids = [d.get(k) for k in ('__wrapped__', 'func', 'fget')]
            except Exception:
                continue
            if depth < REACH_DEPTH:
                for k in kids:
                    if k is not None and _walkable(k):
                        stack.append((k, depth + 1))
        return out

    def _tr_relax(self):
        """Every thread is traced (a pending breakpoint, or code no wrapper
        reaches): once nothing needs that any more, go back to tracing
        wrapped calls only (stopped and stepping threads stay traced). Not
        while the body of a module holding breakpoints still runs (its
        functions are not all defined yet)."""
        with self.lock:
            if not self.glob or self.pending or self.exc_filters or self.T.get('thread_id') is None:
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
        h = _Hook()
        h.enter, h.call, h.exit = self._w_enter, g, self._w_exit
        wb = bind_wrapper(w, h)
        self.clones[id(g)] = g
        self.wrapped[k] = (f, c, wb, g)
        f.__code__ = wb
        return True

    def _unwrap(self, k):
        """Put f's own code back. Nothing of the agent keeps the wrapper,
        its hook or its clone (code objects are not tracked by gc before
        3.12: a cycle through one would never be collected); a call still
        running the wrapper keeps them until it returns."""
        f, c, wb, g = self.wrapped.pop(k)
        self.clones.pop(id(g), None)
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
                if self.closing:  # the agent left meanwhile: it cleared every thread but this one
                    sys.settrace(None)
                    return False
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
