# serving.py: the agent thread: socket, requests, periodic work, cleanup

class _Serving(object):
    # thread
    def run(self):
        self.ident = _ident()
        try:
            self._exit_hooks(True)
            self._pep768_withdraw()
            conn = self._listen()
            if conn is not None:
                self._serve(conn)
        except BaseException:
            pass
        finally:
            self._cleanup()
            self._teardown()

    def _listen(self):
        path = os.path.join(self.dir, 'sock')
        s = self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _close_in_child(s)
        s.bind(path)
        os.chmod(path, 0o600)
        s.listen(1)
        try:
            os.unlink(os.path.join(self.dir, 'agent.py'))
        except OSError:
            pass
        timeout = float(self.cfg.get('connect_timeout') or 30)
        r, _, _ = select.select([s], [], [], timeout)
        if not r or self.closing:
            return None
        conn, _ = s.accept()
        _close_in_child(conn)
        conn.settimeout(SEND_TIMEOUT)  # a client that stops reading cannot block us for ever
        self.conn = conn
        return conn

    def _gone(self):
        """Whether the client has closed its end (krait exited, was killed,
        or gave up on a request): checked between the steps of anything
        that can take long, which then stops."""
        c = self.conn
        if c is None or self.closing:
            return True
        try:
            r, _, _ = select.select([c], [], [], 0)
            return bool(r) and c.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b''
        except (BlockingIOError, InterruptedError):
            return False
        except Exception:
            return True

    def _serve(self, conn):
        buf, hello, last = b'', False, time.time()
        while not self.closing:
            r, _, _ = select.select([conn], [], [], self._ev_timeout(0.5))
            if hello and not self._ev_flush():
                return
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
        if cmd != 'hello':
            # Events queued before the command took effect come first
            # (before detach: every event of the session).
            self._ev_flush(True)
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
            need = bool(self.lines or self.pending or self.steps or self.stopped or self.exc_filters)
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
        return self._send_data(data)

    def _send_data(self, data):
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
                f = module_file(m, self.mcache)
                if f is not None:
                    self._abs(f)

    def _cleanup(self, exiting=False):
        """Leave: every exit path (detach, end of connection, connect
        timeout, interpreter exit) comes here, once, in whatever thread."""
        with self.cv:
            self.closing = True
        with self.cleaning:
            if self.cleaned:
                return
            self.cleaned = True
            with self.lock:
                self.bps.clear()
                self.lines.clear()
                del self.pending[:]
                del self.history[:]  # drop the references krait's $N held
                self.exc_filters = []
                self.ccache.clear()
            steps = [self._ct_stop, self._ev_clear, self._uninstall, self._resume_all, self._sig_unguard, self._pep768_withdraw,
                     self._close, lambda: self._exit_hooks(False)]
            if not exiting:
                steps.append(self._unmap)
            for step in steps:
                try:
                    step()
                except BaseException:
                    pass

    def _teardown(self):
        """Drop every reference the agent holds, so that nothing of the
        session waits for a garbage collection (a wrapper still running a
        call, or a thread that set our trace function just as we left,
        keeps only this empty shell, which does nothing)."""
        deadline = time.time() + 1
        while self.stopped and time.time() < deadline:  # resumed threads leaving _stop
            time.sleep(0.005)
        pid = self.pid
        self.__dict__.clear()
        self.closing, self.trick, self.pid = True, False, pid

    def _exit_hooks(self, on):
        """At interpreter exit, leave as at detach, before threading waits
        for the non-daemon threads (one may be stopped here): through
        threading._shutdown (what the interpreter calls first when it
        exits, 3.6-3.14) and atexit (after it)."""
        if on:
            atexit.register(self._at_exit)
            orig = getattr(threading, '_shutdown', None)
            if orig is None:
                return
            agent = self

            def _krait_shutdown():
                try:
                    agent._at_exit()
                except BaseException:
                    pass
                return orig()
            self.shutdown_hook = (orig, _krait_shutdown)
            threading._shutdown = _krait_shutdown
            return
        atexit.unregister(self._at_exit)
        hook = self.shutdown_hook
        if hook is not None:
            self.shutdown_hook = None
            if threading._shutdown is hook[1]:  # else someone wrapped it since: ours stays, inert
                threading._shutdown = hook[0]

    def _at_exit(self):
        try:
            if os.getpid() == self.pid and not self.cleaned:
                self._cleanup(exiting=True)
        except BaseException:
            pass  # never a traceback at the target's exit

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
                    try:
                        s.shutdown(socket.SHUT_RDWR)  # the agent thread may be waiting on it
                    except OSError:
                        pass
                    s.close()
            self.conn = None
        # Everything in the directory, whatever its name (krait's files and
        # ours), the owner file last (cut short, what is left can still be
        # proved krait's), then the directory. Names, not paths: nothing is
        # followed.
        try:
            names = sorted(os.listdir(self.dir), key=lambda n: n == 'owner')
        except OSError:
            names = []
        for name in names:
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
