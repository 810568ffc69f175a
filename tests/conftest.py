"""Shared fixtures: run one test body against the stdlib and against fastsel.

``impl`` is parametrised over both implementations; a test that takes it runs
twice.  ``differential`` calls the same function on both and compares what
came out: equal results, or the same exception type and message.
"""
from __future__ import annotations

import os
import select as std_select
import selectors as std_selectors
import signal
import socket
import types
import warnings
from typing import Any, Callable, Iterator, NamedTuple

import pytest

import fastsel


class Impl(types.SimpleNamespace):
    """One implementation under test: ``select`` and ``selectors`` namespaces."""

    name: str
    select: Any
    selectors: Any

    def __repr__(self) -> str:
        return f"<impl {self.name}>"


STDLIB = Impl(name="stdlib", select=std_select, selectors=std_selectors)
FASTSEL = Impl(name="fastsel", select=fastsel, selectors=fastsel)


def fastsel_name(name: str) -> Any:
    """fastsel's attribute `name` (a selector class, ``epoll``...).  A test
    of it skips only where this platform's stdlib lacks it too: fastsel must
    have every name the stdlib has, so a missing one fails (AttributeError)
    rather than skipping."""
    if not hasattr(fastsel, name) and not (hasattr(std_selectors, name)
                                           or hasattr(std_select, name)):
        pytest.skip(f"neither the stdlib nor fastsel has {name} here")
    return getattr(fastsel, name)


@pytest.fixture(params=[STDLIB, FASTSEL], ids=["stdlib", "fastsel"])
def impl(request: pytest.FixtureRequest) -> Impl:
    return request.param


def outcome(fn: Callable[[], Any]) -> tuple:
    """('ok', value) or ('raise', exception type, message), warnings recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - we compare everything
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            result: tuple = ("raise", type(exc), str(exc))
        else:
            result = ("ok", value)
    return result + (tuple((w.category, str(w.message)) for w in caught),)


def differential(fn: Callable[[Impl], Any],
                 normalise: Callable[[Any], Any] = lambda v: v) -> tuple:
    """Run ``fn`` on the stdlib and on fastsel and assert equal outcomes.

    ``normalise`` maps a successful result to something comparable (for
    example ``sorted``).  Returns the stdlib's outcome.
    """
    std = outcome(lambda: fn(STDLIB))
    fast = outcome(lambda: fn(FASTSEL))
    if std[0] == "ok":
        std = ("ok", normalise(std[1]), std[2])
    if fast[0] == "ok":
        fast = ("ok", normalise(fast[1]), fast[2])
    assert fast == std, f"fastsel {fast!r} != stdlib {std!r}"
    return std


@pytest.fixture
def diff() -> Callable[..., tuple]:
    return differential


class SocketPair(NamedTuple):
    """A connected socketpair: ``a`` is writable, and readable once ``b`` sends."""

    a: socket.socket
    b: socket.socket


@pytest.fixture
def pairs() -> Iterator[Callable[[], SocketPair]]:
    """Makes connected socketpairs on demand; closes them after the test."""
    made: list = []

    def make() -> SocketPair:
        p = SocketPair(*socket.socketpair())
        made.append(p)
        return p

    yield make
    for p in made:
        p.a.close()
        p.b.close()


@pytest.fixture
def pair(pairs: Callable[[], SocketPair]) -> SocketPair:
    """One connected socketpair (a, b), closed after the test."""
    return pairs()


@pytest.fixture
def alarm_handler() -> Iterator[None]:
    """SIGALRM's handler and ITIMER_REAL are restored after the test."""
    old = signal.getsignal(signal.SIGALRM)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def pipes() -> Iterator[Callable[[], tuple]]:
    """Makes pipes (r, w) on demand; closes after the test the ends that the
    test left open."""
    made: list = []

    def make() -> tuple:
        r, w = os.pipe()
        made.extend((r, w))
        return r, w

    yield make
    for fd in made:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def pipe(pipes: Callable[[], tuple]) -> tuple:
    """One pipe (r, w): w is writable, r is not ready until w is written."""
    return pipes()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which interpreter, implementation and files are under test."""
    import sys

    lines = [f"python {sys.version.split()[0]} ({sys.implementation.name}): {sys.executable}",
             f"fastsel: {fastsel.__file__}, implementation {fastsel.implementation!r}"]
    ext = sys.modules.get("fastsel._fastsel")
    if ext is not None:
        lines.append(f"fastsel._fastsel: {ext.__file__}")
    return lines


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``c_impl`` marker; with FASTSEL_REQUIRE_INSTALLED=1
    (make test), refuse the source tree."""
    import sys

    config.addinivalue_line(
        "markers", "c_impl: the test is about fastsel's C implementation (its deliberate "
        "differences, C internals); skipped where fastsel serves the stdlib")
    config.addinivalue_line(
        "markers", "debug_build: the test drives the debug-only entry points of a "
        "FASTSEL_DEBUG=1 build (_fastsel._debug_backend, ...); skipped in a release build")
    if os.environ.get("FASTSEL_REQUIRE_INSTALLED") != "1":
        return
    pkg = os.path.dirname(os.path.realpath(fastsel.__file__))
    repo = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    ext = sys.modules.get("fastsel._fastsel")
    ext_dir = os.path.dirname(os.path.realpath(ext.__file__)) if ext is not None else None
    if pkg == os.path.join(repo, "fastsel") or (ext_dir is not None and ext_dir != pkg):
        raise pytest.UsageError(
            f"fastsel must be the installed package: fastsel from {pkg}, "
            f"fastsel._fastsel from {ext_dir}")


def c_impl_skip_reason() -> str:
    """Why tests marked ``c_impl`` do not apply here ("" where they do)."""
    if fastsel.implementation == "c":
        return ""
    from fastsel import _impl

    why = (f"{_impl.ENV}=stdlib is set" if os.environ.get(_impl.ENV) == "stdlib"
           else _impl.why_not())
    return ("about the C implementation, and fastsel serves the stdlib's select/selectors "
            f"here ({why})")


def skip_module_unless_c_impl() -> None:
    """For a ``c_impl`` module that cannot even be imported without the C
    implementation's environment: skip it whole, with the marker's reason."""
    reason = c_impl_skip_reason()
    if reason:
        pytest.skip(reason, allow_module_level=True)


def debug_build_skip_reason() -> str:
    """Why tests marked ``debug_build`` do not apply here ("" where they do)."""
    reason = c_impl_skip_reason()
    if reason:
        return reason
    from fastsel import _fastsel
    if _fastsel._debug:
        return ""
    return ("needs a FASTSEL_DEBUG=1 build (its debug-only entry points); CI runs these in "
            "the sanitizer run (tools/sanitize.sh), the kqueue job and the -dbg interpreter "
            "jobs of .ci/matrix, see docs/reliability.md")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for marker, reason in (("c_impl", c_impl_skip_reason()),
                           ("debug_build", debug_build_skip_reason())):
        if not reason:
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)
