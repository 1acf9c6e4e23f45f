# render.py: safe rendering of values (no user code runs)

# --------------------------------------------------------------- rendering
# Safe rendering runs no user code: exact builtin types only, type
# attributes through type's own descriptors, instance dicts through C
# descriptors.

_tname = type.__dict__['__name__'].__get__
_tqual = type.__dict__['__qualname__'].__get__
_tmod = type.__dict__['__module__'].__get__
_tmro = type.__dict__['__mro__'].__get__
_tdict = type.__dict__['__dict__'].__get__
_oga = object.__getattribute__
_CDESCR = (types.GetSetDescriptorType, types.MemberDescriptorType)
_SCALARS = (int, bool, float, complex, type(None))
_CONTAINERS = (list, tuple, dict, set, frozenset)


def type_name(v):
    try:
        return str(_tname(type(v)))
    except Exception:
        return '?'


def _instance_dict(v):
    for k in _tmro(type(v)):
        d = _tdict(k).get('__dict__')
        if d is not None:
            break
    else:
        return None
    if type(d) not in _CDESCR:
        return None  # a user-defined __dict__ (property...) would run code
    try:
        d = _oga(v, '__dict__')
    except Exception:
        return None
    return d if type(d) is dict else None


_ELIDED = {list: '[...]', tuple: '(...)', frozenset: 'frozenset({...})'}

# Secrets: values stored under names that look secret render as
# <redacted>, by the rule of krait's Go package internal/secrets (its
# lists, copied here; TestSecretsRule checks that both agree), unless
# the thread renders for a request that asked for them (print/s).
REDACTED = '<redacted>'
_SEC_EXACT = frozenset([
    'HTTP_COOKIE', 'HTTP_AUTHORIZATION', 'HTTP_PROXY_AUTHORIZATION', 'AUTHORIZATION', 'PROXY_AUTHORIZATION',
    'COOKIE', 'COOKIES', 'SET_COOKIE', 'HTTP_X_API_KEY', 'DATABASE_URL', 'REDIS_URL', 'BROKER_URL',
    'CELERY_BROKER_URL', 'CACHE_URL', 'AMQP_URL', 'MONGO_URL', 'MONGODB_URI', 'SENTRY_DSN'])
_SEC_WORDS = ('SECRET', 'PASSWORD', 'PASSWD', 'PASSPHRASE', 'TOKEN', 'CREDENTIAL', 'PRIVATE', 'SIGNATURE',
              'APIKEY', 'SESSIONID')
_SEC_WHOLE = frozenset(['KEY', 'DSN', 'AUTH', 'COOKIE', 'PWD', 'PASS'])
_SEC_DESCRIBING = frozenset([
    'NAME', 'NAMES', 'PREFIX', 'FUNCTION', 'FUNC', 'HASHERS', 'VALIDATORS', 'TIMEOUT', 'AGE', 'LENGTH', 'LEN',
    'PATH', 'FILE', 'DOMAIN', 'HTTPONLY', 'SECURE', 'SAMESITE', 'BACKEND', 'BACKENDS', 'CLASS', 'MODEL',
    'URL_NAME', 'HEADER', 'ENABLED', 'REQUIRED', 'USED', 'COUNT', 'FIELD', 'FIELDS', 'TYPE'])
_SEC_KEYS = frozenset(['PRIMARY', 'FOREIGN', 'CACHE', 'SORT', 'PK', 'FK', 'DICT', 'LOOKUP', 'PARTITION', 'HASH',
                       'ROW', 'MAP', 'GROUP'])
_SEC_SEPS = frozenset('_-. :/')
_SHOW_SECRETS = set()  # idents of threads rendering for a request that shows secrets


def _name_words(name):
    words, cur, prev = [], [], ''
    for ch in name:
        if ch in _SEC_SEPS:
            if cur:
                words.append(''.join(cur).upper())
            cur = []
        else:
            if ch.isupper() and prev.islower() and cur:
                words.append(''.join(cur).upper())
                cur = []
            cur.append(ch)
        prev = ch
    if cur:
        words.append(''.join(cur).upper())
    return words


_SEC_SEEN = {}  # name -> secret_name(name), for the first 10,000 names (render asks at every dict key)


def secret_name(name):
    """Whether a value stored under name looks secret (internal/secrets)."""
    if type(name) is not str:
        return False
    r = _SEC_SEEN.get(name)
    if r is None:
        r = _secret_name(name)
        if len(_SEC_SEEN) < 10000 and len(name) <= 100:
            _SEC_SEEN[name] = r
    return r


def _secret_name(name):
    if name.upper() in _SEC_EXACT:
        return True
    words = _name_words(name)
    if not words:
        return False
    if len(words) > 1 and words[-1] in _SEC_DESCRIBING:
        return False
    for w in words:
        for s in _SEC_WORDS:
            if s in w:
                return True
    if len(words) < 2 or words[0] in _SEC_KEYS:
        return False
    for w in words:
        if w in _SEC_WHOLE or (w.endswith('KEY') and len(w) > 3 and not w.endswith('MONKEY')):
            return True
    return False


def _hide(name):
    return secret_name(name) and _ident() not in _SHOW_SECRETS


class _Secrets(object):
    """with _Secrets(show): what this thread renders in the block shows
    secrets iff show."""

    def __init__(self, show):
        self.show, self.had = bool(show), False

    def __enter__(self):
        self.had = _ident() in _SHOW_SECRETS
        (_SHOW_SECRETS.add if self.show else _SHOW_SECRETS.discard)(_ident())

    def __exit__(self, *exc):
        (_SHOW_SECRETS.add if self.had else _SHOW_SECRETS.discard)(_ident())


def named_value(name, v):
    """value(v) for a value stored under name (a local, an argument)."""
    if _hide(name):
        return {'type': type_name(v), 'value': REDACTED}
    return value(v)


def expr_name(expr):
    """The name an expression reads last (settings.SECRET_KEY, env['TOKEN'],
    password): print redacts its value as it would that name's."""
    e = expr.strip()
    if e.endswith(']'):
        e = e[:-1].strip()
        if len(e) >= 2 and e[-1] in '\'"':
            q = e[-1]
            i = e.rfind(q, 0, len(e) - 1)
            return e[i + 1:-1] if i >= 0 and e[:i].rstrip().endswith('[') else None
        return None
    i = len(e)
    while i > 0 and (e[i - 1].isalnum() or e[i - 1] == '_'):
        i -= 1
    return e[i:] or None


def render(v, depth=0, attrs=True, path=None):
    """repr() for exact builtin types, a structural form for the rest."""
    t = type(v)
    try:
        if t in _SCALARS:
            if t is int and v.bit_length() > 12000:
                return '<int of %d bits>' % v.bit_length()
            return repr(v)
        if t is str or t is bytes:
            if len(v) > MAX_STR:
                return repr(v[:MAX_STR]) + '...'
            return repr(v)
        if t in _CONTAINERS:
            return _render_container(v, t, depth, path)
    except Exception:
        pass
    return _render_object(v, t, depth, attrs, path)


def _render_container(v, t, depth, path):
    if path is None:
        path = set()
    if id(v) in path or depth >= MAX_DEPTH:
        return _ELIDED.get(t, '{...}')
    if type(path) is _Budget:  # (a dprintf's)
        path.left -= min(len(v), MAX_ITEMS)
        if path.left < 0:
            return _ELIDED.get(t, '{...}')
    path.add(id(v))
    try:
        items, more = [], False
        src = dict.items(v) if t is dict else v
        for i, it in enumerate(src):
            if i >= MAX_ITEMS:
                more = True
                break
            if t is dict:
                items.append(render(it[0], depth + 1, False, path) + ': ' +
                             (REDACTED if _hide(it[0]) else render(it[1], depth + 1, False, path)))
            else:
                items.append(render(it, depth + 1, False, path))
    finally:
        path.discard(id(v))
    body = ', '.join(items + ['...'] * more) + (',' if t is tuple and len(items) == 1 else '')
    if t is list or t is tuple:
        return ('[%s]' if t is list else '(%s)') % body
    if not body and t is not dict:
        return _tname(t) + '()'
    return ('frozenset({%s})' if t is frozenset else '{%s}') % body


def _cls_name(c):
    mod = _tmod(c)
    return _tqual(c) if mod in ('builtins', None) else '%s.%s' % (mod, _tqual(c))


def _mro_names(t):
    try:
        return [_cls_name(k) for k in _tmro(t)]
    except Exception:
        return []


def _d(v, name, default=None):
    """An instance attribute straight from the instance dict (no code runs)."""
    d = _instance_dict(v)
    return d.get(name, default) if d is not None else default


def _class_attr(c, name):
    for k in _tmro(c):
        d = _tdict(k)
        if name in d:
            return d[name]
    return None


_LOOKUPS = {'Exact': '=', 'GreaterThan': '>', 'GreaterThanOrEqual': '>=', 'LessThan': '<',
            'LessThanOrEqual': '<=', 'In': '__in=', 'IsNull': '__isnull=', 'Contains': '__contains=',
            'IContains': '__icontains=', 'IExact': '__iexact=', 'StartsWith': '__startswith=',
            'RelatedExact': '=', 'RelatedIn': '__in=', 'Range': '__range='}


def _model_label(m):
    meta = _class_attr(m, '_meta')
    app, name = _d(meta, 'app_label'), _d(meta, 'object_name')
    if type(app) is str and type(name) is str:
        return '%s.%s' % (app, name)
    return _cls_name(m)


def _where(node, depth=0):
    if depth > 4:
        return '...'
    parts = []
    for c in (_d(node, 'children') or [])[:16]:
        if 'django.utils.tree.Node' in _mro_names(type(c)):
            inner = _where(c, depth + 1)
            if inner:
                parts.append('(' + inner + ')')
            continue
        op = _LOOKUPS.get(_tname(type(c)), ' %s ' % _tname(type(c)))
        lhs = _d(c, 'lhs')
        target = _d(lhs, 'target') if lhs is not None else None
        field = _d(target, 'name') if target is not None else None
        parts.append('%s%s%s' % (field if type(field) is str else '?', op, render(_d(c, 'rhs'), MAX_DEPTH, False)))
    conn = _d(node, 'connector')
    out = (' %s ' % (conn if type(conn) is str else 'AND')).join(parts)
    if _d(node, 'negated') is True and out:
        out = 'NOT (%s)' % out
    return out



# krait: chunk
def _django(v, t, mro):
    """Django's objects as a Django developer reads them, from their
    attributes only: no query runs, no lazy object is loaded."""
    if 'django.db.models.query.QuerySet' in mro:
        model = _d(v, 'model')
        label = _model_label(model) if issubclass(type(model), type) else '?'
        rc = _d(v, '_result_cache')
        parts = ['not evaluated' if rc is None else 'evaluated, %d rows' % len(rc)]
        q = _d(v, '_query') or _d(v, 'query')
        if q is not None:
            w = _d(q, 'where')
            f = _where(w) if w is not None else ''
            if f:
                parts.append('filter: ' + f)
            ob = _d(q, 'order_by')
            if type(ob) is tuple and ob:
                parts.append('order by ' + ', '.join(x for x in ob if type(x) is str))
        return '<%s %s: %s>' % (_tqual(t), label, '; '.join(parts))
    if 'django.http.request.HttpRequest' in mro:
        path = _d(v, 'path') or ''
        env = _d(v, 'environ') or _d(v, 'META') or {}
        qs = env.get('QUERY_STRING') if type(env) is dict else None
        if type(qs) is str and qs:
            path = '%s?%s' % (path, qs)
        return '<%s: %s %s>' % (_tqual(t), _d(v, 'method'), render(path))
    if 'django.utils.functional.LazyObject' in mro:
        w = _d(v, '_wrapped')
        if type(w) is object:
            return '<%s: not loaded>' % _tqual(t)
        return '<%s: loaded %s>' % (_tqual(t), render(w, MAX_DEPTH, False))
    if 'django.db.models.base.Model' in mro:
        meta = _class_attr(t, '_meta')
        pk = _d(meta, 'pk')
        att = _d(pk, 'attname') if pk is not None else None
        val = render(_d(v, att), MAX_DEPTH, False) if type(att) is str else '?'
        return '<%s pk=%s at %#x>' % (_tqual(t), val, id(v))
    return None


def _builtin_object(v, t):
    """Objects whose own repr is safe or can be rebuilt without user code."""
    if issubclass(t, type):  # not isinstance: it would read v.__class__
        return "<class '%s'>" % _cls_name(v)
    if t is types.FunctionType:
        return '<function %s at %#x>' % (v.__qualname__, id(v))
    if t is types.MethodType:
        f = v.__func__
        name = getattr(f, '__qualname__', '?') if type(f) is types.FunctionType else '?'
        return '<bound method %s of %s>' % (name, render(v.__self__, MAX_DEPTH, False))
    if t is types.ModuleType:
        d = _oga(v, '__dict__')
        f = d.get('__file__')
        if type(f) is str:
            return "<module '%s' from '%s'>" % (d.get('__name__'), f)
        return "<module '%s'>" % d.get('__name__')
    if t in (types.BuiltinFunctionType, types.CodeType, types.FrameType):
        return '<%s %s at %#x>' % (_tname(t), getattr(v, '__qualname__', getattr(v, 'co_name', '')), id(v))
    return None


def _render_object(v, t, depth, attrs, path):
    try:
        s = _builtin_object(v, t)
        if s is None:
            mro = _mro_names(t)
            if any(m.startswith('django.') for m in mro):
                s = _django(v, t, mro)
        if s is not None:
            return s
    except Exception:
        pass
    try:
        mod = _tmod(t)
        mod = '' if mod in ('builtins', None) else str(mod) + '.'
        head = '<%s%s object at %#x>' % (mod, _tqual(t), id(v))
    except Exception:
        return '<object at %#x>' % id(v)
    if not attrs:
        return head
    d = _instance_dict(v)
    if not d:
        return head
    parts = []
    try:
        for i, (k, val) in enumerate(list(dict.items(d))):
            if i >= MAX_ITEMS:
                parts.append('...')
                break
            name = k if type(k) is str else render(k, MAX_DEPTH, False)
            parts.append('%s = %s' % (name, REDACTED if _hide(k) else render(val, depth + 1, False, path)))
    except Exception:
        pass
    return head + ' {' + ', '.join(parts) + '}'


def _sql(v):
    """The SQL a QuerySet (or Query) would run, compiled here, not executed."""
    mro = _mro_names(type(v))
    if 'django.db.models.query.QuerySet' in mro:
        v = _d(v, '_query') or _d(v, 'query')
        mro = _mro_names(type(v))
    if 'django.db.models.sql.query.Query' not in mro:
        raise Err('print/sql needs a Django QuerySet or Query, not %s' % type_name(v))
    sql, params = v.sql_with_params()
    return '%s  -- params: %r' % (sql, tuple(params))


PRINTF_MAX = 2000  # characters of a dprintf value
PRINTF_VISITS = 2000  # values a dprintf value's rendering may visit


class _Budget(set):
    """The path render passes down (ids of the containers being rendered,
    for cycles), with a budget of values to visit, left: a container that
    would exceed it is elided, as one too deep is."""


def printf_value(v, hide, rep):
    """A dprintf argument for krait's formatting: [kind, text], kind "str"
    (text: the string itself), "int", "bool", "float" (text: its repr),
    "other" (the safe rendering, as print's; always with rep, for %r) or
    "error"; text at most PRINTF_MAX characters. (Its type's name goes
    in the event's "types".)"""
    try:
        if hide:  # the expression reads a name that looks secret (printf_hide)
            return ['other', REDACTED]
        t = type(v)
        if not rep:
            if t is str:
                return ['str', v[:PRINTF_MAX]]
            if (t is int and v.bit_length() <= 12000) or t is bool or t is float:
                return [_tname(t), repr(v)]
        # As print renders it, visiting at most PRINTF_VISITS values (a
        # dprintf runs in the application's thread, at every crossing).
        b = _Budget()
        b.left = PRINTF_VISITS
        return ['other', render(v, 0, True, b)[:PRINTF_MAX]]
    except Exception as e:
        return ['error', '<error: %s>' % exc_line(e)]


def printf_hide(expr):
    n = expr_name(expr)
    return bool(n) and secret_name(n)


def value(v):
    return {'type': type_name(v), 'value': render(v)}


def exc_value(e):
    """An exception as its constructor call, from its args (no user
    __str__ or __repr__ runs): ValueError('bad', 3)."""
    try:
        args = BaseException.args.__get__(e)
        return '%s(%s)' % (_tqual(type(e)), ', '.join(render(a, 1, False) for a in args[:10]))
    except Exception:
        return '<%s>' % type_name(e)


def exc_line(e):
    try:
        msg = str(e)
    except Exception:
        msg = '<unprintable>'
    s = type_name(e) + (': ' + msg if msg else '')
    return ' '.join(s.split('\n'))[:2000]
