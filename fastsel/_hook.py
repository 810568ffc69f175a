"""Start-up hook: install fastsel in every Python process started with FASTSEL_AUTOINSTALL set.

The wheel puts ``fastsel-autoinstall.pth`` (source: src/fastsel-autoinstall.pth,
shipped by setup.py's build_py) at the root of site-packages.  ``site`` executes
its single line in every interpreter that processes that directory.  With the variable unset the line
only looks ``FASTSEL_AUTOINSTALL`` up in ``os.environ`` (``site`` has already
imported ``os``) and imports nothing.  With it set, the line imports this
module, which installs fastsel before the program's own code runs and keeps
the variable set, so the process's own children are covered too.  Importing
this module has no side effect: the .pth line calls :func:`start`.

The variable is how ``python -m fastsel`` (and ``fastsel.install(children=True)``)
reach multiprocessing's spawn and forkserver workers, ``ProcessPoolExecutor``,
``subprocess.run([sys.executable, ...])``, regrtest and pytest-xdist workers:
all of them start a new interpreter with the parent's environment.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: see _install.py
    from typing import Mapping

# The one name shared by the .pth line, this hook and fastsel.install().
ENV_VAR = "FASTSEL_AUTOINSTALL"
# The file the wheel ships at the root of site-packages.
PTH_NAME = "fastsel-autoinstall.pth"


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """The .pth line's test: the variable is set to something other than "" or "0"."""
    return environ.get(ENV_VAR, "") not in ("", "0")


def start() -> None:
    """Install fastsel in this process, covering its children; never raise.

    Where fastsel cannot serve (its C extension is not in use), the
    process simply runs on the stdlib.
    """
    if not requested():
        return
    try:
        import fastsel

        if getattr(fastsel, "implementation", "c") != "c":
            return
        fastsel.install(children=True)
    except Exception as exc:  # noqa: BLE001 - a start-up hook must not kill the program
        # one line, not site's multi-line "Error processing line ..." report
        sys.stderr.write(f"fastsel: not installed in this process: {exc!r}\n")
