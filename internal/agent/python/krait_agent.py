# krait agent: runs inside the target Python and serves krait over a unix
# socket. internal/agent/PROTOCOL.md is the contract.
#
# krait's bootstrap executes this file in a fresh namespace
#     {'__name__': '__krait_agent__', 'KRAIT': {...}}
# from whatever thread holds the GIL. It starts the daemon thread
# "krait-agent" and returns at once; it binds nothing in __main__.
# Standard library only; CPython 3.6 to 3.13.
#
# Backends: sys.monitoring on 3.12+, else a settrace-style trace function,
# turned on by wrappers swapped in for the functions holding breakpoints
# (or written into every thread state with ctypes, offsets in
# KRAIT["trace"], for what a wrapper cannot reach).
# A thread that stops waits on a condition variable inside the trace or
# monitoring callback, with the GIL released, and runs the commands the
# agent thread posts to it (stack, locals, eval) until it is resumed.
#
# Breakpoint lines come from compiling the file's source (the same code
# objects as the module's, nested ones through co_consts). A pending
# breakpoint arms the first time code of a matching file starts (settrace
# 'call' event, or PY_START): before a module's body runs, so lines at
# module level work too; the agent thread also rescans sys.modules every
# second. No import hook is installed, so none has to be removed.

import ctypes
import gc
import hmac
import json
import linecache
import os
import select
import socket
import sys
import threading
import time
import types

_ident = threading.get_ident
_native = getattr(threading, 'get_native_id', None)
_NO = object()
MAX_ITEMS, MAX_STR, MAX_DEPTH = 100, 1000, 3
CO_OPTIMIZED, CO_NEWLOCALS, CO_VARARGS, CO_VARKEYWORDS, CO_NESTED = 0x1, 0x2, 0x4, 0x8, 0x10
CO_SUSPENDS = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coroutine, async generator
_COMPREHENSIONS = ('<listcomp>', '<dictcomp>', '<setcomp>', '<genexpr>')
_CODE, _FUNC = types.CodeType, types.FunctionType
_GENS = {types.GeneratorType: 'gi_code', types.CoroutineType: 'cr_code',
         types.AsyncGeneratorType: 'ag_code'}
_VP = ctypes.c_void_p

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
                             render(it[1], depth + 1, False, path))
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
        label = _model_label(model) if isinstance(model, type) else '?'
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
    if isinstance(v, type):
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
            parts.append('%s = %s' % (name, render(val, depth + 1, False, path)))
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


def value(v):
    return {'type': type_name(v), 'value': render(v)}


def exc_line(e):
    try:
        msg = str(e)
    except Exception:
        msg = '<unprintable>'
    s = type_name(e) + (': ' + msg if msg else '')
    return ' '.join(s.split('\n'))[:2000]


# krait: chunk
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
    outer = compile('\n'.join(src) + '\n', '<krait>', 'exec')
    inner = [k for k in outer.co_consts if type(k) is _CODE][0]
    w = [k for k in inner.co_consts if type(k) is _CODE][0]
    return w if len(w.co_freevars) == len(c.co_freevars) else None


def bind_wrapper(w, hook):
    consts = tuple(hook if (type(k) is str and k == _WSENT) else k for k in w.co_consts)
    if hasattr(w, 'replace'):
        return w.replace(co_consts=consts)
    return _CODE(w.co_argcount, w.co_kwonlyargcount, w.co_nlocals, w.co_stacksize, w.co_flags,
                 w.co_code, consts, w.co_names, w.co_varnames, w.co_filename, w.co_name,
                 w.co_firstlineno, w.co_lnotab, w.co_freevars, w.co_cellvars)


class _Hook(object):
    __slots__ = ('enter', 'call', 'exit')


def module_file(m):
    if not issubclass(type(m), types.ModuleType):
        return None
    try:
        f = _oga(m, '__dict__').get('__file__')
    except Exception:
        return None
    if type(f) is str and f.endswith('.py'):
        return os.path.abspath(f)
    return None


# krait: chunk
class Err(Exception):
    """An error reported to the client as is."""


class Bp(object):
    def __init__(self, id, spec, line, cond, temporary):
        self.id, self.spec, self.req, self.line = id, spec, line, line
        self.file, self.moved, self.function, self.pending = spec, False, None, True
        self.cond, self.ccode, self.temporary, self.enabled, self.hits = None, None, temporary, True, 0
        self.set_cond(cond)

    def set_cond(self, cond):
        if cond is not None and type(cond) is not str:
            raise Err('cond must be a string or null')
        self.ccode = compile(cond, '<condition>', 'eval') if cond else None
        self.cond = cond or None

    def js(self):
        return {'id': self.id, 'file': self.file, 'line': self.line, 'moved': self.moved,
                'function': self.function, 'pending': self.pending, 'cond': self.cond,
                'temporary': self.temporary, 'enabled': self.enabled, 'hits': self.hits}


class Stopped(object):
    """A thread waiting in a callback: frame is where it is, top is frame 0
    (the caller, after finish)."""

    def __init__(self, ident, frame, top, reason):
        self.ident, self.frame, self.top, self.reason = ident, frame, top, reason
        self.native = _native() if _native else None
        self.jobs, self.resume = [], None


class Step(object):
    def __init__(self, mode, frame):
        self.mode, self.frame, self.line = mode, frame, frame.f_lineno


# --------------------------------------------------------------- the agent


# krait: chunk
class _Serving(object):
    # thread
    def run(self):
        self.ident = _ident()
        try:
            self._pep768_withdraw()
            conn = self._listen()
            if conn is not None:
                self._serve(conn)
        except BaseException:
            pass
        finally:
            self._cleanup()

    def _listen(self):
        path = os.path.join(self.dir, 'sock')
        s = self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        os.chmod(path, 0o600)
        s.listen(1)
        try:
            os.unlink(os.path.join(self.dir, 'agent.py'))
        except OSError:
            pass
        timeout = float(self.cfg.get('connect_timeout') or 30)
        r, _, _ = select.select([s], [], [], timeout)
        if not r:
            return None
        conn, _ = s.accept()
        self.conn = conn
        return conn

    def _serve(self, conn):
        buf, hello, last = b'', False, time.time()
        while not self.closing:
            r, _, _ = select.select([conn], [], [], 0.5)
            if time.time() - last >= 1:
                last = time.time()
                self._periodic()
            if not r:
                continue
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while b'\n' in buf:
                line, buf = buf.split(b'\n', 1)
                if not line.strip():
                    continue
                try:
                    req = json.loads(line.decode('utf-8'))
                    cmd = req.get('cmd')
                except Exception:
                    req, cmd = {}, None
                if not hello:
                    tok = req.get('token')
                    if cmd != 'hello' or type(tok) is not str or not hmac.compare_digest(
                            tok.encode('utf-8', 'replace'), self.token.encode('utf-8')):
                        return
                    hello = True
                if not self._handle(req, cmd):
                    return

    def _handle(self, req, cmd):
        after = None
        try:
            fn = getattr(self, 'c_' + cmd, None) if type(cmd) is str else None
            if fn is None:
                raise Err('unknown command %r' % (cmd,))
            res = fn(req)
            if callable(res):
                after, res = res, None
            reply = {'id': req.get('id'), 'ok': True}
            reply.update(res or {})
        except Err as e:
            reply = {'id': req.get('id'), 'ok': False, 'error': str(e)}
        except Exception as e:
            reply = {'id': req.get('id'), 'ok': False, 'error': exc_line(e)}
        if cmd not in ('hello', 'detach'):
            # Before the reply: a breakpoint krait reports as set must
            # already be armed on every thread.
            self._sync()
        self.send(reply)
        if after is not None:
            after()
            if cmd not in ('hello', 'detach'):
                self._sync()  # resumed threads may leave nothing to trace
        return cmd != 'detach'

    def _sync(self):
        """settrace: trace functions on threads only while breakpoints,
        pending breakpoints, steps or stopped threads exist."""
        if self.backend != 'settrace' or self.closing:
            return
        with self.lock:
            need = bool(self.lines or self.pending or self.steps or self.stopped)
        try:
            if need:
                self._install()
            elif self.installed:
                self._uninstall()
        except Exception:
            pass

    def send(self, msg):
        try:
            data = (json.dumps(msg) + '\n').encode('utf-8')
        except Exception as e:
            data = (json.dumps({'id': msg.get('id'), 'ok': False, 'error': exc_line(e)}) + '\n').encode()
        with self.wlock:
            if self.conn is None:
                return False
            try:
                self.conn.sendall(data, socket.MSG_NOSIGNAL)
                return True
            except Exception:
                try:
                    self.conn.shutdown(socket.SHUT_RDWR)
                except Exception:
                    pass
                return False

    def _periodic(self):
        if self.installed and self.backend == 'settrace' and self.glob:
            self._tr_relax()
        if self.installed and self.backend == 'settrace':
            self._tr_prune()
        if self.installed and self.backend == 'settrace' and self.glob:
            self._tr_all(True)
        if self.pending:
            for m in list(sys.modules.values()):
                f = module_file(m)
                if f is not None:
                    self._abs(f)

    def _cleanup(self):
        with self.cv:
            self.closing = True
        with self.lock:
            self.bps.clear()
            self.lines.clear()
            del self.pending[:]
            del self.history[:]  # drop the references krait's $N held
            self.ccache.clear()
        for step in (self._uninstall, self._resume_all, self._pep768_withdraw, self._close, self._unmap):
            try:
                step()
            except BaseException:
                pass

    def _pep768_withdraw(self):
        """Started through PEP 768 (KRAIT["pep768"]): krait asked every
        thread to run the bootstrap; clear the requests the other threads
        have not taken yet, so none runs it later, even if krait died before
        it could clear them itself."""
        r = self.cfg.get('pep768')
        if not r:
            return
        api = ctypes.pythonapi
        get, head, nxt = api.PyInterpreterState_Get, api.PyInterpreterState_ThreadHead, api.PyThreadState_Next
        get.restype, get.argtypes = _VP, []
        head.restype, head.argtypes = _VP, [_VP]
        nxt.restype, nxt.argtypes = _VP, [_VP]
        # No other thread may run meanwhile (one could free its state), as
        # in _tr_all: no GIL switch request for a few ms, no collection.
        old, gcon = sys.getswitchinterval(), gc.isenabled()
        try:
            sys.setswitchinterval(max(old, 0.005))
            time.sleep(0)
            gc.disable()
            t = head(get())
            while t:
                ctypes.c_int32.from_address(t + r['remote_support'] + r['pending_call']).value = 0
                t = nxt(t)
        finally:
            if gcon:
                gc.enable()
            sys.setswitchinterval(old)

    def _resume_all(self):
        with self.cv:
            self.steps.clear()
            self.cv.notify_all()

    def _close(self):
        with self.wlock:
            for s in (self.conn, self.listener):
                if s is not None:
                    s.close()
            self.conn = None
        for name in ('sock', 'agent.py', 'agent.run', 'bootstrap.py'):
            try:
                os.unlink(os.path.join(self.dir, name))
            except OSError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass

    def _unmap(self):
        page, size = self.cfg.get('page'), self.cfg.get('page_size')
        if not page or not size:
            return
        # The bootstrap thread returns through the trampoline right after
        # starting us; give it ample time before its pages go.
        time.sleep(max(0.0, self.started + 1.0 - time.time()))
        munmap = ctypes.CDLL(None).munmap
        munmap.argtypes, munmap.restype = [_VP, ctypes.c_size_t], ctypes.c_int
        munmap(page, size)


# krait: chunk
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
            f = module_file(m)
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


# krait: chunk
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


# krait: chunk
class _Stopping(object):
    # stopping
    def _line(self, frame, line, ident, bps):
        """A line event in a traced frame (any backend)."""
        if self._hidden(frame):
            return
        for bp in list(bps or ()):
            if not bp.enabled:
                continue
            if bp.ccode is not None:
                try:
                    if not eval(bp.ccode, frame.f_globals, frame.f_locals):
                        continue
                except Exception as e:
                    self.send({'event': 'error', 'message': 'breakpoint %d: condition %r raised %s' % (
                        bp.id, bp.cond, exc_line(e))})
            bp.hits += 1
            if bp.temporary:
                self._remove(bp)
            return self._stop(frame, 'breakpoint', bp)
        st = self.steps.get(ident)
        if st is None:
            return
        if st.mode == 'step':
            if not frame.f_code.co_filename.startswith('<frozen'):
                self._stop(frame, 'step')
            return
        rel = self._relation(frame, st.frame)
        if rel == 'same':
            if st.mode == 'next' or (st.mode == 'until' and line > st.line):
                self._stop(frame, 'until' if st.mode == 'until' else 'step')
        elif rel == 'gone':
            self._stop(frame, {'next': 'step'}.get(st.mode, st.mode))

    @staticmethod
    def _relation(frame, target):
        f = frame
        while f is not None:
            if f is target:
                return 'same' if f is frame else 'deeper'
            f = f.f_back
        return 'gone'

    def _returned(self, frame, rv):
        st = self.steps.get(_ident())
        if st is not None and st.mode == 'finish' and frame is st.frame:
            self._stop(frame, 'finish', None, rv, self._up(frame) or frame)

    def _stop(self, frame, reason, bp=None, rv=_NO, top=None):
        ident = _ident()
        if self.closing or ident == self.ident or os.getpid() != self.pid:
            return
        th = Stopped(ident, frame, top or frame, reason)
        with self.cv:
            self.steps.pop(ident, None)
            self.stopped[ident] = th
        self._steps_changed(False)
        ev = {'event': 'stop', 'thread': ident, 'native_id': th.native,
              'thread_name': self._thread_name(ident), 'reason': reason,
              'bp': bp.id if bp else None,
              'return_value': None if rv is _NO else value(rv)}
        ev.update(self._where(th.top))
        ev['args'] = self._args(th.top)
        self.send(ev)
        while True:  # run the jobs posted to this thread until resumed
            try:
                with self.cv:
                    while not (th.jobs or th.resume or self.closing):
                        self.cv.wait()
                    if not th.jobs:
                        break
                    fn, box, done = th.jobs.pop(0)
                try:
                    box['res'] = fn(th)
                except BaseException as e:
                    box['err'] = e
                finally:
                    done.set()
            except BaseException:
                pass  # e.g. KeyboardInterrupt while stopped: stay stopped
        with self.cv:
            del self.stopped[ident]
            step = th.resume and th.resume[0] != 'continue' and not self.closing
            if step:
                self.steps[ident] = Step(*th.resume)
        if not step:
            if self.backend == 'settrace':
                self._tr_quiet(ident)
            return
        if self.backend == 'settrace':
            f = frame
            while f is not None:  # line events in the callers too
                if f.f_trace is None and not self._hidden(f):
                    f.f_trace = self.lt
                f = f.f_back
        self._steps_changed(True)

    @staticmethod
    def _thread_name(ident):
        t = threading._active.get(ident)
        return t.name if t is not None else None

    def _hidden(self, f):
        """The agent's own frames and breakpoint wrappers: never shown,
        never stopped in."""
        return f.f_globals is self.ns or id(f.f_code) in self.wcodes

    def _up(self, f):
        f = f.f_back
        while f is not None and self._hidden(f):
            f = f.f_back
        return f

    def _where(self, f):
        return {'function': self._qualname(f.f_code), 'file': self._abs(f.f_code.co_filename),
                'line': f.f_lineno}

    def _args(self, f):
        loc = f.f_locals
        return [dict(name=n, type=type_name(loc[n]), value=render(loc[n], attrs=False))
                for n in arg_names(f.f_code) if n in loc]


# krait: chunk
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
        while not done.wait(0.5):
            if self.stopped.get(th.ident) is not th:
                raise Err('thread %s was resumed' % th.ident)
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
            d = {'id': ident, 'native_id': getattr(t, 'native_id', th and th.native),
                 'name': t.name if t is not None else None, 'stopped': th is not None,
                 'reason': th.reason if th else None, 'function': None, 'file': None, 'line': None}
            if f is not None:
                d.update(self._where(f))
            out.append(d)
        return {'threads': out}

    def _resume(self, ths, mode, req=None):
        if mode == 'finish':
            target = self._frame(ths[0], req)
        for th in ths:
            if mode == 'continue':
                th.resume = ('continue', None)
            else:
                th.resume = (mode, target if mode == 'finish' else th.top)

        def go():
            with self.cv:
                self.cv.notify_all()
        return go

    def c_continue(self, req):
        if req.get('thread') is None:
            return self._resume(list(self.stopped.values()), 'continue')
        return self._resume([self._thread(req)], 'continue')

    def c_step(self, req):
        return self._resume([self._thread(req)], 'step')

    def c_next(self, req):
        return self._resume([self._thread(req)], 'next')

    def c_until(self, req):
        return self._resume([self._thread(req)], 'until')

    def c_finish(self, req):
        return self._resume([self._thread(req)], 'finish', req)

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
        return {'frames': self._in_thread(self._thread(req), run)}

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
                out.append(dict(name=n, arg=n in args, **value(loc[n])))
            return out
        return {'locals': self._in_thread(th, run)}

    def c_eval(self, req):
        th = self._thread(req)
        f = self._frame(th, req)
        expr, mode = req.get('expr'), req.get('mode') or 'safe'
        if type(expr) is not str or mode not in ('safe', 'repr', 'sql'):
            raise Err('eval needs expr and mode "safe", "repr" or "sql"')
        history = self.history

        def run(th):
            try:
                loc = dict(f.f_locals)
                loc['__krait_h'] = history  # gdb's $N, rewritten by krait
                v = eval(compile(expr, '<krait>', 'eval'), f.f_globals, loc)
                if req.get('store'):
                    history.append(v)
                if mode == 'safe':
                    return value(v)
                if mode == 'sql':
                    return {'type': 'sql', 'value': _sql(v)}
                return {'type': type_name(v), 'value': repr(v)[:100000]}
            except Err:
                raise
            except BaseException as e:
                raise Err(exc_line(e))
        return self._in_thread(th, run)

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


# krait: chunk
class _Backends(object):
    # backends
    def _install(self):
        if not self.installed:
            self.installed = True
            try:
                (self._mon_install if self.backend == 'monitoring' else self._tr_install)()
            except BaseException:
                self._uninstall()
                raise

    def _uninstall(self):
        if self.installed:
            self.installed = False
            try:
                (self._mon_uninstall if self.backend == 'monitoring' else self._tr_uninstall)()
            except Exception:
                pass

    def _changed(self, path):
        self.ccache.clear()
        if not self.installed:
            return
        if self.backend == 'monitoring':
            self._mon_changed(path)
        else:
            self._tr_changed(path)

    def _steps_changed(self, started):
        if self.installed and self.backend == 'monitoring':
            self._mon_events(started)


# krait: chunk
class _Monitoring(object):
    # sys.monitoring (3.12+) .............................................
    def _mon_install(self):
        mon = sys.monitoring
        for tid in [mon.DEBUGGER_ID] + list(range(6)):
            if mon.get_tool(tid) is None:
                try:
                    mon.use_tool_id(tid, 'krait')
                except ValueError:
                    continue
                self.tool = tid
                break
        else:
            raise Err('no free sys.monitoring tool id')
        E = mon.events
        mon.register_callback(tid, E.LINE, self._m_line)
        mon.register_callback(tid, E.PY_START, self._m_start)
        mon.register_callback(tid, E.PY_RETURN, self._m_return)
        mon.register_callback(tid, E.PY_YIELD, self._m_return)

    def _mon_uninstall(self):
        mon, tid = sys.monitoring, self.tool
        if tid is None:
            return
        mon.set_events(tid, 0)
        for c in self.mcodes.values():
            mon.set_local_events(tid, c, 0)
        self.mcodes.clear()
        E = mon.events
        for e in (E.LINE, E.PY_START, E.PY_RETURN, E.PY_YIELD):
            mon.register_callback(tid, e, None)
        mon.free_tool_id(tid)

    def _mon_events(self, restart):
        E = sys.monitoring.events
        ev = E.PY_START if (self.lines or self.pending) else 0
        if self.steps:
            ev |= E.LINE | E.PY_RETURN | E.PY_YIELD
        sys.monitoring.set_events(self.tool, ev)
        if restart:
            sys.monitoring.restart_events()

    def _mon_code(self, c):
        """Local LINE events on c iff it holds a breakpoint line."""
        ls = self.clines.get(id(c))
        if ls is None:
            ls = self.clines[id(c)] = code_lines(c)
        self.mcodes[id(c)] = c
        bl = self.lines.get(self._abs(c.co_filename))
        on = bool(bl) and not ls.isdisjoint(bl)
        sys.monitoring.set_local_events(self.tool, c, sys.monitoring.events.LINE if on else 0)

    def _mon_changed(self, path):
        with self.lock:
            if path in self.lines and path not in self.scanned:
                self.scanned.add(path)
                for c in self._live_codes(path):
                    self._mon_code(c)
            elif path not in self.lines:
                self.scanned.discard(path)
            for c in list(self.mcodes.values()):
                self._mon_code(c)
            self._mon_events(True)

    def _live_codes(self, path):
        out, seen = [], set()

        def add(c):
            if id(c) not in seen and self._abs(c.co_filename) == path:
                seen.add(id(c))
                out.extend(nested_codes(c))
        for o in gc.get_objects():
            t = type(o)
            if t is _FUNC:
                add(o.__code__)
            elif t in _GENS:
                add(getattr(o, _GENS[t]))
        for f in sys._current_frames().values():
            while f is not None:
                add(f.f_code)
                f = f.f_back
        return out

    def _m_start(self, code, offset):
        try:
            if not self.closing and self._abs(code.co_filename) in self.lines:
                with self.lock:
                    if id(code) not in self.mcodes:
                        self._mon_code(code)
        except Exception:
            pass
        return sys.monitoring.DISABLE

    def _m_line(self, code, line):
        try:
            if self.closing:
                return None
            ident = _ident()
            bl = self.lines.get(self.fcache.get(code.co_filename) or self._abs(code.co_filename))
            bps = bl.get(line) if bl else None
            if bps is None and ident not in self.steps:
                return None if self.steps else sys.monitoring.DISABLE
            if ident != self.ident:
                self._line(sys._getframe(1), line, ident, bps)
        except Exception:
            pass
        return None

    def _m_return(self, code, offset, rv):
        try:
            if self.steps and not self.closing:
                self._returned(sys._getframe(1), rv)
        except Exception:
            pass


# krait: chunk
class _Settrace(object):
    # settrace (< 3.12) ...................................................
    def _gtrace(self, frame, event, arg):
        try:
            if self.closing or (self.trick and _ident() == self.ident):
                return None
            c = frame.f_code
            hit = self.ccache.get(id(c))
            if hit is None or hit[0] is not c:
                hit = (c, self._code_has_bp(c))
                self.ccache[id(c)] = hit
            if hit[1]:
                return self.lt
            st = self.steps.get(_ident())
            if st is not None and not self._hidden(frame) and (
                    st.mode == 'step' or self._relation(frame, st.frame) == 'gone'):
                return self.lt
        except Exception:
            pass
        return None

    def _code_has_bp(self, c):
        """Only code objects with a breakpoint on one of their own lines get
        line events (a pending breakpoint's file: every code of it, until
        it resolves)."""
        path = self.fcache.get(c.co_filename) or self._abs(c.co_filename)
        bl = self.lines.get(path)
        if not bl:
            return False
        mine = code_lines(c)
        return any(l in mine for l in bl)

    def _ltrace(self, frame, event, arg):
        try:
            if self.closing:
                return None
            if event == 'line':
                ident, c = _ident(), frame.f_code
                bl = self.lines.get(self.fcache.get(c.co_filename) or self._abs(c.co_filename))
                line = frame.f_lineno
                bps = bl.get(line) if bl else None
                if bps is not None or ident in self.steps:
                    self._line(frame, line, ident, bps)
            elif event == 'return' and self.steps:
                self._returned(frame, arg)
        except Exception:
            pass
        # Keep line events only while this thread is traced: a frame with
        # f_trace set but no events shows a stale f_lineno (3.6-3.9).
        return None if self.closing or sys.gettrace() is not self.gt else self.lt

    def _tr_install(self):
        T = self.T = self.cfg.get('trace')
        if not T:
            raise Err('no trace configuration (KRAIT["trace"]) for Python %d.%d' % sys.version_info[:2])
        api = self.api = ctypes.PyDLL(None)
        api.PyThreadState_Get.restype, api.PyThreadState_Get.argtypes = _VP, []
        for n in ('PyInterpreterState_ThreadHead', 'PyThreadState_Next'):
            getattr(api, n).restype, getattr(api, n).argtypes = _VP, [_VP]
        for n in ('Py_IncRef', 'Py_DecRef'):
            getattr(api, n).restype, getattr(api, n).argtypes = None, [_VP]
        me = self.me = api.PyThreadState_Get()
        if sys.gettrace() is not None:
            raise Err('the agent thread is traced')
        # Learn the C trampoline, the trace object and use_tracing's value
        # from our own thread state.
        self.trick = True
        try:
            sys.settrace(self.gt)
            self.tfunc = _VP.from_address(me + T['c_tracefunc']).value
            self.tobj = _VP.from_address(me + T['c_traceobj']).value
            # Inline, not through _use_tracing(): on 3.10 a Python call has
            # its own _PyCFrame, gone once the call returns.
            if T.get('use_tracing') is not None:
                self.utv = ctypes.c_int.from_address(me + T['use_tracing']).value
            elif T.get('cframe') is not None and T.get('cframe_use_tracing') is not None:
                self.utv = ctypes.c_ubyte.from_address(
                    _VP.from_address(me + T['cframe']).value + T['cframe_use_tracing']).value
        finally:
            sys.settrace(None)
            self.trick = False
        if self.utv is None:
            self.tobj = None
            raise Err('KRAIT["trace"] locates no use_tracing flag (use_tracing, or cframe '
                      'and cframe_use_tracing) for Python %d.%d' % sys.version_info[:2])
        if not self.tfunc or self.tobj != id(self.gt) or not self.utv or _VP.from_address(
                me + T['c_tracefunc']).value:
            self.tobj = None
            raise Err('KRAIT["trace"] does not match this interpreter')
        self._tr_changed(None)
        for path in list(self.lines):
            self._tr_changed(path)

    def _tr_uninstall(self):
        for k in list(self.wrapped):
            self._unwrap(k)
        if self.glob:
            threading.settrace(self.old_hook)
            self.glob = False
        self.tthreads.clear()
        if self.tobj is None:
            return  # failed before touching any other thread
        self._tr_all(False)
        for f in sys._current_frames().values():
            while f is not None:
                if f.f_trace is self.lt:
                    f.f_trace = None
                f = f.f_back
        for o in gc.get_objects():  # suspended generators and coroutines
            if type(o) in _GENS:
                f = getattr(o, _GENS[type(o)].replace('code', 'frame'), None)
                if f is not None and f.f_trace is self.lt:
                    f.f_trace = None



# krait: chunk
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


# krait: chunk
class Agent(_Serving, _Files, _Breakpoints, _Stopping,
            _Threads, _Backends, _Monitoring, _Settrace, _Wrapping):
    """krait's agent: one per attach, serving one connection (the methods
    come from the classes above, compiled one at a time)."""

    def __init__(self, cfg, ns):
        self.cfg, self.ns = cfg, ns
        self.dir, self.token = cfg['dir'], str(cfg['token'])
        self.pid, self.started = os.getpid(), time.time()
        self.lock = threading.RLock()   # breakpoint tables
        self.cv = threading.Condition()  # stopped threads
        self.wlock = threading.Lock()    # socket writes
        self.bps, self.next_bp = {}, 1
        self.lines = {}     # abs file -> {line: [Bp]}: armed breakpoints
        self.pending = []   # Bps waiting for their file
        self.fcache = {}    # co_filename -> abs path (also: files seen run)
        self.ccache = {}    # id(code) -> (code, has a breakpoint line): settrace
        self.finfo = {}     # abs file -> [(code, qualname, is_func, lines)]
        self.stopped = {}   # ident -> Stopped
        self.history = []   # values printed with store (gdb value history)
        self.steps = {}     # ident -> Step
        self.conn = self.listener = None
        self.closing = self.installed = self.trick = False
        self.ident = None
        self.backend = 'monitoring' if hasattr(sys, 'monitoring') else 'settrace'
        self.tool = None
        self.mcodes = {}    # id(code) -> code holding our local LINE events
        self.clines = {}    # id(code) -> line set (codes kept alive by mcodes)
        self.scanned = set()  # files whose live code objects were looked for
        self.gt, self.lt = self._gtrace, self._ltrace  # one bound object each
        self.seen = set()   # thread states the settrace backend looked at
        self.glob = False   # settrace: every thread traced (else only calls of wrapped functions)
        self.wrapped = {}   # id(function) -> (function, its code, the wrapper code in its place)
        self.wcodes = {}    # id(wrapper code) -> wrapper code: frames never shown nor traced
        self.tthreads = set()  # idents traced because a breakpoint's code was running there
        self.inwrap = {}       # ident -> [wrapped calls in progress, tracing turned on by the outermost]
        self.clones = {}       # id -> the functions wrappers call (running the original code)
        self.utv = self.tobj = None  # use_tracing when tracing; our trace object


# krait: chunk
def _start(cfg, ns):
    agent = Agent(cfg, ns)
    if cfg.get('own_thread'):
        agent.run()  # krait's loader already runs in the krait-agent thread
    else:
        threading.Thread(target=agent.run, name='krait-agent', daemon=True).start()


_start(KRAIT, globals())  # noqa: F821 (KRAIT is set by the bootstrap)
