"""install() / uninstall(): serve ``import select`` and ``import selectors`` from fastsel.

The stdlib module objects are patched in place rather than replaced in
``sys.modules``: every module that already did ``import select`` or ``import
selectors`` (asyncio.selector_events, subprocess, socketserver,
multiprocessing.connection, ...) holds a reference to those very objects and
looks names up on them at call time, so patching them reaches all of those
at once, and ``import select`` keeps returning the object it always did.

A few stdlib modules copy a class or function out of those modules when they
are imported (``subprocess._PopenSelector``, ``socketserver._ServerSelector``,
``multiprocessing.connection._WaitSelector``, ``pty.select``...).  Those
copies are patched too, and on uninstall every copy that holds one of
fastsel's objects -- including copies made by consumers imported while
fastsel was installed -- is pointed back at the stdlib original.

Only public names that the stdlib module has and fastsel has too are
replaced, so the stdlib surface never gains or loses a name, and a name that
fastsel does not provide keeps working from the stdlib.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Dict, List, Tuple

__all__ = ["install", "uninstall", "new_event_loop"]

# Stdlib modules that bind a select/selectors object to a module global at
# import time: (module name, attribute).
CONSUMERS: Tuple[Tuple[str, str], ...] = (
    ("subprocess", "_PopenSelector"),
    ("socketserver", "_ServerSelector"),
    ("multiprocessing.connection", "_WaitSelector"),
    ("telnetlib", "_TelnetSelector"),      # removed in 3.13
    ("pty", "select"),                     # `from select import select`
)

_MISSING = object()
_lock = threading.RLock()
_installed = False
# (object, attribute, previous value or _MISSING), in the order they were set
_patches: List[Tuple[Any, str, Any]] = []
# id(fastsel object) -> (fastsel object, the stdlib object it stands in for)
_counterparts: Dict[int, Tuple[Any, Any]] = {}


def _fastsel() -> Any:
    return sys.modules[__name__.rpartition(".")[0]]


def _set(obj: Any, name: str, value: Any) -> None:
    _patches.append((obj, name, getattr(obj, name, _MISSING)))
    setattr(obj, name, value)


# The selectors module's own public names (it has no __all__; its other
# globals are imports such as `select`, the module, which must stay).
SELECTORS_NAMES = ("EVENT_READ", "EVENT_WRITE", "SelectorKey", "BaseSelector",
                   "SelectSelector", "PollSelector", "EpollSelector",
                   "DevpollSelector", "KqueueSelector", "DefaultSelector")


def _public_names(module: Any) -> List[str]:
    if module.__name__ == "selectors":
        return [n for n in SELECTORS_NAMES if hasattr(module, n)]
    return [n for n in vars(module) if not n.startswith("_")]


def install() -> None:
    """Make the stdlib ``select`` and ``selectors`` modules use fastsel.

    Idempotent; undone exactly by :func:`uninstall`.
    """
    global _installed
    with _lock:
        if _installed:
            return
        import select as std_select
        import selectors as std_selectors

        fast = _fastsel()
        # Classes and functions fastsel has that can stand in for the stdlib's.
        for module in (std_select, std_selectors):
            for name in _public_names(module):
                if not hasattr(fast, name):
                    continue
                old = getattr(module, name)
                new = getattr(fast, name)
                if new is old:
                    continue
                _counterparts[id(new)] = (new, old)
                _set(module, name, new)
        std_to_fast = {id(old): new for new, old in _counterparts.values()}
        for modname, attr in CONSUMERS:
            consumer = sys.modules.get(modname)
            old = getattr(consumer, attr, _MISSING) if consumer is not None else _MISSING
            if old is _MISSING:
                continue
            new = std_to_fast.get(id(old))
            if new is not None:
                _set(consumer, attr, new)
        _installed = True


def uninstall() -> None:
    """Put back every object :func:`install` replaced.  Idempotent."""
    global _installed
    with _lock:
        if not _installed:
            return
        while _patches:
            obj, name, old = _patches.pop()
            if old is _MISSING:
                try:
                    delattr(obj, name)
                except AttributeError:
                    pass
            else:
                setattr(obj, name, old)
        # Consumers imported while installed copied fastsel's objects.
        for modname, attr in CONSUMERS:
            module = sys.modules.get(modname)
            value = getattr(module, attr, _MISSING) if module is not None else _MISSING
            pair = _counterparts.get(id(value))
            if pair is not None and pair[0] is value:
                setattr(module, attr, pair[1])
        _counterparts.clear()
        _installed = False


def new_event_loop() -> Any:
    """An ``asyncio.SelectorEventLoop`` on ``fastsel.DefaultSelector()``.

    Usable as ``asyncio.run(main(), loop_factory=fastsel.new_event_loop)``
    (3.12+) or ``asyncio.Runner(loop_factory=fastsel.new_event_loop)`` (3.11+).
    """
    import asyncio

    return asyncio.SelectorEventLoop(_fastsel().DefaultSelector())
