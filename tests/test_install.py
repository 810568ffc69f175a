"""fastsel.install() / uninstall(): which objects they replace, and exact restore."""
from __future__ import annotations

import importlib
import select as std_select
import selectors as std_selectors
import sys
import textwrap
from typing import Any, Dict, Iterator

import pytest

import fastsel
from fastsel import _install
from _helpers import run_python

SELECTORS_NAMES = [n for n in _install.SELECTORS_NAMES if hasattr(std_selectors, n)]
SELECT_NAMES = [n for n in vars(std_select) if not n.startswith("_")]


def snapshot() -> Dict[str, Any]:
    """Every object install() may touch, by identity."""
    import multiprocessing.connection  # noqa: F401 - make sure the consumers are loaded
    import pty  # noqa: F401
    import socketserver  # noqa: F401
    import subprocess  # noqa: F401

    snap: Dict[str, Any] = {f"select.{n}": v for n, v in vars(std_select).items()}
    snap.update({f"selectors.{n}": v for n, v in vars(std_selectors).items()})
    for modname, attr in _install.CONSUMERS:
        module = sys.modules.get(modname)
        if module is not None and hasattr(module, attr):
            snap[f"{modname}.{attr}"] = getattr(module, attr)
    return snap


def assert_same(before: Dict[str, Any], after: Dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    changed = [k for k in before if before[k] is not after[k]]
    assert not changed, f"not restored: {changed}"


@pytest.fixture
def installed() -> Iterator[None]:
    fastsel.install()
    try:
        yield
    finally:
        fastsel.uninstall()


def test_exported() -> None:
    assert fastsel.install is _install.install
    assert fastsel.uninstall is _install.uninstall
    assert fastsel.new_event_loop is _install.new_event_loop


def test_install_uninstall_restores_exactly() -> None:
    before = snapshot()
    fastsel.install()
    try:
        during = snapshot()
    finally:
        fastsel.uninstall()
    assert_same(before, snapshot())
    # while installed: every name is fastsel's (fastsel has each stdlib name)
    for name in SELECT_NAMES:
        want = getattr(fastsel, name)
        assert during[f"select.{name}"] is want or during[f"select.{name}"] == want, name
    for name in SELECTORS_NAMES:
        want = getattr(fastsel, name)
        assert during[f"selectors.{name}"] is want or during[f"selectors.{name}"] == want, name
    # the module's own imports are left alone (selectors.select is the module)
    assert during["selectors.select"] is std_select
    # nothing was added or removed
    assert during.keys() == before.keys()


def test_idempotent() -> None:
    before = snapshot()
    fastsel.install()
    try:
        once = snapshot()
        fastsel.install()
        assert_same(once, snapshot())
    finally:
        fastsel.uninstall()
    fastsel.uninstall()
    assert_same(before, snapshot())


def test_uninstall_without_install_is_a_no_op() -> None:
    before = snapshot()
    fastsel.uninstall()
    assert_same(before, snapshot())


def test_import_after_install_gives_fastsel_backed_modules(installed: None) -> None:
    select = importlib.import_module("select")
    selectors = importlib.import_module("selectors")
    assert select is std_select and selectors is std_selectors
    # the platform decides which mechanisms exist; fastsel has each one the stdlib has
    for name in ("select", "poll", "epoll", "kqueue"):
        if hasattr(select, name):
            assert getattr(select, name) is getattr(fastsel, name), name
    for name in ("DefaultSelector", "PollSelector", "SelectSelector", "EpollSelector",
                 "KqueueSelector"):
        if hasattr(selectors, name):
            assert getattr(selectors, name) is getattr(fastsel, name), name
    assert select.error is OSError
    assert selectors.EVENT_READ == 1 and selectors.EVENT_WRITE == 2


def test_select_works_through_the_stdlib_module(installed: None) -> None:
    import os
    import select
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        assert select.select([r], [w], [], 0) == ([r], [w], [])
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("name", ["PollSelector", "EpollSelector"])
def test_replaced_selector_cls_runs_the_stdlib_class_while_installed(
        installed: None, name: str) -> None:
    """CPython's test_modify_unregister under ``python -m fastsel``: it patches
    ``selectors.<name>._selector_cls`` -- fastsel's class, once installed --
    and the selector then runs the stdlib's own class (not fastsel's, which
    install() put in the stdlib module), so a failing modify() unregisters."""
    import selectors
    import socket
    from unittest import mock
    if not hasattr(selectors, name):
        pytest.skip(f"this platform has no {name}")
    cls = getattr(selectors, name)
    assert cls is getattr(fastsel, name)
    a, b = socket.socketpair()
    try:
        with mock.patch(f"selectors.{name}._selector_cls") as m:
            m.return_value.modify = mock.Mock(side_effect=ZeroDivisionError)
            sel = cls()
            sel.register(a, selectors.EVENT_READ)
            assert len(sel._map) == 1
            with pytest.raises(ZeroDivisionError):
                sel.modify(a, selectors.EVENT_WRITE)
            assert len(sel._map) == 0
            sel.close()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("consumer, attr, cls", [
    ("subprocess", "_PopenSelector", "PollSelector"),
    ("socketserver", "_ServerSelector", "PollSelector"),
    ("multiprocessing.connection", "_WaitSelector", "PollSelector"),
])
def test_consumer_imported_before_and_after_install(consumer: str, attr: str, cls: str) -> None:
    """In a fresh interpreter: a consumer imported before install() and one
    imported while installed both use fastsel, and both are restored."""
    code = textwrap.dedent(f"""
        import sys, importlib, selectors
        import fastsel
        early = "{consumer}" if sys.argv[1] == "before" else None
        if early:
            importlib.import_module(early)
        std = getattr(sys.modules["{consumer}"], "{attr}") if early else None
        fastsel.install()
        mod = importlib.import_module("{consumer}")
        assert getattr(mod, "{attr}") is fastsel.{cls}, getattr(mod, "{attr}")
        fastsel.uninstall()
        assert getattr(mod, "{attr}") is getattr(selectors, "{cls}"), getattr(mod, "{attr}")
        assert getattr(mod, "{attr}").__module__ == "selectors"
        if std is not None:
            assert getattr(mod, "{attr}") is std
        print("ok")
    """)
    for when in ("before", "after"):
        proc = run_python(["-c", code, when], timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_asyncio_loop_made_while_installed_uses_fastsel(installed: None) -> None:
    import asyncio
    loop = asyncio.new_event_loop()
    try:
        assert type(loop._selector) is fastsel.DefaultSelector  # type: ignore[attr-defined]
    finally:
        loop.close()


def test_new_event_loop() -> None:
    import asyncio
    loop = fastsel.new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert type(loop._selector) is fastsel.DefaultSelector  # type: ignore[attr-defined]

        async def main() -> int:
            await asyncio.sleep(0)
            return 42
        assert loop.run_until_complete(main()) == 42
    finally:
        loop.close()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner(loop_factory=) is 3.11+")
def test_new_event_loop_as_loop_factory() -> None:
    import asyncio

    async def main() -> type:
        return type(asyncio.get_running_loop()._selector)  # type: ignore[attr-defined]
    with asyncio.Runner(loop_factory=fastsel.new_event_loop) as runner:  # type: ignore[attr-defined]
        assert runner.run(main()) is fastsel.DefaultSelector
    if sys.version_info >= (3, 12):
        assert asyncio.run(main(), loop_factory=fastsel.new_event_loop) is fastsel.DefaultSelector

