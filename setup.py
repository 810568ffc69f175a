"""Build script for the _fastsel C extension.

Environment switches (all optional):
  FASTSEL_WERROR=1   turn compiler warnings into errors (CI sets it).
  FASTSEL_DEBUG=1    build with -O0 -g and assertions enabled.
  FASTSEL_SANITIZE=1 build with AddressSanitizer + UndefinedBehaviorSanitizer
                     (run with the ASan runtime preloaded: tools/sanitize.sh).
  FASTSEL_KQUEUE=<prefix>|system
                     Linux only, for testing: build kqueue.c against the
                     libkqueue compatibility library installed under <prefix>
                     (headers in <prefix>/include/kqueue, library in
                     <prefix>/lib, linked with an rpath), or with "system" the
                     one in /usr/include/kqueue.  BSD and macOS need nothing:
                     kqueue is detected natively there.
"""
import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

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
    link_args = []
    if _flag("FASTSEL_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        cflags += san
        link_args += san
    if sys.platform == "win32":
        raise SystemExit("fastsel supports POSIX systems only")
    include_dirs, link = [SRC], {}
    kqueue_prefix = os.environ.get("FASTSEL_KQUEUE", "")
    if kqueue_prefix not in ("", "0"):
        # kqueue emulated on Linux: compile kqueue.c and link libkqueue
        if kqueue_prefix == "system":
            include_dirs.append("/usr/include/kqueue")
        else:
            libdir = os.path.join(kqueue_prefix, "lib")
            include_dirs.append(
                os.path.join(kqueue_prefix, "include", "kqueue"))
            link = {"library_dirs": [libdir], "runtime_library_dirs": [libdir]}
        link["libraries"] = ["kqueue"]
        macros.append(("FASTSEL_KQUEUE_COMPAT", "1"))
    return Extension(
        "_fastsel",
        sources=sources,
        depends=depends,
        include_dirs=include_dirs,
        define_macros=macros,
        extra_compile_args=cflags,
        extra_link_args=link_args,
        **link,
    )


# The start-up hook's .pth (fastsel/_hook.py) must sit at the root of
# site-packages, outside the package, for `site` to run it: build_py puts it
# at the root of build_lib, so it lands in the wheel (and its RECORD, so
# `pip uninstall` removes it) and in every install made from the sdist.
PTH_SOURCE = os.path.join("src", "fastsel-autoinstall.pth")
PTH_NAME = "fastsel-autoinstall.pth"


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, PTH_SOURCE),
                       os.path.join(self.build_lib, PTH_NAME), preserve_mode=False)

    def get_outputs(self, *args, **kwargs):
        return super().get_outputs(*args, **kwargs) + [
            os.path.join(self.build_lib, PTH_NAME)]

    def get_source_files(self):  # what the sdist must carry
        return super().get_source_files() + [PTH_SOURCE]


setup(ext_modules=[extension()], cmdclass={"build_py": build_py_with_pth})
