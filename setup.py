"""Build script for the _fastsel C extension.

Environment switches (all optional):
  FASTSEL_WERROR=1   turn compiler warnings into errors (CI sets it).
  FASTSEL_DEBUG=1    build with -O0 -g and assertions enabled.
"""
import glob
import os
import sys

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join("src", "_fastsel")


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


def extension():
    sources = sorted(
        os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, SRC, "*.c"))
    )
    depends = sorted(
        os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, SRC, "*.h"))
    )
    cflags = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]
    macros = []
    if _flag("FASTSEL_WERROR"):
        cflags.append("-Werror")
    if _flag("FASTSEL_DEBUG"):
        cflags += ["-O0", "-g3", "-UNDEBUG"]
    else:
        cflags.append("-O2")
    if sys.platform == "win32":
        raise SystemExit("fastsel supports POSIX systems only")
    return Extension(
        "_fastsel",
        sources=sources,
        depends=depends,
        include_dirs=[SRC],
        define_macros=macros,
        extra_compile_args=cflags,
    )


setup(ext_modules=[extension()])
