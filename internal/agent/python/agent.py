# agent.py: the Agent class and its start

class Agent(_Events, _Serving, _Files, _Breakpoints, _Stopping,
            _Threads, _Children, _Completing, _Backends, _Monitoring, _Settrace, _Wrapping, _Signals, _CacheTrace):
    """krait's agent: one per attach, serving one connection (the methods
    come from the classes above, compiled one at a time)."""

    def __init__(self, cfg, ns):
        self.cfg, self.ns = cfg, ns
        self.dir, self.token = cfg['dir'], str(cfg['token'])
        self.sig_state = None  # stop signals chained through ours: {signum: (original, ours)}
        self.sig_box = [self]  # how our signal handlers reach the agent (emptied as it leaves)
        self.sig_main = self._sig_main_interp()
        self.pid, self.started = os.getpid(), time.time()
        self.lock = threading.RLock()   # breakpoint tables
        self.cv = threading.Condition()  # stopped threads
        self.wlock = threading.Lock()    # socket writes
        self.cleaning = threading.Lock()  # _cleanup runs once
        self.cleaned = False
        self.shutdown_hook = None  # (threading._shutdown, ours in its place)
        self.bps, self.next_bp = {}, 1
        self.lines = {}     # abs file -> {line: [Bp]}: armed breakpoints
        self.pending = []   # Bps waiting for their file
        self.fcache = {}    # co_filename -> abs path (also: files seen run)
        self.mcache = {}    # a module's __file__ -> abs path
        self.ccache = {}    # id(code) -> (code, has a breakpoint line): settrace
        self.finfo = {}     # abs file -> [(code, qualname, is_func, lines)]
        self.stopped = {}   # ident -> Stopped
        self.history = []   # values printed with store (gdb value history)
        self.steps = {}     # ident -> Step
        self.exc_filters = []  # [(id, 'raise' | 'uncaught', (type names), user_only)]: exception stops
        self.exc_seen = {}     # ident -> id of the exception last stopped for as uncaught
        self.conn = self.listener = None
        self.closing = self.installed = self.trick = False
        self.ident = None
        self.backend = 'monitoring' if hasattr(sys, 'monitoring') else 'settrace'
        self.tool = None
        self.mcodes = {}    # id(code) -> code holding our local LINE events
        self.clines = {}    # id(code) -> line set (codes kept alive by mcodes)
        self.gt, self.lt = self._gtrace, self._ltrace  # one bound object each
        self.seen = set()   # thread states the settrace backend looked at
        self.glob = False   # settrace: every thread traced (else only calls of wrapped functions)
        self.wrapped = {}   # id(function) -> (function, its code, the wrapper code in its place, its clone)
        self.tthreads = set()  # idents traced because a breakpoint's code was running there
        self.inwrap = {}       # ident -> [wrapped calls in progress, tracing turned on by the outermost]
        self.clones = {}       # id -> the functions wrappers call (running the original code)
        self.utv = self.tobj = None  # use_tracing when tracing; our trace object
        self._ev_init()
        self.ct = None         # cache tracing: its state while on (cachetrace.py)



# krait: chunk
def _start(cfg, ns):
    agent = Agent(cfg, ns)
    if cfg.get('own_thread'):
        agent.run()  # krait's loader already runs in the krait-agent thread
    else:
        threading.Thread(target=agent.run, name='krait-agent', daemon=True).start()


_start(KRAIT, globals())  # noqa: F821 (KRAIT is set by the bootstrap)
