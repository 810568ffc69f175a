"""A fresh import of select/selectors while fastsel is installed gives fastsel (issue 20).

Code that removes ``select`` or ``selectors`` from ``sys.modules`` and imports
it again (eventlet's ``patcher.original``, its hubs, test helpers) must get
fastsel while it is installed, and the stdlib again after ``uninstall()``.
Every case runs in a child process: deleting those modules from the test
process's ``sys.modules`` would change what the other tests hold.
"""
from __future__ import annotations

import importlib.util
import os
import textwrap

import pytest

import fastsel
from _helpers import run_python

C = fastsel.implementation == "c"

# Helpers for the child programs: which implementation a module object serves.
PRELUDE = textwrap.dedent("""
    import importlib, socket, sys
    import fastsel
    from fastsel import _install
    C = fastsel.implementation == "c"
    STD_SELECT_FILE = getattr(sys.modules["select"], "__file__", None)
    STD_SELECTORS_FILE = sys.modules["selectors"].__file__

    def fresh(name, how):
        sys.modules.pop(name)
        if how == "import":
            exec(f"import {name} as m", globals())
            return globals()["m"]
        if how == "import_module":
            return importlib.import_module(name)
        return __import__(name)

    def serves_fastsel(select, selectors):
        if not C:
            # fastsel serves the interpreter's own modules: a fresh stdlib
            # import (new objects on PyPy) is what it serves
            return serves_stdlib(select, selectors)
        names = [n for n in ("select", "poll", "epoll") if hasattr(select, n)]
        names_sel = [n for n in ("DefaultSelector", "SelectSelector", "PollSelector",
                                 "EpollSelector") if hasattr(selectors, n)]
        return (all(getattr(select, n) is getattr(fastsel, n) for n in names)
                and all(getattr(selectors, n) is getattr(fastsel, n) for n in names_sel))

    def serves_stdlib(select, selectors):
        # the stdlib's own objects: where fastsel serves the stdlib they are also fastsel's
        ok = all(getattr(select, n).__module__ == "select"
                 for n in ("select", "poll", "epoll") if hasattr(select, n))
        if C:
            ok = ok and all(getattr(select, n) is not getattr(fastsel, n)
                            for n in ("select", "poll", "epoll") if hasattr(select, n))
        return ok and all(getattr(selectors, n).__module__ == "selectors" for n in
                          ("DefaultSelector", "SelectSelector", "PollSelector", "EpollSelector")
                          if hasattr(selectors, n))

    def works(selectors):
        a, b = socket.socketpair()
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ, "d")
            b.send(b"x")
            got = [(k.data, ev) for k, ev in sel.select(5)]
        a.close(); b.close()
        assert got == [("d", selectors.EVENT_READ)], got
        assert isinstance(sel, selectors.BaseSelector)
""")


def run(code: str) -> None:
    proc = run_python(["-c", PRELUDE + textwrap.dedent(code) + "\nprint('ok')"], timeout=90)
    assert proc.returncode == 0 and proc.stdout.endswith("ok\n"), proc.stdout + proc.stderr


@pytest.mark.parametrize("how", ["import", "import_module", "__import__"])
def test_delete_and_reimport_while_installed(how: str) -> None:
    """Each way of importing: the new module objects are real stdlib modules
    (the stdlib's file, spec and loader) that serve fastsel; uninstall()
    restores them, and later fresh imports are the stdlib."""
    run(f"""
        import select as first_select, selectors as first_selectors
        fastsel.install()
        select = fresh("select", {how!r})
        selectors = fresh("selectors", {how!r})
        assert select is not first_select and selectors is not first_selectors
        assert sys.modules["select"] is select and sys.modules["selectors"] is selectors
        assert getattr(select, "__file__", None) == STD_SELECT_FILE
        assert selectors.__file__ == STD_SELECTORS_FILE
        assert selectors.__spec__.name == "selectors" and selectors.__loader__ is selectors.__spec__.loader
        assert type(selectors.__loader__).__module__ != "fastsel._install", selectors.__loader__
        assert selectors.select is select
        assert serves_fastsel(select, selectors)
        assert select.error is OSError
        works(selectors)
        # the first module objects are served too, as before
        assert serves_fastsel(first_select, first_selectors)
        fastsel.uninstall()
        assert serves_stdlib(select, selectors) and serves_stdlib(first_select, first_selectors)
        assert not [f for f in sys.meta_path if type(f).__module__ == "fastsel._install"]
        works(selectors)
        later_select = fresh("select", {how!r})
        later_selectors = fresh("selectors", {how!r})
        assert serves_stdlib(later_select, later_selectors)
    """)


def test_selectors_alone_reimported() -> None:
    """Only ``selectors`` removed: the new one binds the installed select module."""
    run("""
        import select
        fastsel.install()
        selectors = fresh("selectors", "import")
        assert selectors.select is select and serves_fastsel(select, selectors)
        works(selectors)
        fastsel.uninstall()
        assert serves_stdlib(select, selectors)
    """)


def test_reload_while_installed_and_after() -> None:
    run("""
        import select, selectors
        fastsel.install()
        assert importlib.reload(selectors) is selectors
        assert importlib.reload(select) is select
        assert serves_fastsel(select, selectors)
        assert selectors.__spec__.origin == STD_SELECTORS_FILE
        works(selectors)
        fastsel.uninstall()
        assert serves_stdlib(select, selectors)
        importlib.reload(selectors)
        assert serves_stdlib(select, selectors)
        works(selectors)
    """)


def test_install_twice_nested_and_again() -> None:
    """One finder however often install() runs; uninstall() removes it; a
    second installation serves fresh imports again."""
    run("""
        def finders():
            return [f for f in sys.meta_path if type(f).__module__ == "fastsel._install"]
        fastsel.install()
        fastsel.install(children=False)
        assert len(finders()) == (1 if C else 0), sys.meta_path
        fastsel.uninstall()
        fastsel.uninstall()
        assert finders() == []
        select, selectors = fresh("select", "import"), fresh("selectors", "import")
        assert serves_stdlib(select, selectors)
        fastsel.install()
        select, selectors = fresh("select", "import"), fresh("selectors", "import")
        assert serves_fastsel(select, selectors)
        fastsel.uninstall()
        assert serves_stdlib(select, selectors) and finders() == []
    """)


def test_modules_reimported_before_install() -> None:
    """select imported afresh before install(): ``selectors`` still holds the
    earlier select module, a stdlib one too, so it is served like the new one."""
    run("""
        import selectors
        early_select = selectors.select
        select = fresh("select", "import")
        assert selectors.select is early_select is not select
        fastsel.install()
        assert serves_fastsel(select, selectors)
        works(selectors)
        fastsel.uninstall()
        assert serves_stdlib(select, selectors)
    """)


def test_selectors_imported_over_a_stand_in_select_is_left_alone() -> None:
    """A fresh ``selectors`` imported while ``sys.modules["select"]`` is a
    stand-in (eventlet's green select, in its ``monkey_patch()``) keeps the
    stdlib's classes, which call that stand-in; the stand-in is not patched."""
    run("""
        import types
        import select as real_select
        fastsel.install()
        calls = []
        green = types.ModuleType("green_select")
        green.__dict__.update({n: getattr(real_select, n) for n in dir(real_select)
                               if not n.startswith("_")})
        class green_poll:             # a class, as the stdlib's poll is called through one
            def __new__(cls):
                calls.append("poll")
                return real_select.poll()
        green.poll = green_poll
        sys.modules["select"] = green
        selectors = fresh("selectors", "import")
        sys.modules["select"] = real_select
        assert selectors.select is green and green.poll is green_poll
        assert selectors.PollSelector.__module__ == "selectors"
        with selectors.PollSelector() as sel:
            assert sel.select(0) == []
        assert calls == ["poll"]
        fastsel.uninstall()
    """)


def test_nothing_changes_without_install() -> None:
    run("""
        before = list(sys.meta_path)
        select, selectors = fresh("select", "import"), fresh("selectors", "import_module")
        assert sys.meta_path == before
        assert serves_stdlib(select, selectors)
    """)


def test_python_m_fastsel_fresh_import(tmp_path) -> None:
    """Under ``python -m fastsel``: the program's own fresh imports are fastsel."""
    prog = tmp_path / "prog.py"
    prog.write_text(PRELUDE + textwrap.dedent("""
        select = fresh("select", "import")
        selectors = fresh("selectors", "import_module")
        print(serves_fastsel(select, selectors), serves_stdlib(select, selectors))
        works(selectors)
    """), encoding="utf-8")
    fast = run_python(["-m", "fastsel", str(prog)], cwd=str(tmp_path))
    plain = run_python([str(prog)], cwd=str(tmp_path))
    assert fast.returncode == 0 and plain.returncode == 0, fast.stderr + plain.stderr
    if C:
        assert fast.stdout.split() == ["True", "False"]
        assert plain.stdout.split() == ["False", "True"]
    else:
        # fastsel's objects are the platform's own: both runs are the stdlib
        assert fast.stdout.split() == plain.stdout.split() == ["True", "True"]


def test_a_copy_made_before_install_is_not_reached() -> None:
    """What docs/processes.md says install() cannot cover: an object copied
    out of the module before install() (``from select import epoll``)."""
    run("""
        from select import select as early_copy
        fastsel.install()
        import select
        assert select.select is fastsel.select
        assert early_copy is not fastsel.select or not C
        fastsel.uninstall()
    """)


# --- eventlet: its hubs take the select module through patcher.original ---

EVENTLET = importlib.util.find_spec("eventlet") is not None


def require_eventlet() -> None:
    """eventlet is in the 'test' extra on every interpreter CI runs: missing
    there (FASTSEL_REQUIRE_INSTALLED=1) is a broken install, not a skip."""
    if EVENTLET:
        return
    assert os.environ.get("FASTSEL_REQUIRE_INSTALLED") != "1", \
        "eventlet is missing: the 'test' extra installs it (pip install 'fastsel[test]')"
    pytest.skip("eventlet is not installed (pip install 'fastsel[test]' installs it)")


EVENTLET_PROG = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")          # eventlet's own DeprecationWarning
    import eventlet, eventlet.hubs
    import fastsel
    hub_name = sys.argv[1]
    eventlet.hubs.use_hub(hub_name)
    hub = eventlet.hubs.get_hub()
    assert type(hub).__module__ == "eventlet.hubs." + hub_name, type(hub)
    # a few loopback connections served by the hub
    srv = eventlet.listen(("127.0.0.1", 0))
    def client(i):
        with eventlet.Timeout(30):
            c = eventlet.connect(srv.getsockname())
            c.sendall(b"ping %d" % i)
            data = c.recv(64)
            c.close()
            return data
    def serve(n):
        with eventlet.Timeout(30):
            for _ in range(n):
                s, _ = srv.accept()
                s.sendall(s.recv(64))
                s.close()
    server = eventlet.spawn(serve, 4)
    got = sorted(eventlet.spawn(client, i).wait() for i in range(4))
    server.wait()
    assert got == [b"ping %d" % i for i in range(4)], got
    # the object the hub waits with
    hub_select = sys.modules[type(hub).__module__].__dict__.get("select")
    if hub_name == "epolls":
        fast = type(hub.poll) is fastsel.epoll
    elif hub_name == "poll":
        fast = type(hub.poll) is type(fastsel.poll())
    elif hub_name == "selects":
        fast = hub_select.select is fastsel.select
    else:
        cls = type(hub.loop._selector)
        # where fastsel serves the interpreter's own selectors, the class of a
        # fresh stdlib import (a new class object) is what it serves
        fast = cls is fastsel.DefaultSelector or (
            fastsel.implementation != "c" and cls.__module__ == "selectors"
            and cls.__qualname__ == fastsel.DefaultSelector.__qualname__)
    print("fastsel" if fast else "stdlib")
""")


@pytest.mark.parametrize("hub", ["epolls", "poll", "selects", "asyncio"])
def test_eventlet_hub_runs_on_fastsel(tmp_path, hub: str) -> None:
    """eventlet's hubs under ``python -m fastsel``: the epoll, poll and select
    objects they take from ``patcher.original('select')`` (a fresh import),
    and the asyncio hub's selector (``patcher.original('selectors')``), are
    fastsel's; under plain python the same program gets the stdlib."""
    require_eventlet()
    import select
    if hub in ("epolls", "poll") and not hasattr(select, hub.rstrip("s")):
        pytest.skip(f"this platform's select module has no {hub.rstrip('s')}")
    prog = tmp_path / "hub_prog.py"
    prog.write_text(EVENTLET_PROG, encoding="utf-8")
    fast = run_python(["-m", "fastsel", str(prog), hub], cwd=str(tmp_path), timeout=120)
    plain = run_python([str(prog), hub], cwd=str(tmp_path), timeout=120)
    assert fast.returncode == 0, fast.stderr
    assert plain.returncode == 0, plain.stderr
    assert fast.stdout == "fastsel\n"
    # where fastsel serves the platform's own modules, those are fastsel's objects too
    assert plain.stdout == ("stdlib\n" if C else "fastsel\n")


MONKEY_PROG = textwrap.dedent("""
    import sys, time, warnings
    warnings.simplefilter("ignore")
    import eventlet
    eventlet.monkey_patch()
    import selectors, socket
    import fastsel
    # eventlet's green selectors: a stdlib selectors module run on green select
    assert selectors.DefaultSelector.__module__ == "selectors", selectors.DefaultSelector
    hub = eventlet.hubs.get_hub()
    a, b = socket.socketpair()
    def waiter():
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            return [key.fileobj is a for key, _ in sel.select(20)]
    start = time.monotonic()
    g = eventlet.spawn(waiter)
    eventlet.sleep(0.05)
    b.send(b"x")             # runs only while the waiter's select() yields to the hub
    assert g.wait() == [True]
    assert time.monotonic() - start < 15, "the green selector blocked the hub"
    print("fastsel" if type(getattr(hub, "poll", None)) is fastsel.epoll else "other")
""")


def test_eventlet_monkey_patch_keeps_green_selectors(tmp_path) -> None:
    """``eventlet.monkey_patch()`` under ``python -m fastsel``: eventlet makes
    its green ``selectors`` by importing the stdlib's afresh with its green
    ``select`` in ``sys.modules``; that module must stay on green select
    (fastsel's C selectors would block every greenthread), while the hub
    runs on fastsel."""
    require_eventlet()
    import select
    prog = tmp_path / "monkey_prog.py"
    prog.write_text(MONKEY_PROG, encoding="utf-8")
    fast = run_python(["-m", "fastsel", str(prog)], cwd=str(tmp_path), timeout=120)
    assert fast.returncode == 0, fast.stderr
    if hasattr(select, "epoll"):
        assert fast.stdout == "fastsel\n"
