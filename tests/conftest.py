"""Shared fixtures: run one test body against the stdlib and against fastsel.

``impl`` is parametrised over both implementations; a test that takes it runs
twice.  ``differential`` calls the same function on both and compares what
came out: equal results, or the same exception type and message.
"""
from __future__ import annotations

import select as std_select
import selectors as std_selectors
import types
import warnings
from typing import Any, Callable

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


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which interpreter and which fastsel/_fastsel files are under test."""
    import sys

    import _fastsel

    return [f"python {sys.version.split()[0]}: {sys.executable}",
            f"fastsel: {fastsel.__file__}",
            f"_fastsel: {_fastsel.__file__}"]


def pytest_configure(config: pytest.Config) -> None:
    """With FASTSEL_REQUIRE_INSTALLED=1 (make test), refuse the source tree."""
    import os

    import _fastsel

    if os.environ.get("FASTSEL_REQUIRE_INSTALLED") != "1":
        return
    pkg = os.path.dirname(os.path.realpath(fastsel.__file__))
    repo = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    ext_dir = os.path.dirname(os.path.realpath(_fastsel.__file__))
    if pkg == os.path.join(repo, "fastsel") or ext_dir != os.path.dirname(pkg):
        raise pytest.UsageError(
            f"fastsel must be the installed package: fastsel from {pkg}, "
            f"_fastsel from {ext_dir}")
