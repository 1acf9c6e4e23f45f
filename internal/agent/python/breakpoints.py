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
            if bp.pending:
                if bp in self.pending:
                    self.pending.remove(bp)
                return
            at = self.lines.get(bp.file, {})
            lst = at.get(bp.line, [])
            if bp in lst:
                lst.remove(bp)
            if not lst:
                at.pop(bp.line, None)
            if not at:
                self.lines.pop(bp.file, None)
        self._changed(bp.file)

    def _bp(self, req):
        bp = self.bps.get(req.get('bp'))
        if bp is None:
            raise Err('no breakpoint %r' % (req.get('bp'),))
        return bp

    def _add(self, spec, line, req, path):
        """A new breakpoint: armed in path, or pending without one."""
        bp = Bp(self.next_bp, spec, line, req.get('cond'), bool(req.get('temporary')))
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
            return {'bp': self._add(spec, line, req, found and found[0]).js()}

    def c_break_func(self, req):
        name = req.get('name')
        if type(name) is not str or not name:
            raise Err('break_func needs name')
        code = self._find_func(name.split('.'))
        path = self._abs(code.co_filename)
        with self.lock:
            bp = self._add(path, code.co_firstlineno, req, path)
        bp.moved = False
        return {'bp': bp.js()}

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
        raise Err('no function %s' % '.'.join(parts))

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

    def c_breakpoints(self, req):
        return {'bps': [self.bps[k].js() for k in sorted(self.bps)]}
