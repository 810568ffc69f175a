"""Every object fastsel returns or stores holds exactly the references it should.

``sys.getrefcount`` is read on the file objects, data, keys, timeouts and
event masks before and after loops of calls; an extra or missing reference
per call shows up as a difference of LOOPS.  Where a debug interpreter
(``sys.gettotalrefcount``) is running, the total reference count is checked
too.  Small ints and interned values are immortal on 3.12+, so the objects
checked are fresh (big ints, floats, instances).
"""
from __future__ import annotations

import gc
import os
import socket
import sys
from typing import Callable

import pytest

import select as std_select
import selectors as std_selectors

import fastsel
from _helpers import FileNo, FileNoRaises
from conftest import SocketPair, fastsel_name

LOOPS = 1000
SELECTORS = [n for n in ("SelectSelector", "PollSelector", "EpollSelector",
                         "KqueueSelector")]

pytestmark = pytest.mark.c_impl


def cls_or_skip(name: str) -> type:
    return fastsel_name(name)


@pytest.fixture
def ready_pair(pair: SocketPair) -> SocketPair:
    """conftest's pair with b's byte sent: a is readable and writable."""
    pair.b.send(b"x")
    return pair


def refs(*objs: object) -> list:
    gc.collect()
    return [sys.getrefcount(o) for o in objs]


def unchanged(body: Callable[[], None], *objs: object) -> None:
    """body() run LOOPS times leaves every object's refcount as it was."""
    body()                      # first call may cache (types, interned names)
    before = refs(*objs)
    total = getattr(sys, "gettotalrefcount", None)
    t0 = total() if total else 0
    for _ in range(LOOPS):
        body()
    after = refs(*objs)
    assert after == before, f"refcounts {before} -> {after} over {LOOPS} loops"
    if total:
        gc.collect()
        assert total() - t0 < LOOPS, "total refcount grew per iteration"


# ---- select() ----------------------------------------------------------------

def test_select_results(ready_pair: SocketPair) -> None:
    fo = FileNo(ready_pair.a.fileno())
    timeout = float("0.0")
    fd_obj = ready_pair.a.fileno()  # a small int: shared, so not counted

    def body() -> None:
        r, w, x = fastsel.select([fo, fd_obj], [fo], [fo], timeout)
        assert r == [fo, fd_obj] and w == [fo] and x == []
    unchanged(body, fo, timeout, ready_pair.a)


def test_select_error_paths(ready_pair: SocketPair) -> None:
    bad, fo = FileNoRaises(ValueError, "boom"), FileNo(ready_pair.a.fileno())
    rlist, wlist = [fo, bad], [fo]

    def body() -> None:
        with pytest.raises(ValueError):
            fastsel.select(rlist, wlist, [], 0)
        with pytest.raises(TypeError):
            fastsel.select(rlist[:1], wlist, [], "x")
    unchanged(body, bad, fo, rlist, wlist)


def result_refs(mod: object, fo: FileNo) -> list:
    r, w, x = mod.select([fo], [fo], [fo], 0)
    return [sys.getrefcount(r), sys.getrefcount(w), sys.getrefcount(x)]


def test_select_returned_lists_are_new(ready_pair: SocketPair) -> None:
    import select as std
    fo = FileNo(ready_pair.a.fileno())
    assert result_refs(fastsel, fo) == result_refs(std, fo)


# ---- poll --------------------------------------------------------------------

def test_poll(ready_pair: SocketPair) -> None:
    fo = FileNo(ready_pair.a.fileno())
    mask = fastsel.POLLIN | fastsel.POLLOUT | (1 << 14) - (1 << 14)
    timeout = float("0.0")
    p = fastsel.poll()

    def body() -> None:
        p.register(fo, mask)
        p.modify(fo, mask)
        res = p.poll(timeout)
        assert res and res[0][0] == fo.value
        p.unregister(fo)
        with pytest.raises(KeyError):
            p.unregister(fo)
    unchanged(body, fo, timeout, p)


def poll_result_refs(mod: object, sock: socket.socket) -> list:
    p = mod.poll()
    p.register(sock, mod.POLLIN)
    res = p.poll(0)
    return [sys.getrefcount(res), sys.getrefcount(res[0])]


def test_poll_results_fresh(ready_pair: SocketPair) -> None:
    import select as std
    assert poll_result_refs(fastsel, ready_pair.a) == poll_result_refs(std, ready_pair.a)


# ---- epoll -------------------------------------------------------------------

def test_epoll(ready_pair: SocketPair) -> None:
    fastsel_name("epoll")
    fo = FileNo(ready_pair.a.fileno())
    mask = int(str(fastsel.EPOLLIN | fastsel.EPOLLOUT))
    timeout = float("0.0")
    maxevents = int("-1")
    ep = fastsel.epoll()

    def body() -> None:
        ep.register(fo, mask)
        ep.modify(fo, mask)
        res = ep.poll(timeout, maxevents)
        assert res and res[0][0] == fo.value
        ep.poll(timeout=timeout, maxevents=maxevents)
        ep.unregister(fo)
        with pytest.raises(FileNotFoundError):
            ep.unregister(fo)
    unchanged(body, fo, timeout, maxevents, ep)
    ep.close()


def test_epoll_enter_returns_self() -> None:
    fastsel_name("epoll")
    ep = fastsel.epoll()
    before = sys.getrefcount(ep)
    for _ in range(LOOPS):
        with ep as e:
            assert e is ep
            del e
        ep = fastsel.epoll() if ep.closed else ep
    assert sys.getrefcount(ep) <= before
    ep.close()


# ---- selectors ---------------------------------------------------------------

@pytest.mark.parametrize("name", SELECTORS)
def test_selector_register_cycle(name: str, ready_pair: SocketPair) -> None:
    cls = cls_or_skip(name)
    fo = FileNo(ready_pair.a.fileno())
    data = object()
    data2 = ["other"]
    timeout = float("0.0")
    sel = cls()

    def body() -> None:
        key = sel.register(fo, fastsel.EVENT_READ, data)
        assert key.fileobj is fo and key.data is data
        key2 = sel.modify(fo, fastsel.EVENT_READ | fastsel.EVENT_WRITE, data2)
        key3 = sel.modify(fo, fastsel.EVENT_READ | fastsel.EVENT_WRITE, data)
        ready = sel.select(timeout)
        assert ready and ready[0][0] is sel.get_key(fo)
        assert sel.get_map()[fo] is sel.get_key(fo.value)
        assert sel.unregister(fo) is key3
        del key, key2, key3, ready
    unchanged(body, fo, data, data2, timeout, sel)
    sel.close()


@pytest.mark.parametrize("name", SELECTORS)
def test_selector_stored_references(name: str, ready_pair: SocketPair) -> None:
    """While registered, the key holds fileobj and data once each; after
    unregister/close nothing is held."""
    cls = cls_or_skip(name)
    fo = FileNo(ready_pair.a.fileno())
    data = object()
    base = refs(fo, data)
    sel = cls()
    sel.register(fo, fastsel.EVENT_READ, data)
    held = refs(fo, data)
    assert held == [base[0] + 1, base[1] + 1]          # the key's fields
    key = sel.get_key(fo)
    sel.select(0)               # may cache its (key, events) result tuple
    kref = sys.getrefcount(key)
    for _ in range(LOOPS):
        sel.select(0)
        sel.get_key(fo)
        sel.get_map().get(fo)
        fo.value in sel.get_map()
    assert sys.getrefcount(key) == kref
    assert refs(fo, data) == held
    del key                     # ours; the selector's must go with close()
    sel.close()
    assert refs(fo, data) == base


@pytest.mark.parametrize("name", SELECTORS)
def test_selector_dealloc_releases(name: str, ready_pair: SocketPair) -> None:
    cls = cls_or_skip(name)
    fo = FileNo(ready_pair.a.fileno())
    data = object()
    base = refs(fo, data)
    sel = cls()
    sel.register(fo, fastsel.EVENT_READ | fastsel.EVENT_WRITE, data)
    sel.select(0)
    m = sel.get_map()
    del sel                     # the map keeps the selector's table alive or not
    del m
    assert refs(fo, data) == base


@pytest.mark.parametrize("name", SELECTORS)
def test_selector_error_paths(name: str, ready_pair: SocketPair) -> None:
    cls = cls_or_skip(name)

    bad, fo, data = FileNoRaises(ValueError, "gone"), FileNo(ready_pair.a.fileno()), object()
    events = int("3")
    sel = cls()
    sel.register(fo, fastsel.EVENT_READ, data)

    def body() -> None:
        with pytest.raises(ValueError):
            sel.register(bad, events, data)
        with pytest.raises(KeyError):
            sel.register(fo, events, data)
        with pytest.raises(ValueError):
            sel.register(FileNo(ready_pair.b.fileno()), 0, data)
        with pytest.raises(KeyError):
            sel.unregister(FileNo(ready_pair.b.fileno()))
        with pytest.raises(KeyError):
            sel.modify(ready_pair.b, events, data)
        with pytest.raises(KeyError):
            sel.get_key(ready_pair.b)
        with pytest.raises(TypeError):
            sel.select("1")
    unchanged(body, bad, fo, data, events, sel)
    sel.close()


@pytest.mark.parametrize("name", SELECTORS)
def test_selector_unregister_with_closed_file(name: str) -> None:
    """Unregistering by a file object whose fd was closed (stdlib: looks the
    key up by identity) drops every reference."""
    cls = cls_or_skip(name)
    a, b = socket.socketpair()
    data = object()
    sel = cls()
    try:
        base = refs(a, data)
        sel.register(a, fastsel.EVENT_READ, data)
        a.close()
        sel.unregister(a)
        assert refs(a, data) == base
    finally:
        sel.close()
        b.close()


def test_gettotalrefcount_available_or_reason() -> None:
    if not hasattr(sys, "gettotalrefcount"):
        pytest.skip("not a debug interpreter: sys.gettotalrefcount is absent, "
                    "per-object getrefcount checks only")
    assert sys.gettotalrefcount() > 0


def test_os_fds_not_leaked() -> None:
    """Creating and destroying selectors/epolls leaves no fd open."""
    def count() -> int:
        return len(os.listdir("/proc/self/fd"))
    objs = [fastsel.poll]
    for n in ("epoll",) + tuple(SELECTORS):
        if hasattr(fastsel, n) or hasattr(std_select, n) or hasattr(std_selectors, n):
            objs.append(getattr(fastsel, n))
    before = count()
    for _ in range(200):
        for make in objs:
            o = make()
            if hasattr(o, "close"):
                o.close()
            del o
            make()              # dropped without close(): dealloc closes
    gc.collect()
    assert count() == before
