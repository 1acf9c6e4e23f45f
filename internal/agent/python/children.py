# children.py: a value's children, one level at a time (a debugger's
# variables tree), reached by a path from a stopped frame; no user code runs

# A path is a list of steps from a stopped thread's frame:
#   ["locals"] | ["globals"] | ["history", N]   the root
#   ["k", name]     a named child: a scope's variable, an instance attribute
#   ["i", n]        the n-th item of a list, tuple, set or dict (in its own order)
# Nothing is held between requests: each walks the path again in the
# stopped thread, through the same descriptors safe rendering uses.

MAX_CHILDREN = 1000


def _seq_items(v):
    """The items of a list, tuple, set or frozenset (subclasses too), by the
    builtin types' own iteration: an override in a subclass does not run."""
    t = type(v)
    for base in (list, tuple, set, frozenset):
        if issubclass(t, base):
            return list(base.__iter__(v))
    return None


def _dict_items(v):
    return list(dict.items(v)) if issubclass(type(v), dict) else None


def _kids(v):
    """[(name, key, value, step)] of v: items of containers, instance
    attributes of other objects (not of classes, modules, functions)."""
    t = type(v)
    if t in _SCALARS or t is str or t is bytes or issubclass(t, type):
        return []
    d = _dict_items(v)
    if d is not None:
        return [(render(k, MAX_DEPTH, False), k, val, ['i', n]) for n, (k, val) in enumerate(d)]
    s = _seq_items(v)
    if s is not None:
        return [('[%d]' % n, None, it, ['i', n]) for n, it in enumerate(s)]
    if t in (types.FunctionType, types.MethodType, types.ModuleType, types.BuiltinFunctionType, types.CodeType,
             types.FrameType):
        return []
    inst = _instance_dict(v)
    if not inst:
        return []
    return [(k if type(k) is str else render(k, MAX_DEPTH, False), k, val, ['k', k])
            for k, val in list(dict.items(inst))]


def _has_kids(v):
    t = type(v)
    try:
        if t in _SCALARS or t is str or t is bytes:
            return False
        if issubclass(t, (dict, list, tuple, set, frozenset)):
            return len(_dict_items(v) or _seq_items(v) or ()) > 0
        return bool(_kids(v))
    except Exception:
        return False


class _Children(object):
    # children
    def _scope(self, f, which):
        if which == 'globals':
            g = f.f_globals
            return [(k, k, g[k], ['k', k]) for k in list(g) if type(k) is str and not k.startswith('__')]
        loc, c = f.f_locals, f.f_code
        if loc is f.f_globals:
            return self._scope(f, 'globals')
        names = list(c.co_varnames) + list(c.co_cellvars) + list(c.co_freevars) + list(loc)
        out, seen = [], set()
        for n in names:
            if n not in seen and n in loc:
                seen.add(n)
                out.append((n, n, loc[n], ['k', n]))
        return out

    def _walk(self, f, path):
        """The value at path (the root's steps resolved one by one)."""
        if not path or type(path) is not list:
            raise Err('children needs a path')
        root, rest = path[0], path[1:]
        if root == 'history':
            n = rest[0] if rest else None
            if type(n) is not int or not 0 <= n < len(self.history):
                raise Err('no value $%s' % n)
            v, rest = self.history[n], rest[1:]
        elif root in ('locals', 'globals'):
            if not rest:
                return _Scope(root)
            step = rest[0]
            if type(step) is not list or len(step) != 2 or step[0] != 'k':
                raise Err('bad path step %r' % (step,))
            name = step[1]
            entries = dict((k, val) for _, k, val, _ in self._scope(f, root))
            if name not in entries:
                raise Err('No symbol "%s" in current context.' % (name,))
            v, rest = entries[name], rest[1:]
        else:
            raise Err('bad path root %r' % (root,))
        for step in rest:
            kind, key = step if type(step) is list and len(step) == 2 else (None, None)
            if kind == 'k':
                d = _instance_dict(v)
                if d is None or key not in d:
                    raise Err('no attribute %r' % (key,))
                v = d[key]
            elif kind == 'i':
                d = _dict_items(v)
                items = [val for _, val in d] if d is not None else _seq_items(v)
                if items is None or type(key) is not int or not 0 <= key < len(items):
                    raise Err('no item %r' % (key,))
                v = items[key]
            else:
                raise Err('bad path step %r' % (step,))
        return v

    def c_children(self, req):
        """The children of the value at path in a stopped thread's frame:
        name, type, safe rendering, whether it has children, and the path
        to it. start/count page through them."""
        th = self._thread(req)
        f = self._frame(th, req)
        path = req.get('path')
        start, count = req.get('start') or 0, req.get('count') or MAX_CHILDREN
        if type(start) is not int or type(count) is not int or start < 0 or count < 1:
            raise Err('bad start or count')

        def run(th):
            v = self._walk(f, path)
            kids = self._scope(f, v.which) if type(v) is _Scope else _kids(v)
            out = []
            for name, key, val, step in kids[start:start + min(count, MAX_CHILDREN)]:
                if _hide(key):
                    out.append({'name': name, 'type': type_name(val), 'value': REDACTED, 'more': False})
                    continue
                d = {'name': name, 'type': type_name(val), 'value': render(val), 'more': _has_kids(val),
                     'path': path + [step]}
                out.append(d)
            return {'children': out, 'total': len(kids)}
        return self._in_thread(th, self._shown(req, run))

    def c_set_child(self, req):
        """name = expr, where name is a child of the value at path (as
        c_children names it): an item of a dict or list, an instance
        attribute (written to the instance's dict: no __setattr__ runs),
        a global (path ["globals"]). The expression is evaluated in the
        frame, as set_local's is."""
        th = self._thread(req)
        f = self._frame(th, req)
        path, name, expr = req.get('path'), req.get('name'), req.get('expr')
        if type(name) is not str or type(expr) is not str:
            raise Err('set_child needs path, name and expr')

        def run(th):
            v = self._walk(f, path)
            if type(v) is _Scope and v.which == 'locals' and f.f_locals is not f.f_globals:
                raise Err('set a local with set_local')
            kids = self._scope(f, 'globals') if type(v) is _Scope else _kids(v)
            step = key = None
            for kname, kkey, _, kstep in kids:
                if kname == name:
                    step, key = kstep, kkey
                    break
            if step is None:
                raise Err('No child "%s" to set.' % (name,))
            new = self._eval_in(f, expr)
            if type(v) is _Scope:
                f.f_globals[step[1]] = new
            elif step[0] == 'k':
                _instance_dict(v)[step[1]] = new
            elif issubclass(type(v), dict):
                dict.__setitem__(v, key, new)
            elif issubclass(type(v), list):
                list.__setitem__(v, step[1], new)
            else:
                raise Err('cannot set an item of a %s' % (type_name(v),))
            return named_value(key if type(key) is str else name, new)
        return self._in_thread(th, self._shown(req, run))


class _Scope(object):
    def __init__(self, which):
        self.which = which
