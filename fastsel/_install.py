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

``install(children=True)`` also sets ``FASTSEL_AUTOINSTALL=1`` in
``os.environ``: every Python process started afterwards with this
environment runs fastsel's start-up hook (``fastsel/_hook.py``, run from the
``fastsel-autoinstall.pth`` file in site-packages) and is installed too, as are
its own children.  ``uninstall()`` removes the variable again.
"""
from __future__ import annotations

import _thread
import os
import sys

from fastsel._hook import ENV_VAR

# Children covered by the start-up hook import this module before their
# program runs: typing and threading would add ~5 ms to each one's start-up,
# so neither is imported (mypy reads a TYPE_CHECKING block as always true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install", "uninstall", "new_event_loop"]

# Stdlib modules that bind a select/selectors object to a module global at
# import time: (module name, attribute).
CONSUMERS: tuple[tuple[str, str], ...] = (
    ("subprocess", "_PopenSelector"),
    ("socketserver", "_ServerSelector"),
    ("multiprocessing.connection", "_WaitSelector"),
    ("telnetlib", "_TelnetSelector"),      # removed in 3.13
    ("pty", "select"),                     # `from select import select`
)

_MISSING = object()
_lock = _thread.RLock()
_installed = False
# install(children=True) set ENV_VAR in os.environ
_children = False
# (object, attribute, previous value or _MISSING), in the order they were set
_patches: list[tuple[Any, str, Any]] = []
# id(fastsel object) -> (fastsel object, the stdlib object it stands in for)
_counterparts: dict[int, tuple[Any, Any]] = {}


def _package() -> Any:
    return sys.modules[__name__.rpartition(".")[0]]


def _set(obj: Any, name: str, value: Any) -> None:
    _patches.append((obj, name, getattr(obj, name, _MISSING)))
    setattr(obj, name, value)


# The selectors module's own public names (it has no __all__; its other
# globals are imports such as `select`, the module, which must stay).
SELECTORS_NAMES = ("EVENT_READ", "EVENT_WRITE", "SelectorKey", "BaseSelector",
                   "SelectSelector", "PollSelector", "EpollSelector",
                   "DevpollSelector", "KqueueSelector", "DefaultSelector")


def _public_names(module: Any) -> list[str]:
    if module.__name__ == "selectors":
        return [n for n in SELECTORS_NAMES if hasattr(module, n)]
    return [n for n in vars(module) if not n.startswith("_")]


def install(*, children: bool = False) -> None:
    """Make the stdlib ``select`` and ``selectors`` modules use fastsel.

    With ``children=True``, Python processes this process starts afterwards
    with its environment (multiprocessing spawn/forkserver workers,
    ``subprocess.run([sys.executable, ...])``...) are installed too, from
    their start-up on: see :mod:`fastsel._hook`.  Forked children inherit the
    installation either way.  Idempotent (a later ``children=True`` adds the
    children); undone exactly by :func:`uninstall`.
    """
    with _lock:
        _patch_stdlib()
        if children:
            _cover_children()


def _cover_children() -> None:
    global _children
    # Where the C extension is not in use fastsel serves the stdlib's own
    # objects; starting every child through the hook would buy nothing.
    if getattr(_package(), "implementation", "c") != "c":
        return
    os.environ[ENV_VAR] = "1"
    _children = True


def _patch_stdlib() -> None:
    global _installed
    if _installed:
        return
    import select as std_select
    import selectors as std_selectors

    fast = _package()
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
    """Put back every object :func:`install` replaced.  Idempotent.

    Also stops covering children started from now on, if install covered them.
    """
    global _installed, _children
    with _lock:
        if _children:
            os.environ.pop(ENV_VAR, None)
            _children = False
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

    return asyncio.SelectorEventLoop(_package().DefaultSelector())
