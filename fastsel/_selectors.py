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

import _fastsel  # type: ignore  # the C extension

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
