# Type stubs for fastsel: the select module's and the selectors module's
# public names (Linux and macOS/BSD), plus fastsel's own functions.
import sys
from abc import ABCMeta, abstractmethod
from asyncio import SelectorEventLoop
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, NamedTuple, Protocol, TypeVar, final

from typing_extensions import Self, TypeAlias

__version__: str
implementation: Literal["c", "stdlib"]

class _HasFileno(Protocol):
    def fileno(self) -> int: ...

_FileDescriptor: TypeAlias = int
_FileDescriptorLike: TypeAlias = int | _HasFileno
_FileObject: TypeAlias = _FileDescriptorLike
_T = TypeVar("_T")

# --- select ---------------------------------------------------------------

error = OSError
PIPE_BUF: int

POLLIN: int
POLLPRI: int
POLLOUT: int
POLLERR: int
POLLHUP: int
POLLNVAL: int
POLLRDNORM: int
POLLRDBAND: int
POLLWRNORM: int
POLLWRBAND: int
POLLMSG: int
if sys.platform == "linux":
    POLLRDHUP: int

def select(
    rlist: Iterable[_T], wlist: Iterable[_T], xlist: Iterable[_T], timeout: float | None = None, /
) -> tuple[list[_T], list[_T], list[_T]]: ...

class _poll:
    def register(self, fd: _FileDescriptorLike, eventmask: int = ..., /) -> None: ...
    def modify(self, fd: _FileDescriptorLike, eventmask: int, /) -> None: ...
    def unregister(self, fd: _FileDescriptorLike, /) -> None: ...
    def poll(self, timeout: float | None = None, /) -> list[tuple[int, int]]: ...

def poll() -> _poll: ...

if sys.platform == "linux":
    EPOLLIN: int
    EPOLLPRI: int
    EPOLLOUT: int
    EPOLLERR: int
    EPOLLHUP: int
    EPOLLRDNORM: int
    EPOLLRDBAND: int
    EPOLLWRNORM: int
    EPOLLWRBAND: int
    EPOLLMSG: int
    EPOLLRDHUP: int
    EPOLLET: int
    EPOLLONESHOT: int
    EPOLLEXCLUSIVE: int
    EPOLL_CLOEXEC: int
    if sys.version_info >= (3, 14):
        EPOLLWAKEUP: int

    @final
    class epoll:
        # the arguments are taken by __new__ (epoll.__init__ is object's)
        def __new__(cls, sizehint: int = ..., flags: int = ...) -> Self: ...
        def __enter__(self) -> Self: ...
        def __exit__(
            self,
            exc_type: type[BaseException] | None = None,
            exc_value: BaseException | None = ...,
            exc_tb: TracebackType | None = None,
            /,
        ) -> None: ...
        def close(self) -> None: ...
        closed: bool
        def fileno(self) -> int: ...
        def register(self, fd: _FileDescriptorLike, eventmask: int = ...) -> None: ...
        def modify(self, fd: _FileDescriptorLike, eventmask: int) -> None: ...
        def unregister(self, fd: _FileDescriptorLike) -> None: ...
        def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]: ...
        @classmethod
        def fromfd(cls, fd: _FileDescriptor, /) -> epoll: ...

if sys.platform != "linux" and sys.platform != "win32":
    KQ_FILTER_READ: int
    KQ_FILTER_WRITE: int
    KQ_FILTER_AIO: int
    KQ_FILTER_VNODE: int
    KQ_FILTER_PROC: int
    KQ_FILTER_SIGNAL: int
    KQ_FILTER_TIMER: int
    KQ_EV_ADD: int
    KQ_EV_DELETE: int
    KQ_EV_ENABLE: int
    KQ_EV_DISABLE: int
    KQ_EV_ONESHOT: int
    KQ_EV_CLEAR: int
    KQ_EV_EOF: int
    KQ_EV_ERROR: int
    KQ_EV_SYSFLAGS: int
    KQ_EV_FLAG1: int
    KQ_NOTE_LOWAT: int
    KQ_NOTE_DELETE: int
    KQ_NOTE_WRITE: int
    KQ_NOTE_EXTEND: int
    KQ_NOTE_ATTRIB: int
    KQ_NOTE_LINK: int
    KQ_NOTE_RENAME: int
    KQ_NOTE_REVOKE: int
    KQ_NOTE_EXIT: int
    KQ_NOTE_FORK: int
    KQ_NOTE_EXEC: int
    KQ_NOTE_PCTRLMASK: int
    KQ_NOTE_PDATAMASK: int
    KQ_NOTE_TRACK: int
    KQ_NOTE_CHILD: int
    KQ_NOTE_TRACKERR: int

    @final
    class kevent:
        data: Any
        fflags: int
        filter: int
        flags: int
        ident: int
        udata: Any
        def __init__(
            self,
            ident: _FileDescriptorLike,
            filter: int = ...,
            flags: int = ...,
            fflags: int = ...,
            data: Any = ...,
            udata: Any = ...,
        ) -> None: ...

    @final
    class kqueue:
        closed: bool
        def __init__(self) -> None: ...
        def close(self) -> None: ...
        def control(
            self, changelist: Iterable[kevent] | None, maxevents: int, timeout: float | None = None, /
        ) -> list[kevent]: ...
        def fileno(self) -> int: ...
        @classmethod
        def fromfd(cls, fd: _FileDescriptor, /) -> kqueue: ...

# --- selectors ------------------------------------------------------------

EVENT_READ: int
EVENT_WRITE: int

class SelectorKey(NamedTuple):
    fileobj: _FileObject
    fd: _FileDescriptor
    events: int
    data: Any

class BaseSelector(metaclass=ABCMeta):
    @abstractmethod
    def register(self, fileobj: _FileObject, events: int, data: Any = None) -> SelectorKey: ...
    @abstractmethod
    def unregister(self, fileobj: _FileObject) -> SelectorKey: ...
    def modify(self, fileobj: _FileObject, events: int, data: Any = None) -> SelectorKey: ...
    @abstractmethod
    def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]: ...
    def close(self) -> None: ...
    def get_key(self, fileobj: _FileObject) -> SelectorKey: ...
    @abstractmethod
    def get_map(self) -> Mapping[_FileObject, SelectorKey]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *args: object) -> None: ...

class SelectSelector(BaseSelector):
    def register(self, fileobj: _FileObject, events: int, data: Any = None) -> SelectorKey: ...
    def unregister(self, fileobj: _FileObject) -> SelectorKey: ...
    def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]: ...
    def get_map(self) -> Mapping[_FileObject, SelectorKey]: ...

class PollSelector(BaseSelector):
    def register(self, fileobj: _FileObject, events: int, data: Any = None) -> SelectorKey: ...
    def unregister(self, fileobj: _FileObject) -> SelectorKey: ...
    def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]: ...
    def get_map(self) -> Mapping[_FileObject, SelectorKey]: ...

if sys.platform == "linux":
    class EpollSelector(BaseSelector):
        def fileno(self) -> int: ...
        def register(self, fileobj: _FileObject, events: int, data: Any = None) -> SelectorKey: ...
        def unregister(self, fileobj: _FileObject) -> SelectorKey: ...
        def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]: ...
        def get_map(self) -> Mapping[_FileObject, SelectorKey]: ...

    DefaultSelector: TypeAlias = EpollSelector

elif sys.platform != "win32":
    class KqueueSelector(BaseSelector):
        def fileno(self) -> int: ...
        def register(self, fileobj: _FileObject, events: int, data: Any = None) -> SelectorKey: ...
        def unregister(self, fileobj: _FileObject) -> SelectorKey: ...
        def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]: ...
        def get_map(self) -> Mapping[_FileObject, SelectorKey]: ...

    DefaultSelector: TypeAlias = KqueueSelector

# --- fastsel's own --------------------------------------------------------

def install(*, children: bool = False) -> None: ...
def uninstall() -> None: ...
def new_event_loop() -> SelectorEventLoop: ...
