# breakpoints.py: breakpoints: arming, pending ones, the break/delete/... commands

class _Breakpoints(object):
    # breakpoints
    def _arm(self, bp, path):
        line, func = self._resolve(path, bp.req)
        with self.lock:
            bp.file, bp.line, bp.function, bp.pending = path, line, func, False
            bp.moved = line != bp.req
            if bp in self.pending:
                self.pending.remove(bp)
            bp.locs = [(path, line, func)]
            self.lines.setdefault(path, {}).setdefault(line, []).append(bp)
        self._changed(path)

    def _arm_more(self, bp, path, line, func):
        """One more location of bp (break FUNC matching several functions)."""
        with self.lock:
            bp.locs.append((path, line, func))
            self.lines.setdefault(path, {}).setdefault(line, []).append(bp)
        self._changed(path)

    def _arm_pending(self, path):
        with self.lock:
            for bp in list(self.pending):
                if bp.pending and self._match(bp.spec, [path]):
                    try:
                        self._arm(bp, path)
                    except Exception as e:
                        self.pending.remove(bp)
                        self.bps.pop(bp.id, None)
                        self.send({'event': 'error', 'message': 'breakpoint %d: %s' % (bp.id, exc_line(e))})
                        continue
                    self.send({'event': 'breakpoint_resolved', 'bp': bp.js()})

    def _remove(self, bp):
        with self.lock:
            self.bps.pop(bp.id, None)
            if bp.printf is not None and not any(b.printf is not None for b in self.bps.values()):
                self.ev_use('dprintf', False)
            if bp.pending:
                if bp in self.pending:
                    self.pending.remove(bp)
                return
            for path, line, _ in bp.locs:
                at = self.lines.get(path, {})
                lst = at.get(line, [])
                if bp in lst:
                    lst.remove(bp)
                if not lst:
                    at.pop(line, None)
                if not at:
                    self.lines.pop(path, None)
        for path in sorted(set(l[0] for l in bp.locs)):
            self._changed(path)

    def _bp(self, req):
        bp = self.bps.get(req.get('bp'))
        if bp is None:
            raise Err('no breakpoint %r' % (req.get('bp'),))
        return bp

    def _add(self, spec, line, req, path):
        """A new breakpoint: armed in path, or pending without one."""
        bp = Bp(self.next_bp, spec, line, req.get('cond'), bool(req.get('temporary')))
        ig = req.get('ignore')
        if ig is not None:
            if type(ig) is not int or ig < 0:
                raise Err('ignore must be a count (>= 0)')
            bp.ignore = ig  # before it is armed: no crossing sees it without
        ev = req.get('every')
        if ev is not None:
            if type(ev) is not int or ev < 0:
                raise Err('every must be a count (>= 0)')
            bp.every = ev
        if req.get('cmd') == 'dprintf':
            bp.printf, bp.temporary = self._printf(req), False
        if path:
            self._arm(bp, path)
        else:
            self.pending.append(bp)
            self._changed(None)
        self.bps[bp.id] = bp
        self.next_bp += 1
        return bp

    def c_hello(self, req):
        if self.backend == 'monitoring':
            self._install()  # cheap: events are enabled per code object
        # settrace: installed only while there is something to stop at
        # (see _sync), since a trace function costs every call.
        return {'pid': os.getpid(), 'version': '%d.%d.%d' % sys.version_info[:3],
                'backend': self.backend, 'tool_id': self.tool}

    def c_break(self, req):
        spec, line = req.get('file'), req.get('line')
        if type(spec) is not str or not spec or type(line) is not int:
            raise Err('break needs file and line')
        with self.lock:
            found = self._match(spec, self._files())
            if len(found) > 1:
                raise Err('%s is ambiguous: %s' % (spec, ', '.join(found)))
            bp = self._add(spec, line, req, found and found[0])
        bp.warning = self._ran_already(bp)
        return {'bp': bp.js()}

    def _ran_already(self, bp):
        """A warning for a breakpoint at module level of a module that
        has been imported and whose body no thread runs now: that line
        runs again only if the module is executed again (a reload)."""
        if bp.pending or bp.function != '<module>':
            return None
        for m in list(sys.modules.values()):
            f = module_file(m, self.mcache)
            if f is None or self._abs(f) != bp.file:
                continue
            for fr in sys._current_frames().values():
                while fr is not None:
                    if fr.f_code.co_name == '<module>' and self._abs(fr.f_code.co_filename) == bp.file:
                        return None  # its body runs now (an import in progress)
                    fr = fr.f_back
            return ('line %d is module-level code of %s, which has run already: it runs again only '
                    'if the module is executed again (a reload)' % (bp.line, _oga(m, '__dict__').get('__name__')))
        return None

    def c_break_func(self, req):
        name = req.get('name')
        if type(name) is not str or not name:
            raise Err('break_func needs name')
        codes = self._find_funcs(name.split('.'))
        with self.lock:
            bp = None
            for code in codes:
                path = self._abs(code.co_filename)
                if bp is None:
                    bp = self._add(path, code.co_firstlineno, req, path)
                else:
                    self._arm_more(bp, path, *self._resolve(path, code.co_firstlineno))
        bp.moved = False
        return {'bp': bp.js()}

    def _find_funcs(self, parts):
        """The code objects of every function parts names, as gdb does:
        each function or method of a loaded module whose qualified name,
        after its module's name, ends with them ("handle" is handle,
        A.handle and B.handle; "views.A.handle" only the one). Read from
        module and class dicts (staticmethod, classmethod, property,
        decorators' __wrapped__): no code runs."""
        found, seen, n = [], set(), 0
        for m in list(sys.modules.values()):
            if not issubclass(type(m), types.ModuleType):
                continue
            try:
                md = _oga(m, '__dict__')
                mname = md.get('__name__')
                if type(mname) is not str:
                    continue
                todo = [(v, 1) for v in list(md.values())]
            except Exception:
                continue
            while todo and n < 200000:
                obj, depth = todo.pop()
                n += 1
                t = type(obj)
                if t in (staticmethod, classmethod):
                    todo.append((getattr(obj, '__func__', None), depth))
                elif t is property:
                    todo.append((obj.fget, depth))
                elif t is _FUNC:
                    inner = obj.__dict__.get('__wrapped__')
                    if type(inner) is _FUNC and depth < 8:
                        todo.append((inner, depth + 1))
                    c = obj.__code__
                    if c.co_filename == WRAPPER_FILE:  # ours (settrace backend): the function's own code
                        wr = self.wrapped.get(id(obj))
                        c = wr[1] if wr else None
                    q = obj.__qualname__.split('.')
                    full = mname.split('.') + q
                    if c is not None and id(c) not in seen and obj.__module__ == mname and \
                            full[-len(parts):] == parts and '<locals>' not in q:
                        seen.add(id(c))
                        found.append(c)
                elif issubclass(t, type) and depth < 4 and _tdict(obj).get('__module__') == mname:
                    todo.extend((v, depth + 1) for v in list(_tdict(obj).values()))
        if not found:
            return [self._find_func(parts)]
        found.sort(key=lambda c: (self._abs(c.co_filename), c.co_firstlineno))
        return found

    def _find_func(self, parts):
        def attr(o, n):  # static lookup: no __getattr__, no descriptors run
            if issubclass(type(o), types.ModuleType):
                return _oga(o, '__dict__').get(n, _NO)
            if issubclass(type(o), type):
                for k in _tmro(o):
                    v = _tdict(k).get(n, _NO)
                    if v is not _NO:
                        return v
            return _NO
        mods = dict(sys.modules)
        starts = [(mods[m], parts[i:]) for i in range(len(parts) - 1, 0, -1)
                  for m in ['.'.join(parts[:i])] if m in mods]
        starts += [(m, parts) for m in [mods.get('__main__')] + list(mods.values()) if m is not None]
        for obj, rest in starts:
            for n in rest:
                obj = attr(obj, n)
                if obj is _NO:
                    break
            if obj is _NO:
                continue
            for a in ('__func__', 'fget'):  # staticmethod, classmethod, property
                if type(obj) in (staticmethod, classmethod, property):
                    obj = getattr(obj, a, obj)
            while type(obj) is _FUNC and type(getattr(obj, '__wrapped__', None)) is _FUNC:
                obj = obj.__wrapped__
            if type(obj) is _FUNC:
                return obj.__code__
        raise Err('Function "%s" not defined.' % '.'.join(parts))

    def c_dprintf(self, req):
        """gdb's dprintf: a breakpoint (file and line, or name as in
        break_func) whose action is to emit a "dprintf" event with the
        rendered values of its args, and go on: the thread never stops."""
        self._printf(req)  # errors before anything is set
        res = self.c_break_func(req) if req.get('name') is not None else self.c_break(req)
        self.ev_use('dprintf', True)
        return res

    @staticmethod
    def _printf(req):
        fmt, args, modes = req.get('format'), req.get('args') or [], req.get('modes') or []
        if type(fmt) is not str or type(args) is not list or any(type(a) is not str for a in args) or \
                type(modes) is not list or any(m not in ('repr', 'value') for m in modes):
            raise Err('dprintf needs format (a string), args (a list of expressions) and modes '
                      '(a list of "repr" or "value")')
        codes = []
        for a in args:
            try:
                codes.append(compile(a, '<dprintf>', 'eval'))
            except SyntaxError as e:
                raise Err('dprintf argument %r: %s' % (a, exc_line(e)))
        return (fmt, list(args), codes, [printf_hide(a) for a in args],
                [i < len(modes) and modes[i] == 'repr' for i in range(len(args))])

    def c_delete(self, req):
        if req.get('bp') is None:
            for bp in list(self.bps.values()):
                self._remove(bp)
        else:
            self._remove(self._bp(req))

    def c_enable(self, req):
        self._bp(req).enabled = True

    def c_disable(self, req):
        self._bp(req).enabled = False

    def c_condition(self, req):
        self._bp(req).set_cond(req.get('cond'))

    def c_exception_filters(self, req):
        """Set where threads stop for exceptions (gdb's catch; a DAP
        server's exception breakpoints): filters is the whole list, each
        {"id", "kind": "raise" (where it is raised) | "uncaught" (as it
        leaves the thread's outermost frame), "types": [class names, or
        qualified names, matched along the exception's MRO; empty: any],
        "user_only": true (optional: not where the frame is library code,
        the standard library or an installed package)}."""
        fl = req.get('filters')
        if type(fl) is not list:
            raise Err('exception_filters needs filters (a list)')
        out = []
        for f in fl:
            kind = f.get('kind') if type(f) is dict else None
            names = f.get('types') or [] if type(f) is dict else None
            if kind not in ('raise', 'uncaught') or type(names) is not list or \
                    any(type(n) is not str for n in names) or type(f.get('id')) is not int:
                raise Err('a filter is {"id": N, "kind": "raise" or "uncaught", "types": [names]}')
            out.append((f['id'], kind, tuple(names), f.get('user_only') is True))
        with self.lock:
            self.exc_filters = out
            self.exc_seen.clear()
        if self.backend == 'settrace':
            if out:
                self._install()
                self._tr_global()
        elif self.installed:
            self._mon_events(False)
        return {'filters': [{'id': i, 'kind': k, 'types': list(t), 'user_only': u} for i, k, t, u in out]}

    def c_ignore(self, req):
        n = req.get('count')
        if type(n) is not int or n < 0:
            raise Err('ignore needs count >= 0')
        self._bp(req).ignore = n

    def c_breakpoints(self, req):
        return {'bps': [self.bps[k].js() for k in sorted(self.bps)]}
