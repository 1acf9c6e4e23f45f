# records.py: the records the agent keeps: errors, breakpoints, stopped threads, steps

class Err(Exception):
    """An error reported to the client as is."""


class Bp(object):
    def __init__(self, id, spec, line, cond, temporary):
        self.id, self.spec, self.req, self.line = id, spec, line, line
        self.file, self.moved, self.function, self.pending = spec, False, None, True
        self.cond, self.ccode, self.temporary, self.enabled, self.hits = None, None, temporary, True, 0
        self.ignore = 0     # crossings still to ignore (gdb's ignore)
        self.every = 0      # > 1: only every Nth crossing counts (DAP's hit condition %N)
        self.locs = []      # [(file, line, function)] once armed: one, or several (break FUNC)
        self.warning = None
        self.printf = None  # dprintf: (format, [expressions], [their code]): emit an event, never stop
        self.set_cond(cond)

    def set_cond(self, cond):
        if cond is not None and type(cond) is not str:
            raise Err('cond must be a string or null')
        self.ccode = compile(cond, '<condition>', 'eval') if cond else None
        self.cond = cond or None

    def js(self):
        return {'id': self.id, 'file': self.file, 'line': self.line, 'moved': self.moved,
                'function': self.function, 'pending': self.pending, 'cond': self.cond,
                'temporary': self.temporary, 'enabled': self.enabled, 'hits': self.hits,
                'ignore': self.ignore, 'every': self.every, 'warning': self.warning,
                'locations': [{'file': f, 'line': l, 'function': q} for f, l, q in self.locs],
                'dprintf': None if self.printf is None else {'format': self.printf[0], 'args': self.printf[1]}}


class Stopped(object):
    """A thread waiting in a callback: frame is where it is, top is frame 0
    (the caller, after finish)."""

    def __init__(self, ident, frame, top, reason):
        self.ident, self.frame, self.top, self.reason = ident, frame, top, reason
        self.native = _native() if _native else None
        self.jobs, self.resume = [], None


class Step(object):
    def __init__(self, mode, frame, mine=False):
        self.mode, self.frame, self.line = mode, frame, frame.f_lineno
        # justMyCode: the step lands only in the user's code (it steps
        # through the lines of the standard library and installed packages)
        self.mine = mine
        # In a coroutine, the step waits while it awaits (suspended):
        # the other tasks' code that runs meanwhile is not where it lands.
        self.co = bool(frame.f_code.co_flags & CO_AWAITS)
        self.suspended = False


# --------------------------------------------------------------- the agent
