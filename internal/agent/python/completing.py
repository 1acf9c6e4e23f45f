# completing.py: completions of what a user types in a stopped frame (a
# name, an attribute, a dict key), found without running user code

# A request names a chain and what to complete after it:
#   chain: [] (a bare name), or [root, step...] with steps ["a", attr] and
#          ["i", key] (key a str or an int), the root a name of the frame's
#          locals, globals or builtins, or ["h", N]: the value history's $N+1
#   what:  "name" | "attr" | "key"
# Attributes are read as safe rendering reads them: an instance's __dict__
# through its C descriptor, the type's MRO dicts, a module's dict; never
# getattr, __dir__, __getattr__ or a property.

MAX_COMPLETIONS = 300

_FUNC_TYPES = tuple(set([types.FunctionType, types.BuiltinFunctionType, types.MethodType, staticmethod, classmethod,
                         type(str.join), type(object.__init__), type(object().__str__), type(dict.__dict__['fromkeys'])]))


# The type of a function frame's f_locals: dict, or (3.13+, PEP 667) the
# C proxy of its fast locals.
_FLP = type((lambda: sys._getframe().f_locals)())


def _scope_items(scope):
    """A scope's (name, value) pairs through the builtin types' own
    methods: a class body's namespace from a metaclass's __prepare__
    (any mapping) gives none."""
    t = type(scope)
    if issubclass(t, dict):
        return list(dict.items(scope))
    if t is _FLP:
        return list(scope.items())
    return []


def _kind(v, default):
    """A candidate's kind from its value's exact type (no user code)."""
    t = type(v)
    if issubclass(t, type):
        return 'class'
    if t is types.ModuleType:
        return 'module'
    if t in _FUNC_TYPES:
        return 'function'
    return default


def _has_get(v):
    """Whether v is a descriptor (its type defines __get__): reading it
    from a class would run code (a property, a Django manager)."""
    try:
        return any('__get__' in _tdict(k) for k in _tmro(type(v)))
    except Exception:
        return True


def _lazy_wrapped(v):
    """A loaded django LazyObject's wrapped object (settings, request.user),
    or None."""
    if 'django.utils.functional.LazyObject' not in _mro_names(type(v)):
        return None
    w = _d(v, '_wrapped')
    return None if w is None or type(w) is object else w


def _attrs(v):
    """[(name, kind)] of v's attributes, as safe rendering reaches them."""
    out = []
    t = type(v)
    if t is types.ModuleType:
        return [(k, _kind(val, 'variable')) for k, val in list(dict.items(_oga(v, '__dict__')))]
    for k in _tmro(v if issubclass(t, type) else t):
        out += [(name, _kind(val, 'attribute')) for name, val in list(_tdict(k).items())]
    if not issubclass(t, type):
        inst = _instance_dict(v)
        if inst:
            out += [(k, _kind(val, 'attribute')) for k, val in list(dict.items(inst))]
        w = _lazy_wrapped(v)
        if w is not None:
            out += _attrs(w)
    return out


def _data_descriptor(v):
    try:
        return any('__set__' in _tdict(k) or '__delete__' in _tdict(k) for k in _tmro(type(v)))
    except Exception:
        return True


def _attr(v, name):
    """v.name as safe rendering reaches it, or raise Err: a module's
    global, an instance's __dict__ entry, a plain class attribute (not a
    descriptor: a property, a method, a Django manager would run code)."""
    t = type(v)
    if t is types.ModuleType:
        d = _oga(v, '__dict__')
        if name in d:
            return d[name]
    else:
        cls, found = None, False
        for k in _tmro(v if issubclass(t, type) else t):
            d = _tdict(k)
            if name in d:
                cls, found = d[name], True
                break
        if not issubclass(t, type) and not (found and _data_descriptor(cls)):
            inst = _instance_dict(v)
            if inst is not None and name in inst:
                return inst[name]
        if found and not _has_get(cls):
            return cls
        if not found and not issubclass(t, type):
            w = _lazy_wrapped(v)
            if w is not None:
                return _attr(w, name)
    raise Err('cannot complete after %s: not a value krait reads without running code' % (name,))


def _item(v, key):
    t = type(v)
    if issubclass(t, dict):
        for k, val in list(dict.items(v)):
            if type(k) is type(key) and k == key:
                return val
        raise Err('no key %r' % (key,))
    if type(key) is int:
        for base in (list, tuple):
            if issubclass(t, base):
                try:
                    return base.__getitem__(v, key)
                except IndexError:
                    raise Err('no item %d' % key)
    raise Err('cannot complete after [%r] of a %s' % (key, type_name(v)))


class _Completing(object):
    # completing
    def c_complete(self, req):
        """Completions of prefix after chain in a stopped thread's frame:
        names (locals, globals, builtins), attributes or a dict's str keys;
        private names only for a prefix starting with _. No user code runs."""
        th = self._thread(req)
        f = self._frame(th, req)
        chain, what, prefix = req.get('chain') or [], req.get('what'), req.get('prefix') or ''
        if type(chain) is not list or what not in ('name', 'attr', 'key') or type(prefix) is not str:
            raise Err('complete needs chain, what ("name", "attr" or "key") and prefix')
        if (what == 'name') != (not chain):
            raise Err('complete: a name has no chain; an attribute or a key needs one')

        def run(th):
            if what == 'name':
                cands = self._names(f)
            else:
                v = self._chain(f, chain)
                if what == 'attr':
                    cands = _attrs(v)
                else:
                    d = _dict_items(v)
                    if d is None:
                        raise Err('cannot complete the keys of a %s' % type_name(v))
                    cands = [(k, 'key') for k, _ in d]
            private = prefix.startswith('_')
            found = {}
            for name, kind in cands:
                if type(name) is not str or not name.startswith(prefix) or name in found:
                    continue
                if name.startswith('_') and not private or what != 'key' and not name.isidentifier():
                    continue
                if what == 'key' and ('\\' in name or "'" in name and '"' in name or not name.isprintable()):
                    continue
                found[name] = kind
            names = sorted(found)
            return {'items': [{'name': n, 'kind': found[n]} for n in names[:MAX_COMPLETIONS]],
                    'more': len(names) > MAX_COMPLETIONS}
        return self._in_thread(th, run)

    @staticmethod
    def _names(f):
        out = []
        for scope in (f.f_locals, f.f_globals, f.f_builtins):
            out += [(k, _kind(val, 'variable')) for k, val in _scope_items(scope)]
        return out

    def _chain(self, f, chain):
        root = chain[0]
        if type(root) is list and len(root) == 2 and root[0] == 'h' and type(root[1]) is int:
            if not 0 <= root[1] < len(self.history):
                raise Err('no value $%d' % (root[1] + 1))
            v = self.history[root[1]]  # the value $N+1 an eval with store kept
        elif type(root) is not str:
            raise Err('bad chain root %r' % (root,))
        else:
            for scope in (f.f_locals, f.f_globals, f.f_builtins):
                found = [val for k, val in _scope_items(scope) if type(k) is str and k == root]
                if found:
                    v = found[0]
                    break
            else:
                raise Err('No symbol "%s" in current context.' % (root,))
        for step in chain[1:]:
            kind, key = step if type(step) is list and len(step) == 2 else (None, None)
            if kind == 'a' and type(key) is str:
                v = _attr(v, key)
            elif kind == 'i' and type(key) in (str, int):
                v = _item(v, key)
            else:
                raise Err('bad chain step %r' % (step,))
        return v
