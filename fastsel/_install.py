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

Fresh imports too: while installed, a finder at the front of
``sys.meta_path`` answers ``select`` and ``selectors`` whenever an import
does not find them in ``sys.modules`` (code that deleted them and imports
them again, ``importlib.import_module``, eventlet's
``patcher.original('select')``, which pops the module and re-imports it).  It
runs the stdlib's own loader, so the new module is a real stdlib module, and
then patches it like the first one; uninstall() restores it too and removes
the finder, so later imports get the stdlib.  A ``selectors`` module whose
``select`` is not the stdlib's ``select`` module (eventlet's green
``select``, put in ``sys.modules`` while ``selectors`` is imported) is left
as it is: fastsel's selector classes call the kernel themselves and
would bypass it.  What no mechanism reaches: a copy of an object made before
install() (``from select import epoll`` in a module imported earlier).

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
    # Imported before the lock is taken: an import can wait for a fresh import
    # of the same name in another thread, which takes the lock to finish.
    import select as std_select
    import selectors as std_selectors

    with _lock:
        _patch_stdlib(std_select, std_selectors)
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


def _patch_stdlib(std_select: Any, std_selectors: Any) -> None:
    global _installed
    if _installed:
        return
    for module in (std_select, std_selectors):
        _patch_module(module)
    std_to_fast = {id(old): new for new, old in _counterparts.values()}
    for modname, attr in CONSUMERS:
        consumer = sys.modules.get(modname)
        old = getattr(consumer, attr, _MISSING) if consumer is not None else _MISSING
        if old is _MISSING:
            continue
        new = std_to_fast.get(id(old))
        if new is not None:
            _set(consumer, attr, new)
    # Where fastsel serves the stdlib's own objects there is nothing to
    # serve a fresh import with.
    if getattr(_package(), "implementation", "c") == "c":
        sys.meta_path.insert(0, _finder)
    _installed = True


def _patch_module(module: Any) -> None:
    """Put fastsel's objects in one stdlib select or selectors module object."""
    name = getattr(module, "__name__", None)
    if name not in FRESH_NAMES:
        # a stand-in under that name in sys.modules (eventlet's green select,
        # fastsel itself as an alias): not the stdlib's module
        return
    if name == "selectors" and getattr(vars(module).get("select"), "__name__", None) != "select":
        # it was imported with a stand-in select in sys.modules (eventlet's
        # green one), which its classes must keep calling
        return
    fast = _package()
    # Classes and functions fastsel has that can stand in for the stdlib's.
    for attr in _public_names(module):
        if not hasattr(fast, attr):
            continue
        old = getattr(module, attr)
        new = getattr(fast, attr)
        if new is old:
            continue
        # the first stdlib object stays the counterpart that uninstall()
        # gives back to a consumer that copied fastsel's
        _counterparts.setdefault(id(new), (new, old))
        _set(module, attr, new)


# The names the finder answers while installed.
FRESH_NAMES = ("select", "selectors")


class _FreshImportFinder:
    """On ``sys.meta_path`` while installed: ``select``/``selectors`` imported
    afresh are the stdlib's modules, made by the stdlib's own loader, with
    fastsel installed in them."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in FRESH_NAMES or path is not None:
            return None
        std_spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            std_spec = find(name, path, target)
            if std_spec is not None:
                break
        if std_spec is None or std_spec.loader is None:
            return None
        from importlib.machinery import ModuleSpec

        # a loader by protocol (create_module, exec_module): importlib.abc.Loader
        # as its base would add an import to every covered child's start-up
        loader: Any = _FreshImportLoader(std_spec)
        spec = ModuleSpec(name, loader, origin=std_spec.origin,
                          loader_state=std_spec.loader_state)
        spec.has_location = std_spec.has_location
        if std_spec.has_location:
            spec.cached = std_spec.cached
        return spec

    def invalidate_caches(self) -> None:
        pass


class _FreshImportLoader:
    """Runs the stdlib's loader, then installs fastsel in the new module (or
    in a module being reloaded).  The module keeps the stdlib's own spec and
    loader, so it looks like any stdlib import and reloads like one after
    uninstall()."""

    def __init__(self, std_spec: Any) -> None:
        self.std_spec = std_spec

    def create_module(self, spec: Any) -> Any:
        create = getattr(self.std_spec.loader, "create_module", None)
        return create(self.std_spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        std_spec = self.std_spec
        std_spec.loader.exec_module(module)
        module.__spec__ = std_spec
        module.__loader__ = std_spec.loader
        with _lock:
            # an uninstall() may have come first: then the stdlib module stays
            if _installed and _finder in sys.meta_path:
                _patch_module(module)


_finder = _FreshImportFinder()


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
        # later imports get the stdlib's modules again
        while _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
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
