"""Regressions found by the C code review (H8).

Each test reproduces one memory-safety or lifetime bug in the C selectors.
Most of them crashed the interpreter, so they run their body in a child
process (the same fastsel/_fastsel, see _helpers.child_env) and check its
exit status and output.
"""
from __future__ import annotations

import sys
import textwrap

import pytest

import fastsel

from _helpers import run_python

# regressions of the C code
pytestmark = pytest.mark.c_impl

SELECTORS = [n for n in ("EpollSelector", "PollSelector", "SelectSelector")
             if hasattr(fastsel, n)]


def run_child(code: str, *, debug_malloc: bool = True) -> str:
    """Run code in a child interpreter; its stdout, which must end in OK."""
    from _helpers import child_env

    env = child_env(PYTHONMALLOC="debug") if debug_malloc else child_env()
    proc = run_python(["-X", "faulthandler", "-c", textwrap.dedent(code)],
                      timeout=60, env=env)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.rstrip().endswith("OK"), (proc.stdout, proc.stderr)
    return proc.stdout


@pytest.mark.parametrize("clsname", SELECTORS)
def test_select_timeout_that_closes_the_selector(clsname):
    # select() converted the timeout (Python code: __le__/__lt__, math.ceil)
    # after its closed check, then waited on the freed backend (NULL deref).
    run_child(f"""
        import fastsel
        s = fastsel.{clsname}()

        class T:
            def _close(self, other):
                s.close()
                return True
            __le__ = __lt__ = __ge__ = __gt__ = _close

        try:
            s.select(T())
        except RuntimeError as e:
            assert str(e) == "Selector is closed", e
        else:
            raise AssertionError("no error")
        print("OK")
    """)


@pytest.mark.parametrize("clsname", SELECTORS)
def test_select_gc_unregisters_while_results_are_built(clsname):
    # select() took a borrowed key from the slot and then allocated the
    # (key, events) tuple: a collection there may run a finaliser that
    # unregisters the fd and frees the key, which then went into the
    # result.  GC runs inside allocations on 3.9-3.11.
    out = run_child(f"""
        import gc, socket
        import fastsel

        sel = fastsel.{clsname}()
        socks = [socket.socketpair() for _ in range(20)]
        fds = set()
        for a, b in socks:
            b.send(b"x")
            sel.register(a.fileno(), fastsel.EVENT_READ, object())
            fds.add(a.fileno())
        state = {{"phase": 0}}

        class Bomb:
            def __init__(self):
                self.cycle = self

            def __del__(self):
                if state["phase"] == 0:
                    # the collection in PyList_New: arm the next one
                    state["phase"] = 1
                    Bomb()
                elif state["phase"] == 1:
                    state["phase"] = 2
                    for a, _ in socks:
                        try:
                            sel.unregister(a.fileno())
                        except (KeyError, RuntimeError):
                            pass

        hold = [(i, -i) for i in range(5000)]   # empty the 2-tuple free list
        gc.collect()
        Bomb()
        old = gc.get_threshold()
        gc.set_threshold(1)
        try:
            res = sel.select(0)
        finally:
            gc.set_threshold(*old)
            reached = state["phase"]
            state["phase"] = 3
        for key, mask in res:
            assert type(key) is fastsel.SelectorKey, type(key)
            assert key.fd in fds and key.fileobj == key.fd, key
            assert type(key.data) is object, key
            assert mask == fastsel.EVENT_READ, mask
        print("phase", reached, "results", len(res))
        del hold
        sel.close()
        for a, b in socks:
            a.close()
            b.close()
        print("OK")
    """)
    if sys.version_info < (3, 12):
        # collections run inside allocations: the finaliser did run there
        assert "phase 2" in out, out


def test_modify_bool_fd_warning_hook_that_grows_the_table():
    # 3.13 warns when a bool is used as an fd.  modify() kept a pointer into
    # the slot table across that warning; a showwarning hook that registers
    # a high fd reallocates the table, and a hook that raises made modify()
    # drop the key through the stale pointer.  Compared with the stdlib.
    out = run_child("""
        import selectors, warnings
        import fastsel

        results = []
        for mod in (selectors, fastsel):
            sel = mod.PollSelector()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sel.register(True, mod.EVENT_READ, "t")

                def hook(*args, **kwargs):
                    sel.register(100000, mod.EVENT_READ, "far")
                    raise OSError("hook")

                warnings.simplefilter("always")
                warnings.showwarning = hook
                try:
                    sel.modify(True, mod.EVENT_WRITE, "t2")
                except Exception as e:
                    err = (type(e).__name__, str(e))
                else:
                    err = None
            keys = sorted((fd, k.data, k.events)
                          for fd, k in sel.get_map().items())
            results.append((err, keys))
            sel.close()
        assert results[0] == results[1], results
        print(results[1])
        print("OK")
    """)
    if sys.version_info >= (3, 13):
        assert "hook" in out


def test_selector_type_names_outlive_module_setup():
    # On 3.9/3.10 PyType_FromModuleAndSpec keeps spec->name as tp_name
    # without copying it; the selector classes' names were built in a stack
    # buffer, so every message naming the type read dead stack memory.
    import pickle

    for name in SELECTORS:
        cls = getattr(fastsel, name)
        s = cls()
        try:
            with pytest.raises(TypeError) as info:
                pickle.dumps(s)
            assert f"'fastsel.{name}'" in str(info.value)
        finally:
            s.close()


@pytest.mark.parametrize("clsname", SELECTORS + (
    ["KqueueSelector"] if hasattr(fastsel, "KqueueSelector") else []))
def test_register_when_a_finaliser_registers_the_same_fd(impl, clsname):
    # register() checked for a duplicate before allocating the key; a
    # collection in that allocation (3.9-3.11) can run a finaliser that
    # registers the same fd.  The kernel add then failed (FileExistsError
    # where the stdlib says KeyError) or, under kqueue, succeeded over the
    # first registration and overwrote its slot.
    import gc
    import socket

    cls = getattr(impl.selectors, clsname, None)
    if cls is None:
        pytest.skip(f"{impl.name} has no {clsname}")
    sel = cls()
    r, w = socket.socketpair()
    fd = r.fileno()
    state = {"armed": True}

    class Bomb:
        def __init__(self):
            self.cycle = self

        def __del__(self):
            if state["armed"]:
                state["armed"] = False
                try:
                    sel.register(fd, impl.selectors.EVENT_READ, "inner")
                except KeyError:
                    pass

    try:
        gc.collect()
        Bomb()
        old = gc.get_threshold()
        gc.set_threshold(1)
        try:
            sel.register(fd, impl.selectors.EVENT_READ, "outer")
        except KeyError as e:
            outer = e
        else:
            outer = None
        finally:
            gc.set_threshold(*old)
            state["armed"] = False
        gc.collect()
        keys = list(sel.get_map().values())
        assert len(keys) == 1, keys
        if outer is not None:
            # the finaliser's registration came first and stays
            assert str(outer) == f"'{fd!r} (FD {fd!r}) is already registered'"
            assert keys[0].data == "inner"
        else:
            assert keys[0].data == "outer"
        assert sel.unregister(fd) is keys[0]
        assert len(sel.get_map()) == 0
    finally:
        sel.close()
        r.close()
        w.close()
