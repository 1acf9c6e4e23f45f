# codes.py: code objects: lines, nesting, the __code__ wrapper

# --------------------------------------------------------------- code objects

def code_lines(c):
    """Line numbers where c's instructions start (co_lines or co_lnotab)."""
    if hasattr(c, 'co_lines'):
        return set(l for _, _, l in c.co_lines() if l is not None)
    out, line, last, tab = set(), c.co_firstlineno, None, c.co_lnotab
    for i in range(0, len(tab), 2):
        if tab[i]:
            if line != last:
                out.add(line)
                last = line
        d = tab[i + 1]
        line += d - 0x100 if d >= 0x80 else d
    if line != last:
        out.add(line)
    return out


def nested_codes(c):
    yield c
    for k in c.co_consts:
        if type(k) is _CODE:
            for x in nested_codes(k):
                yield x


def arg_names(c):
    n = c.co_argcount + c.co_kwonlyargcount
    n += bool(c.co_flags & CO_VARARGS) + bool(c.co_flags & CO_VARKEYWORDS)
    return c.co_varnames[:n]


_WSENT = '\x00krait'  # the wrapper's placeholder constant
WRAPPER_FILE = '<krait-wrapper>'  # the wrappers' co_filename


def wrapper_code(c):
    """A code object with c's signature and as many free variables, whose
    body is
        on = K.enter()
        try: return K.call(<the same arguments>)
        finally: on and K.exit()
    with K a placeholder constant (bind_wrapper puts the real one in). It
    can replace c as a function's __code__: defaults and closure stay on
    the function, so calls bind exactly as before. None if c's names do
    not allow it."""
    n, kw = c.co_argcount, c.co_kwonlyargcount
    po = getattr(c, 'co_posonlyargcount', 0)
    names = c.co_varnames
    pos, kwo, i = list(names[:n]), list(names[n:n + kw]), n + kw
    va = vk = None
    if c.co_flags & CO_VARARGS:
        va, i = names[i], i + 1
    if c.co_flags & CO_VARKEYWORDS:
        vk = names[i]
    every = pos + kwo + [x for x in (va, vk) if x] + [c.co_name]
    if any(not x.isidentifier() or x.startswith('_krait_') for x in every):
        return None
    params = pos[:po] + (['/'] if po else []) + pos[po:]
    if va:
        params.append('*' + va)
    elif kwo:
        params.append('*')
    params += kwo + (['**' + vk] if vk else [])
    args = pos + (['*' + va] if va else []) + ['%s=%s' % (k, k) for k in kwo] + (['**' + vk] if vk else [])
    fv = ['_krait_fv%d' % j for j in range(len(c.co_freevars))]
    src = ['def _krait_outer():']
    if fv:  # free variables only in name: the closure's cells stay unread
        src.append('    %s = None' % ' = '.join(fv))
    src.append('    def %s(%s):' % (c.co_name, ', '.join(params)))
    if fv:
        src.append('        if 0: %s' % ', '.join(fv))
    src += ['        _krait_on = %r.enter()' % _WSENT,
            '        try:',
            '            return %r.call(%s)' % (_WSENT, ', '.join(args)),
            '        finally:',
            '            if _krait_on:',
            '                %r.exit()' % _WSENT,
            '    return %s' % c.co_name]
    outer = compile('\n'.join(src) + '\n', WRAPPER_FILE, 'exec')
    inner = [k for k in outer.co_consts if type(k) is _CODE][0]
    w = [k for k in inner.co_consts if type(k) is _CODE][0]
    return w if len(w.co_freevars) == len(c.co_freevars) else None


def bind_wrapper(w, hook):
    # A list first: tuple(generator) resizes the tuple as it goes, which
    # fails (SystemError) if any other thread meanwhile holds a reference to
    # it (a heap walk in the application, say).
    consts = tuple([hook if (type(k) is str and k == _WSENT) else k for k in w.co_consts])
    if hasattr(w, 'replace'):
        return w.replace(co_consts=consts)
    return _CODE(w.co_argcount, w.co_kwonlyargcount, w.co_nlocals, w.co_stacksize, w.co_flags,
                 w.co_code, consts, w.co_names, w.co_varnames, w.co_filename, w.co_name,
                 w.co_firstlineno, w.co_lnotab, w.co_freevars, w.co_cellvars)


class _Hook(object):
    __slots__ = ('enter', 'call', 'exit')


_MDICT = types.ModuleType.__dict__['__dict__'].__get__  # a module's own dict, whatever its class
_SM_FUNC = staticmethod.__dict__['__func__'].__get__
_CM_FUNC = classmethod.__dict__['__func__'].__get__
_PGET, _PSET, _PDEL = (property.__dict__[k].__get__ for k in ('fget', 'fset', 'fdel'))
# Never walked into by _reach: data, modules (each is reached on its own
# when its file holds a breakpoint), builtins.
_LEAVES = (int, float, complex, str, bytes, bytearray, bool, type(None), tuple, list, dict, set,
           frozenset, types.ModuleType, types.BuiltinFunctionType, types.CodeType)
REACH_DEPTH, REACH_BUDGET = 8, 20000


def module_file(m, cache=None):
    """The absolute path of module m's .py file, or None (no code of m
    runs: its dict is read through the module type's own descriptor)."""
    if not issubclass(type(m), types.ModuleType):
        return None
    try:
        f = _MDICT(m).get('__file__')
    except Exception:
        return None
    if type(f) is not str or not f.endswith('.py'):
        return None
    if cache is None:
        return os.path.abspath(f)
    a = cache.get(f)
    if a is None:
        a = cache[f] = os.path.abspath(f)
    return a


def _cell(c):
    try:
        return c.cell_contents
    except ValueError:  # empty
        return None


def _dict_attr(f, name):
    """A function's attribute from its own dict (a function's __dict__
    would be created by reading it)."""
    try:
        return _oga(f, name)
    except AttributeError:
        return None


def _walkable(o):
    return not issubclass(type(o), _LEAVES)
