"""fastsel: a faster, exact drop-in replacement for ``select`` and ``selectors``.

``import fastsel as select`` and ``import fastsel as selectors`` both work:
this one namespace carries the public names of both stdlib modules.

``implementation`` says what serves them: ``"c"``, the C extension
``fastsel._fastsel`` (CPython on Linux, macOS, BSD), or ``"stdlib"``, the platform's
own ``select``/``selectors`` objects themselves, where the C extension would
not be faster, does not exist, or would switch a free-threaded CPython's GIL
back on (PyPy, Windows, 3.13t+, ...; see fastsel/_impl.py and
docs/platforms.md).
"""
from fastsel._impl import chosen as _chosen

__version__ = "0.1.0"

implementation = _chosen()

if implementation == "c":
    from fastsel._fastsel import *  # noqa: F401,F403
    from fastsel._fastsel import error  # noqa: F401
    from fastsel._selectors import *  # noqa: F401,F403  (selectors' names)
else:
    import selectors as _std_selectors

    from select import *  # noqa: F401,F403
    from select import error  # noqa: F401

    from fastsel._install import SELECTORS_NAMES as _NAMES

    globals().update({_n: getattr(_std_selectors, _n) for _n in _NAMES
                      if hasattr(_std_selectors, _n)})
    del _std_selectors, _NAMES

from fastsel._install import install, new_event_loop, uninstall  # noqa: F401,E402

del _chosen
