# Checks the agent's __code__ wrappers (wrapper_code, bind_wrapper) inside
# one interpreter: a wrapped function must bind its arguments, return,
# raise and introspect exactly as the original. Run by internal/agent's
# TestWrapperCode as: python wrapper_check.py AGENT_SOURCE; prints "ok N"
# or the first difference.
import inspect
import sys
import types

with open(sys.argv[1]) as f:
    src = f.read()
src = src[:src.rindex("_start(KRAIT")]  # the module, without starting the agent
ns = {"__name__": "krait_agent_check"}
exec(compile(src, "krait_agent", "exec"), ns)
wrapper_code, bind_wrapper, Hook = ns["wrapper_code"], ns["bind_wrapper"], ns["_Hook"]

calls = []


def wrap(f):
    c = f.__code__
    w = wrapper_code(c)
    assert w is not None, "no wrapper for %s" % f.__name__
    g = types.FunctionType(c, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
    h = Hook()
    h.enter = lambda: calls.append("enter") or True
    h.call = g
    h.exit = lambda: calls.append("exit")
    f.__code__ = bind_wrapper(w, h)
    return c


def plain(a, b=2, *rest, k=3, **kw):
    return (a, b, rest, k, kw)


def kwonly(*, x, y=5):
    return x * y


def raises(n):
    raise ValueError("bad %d" % n)


def outer():
    cell = [0]

    def inner(step=1):
        cell[0] += step
        return cell[0]
    return inner


class Base(object):
    def who(self):
        return "base"


class Child(Base):
    def who(self, suffix="!"):
        return "child of " + super().who() + suffix


cases = [
    (plain, [((1,), {}), ((1, 5, 6, 7), {"k": 9, "z": 1}), ((), {"a": 4, "b": 8})]),
    (kwonly, [((), {"x": 2}), ((), {"x": 2, "y": 3}), ((1,), {}), ((), {})]),
    (raises, [((3,), {}), ((), {})]),
    (outer(), [((), {}), ((5,), {}), ((), {"step": 2}), ((1, 2), {})]),
    (Child.who, [((Child(),), {}), ((Child(), "?"), {})]),
]
if sys.version_info >= (3, 8):
    exec("def posonly(a, b, /, c, *, d=4):\n    return a, b, c, d\n", globals())
    cases.append((posonly, [((1, 2, 3), {}), ((1, 2), {"c": 3, "d": 5}), ((1,), {"b": 2, "c": 3})]))


def outcome(f, args, kw):
    try:
        return ("ok", repr(f(*args, **kw)))
    except Exception as e:
        return ("raise", type(e).__name__, str(e))


n = 0
for f, calls_ in cases:
    before_sig = str(inspect.signature(f))
    # A closure's cells are shared: compare on fresh instances for state.
    expected = [outcome(f, a, k) for a, k in calls_]
    if f.__name__ == "inner":
        f = outer()
    orig = wrap(f)
    if f.__code__ is orig or f.__code__.co_filename != "<krait-wrapper>":
        sys.exit("%s: not wrapped" % f.__name__)
    got = [outcome(f, a, k) for a, k in calls_]
    if got != expected:
        sys.exit("%s: wrapped %r, original %r" % (f.__name__, got, expected))
    if str(inspect.signature(f)) != before_sig:
        sys.exit("%s: signature %s, was %s" % (f.__name__, inspect.signature(f), before_sig))
    f.__code__ = orig
    # A call whose arguments do not bind fails before the wrapper's body.
    n += sum(1 for e in expected if e[:2] != ("raise", "TypeError"))
if calls.count("enter") != n or calls.count("exit") != n:
    sys.exit("enter/exit calls: %d/%d for %d calls that bound" % (calls.count("enter"), calls.count("exit"), n))
print("ok", n)
