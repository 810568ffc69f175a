"""python -m fastsel: run a program with ``select``/``selectors`` served by fastsel.

    python -m fastsel [--no-children] PROGRAM.py [ARGS...]
    python -m fastsel [--no-children] -m MODULE [ARGS...]

``fastsel.install(children=True)`` is called, then the program runs as under
plain ``python``: its own ``sys.argv``, ``__name__ == "__main__"``,
``sys.path[0]`` (the script's directory, or the current directory with
``-m``), its exit status, and a traceback that starts at the program's own
code.  The Python processes the program starts (multiprocessing workers,
``subprocess`` running ``sys.executable``, test-runner workers) run on fastsel
too, through the FASTSEL_AUTOINSTALL variable and the start-up hook
(fastsel/_hook.py); ``--no-children`` keeps fastsel to this one process.
"""
from __future__ import annotations

import os
import runpy
import signal
import sys
from types import TracebackType
from typing import Any, Callable, List, Optional

USAGE = """\
usage: python -m fastsel [--no-children] PROGRAM.py [ARGS...]
       python -m fastsel [--no-children] -m MODULE [ARGS...]
       python -m fastsel bench [--quick | --full] [--help]

Runs PROGRAM.py (or MODULE, like `python -m MODULE`) with `import select` and
`import selectors` served by fastsel (see fastsel.install()), and so do the Python
processes it starts with its environment (FASTSEL_AUTOINSTALL=1).

  --no-children   serve only this process; children run on the stdlib"""


def _user_traceback(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """Drop the leading frames of this launcher and runpy."""
    ours = globals()
    while tb is not None and (tb.tb_frame.f_globals is ours
                              or tb.tb_frame.f_globals.get("__name__") == "runpy"):
        tb = tb.tb_next
    return tb


def _die_like_python(exc: BaseException) -> None:
    """Report an uncaught exception the way the interpreter does, then exit."""
    tb = _user_traceback(exc.__traceback__)
    # the display reads the exception's own __traceback__, so trim that
    exc = exc.with_traceback(tb)
    sys.excepthook(type(exc), exc, tb)
    if isinstance(exc, KeyboardInterrupt):
        # CPython exits through SIGINT's default action so the parent sees it
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
    sys.exit(1)


def main(argv: Optional[List[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "bench":
        # `python -m fastsel bench ...`: the benchmark suite (fastsel/_bench)
        from fastsel._bench import main as bench_main
        sys.exit(bench_main(args[1:]))
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)

    children = True
    if args[0] == "--no-children":
        children = False
        args = args[1:]
        if not args:
            print("Argument expected after --no-children\n" + USAGE, file=sys.stderr)
            sys.exit(2)

    import fastsel
    from fastsel._hook import ENV_VAR

    if not children:
        # an inherited FASTSEL_AUTOINSTALL too: the children get the stdlib
        os.environ.pop(ENV_VAR, None)
    run: Callable[[], Any]
    if args[0] == "-m":
        if len(args) < 2:
            print("Argument expected for the -m option\n" + USAGE, file=sys.stderr)
            sys.exit(2)
        module = args[1]
        import importlib.util
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            print(f"{sys.executable}: No module named {module}", file=sys.stderr)
            sys.exit(1)
        sys.argv[:] = [module] + args[2:]     # run_module puts the file in argv[0]
        fastsel.install(children=children)
        run = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa: E731
    else:
        if args[0].startswith("-"):
            print(f"unknown option {args[0]}\n" + USAGE, file=sys.stderr)
            sys.exit(2)
        path = args[0]
        if not os.path.exists(path):
            # CPython quotes the path (repr), PyPy prints it as it is
            shown = os.path.abspath(path)
            if sys.implementation.name == "cpython":
                shown = repr(shown)
            print(f"{sys.executable}: can't open file {shown}: "
                  "[Errno 2] No such file or directory", file=sys.stderr)
            sys.exit(2)
        sys.argv[:] = args
        # `python prog.py` puts the script's directory first on sys.path,
        # where `python -m fastsel` put the current directory.
        script_dir = os.path.dirname(os.path.realpath(path))
        if sys.path and sys.path[0] in ("", os.getcwd()):
            sys.path[0] = script_dir
        else:
            sys.path.insert(0, script_dir)
        fastsel.install(children=children)
        run = lambda: runpy.run_path(path, run_name="__main__")  # noqa: E731

    try:
        run()
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported like the interpreter
        _die_like_python(exc)


if __name__ == "__main__":
    main()
