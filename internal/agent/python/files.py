# files.py: files: paths, matching, compiled line tables

class _Files(object):
    # files
    def _abs(self, fn):
        a = self.fcache.get(fn)
        if a is None:
            a = fn if fn.startswith('<') else os.path.abspath(fn)
            self.fcache[fn] = a
            if self.pending and not a.startswith('<'):
                self._arm_pending(a)
        return a

    def _files(self):
        fs = set(self.fcache.values())
        for m in list(sys.modules.values()):
            f = module_file(m, self.mcache)
            if f is not None:
                fs.add(f)
        for f in sys._current_frames().values():
            while f is not None:
                fs.add(self._abs(f.f_code.co_filename))
                f = f.f_back
        return set(f for f in fs if not f.startswith('<'))

    @staticmethod
    def _match(spec, files):
        if os.path.isabs(spec):
            spec = os.path.normpath(spec)
            return sorted(f for f in files if f == spec)
        if spec.startswith('./'):
            spec = spec[2:]
        return sorted(f for f in files if f == spec or f.endswith('/' + spec))

    def _file_info(self, path):
        info = self.finfo.get(path)
        if type(info) is Err:
            raise info
        if info is None:
            src = ''.join(linecache.getlines(path))
            try:
                if not src:
                    raise Err('no source for %s' % path)
                top = compile(src, path, 'exec', 0, True)
            except Exception as e:
                self.finfo[path] = e if type(e) is Err else Err('cannot compile %s: %s' % (path, exc_line(e)))
                raise self.finfo[path]
            info = []

            def walk(c, qual, func):
                info.append((c, qual, func, code_lines(c)))
                for k in c.co_consts:
                    if type(k) is _CODE:
                        q = getattr(k, 'co_qualname', None)
                        if q is None:
                            q = k.co_name if qual == '<module>' else qual + (
                                '.<locals>.' if func else '.') + k.co_name
                        walk(k, q, bool(k.co_flags & CO_NEWLOCALS))
            walk(top, '<module>', False)
            self.finfo[path] = info
        return info

    def _qualname(self, code):
        q = getattr(code, 'co_qualname', None)
        if q is not None:
            return q
        try:
            for c, qual, _, _ in self._file_info(self._abs(code.co_filename)):
                if c.co_firstlineno == code.co_firstlineno and c.co_name == code.co_name:
                    return qual
        except Exception:
            pass
        return code.co_name

    def _resolve(self, path, line):
        """(line, qualname): the first line at or after line with code; a
        function's decorator or def line goes to the first line of its body."""
        info, heads, best = self._file_info(path), [], None
        for c, q, func, ls in info:
            body = ls - set([c.co_firstlineno]) if func and len(ls) > 1 else ls
            if func and body and not c.co_name.startswith('<'):
                heads.append((c.co_firstlineno, min(body), q))
            for l in body:
                if l >= line and (best is None or l < best[0]):
                    best = (l, q)

        def head(l):
            h = None
            for a, b, q in heads:
                if a <= l <= b and (h is None or a > h[0]):
                    h = (a, b, q)
            return h and (h[1], h[2])
        r = head(line) or (best and head(best[0])) or best
        if r is None:
            raise Err('no code at or after line %d in %s' % (line, path))
        return r
