"""The ``selectors`` half of fastsel's namespace.

The selector classes are C types from ``_fastsel``; this module only wires
them to the stdlib's abstractions so existing code keeps working:
``SelectorKey`` and ``BaseSelector`` *are* the stdlib's objects (keys are
real ``selectors.SelectorKey`` instances and ``isinstance(sel,
selectors.BaseSelector)`` holds), and ``DefaultSelector`` is chosen as the
stdlib chooses it: the first class whose construction works.
"""
from __future__ import annotations

import selectors as _std
import sys as _sys

# typing stays unimported at run time (a covered child's start-up); mypy
# reads the name TYPE_CHECKING as true
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from fastsel import _fastsel  # type: ignore  # the C extension

EVENT_READ = _std.EVENT_READ
EVENT_WRITE = _std.EVENT_WRITE
SelectorKey = _std.SelectorKey
BaseSelector = _std.BaseSelector

__all__ = ["BaseSelector", "DefaultSelector", "EVENT_READ", "EVENT_WRITE",
           "SelectorKey", "SelectSelector"]

# BaseSelector.register is the abstract selector method; the ABC's own
# virtual-subclass registration is reached through its metaclass.
_register_virtual = type(BaseSelector).register

SelectSelector = _fastsel.SelectSelector
_register_virtual(BaseSelector, SelectSelector)
for _name in ("PollSelector", "EpollSelector", "KqueueSelector"):
    _cls = getattr(_fastsel, _name, None)
    if _cls is not None:
        _register_virtual(BaseSelector, _cls)
        globals()[_name] = _cls
        __all__.append(_name)


# A selector class whose ``_selector_cls`` was replaced (a subclass, a mock
# patch) runs the stdlib's own class over the object that the replacement
# makes: the C class hands each call to a delegate, an instance of the
# stdlib's class, whose ``register``/``unregister`` (which the stdlib's
# ``modify`` calls on self) come back to the C object and so to any override.

_DELEGATE_METHODS = ("register", "unregister", "modify", "select", "close",
                     "get_key", "get_map", "fileno")
_delegates: dict = {}
# The stdlib's own classes, taken before install() can put fastsel's classes
# into the stdlib module (this module is imported before install runs).
_STD_CLASSES = {n: getattr(_std, n) for n in
                ("PollSelector", "EpollSelector", "KqueueSelector")
                if hasattr(_std, n)}


def _delegate_class(name: str) -> Any:
    cls = _delegates.get(name)
    if cls is None:
        std = _STD_CLASSES.get(name)
        if std is None:
            raise TypeError(f"a replaced _selector_cls runs the stdlib's "
                            f"{name}, which this platform does not have")

        def _selector_cls(self):  # type: ignore[no-untyped-def]
            return self._outer._selector_cls()

        def register(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return self._outer.register(*args, **kwargs)

        def unregister(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return self._outer.unregister(*args, **kwargs)
        ns = {"_selector_cls": _selector_cls, "register": register,
              "unregister": unregister}
        ns.update(("_std_" + m, getattr(std, m))
                  for m in _DELEGATE_METHODS if hasattr(std, m))
        cls = _delegates[name] = type("_Delegate" + name, (std,), ns)
    return cls


def _delegate(name: str, outer: object) -> object:
    """Called by the C classes: the stdlib's class `name` running over
    ``outer._selector_cls()``, looked up on outer as the stdlib does."""
    cls = _delegate_class(name)
    d = cls.__new__(cls)
    d._outer = outer
    cls.__init__(d)
    return d


def _can_use(cls: type) -> bool:
    """Construct (and poll) one, as the stdlib's ``_can_use`` does."""
    try:
        sel = cls()
    except OSError:
        return False
    try:
        sel.select(0)
    except OSError:
        return False
    finally:
        sel.close()
    return True


def _default() -> type:
    # A kqueue emulation on Linux (test builds) is not the native choice the
    # stdlib would make there: epoll stays the default.
    order = ["EpollSelector", "PollSelector"]
    if not _sys.platform.startswith("linux"):
        order.insert(0, "KqueueSelector")
    for name in order:
        cls = globals().get(name)
        if cls is not None and _can_use(cls):
            return cls
    return SelectSelector


DefaultSelector = _default()
del _name, _cls
