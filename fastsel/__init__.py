"""fastsel: a faster, exact drop-in replacement for ``select`` and ``selectors``.

``import fastsel as select`` and ``import fastsel as selectors`` both work:
this one namespace carries the public names of both stdlib modules.
"""
from _fastsel import *  # noqa: F401,F403
from _fastsel import error  # noqa: F401
from fastsel._selectors import *  # noqa: F401,F403  (selectors' names)

from fastsel._install import install, new_event_loop, uninstall  # noqa: F401

__version__ = "0.1.0"
