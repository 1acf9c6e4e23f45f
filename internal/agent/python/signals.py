# signals.py: a process told to stop while krait holds one of its threads.
#
# A worker told to stop (gunicorn's master sends SIGTERM, Ctrl-C sends
# SIGINT) waits for its requests to finish; one held at a breakpoint never
# would, and the master kills the worker after its graceful timeout. So
# while krait holds threads, the Python-level handlers of the stop signals
# are chained through ours: when one of those signals arrives with a thread
# held or stepping, the agent lets every thread go, tells krait
# ("terminating"), leaves, and then runs the application's own handler.
#
# Handlers can only be set in the main thread of the main interpreter: when
# the held thread is the main thread, it sets them itself; otherwise the
# agent asks the main thread to, with Py_AddPendingCall, which runs
# PyRun_SimpleString on a copy of the code in C memory (the code frees it):
# no Python object has to outlive the agent for the call to be safe. The
# code finds the agent through sys._krait_agent, which exists only while
# the agent does. Signals whose handler is not a Python function (the
# default action, ignored) are left alone. At detach the originals are put
# back the same way (by code that needs no agent: each wrapper carries the
# handler it replaced).

_STOP_SIGNALS = ('SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP')

# Run in the main thread by a pending call: install (krait's agent still
# there) or restore. One statement: it binds nothing in __main__. BUF is
# the address of the C copy of this code, freed once it runs.
_PENDING_SRC = '''__import__('builtins').exec(%r, {'BUF': %d, 'WHAT': %r})'''
_PENDING_BODY = '''
import ctypes, os, signal, sys
try:
    if WHAT == 'install':
        a = getattr(sys, '_krait_agent', None)
        if a is not None and a.pid == os.getpid():
            a._sig_install()
    else:
        for name in ('SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP'):
            num = getattr(signal, name, None)
            h = signal.getsignal(num) if num is not None else None
            orig = getattr(h, '_krait_replaced', None)
            if orig is not None:
                signal.signal(num, orig[0])
except BaseException:
    pass
finally:
    f = ctypes.CDLL(None).free
    f.argtypes = [ctypes.c_void_p]
    f(BUF)
'''


_WRAPPER_SRC = """
def krait_stop_signal(signum, frame):
    a = box[0] if box else None
    if a is not None:
        try:
            a._sig_fired(signum)
        except BaseException:
            pass
    return orig(signum, frame)
"""


# krait: chunk
class _Signals(object):
    def _sig_main_interp(self):
        """Whether the agent runs in the main interpreter (3.9+ can say;
        before, assume so: a pending call run in the main interpreter finds
        no sys._krait_agent there and does nothing). Asked once, in the
        agent thread."""
        api = ctypes.pythonapi
        get = getattr(api, 'PyInterpreterState_Get', None)
        main = getattr(api, 'PyInterpreterState_Main', None)
        if get is None or main is None:
            return True
        get.restype = main.restype = _VP
        get.argtypes = main.argtypes = []
        return get() == main()

    def _sig_guard(self):
        """A thread is held: chain the stop signals' handlers through ours
        (once per session). Raises nothing: an exception caught here, in a
        trace or monitoring callback, can stay referenced from the thread's
        state on some versions (3.7), and with it the whole agent."""
        if self.sig_state is not None or self.closing or os.getpid() != self.pid:
            return
        self.sig_state = {}
        if not self.sig_main:
            return  # a sub-interpreter sets no signal handlers
        sys._krait_agent = self
        if threading.current_thread() is threading.main_thread():
            self._sig_install()
        else:
            self._sig_pending('install')

    def _sig_install(self):
        import signal
        if self.closing or self.sig_state:
            return
        for name in _STOP_SIGNALS:
            num = getattr(signal, name, None)
            if num is None:
                continue
            cur = signal.getsignal(num)
            if not callable(cur) or getattr(cur, '_krait_replaced', None) is not None:
                continue
            h = self._sig_wrapper(num, cur)
            signal.signal(num, h)
            self.sig_state[num] = (cur, h)

    def _sig_wrapper(self, num, orig):
        """Our handler for num, chaining orig. It is made in a namespace of
        its own and reaches the agent only through self.sig_box (emptied
        when the agent leaves), so a wrapper the main thread has not yet
        put back holds nothing of the agent's."""
        ns = {'box': self.sig_box, 'orig': orig}
        exec(_WRAPPER_SRC, ns)
        h = ns['krait_stop_signal']
        h._krait_replaced = (orig,)
        return h

    def _sig_fired(self, signum):
        """In the main thread, a stop signal: put the handlers back, and if
        threads are held or stepping, let them all go and leave."""
        try:
            self._sig_restore()
            if self.closing:
                return
            with self.cv:
                busy = bool(self.stopped or self.steps)
            if not busy:
                return
            try:
                import signal
                name = signal.Signals(signum).name
            except Exception:
                name = 'signal %d' % signum
            self.send({'event': 'terminating', 'signal': name})
            # Leave now, in this thread: held threads return at once, and
            # everything is gone before the application's handler runs
            # (the process may exit right after, daemon threads frozen).
            self._cleanup()
        except Exception:
            pass

    def _sig_restore(self):
        """Put the original handlers back (main thread only)."""
        import signal
        for num, (orig, h) in list((self.sig_state or {}).items()):
            if signal.getsignal(num) is h:
                signal.signal(num, orig)
            del self.sig_state[num]

    def _sig_unguard(self):
        """At leaving: the originals back, in the main thread (now if this
        is it, else by a pending call); sys._krait_agent removed."""
        del self.sig_box[:]
        if sys.__dict__.get('_krait_agent') is self:
            del sys._krait_agent
        if not self.sig_state:
            return
        if threading.current_thread() is threading.main_thread():
            self._sig_restore()
        else:
            self._sig_pending('restore')

    def _sig_pending(self, what):
        """Have the main thread run _PENDING_BODY for what, at its next
        bytecode boundary."""
        body = _PENDING_BODY
        libc = ctypes.CDLL(None)
        libc.malloc.restype, libc.malloc.argtypes = _VP, [ctypes.c_size_t]
        # The address is part of the source: allocate, then fill in.
        n = len(_PENDING_SRC % (body, 0, what)) + 64
        buf = libc.malloc(n)
        if not buf:
            return
        src = (_PENDING_SRC % (body, buf, what)).encode('utf-8') + b'\0'
        if len(src) > n:
            libc.free.argtypes = [_VP]
            libc.free(buf)
            return
        ctypes.memmove(buf, src, len(src))
        api = ctypes.pythonapi
        add = api.Py_AddPendingCall
        add.restype, add.argtypes = ctypes.c_int, [_VP, _VP]
        run = ctypes.cast(api.PyRun_SimpleString, _VP).value
        if add(run, buf) != 0:
            libc.free.argtypes = [_VP]
            libc.free(buf)
