# cachetrace.py: krait cache: every Django cache operation, SQL statement and commit, as events

CT_OPS = ('get', 'set', 'add', 'delete', 'get_many', 'set_many', 'delete_many', 'incr', 'decr',
          'touch', 'clear', 'get_or_set')
CT_SQL_MAX = 4000   # characters of a statement sent to krait
CT_KEY_MAX = 250    # characters of a key
CT_MARK = '_krait_cachetrace'  # on our wrappers: one left by an earlier agent is seen through
CT_PAGE = ('views.decorators.cache.cache_page.', 'views.decorators.cache.cache_header.')
_CT_NOSIZE = ('django.db.models.query',)  # pickling these would run queries: no size
# BaseCache's parameters, for backends whose methods take (*args, **kwargs) (django-redis)
CT_PARAMS = {'get': ('key', 'default', 'version'), 'set': ('key', 'value', 'timeout', 'version'),
             'add': ('key', 'value', 'timeout', 'version'), 'delete': ('key', 'version'),
             'get_many': ('keys', 'version'), 'set_many': ('data', 'timeout', 'version'),
             'delete_many': ('keys', 'version'), 'incr': ('key', 'delta', 'version'),
             'decr': ('key', 'delta', 'version'), 'touch': ('key', 'timeout', 'version'), 'clear': (),
             'get_or_set': ('key', 'default', 'timeout', 'version')}


class _CtState(object):
    """Cache tracing while it is on: what was wrapped (to put back exactly),
    and the per-thread state the wrappers keep."""

    def __init__(self):
        self.box = []        # [agent] while tracing; emptied first at stop: wrappers then only pass calls on
        self.wrapped = []    # (class, name, what to put back or _NO, our wrapper)
        self.depth = {}      # thread ident -> 1 inside a traced cache call (inner calls not recorded)
        self.via = {}        # thread ident -> 'get_or_set' while inside one
        self.reqs = {}       # thread ident -> (request id, request): the request in flight (no contextvars)
        self.cv = None       # contextvars.ContextVar of (request id, request): the request in flight in
                             # this context (3.7+): an ASGI request's task, and the threads that
                             # sync_to_async runs its sync code in (asgiref copies the context there)
        self.seq = None      # request ids
        self.aliases = {}    # alias -> (backend class, settings dict)
        self.objs = None     # id(cache object) -> (weak reference to it, alias)
        self.ref = None      # weakref.ref
        self.skip = ()       # path prefixes of Django and cache libraries: not the application's frames
        self.stop = ()       # path prefixes of the server: no application frame above
        self.default = None  # django's DEFAULT_TIMEOUT
        self.custom = set()  # aliases with their own KEY_FUNCTION: events carry the final key
        self.info = None


class _CacheTrace(object):
    # krait cache wraps, at class level, the methods of every configured
    # cache backend class, CursorWrapper.execute/executemany, the
    # DatabaseWrapper classes' commit/rollback and BaseHandler.get_response:
    # class level, because Django's cache and connection objects are per
    # thread, and threads started later must be traced too. Each wrapper
    # holds the original and a box holding the agent; stop empties the box
    # (a call in flight then just passes through) and puts back exactly what
    # each class had (nothing, or its own attribute), unless someone
    # replaced our wrapper since (theirs stays; ours is inert). A wrapper
    # never raises anything of its own and calls the original exactly once.
    # In a child forked while tracing (a gunicorn master with its app
    # preloaded forking a worker) the inherited wrappers only pass calls
    # on; a later krait cache in that child wraps the originals again.

    def c_cache_start(self, req):
        if self.ct is not None:
            return self.ct.info
        mods = sys.modules
        for m in ('django.conf', 'django.core.cache', 'django.db', 'django.core.handlers.base'):
            if m not in mods:
                raise Err('no Django in this process (module %s not loaded)' % m)
        apps = getattr(mods.get('django.apps'), 'apps', None)
        if apps is None or not apps.ready:
            raise Err('Django is not set up in this process yet (no request served)')
        import django
        from django.conf import settings
        from django.core.cache.backends import base as cbase
        from django.core.handlers.base import BaseHandler
        from django.db.backends import utils as dbutils
        from django.db.utils import load_backend
        from django.utils.module_loading import import_string
        import weakref
        import itertools
        st = _CtState()
        st.seq = itertools.count(1)
        try:
            import contextvars
            st.cv = contextvars.ContextVar('krait_cache_request')
        except ImportError:  # 3.6
            st.cv = None
        st.objs = {}
        st.ref = weakref.ref
        st.default = getattr(cbase, 'DEFAULT_TIMEOUT', _NO)
        classes, info = [], {'django': django.get_version(), 'aliases': [], 'databases': []}
        for alias, conf in sorted(settings.CACHES.items()):
            try:
                cls = import_string(conf['BACKEND'])
            except Exception as e:  # a backend this process cannot load: it cannot use it either
                info['aliases'].append({'alias': alias, 'backend': str(conf.get('BACKEND')), 'error': exc_line(e)})
                continue
            st.aliases[alias] = (cls, conf)
            if cls not in classes:
                classes.append(cls)
            # What krait needs to make the final keys itself (Django's
            # default key function): events then carry only the user's key.
            info['aliases'].append({'alias': alias, 'backend': cls.__module__ + '.' + cls.__name__,
                                    'key_prefix': conf.get('KEY_PREFIX', ''), 'version': conf.get('VERSION', 1),
                                    'key_function': bool(conf.get('KEY_FUNCTION'))})
            if conf.get('KEY_FUNCTION'):
                st.custom.add(alias)
        dbclasses = []
        for alias, conf in sorted(settings.DATABASES.items()):
            try:
                cls = load_backend(conf['ENGINE']).DatabaseWrapper
            except Exception as e:
                info['databases'].append({'alias': alias, 'engine': str(conf.get('ENGINE')), 'error': exc_line(e)})
                continue
            if cls not in dbclasses:
                dbclasses.append(cls)
            info['databases'].append({'alias': alias, 'engine': conf['ENGINE']})
        skip = [os.path.dirname(django.__file__) + os.sep]
        for m in ('pymemcache', 'pylibmc', 'redis', 'django_redis', 'memcache'):
            f = getattr(mods.get(m), '__file__', None)
            if f:
                skip.append(os.path.dirname(f) + os.sep if f.endswith('__init__.py') else f)
        std = os.path.dirname(os.__file__) + os.sep
        st.skip = tuple(skip)
        st.std = std
        g = getattr(mods.get('gunicorn'), '__file__', None)
        st.stop = (os.path.dirname(g) + os.sep,) if g else ()
        st.info = info
        st.box.append(self)
        self.ct = st
        try:
            for cls in classes:
                for op in CT_OPS:
                    self._ct_wrap(st, cls, op, self._ct_cache_wrapper)
            for name in ('execute', 'executemany'):
                self._ct_wrap(st, dbutils.CursorWrapper, name, self._ct_sql_wrapper)
            for cls in dbclasses:
                for name in ('commit', 'rollback'):
                    self._ct_wrap(st, cls, name, self._ct_tx_wrapper)
            self._ct_wrap(st, BaseHandler, 'get_response', self._ct_req_wrapper)
            if 'get_response_async' in BaseHandler.__dict__:  # Django 3.1+: ASGI
                self._ct_wrap(st, BaseHandler, 'get_response_async', self._ct_areq_wrapper)
        except BaseException:
            self._ct_stop()
            raise
        info['wrapped'] = len(st.wrapped)
        self.ev_use('cache', True)
        return info

    def c_cache_stop(self, req):
        self._ct_stop()
        return {}

    def _ct_stop(self):
        st = self.ct
        if st is None:
            return
        self.ct = None
        del st.box[:]
        for cls, name, prev, w in reversed(st.wrapped):
            try:
                if cls.__dict__.get(name) is w:
                    if prev is _NO:
                        delattr(cls, name)
                    else:
                        setattr(cls, name, prev)
            except Exception:
                pass
        del st.wrapped[:]
        st.reqs.clear()
        st.depth.clear()
        st.via.clear()
        st.objs = st.ref = None
        st.aliases.clear()
        self.ev_use('cache', False)  # what is queued goes before the reply to cache_stop

    def _ct_wrap(self, st, cls, name, make):
        own = cls.__dict__.get(name, _NO)
        orig = None
        for k in cls.__mro__:
            if name in k.__dict__:
                orig = k.__dict__[name]
                break
        while getattr(orig, CT_MARK, False):  # left by an agent that could not clean up
            orig = orig.__wrapped__
        while own is not _NO and getattr(own, CT_MARK, False):
            own = own.__wrapped__
        if type(orig) is not _FUNC:
            return
        w = make(orig, name, st.box)
        functools.update_wrapper(w, orig)
        w.__wrapped__ = orig
        setattr(w, CT_MARK, True)
        st.wrapped.append((cls, name, own, w))
        setattr(cls, name, w)

    # ---- wrappers: closures over the original and the box, nothing else

    @staticmethod
    def _ct_cache_wrapper(orig, op, box):
        try:
            ps = list(__import__('inspect').signature(orig).parameters.values())[1:]
            names = [p.name for p in ps]
            if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name in ('args', 'kwargs') for p in ps) \
                    and not set(CT_PARAMS[op]) <= set(names):
                names = list(CT_PARAMS[op])
        except Exception:
            names = list(CT_PARAMS[op])

        pid = os.getpid()

        def krait_cache_op(obj, *args, **kwargs):
            if box and os.getpid() == pid:  # (a forked child inherits the wrapper, not the agent)
                for a in box:
                    return a._ct_cache(orig, op, names, obj, args, kwargs)
            return orig(obj, *args, **kwargs)
        return krait_cache_op

    @staticmethod
    def _ct_sql_wrapper(orig, op, box):
        many, pid = op == 'executemany', os.getpid()

        def krait_sql(cur, *args, **kwargs):
            if box and os.getpid() == pid:
                for a in box:
                    return a._ct_sql(orig, many, cur, args, kwargs)
            return orig(cur, *args, **kwargs)
        return krait_sql

    @staticmethod
    def _ct_tx_wrapper(orig, op, box):
        pid = os.getpid()

        def krait_tx(conn, *args, **kwargs):
            t0 = time.time()
            r = orig(conn, *args, **kwargs)
            if box and os.getpid() == pid:
                for a in box:
                    a._ct_tx(op, conn, t0)
            return r
        return krait_tx

    @staticmethod
    def _ct_req_wrapper(orig, op, box):
        pid = os.getpid()

        def krait_request(handler, request, *args, **kwargs):
            if box and os.getpid() == pid:
                for a in box:
                    return a._ct_request(orig, handler, request, args, kwargs)
            return orig(handler, request, *args, **kwargs)
        return krait_request

    @staticmethod
    def _ct_areq_wrapper(orig, op, box):
        pid = os.getpid()

        async def krait_request_async(handler, request, *args, **kwargs):
            if box and os.getpid() == pid:
                for a in box:
                    return await a._ct_request_async(orig, handler, request, args, kwargs)
            return await orig(handler, request, *args, **kwargs)
        return krait_request_async

    # ---- what the wrappers do

    def _ct_request(self, orig, handler, request, args, kwargs):
        began = self._ct_req_begin(request)
        try:
            return orig(handler, request, *args, **kwargs)
        finally:
            self._ct_req_end(began, request)

    async def _ct_request_async(self, orig, handler, request, args, kwargs):
        began = self._ct_req_begin(request)
        try:
            return await orig(handler, request, *args, **kwargs)
        finally:
            self._ct_req_end(began, request)

    def _ct_req_begin(self, request):
        """A request starts in this thread (WSGI) or task (ASGI): its id,
        made current; what _ct_req_end needs, or None."""
        st = self.ct
        try:
            ident = _ident()
            rid = next(st.seq)
            if st.cv is not None:
                prev = st.cv.set((rid, request))
            else:
                prev = st.reqs.get(ident)
                st.reqs[ident] = (rid, request)
        except Exception:  # (stopped meanwhile)
            return None
        try:  # made current: whatever happens now, _ct_req_end puts back
            self.ev_put({'kind': 'req', 'ph': 'start', 'req': rid, 'thread': ident, 't': time.time(),
                         'method': request.method, 'path': request.path,
                         'query': request.META.get('QUERY_STRING') or ''})
        except Exception:
            pass
        return st, ident, rid, prev

    def _ct_req_end(self, began, request):
        if began is None:
            return
        st, ident, rid, prev = began
        try:
            if st.cv is not None:
                st.cv.reset(prev)
            elif prev is None:
                st.reqs.pop(ident, None)
            else:
                st.reqs[ident] = prev
        except Exception:
            pass
        try:
            self.ev_put({'kind': 'req', 'ph': 'end', 'req': rid, 'thread': _ident(), 't': time.time(),
                         'view': self._ct_view(request)})
        except Exception:
            pass

    def _ct_cur(self, st, ident):
        """(request id, request) of the request in flight here, or None."""
        if st.cv is not None:
            return st.cv.get(None)
        return st.reqs.get(ident)

    @staticmethod
    def _ct_view(request):
        rm = getattr(request, 'resolver_match', None)
        if rm is None:
            return None
        v = getattr(rm, '_func_path', None)
        return v if type(v) is str else None

    def _ct_ctx(self, st, ident, ev):
        """The request in flight on this thread, into ev (its method and
        path krait has from the request's start)."""
        r = self._ct_cur(st, ident)
        if r is not None:
            ev['req'] = r[0]
            ev['view'] = self._ct_view(r[1])

    def _ct_sql(self, orig, many, cur, args, kwargs):
        t0 = time.time()
        r = orig(cur, *args, **kwargs)
        try:
            st = self.ct
            ident = _ident()
            if st.depth.get(ident):
                return r  # the cache backend's own SQL (DatabaseCache): not the application's
            sql = args[0] if args else kwargs.get('sql')
            if type(sql) is not str:
                sql = sql.decode('utf-8', 'replace') if type(sql) is bytes else str(sql)
            db = cur.db
            ev = {'kind': 'sql', 'sql': sql[:CT_SQL_MAX], 'db': db.alias, 'many': many,
                  'atomic': bool(db.in_atomic_block or not db.autocommit),
                  'thread': ident, 't': t0, 'end': time.time()}
            self._ct_ctx(st, ident, ev)
            self.ev_put(ev)
        except Exception:
            pass
        return r

    def _ct_tx(self, op, conn, t0):
        try:
            st = self.ct
            ident = _ident()
            if st.depth.get(ident):
                return  # DatabaseCache's own transaction
            ev = {'kind': op, 'db': conn.alias, 'thread': ident, 't': time.time(), 't0': t0}
            self._ct_ctx(st, ident, ev)
            self.ev_put(ev)
        except Exception:
            pass

    def _ct_cache(self, orig, op, names, obj, args, kwargs):
        st, mode = self.ct, 0
        try:
            ident = _ident()
            if st is None or st.depth.get(ident):
                mode = 0
            elif op == 'get_or_set':
                # Its inner get (the miss), the callable's SQL and its add
                # are recorded as themselves, marked as coming from here.
                if ident not in st.via:
                    st.via[ident] = op
                    mode = 2
            else:
                st.depth[ident] = 1
                mode = 1
        except Exception:
            mode = 0
        if mode == 0:
            return orig(obj, *args, **kwargs)
        if mode == 2:
            try:
                return orig(obj, *args, **kwargs)
            finally:
                st.via.pop(ident, None)
        try:
            b, miss, call = None, _NO, (args, kwargs)
            try:
                b = dict(zip(names, args))
                b.update(kwargs)
                if op == 'get' and 'default' in names:
                    # Asked with a default of our own, so that a miss is
                    # told from a hit whatever the value (None too).
                    i = names.index('default')
                    miss = _CT_MISS
                    if len(args) > i:
                        call = (args[:i] + (miss,) + args[i + 1:], kwargs)
                    else:
                        kw = dict(kwargs)
                        kw['default'] = miss
                        call = (args, kw)
            except Exception:
                b, miss, call = None, _NO, (args, kwargs)
            t0, p0 = time.time(), time.perf_counter()
            r = orig(obj, *call[0], **call[1])
            us = (time.perf_counter() - p0) * 1e6
            hit = None
            if miss is not _NO:
                hit = r is not miss
                if not hit:
                    r = b.get('default')
            try:
                if b is not None:
                    self._ct_record(st, op, obj, b, r, hit, t0, us, ident)
            except Exception:
                pass
            return r
        finally:
            try:
                st.depth.pop(ident, None)
            except Exception:
                pass

    def _ct_record(self, st, op, obj, b, r, hit, t0, us, ident):
        alias = self._ct_alias(st, obj)
        cls = type(obj)
        base = {'kind': 'cache', 'op': op, 'alias': alias, 'thread': ident, 't': t0, 'ns': int(us * 1000)}
        if alias == '?':
            base['backend'] = cls.__module__ + '.' + cls.__name__
        via = st.via.get(ident)
        if via:
            base['via'] = via
        self._ct_ctx(st, ident, base)
        f, line = self._ct_caller(st, base)
        if f:
            base['file'], base['line'] = f, line
        version = b.get('version')
        if version is not None:
            base['v'] = version
        own = alias == '?' or alias in st.custom
        if op in ('set', 'add', 'touch', 'set_many', 'get_or_set'):
            t = b.get('timeout', st.default)
            if t is st.default:
                t = getattr(obj, 'default_timeout', None)
            base['ttl'] = t if t is None or type(t) in (int, float) else None
        evs = []
        if op in ('get_many', 'delete_many', 'set_many'):
            keys = b.get('data') if op == 'set_many' else b.get('keys')
            data = keys if op == 'set_many' else None
            n = 0
            for k in list(keys or ()):
                ev = dict(base)
                ev['key'] = k
                if op == 'get_many':
                    ev['hit'] = type(r) is dict and k in r
                elif op == 'set_many':
                    ev['size'] = self._ct_size(data.get(k))
                evs.append(ev)
                n += 1
                if n >= 1000:
                    break
            if evs:
                per = int(us * 1000 / len(evs))
                for ev in evs:
                    ev['ns'] = per
        elif op == 'clear':
            evs.append(base)
        else:
            ev = base
            ev['key'] = b.get('key')
            if hit is not None:
                ev['hit'] = hit
            if op in ('set', 'add'):
                ev['size'] = self._ct_size(b.get('value'))
            if op == 'add':
                ev['stored'] = bool(r)
            evs.append(ev)
        for ev in evs:
            k = ev.get('key')
            if k is None:
                self.ev_put(ev)
                continue
            if own:
                try:
                    ev['fkey'] = str(obj.make_key(k, version=version))[:CT_KEY_MAX]
                except Exception:
                    pass
            ks = k if type(k) is str else str(k)
            ev['key'] = ks[:CT_KEY_MAX]
            if ks.startswith(CT_PAGE):
                r = self._ct_cur(st, ident)
                if r is not None:
                    ev['url'] = '%s %s' % (r[1].method, r[1].path)
            self.ev_put(ev)

    def _ct_alias(self, st, obj):
        objs = st.objs
        e = objs.get(id(obj)) if objs is not None else None
        if e is not None and e[0]() is obj:
            return e[1]
        cands = [al for al, (cls, _) in st.aliases.items() if type(obj) is cls]
        if len(cands) > 1:
            cands = [al for al in cands if getattr(obj, 'key_prefix', '') == st.aliases[al][1].get('KEY_PREFIX', '')
                     and getattr(obj, 'version', 1) == st.aliases[al][1].get('VERSION', 1)] or cands
        if len(cands) > 1:
            loc = None
            for attr in ('_servers', '_server', '_dir', '_table', '_cache'):
                v = getattr(obj, attr, None)
                if v is not None:
                    loc = v
                    break
            for al in cands:
                want = st.aliases[al][1].get('LOCATION', '')
                if loc is want or str(loc) == str(want) or (type(loc) is list and loc == (
                        want if type(want) is list else [x for x in str(want).replace(',', ';').split(';') if x])):
                    cands = [al]
                    break
            if type(obj).__name__ == 'LocMemCache':
                lm = sys.modules.get('django.core.cache.backends.locmem')
                found = [al for al in cands if getattr(lm, '_caches', {}).get(st.aliases[al][1].get('LOCATION', '')) is loc]
                cands = found or cands
        a = cands[0] if len(cands) == 1 else '?'
        try:
            if len(objs) > 10000:  # objects made and dropped (a cache per thread, threads come and go)
                objs.clear()
            objs[id(obj)] = (st.ref(obj), a)
        except Exception:
            pass
        return a

    def _ct_caller(self, st, ev):
        """The application's frame that made the call: the first outside
        Django, the cache libraries, the standard library and the agent;
        none when the call came from Django itself (cache_page, a template
        tag): then the view's own code."""
        f = sys._getframe(3)
        skip, std, ns = st.skip, st.std, self.ns
        while f is not None:
            fn = f.f_code.co_filename
            if f.f_globals is ns or fn.startswith(skip) or fn.startswith(std) and \
                    'site-packages' not in fn and 'dist-packages' not in fn:
                f = f.f_back
                continue
            if st.stop and fn.startswith(st.stop):
                break
            return fn, f.f_lineno
        rid = ev.get('req')
        r = self._ct_cur(st, ev.get('thread'))
        if rid is None or r is None:
            return None, 0
        rm = getattr(r[1], 'resolver_match', None)
        fn = getattr(rm, 'func', None)
        for _ in range(10):
            w = getattr(fn, '__wrapped__', None) if type(fn) is _FUNC else None
            if w is None:
                break
            fn = w
        c = getattr(fn, '__code__', None) if type(fn) is _FUNC else None
        if c is None:
            return None, 0
        return c.co_filename, c.co_firstlineno

    @staticmethod
    def _ct_size(v):
        """Bytes of a value as the backend will store it (pickled, but for
        str and bytes); None when measuring it could run queries."""
        t = type(v)
        if t is bytes or t is bytearray:
            return len(v)
        if t is str:
            return len(v.encode('utf-8', 'replace')) if len(v) < 65536 else len(v)
        if t is int or t is float or t is bool or v is None:
            return 8
        if t.__module__.startswith(_CT_NOSIZE):
            return None
        try:
            import pickle
            return len(pickle.dumps(v, pickle.HIGHEST_PROTOCOL))
        except Exception:
            return None


# The default krait asks a get for: returned only on a miss. A plain
# object, not an instance of a class of the agent's: such a class would
# outlive the agent until a second collection (an instance gc does not
# track keeps it from being seen as garbage in the first).
_CT_MISS = object()
