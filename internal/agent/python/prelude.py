# prelude.py: imports and constants.
#
# krait's agent runs inside the target Python and serves krait over a unix
# socket. internal/agent/PROTOCOL.md is the contract.
#
# The agent is the files of this directory, joined in a fixed order
# (internal/agent/source.go: prelude.py first, agent.py last) with a
# "# krait: chunk" line between them into the one source krait writes as
# agent.py; line numbers in a traceback are those of that joined source,
# where each file starts with a comment naming it.
#
# krait's bootstrap executes that source in a fresh namespace
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

import atexit
import collections
import ctypes
import functools
import gc
import hmac
import json
import linecache
import marshal
import os
import select
import signal
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
CO_AWAITS = 0x80 | 0x100 | 0x200  # coroutine, iterable coroutine, async generator: a step stays in them across await
_COMPREHENSIONS = ('<listcomp>', '<dictcomp>', '<setcomp>', '<genexpr>')
_CODE, _FUNC = types.CodeType, types.FunctionType
_GENS = {types.GeneratorType: 'gi_code', types.CoroutineType: 'cr_code',
         types.AsyncGeneratorType: 'ag_code'}
_VP = ctypes.c_void_p
_DISABLE = getattr(getattr(sys, 'monitoring', None), 'DISABLE', None)
_YIELD_OPS = frozenset(__import__('opcode').opmap[n] for n in ('YIELD_VALUE', 'YIELD_FROM', 'SEND')
                       if n in __import__('opcode').opmap)
SEND_TIMEOUT = 10  # seconds a write to krait may block


def _close_in_child(s):
    """A child forked from here closes its copy of socket s (and leaves
    the directory, the parent's, alone). os.register_at_fork cannot be
    undone: what it keeps is the socket's close method, nothing of the
    agent's (once closed, the socket is a small inert object)."""
    reg = getattr(os, 'register_at_fork', None)  # 3.7+
    if reg is not None:
        reg(after_in_child=s.close)
