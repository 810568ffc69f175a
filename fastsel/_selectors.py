"""The ``selectors`` half of fastsel's namespace.

The selector classes are C types from ``_fastsel``; this module only wires
them to the stdlib's abstractions so existing code keeps working:
``SelectorKey`` and ``BaseSelector`` *are* the stdlib's objects (keys are
real ``selectors.SelectorKey`` instances and ``isinstance(sel,
selectors.BaseSelector)`` holds), and ``DefaultSelector`` is chosen as the
stdlib chooses it: the first class whose construction works.
"""
from __future__ import annotations

import math as _math
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
# patch) makes its kernel object by calling it and drives that object through
# one of these, with the arguments and error handling of the stdlib's class.
# The C class keeps the keys, calls these after its own bookkeeping and drops
# the key when register()/modify() raise; ``keys()`` is the stdlib's
# ``_fd_to_key`` as a dict, read after the kernel object's wait.

class _PollDriver:
    """``PollSelector``: ``poll.poll(milliseconds)``, no ``close()``."""

    __slots__ = ("kernel",)
    _EVENT_READ = getattr(_fastsel, "POLLIN", 1)
    _EVENT_WRITE = getattr(_fastsel, "POLLOUT", 4)

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def _poller_events(self, events):  # type: ignore[no-untyped-def]
        return ((events & EVENT_READ and self._EVENT_READ)
                | (events & EVENT_WRITE and self._EVENT_WRITE))

    def register(self, fd, events):  # type: ignore[no-untyped-def]
        self.kernel.register(fd, self._poller_events(events))

    def modify(self, fd, events):  # type: ignore[no-untyped-def]
        self.kernel.modify(fd, self._poller_events(events))

    def unregister(self, fd, events):  # type: ignore[no-untyped-def]
        try:
            self.kernel.unregister(fd)
        except OSError:
            pass    # the fd was closed since it was registered

    def _wait(self, timeout, count):  # type: ignore[no-untyped-def]
        if timeout is None:
            pass
        elif timeout <= 0:
            timeout = 0
        else:
            timeout = _math.ceil(timeout * 1e3)   # at least `timeout`
        return self.kernel.poll(timeout)

    def select(self, timeout, count, keys):  # type: ignore[no-untyped-def]
        ready = []
        try:
            fd_event_list = self._wait(timeout, count)
        except InterruptedError:
            return ready
        fd_to_key_get = keys().get
        not_read, not_write = ~self._EVENT_READ, ~self._EVENT_WRITE
        for fd, event in fd_event_list:
            key = fd_to_key_get(fd)
            if key:
                events = ((event & not_read and EVENT_WRITE)
                          | (event & not_write and EVENT_READ))
                ready.append((key, events & key.events))
        return ready

    def close(self) -> None:
        pass    # poll objects have no close()


class _EpollDriver(_PollDriver):
    """``EpollSelector``: ``epoll.poll(seconds, maxevents)``."""

    __slots__ = ()
    _EVENT_READ = getattr(_fastsel, "EPOLLIN", 1)
    _EVENT_WRITE = getattr(_fastsel, "EPOLLOUT", 4)

    def _wait(self, timeout, count):  # type: ignore[no-untyped-def]
        if timeout is None:
            timeout = -1
        elif timeout <= 0:
            timeout = 0
        else:
            timeout = _math.ceil(timeout * 1e3) * 1e-3    # ms resolution
        return self.kernel.poll(timeout, max(count, 1))

    def close(self) -> None:
        self.kernel.close()

    def fileno(self):  # type: ignore[no-untyped-def]
        return self.kernel.fileno()


class _KqueueDriver:
    """``KqueueSelector``: one ``control()`` per filter."""

    __slots__ = ("kernel", "max_events")

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.max_events = 0

    def register(self, fd, events):  # type: ignore[no-untyped-def]
        if events & EVENT_READ:
            kev = _fastsel.kevent(fd, _fastsel.KQ_FILTER_READ,
                                  _fastsel.KQ_EV_ADD)
            self.kernel.control([kev], 0, 0)
            self.max_events += 1
        if events & EVENT_WRITE:
            kev = _fastsel.kevent(fd, _fastsel.KQ_FILTER_WRITE,
                                  _fastsel.KQ_EV_ADD)
            self.kernel.control([kev], 0, 0)
            self.max_events += 1

    def unregister(self, fd, events):  # type: ignore[no-untyped-def]
        for bit, flt in ((EVENT_READ, "KQ_FILTER_READ"),
                         (EVENT_WRITE, "KQ_FILTER_WRITE")):
            if events & bit:
                kev = _fastsel.kevent(fd, getattr(_fastsel, flt),
                                      _fastsel.KQ_EV_DELETE)
                self.max_events -= 1
                try:
                    self.kernel.control([kev], 0, 0)
                except OSError:
                    pass    # the fd was closed since it was registered

    def select(self, timeout, count, keys):  # type: ignore[no-untyped-def]
        timeout = None if timeout is None else max(timeout, 0)
        # max_ev 0 would make kqueue ignore the timeout (bpo-29255)
        max_ev = self.max_events or 1
        ready = []
        try:
            kev_list = self.kernel.control(None, max_ev, timeout)
        except InterruptedError:
            return ready
        fd_to_key_get = keys().get
        for kev in kev_list:
            fd = kev.ident
            flag = kev.filter
            events = 0
            if flag == _fastsel.KQ_FILTER_READ:
                events |= EVENT_READ
            if flag == _fastsel.KQ_FILTER_WRITE:
                events |= EVENT_WRITE
            key = fd_to_key_get(fd)
            if key:
                ready.append((key, events & key.events))
        return ready

    def close(self) -> None:
        self.kernel.close()

    def fileno(self):  # type: ignore[no-untyped-def]
        return self.kernel.fileno()


def _driver(kind: str, kernel: Any) -> object:
    """Called by the C classes: the driver for their kind."""
    return {"EpollSelector": _EpollDriver, "PollSelector": _PollDriver,
            "KqueueSelector": _KqueueDriver}[kind](kernel)


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
