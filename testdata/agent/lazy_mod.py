# Imported by fixture.py on request, after pending breakpoints were set here.

LOADED = True  # @lazy-top


def lazy_func(i):
    j = i + 100  # @lazy-body
    return j
