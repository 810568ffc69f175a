"""Build script: the C extension fastsel._fastsel where it is the better choice.

Where the extension is built is decided by fastsel/_impl.py (the same rule
``import fastsel`` applies): CPython built with the GIL on Linux, macOS or BSD.
Everywhere else (PyPy, a free-threaded CPython, Windows, other systems) no
extension is built and the wheel is pure Python: ``import fastsel`` then serves
the platform's own select/selectors.
An ``optional`` extension would not do: on PyPy it would build fine and be
slower than the stdlib, and a failed build would hide real breakage.

Environment switches (all optional, for the C build):
  FASTSEL_WERROR=1   turn compiler warnings into errors (CI sets it).
  FASTSEL_DEBUG=1    build with -O0 -g3 and assertions enabled.
  FASTSEL_SANITIZE=1 build with AddressSanitizer + UndefinedBehaviorSanitizer
                     (run with the ASan runtime preloaded: tools/sanitize.sh).
  FASTSEL_KQUEUE=<prefix>|system
                     Linux only, for testing: build kqueue.c against the
                     libkqueue compatibility library installed under <prefix>
                     (headers in <prefix>/include/kqueue, library in
                     <prefix>/lib, linked with an rpath), or with "system" the
                     one in /usr/include/kqueue.  BSD and macOS need nothing:
                     kqueue is detected natively there.

Switches always take effect, also with an old build/ directory in the tree
(pip builds in the source tree): objects go to a build_temp subdirectory
named by a hash of everything that shapes the compiled code, and a module
built with other settings is rebuilt rather than reported up to date.
"""
import glob
import hashlib
import importlib.util
import json
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel  # setuptools >= 70.1
from setuptools.command.build_py import build_py
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join("src", "_fastsel")
# compiler-related environment that changes the objects distutils produces
COMPILER_ENV = ("CC", "CFLAGS", "CPPFLAGS", "LDFLAGS", "LDSHARED", "ARCHFLAGS",
                "CCSHARED", "AR", "ARFLAGS")


def _load_rule():
    """fastsel/_impl.py, by path: the package itself needs the extension."""
    path = os.path.join(HERE, "fastsel", "_impl.py")
    spec = importlib.util.spec_from_file_location("_fastsel_build_rule", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


def _sources(pattern):
    return sorted(os.path.relpath(p, HERE)
                  for p in glob.glob(os.path.join(HERE, SRC, pattern)))


def extension():
    # -fvisibility=hidden: the module exports PyInit__fastsel alone (marked
    # visible by PyMODINIT_FUNC); the internal fs_* symbols stay inside it
    cflags = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
              "-fvisibility=hidden"]
    macros = []
    if _flag("FASTSEL_WERROR"):
        cflags.append("-Werror")
    if _flag("FASTSEL_DEBUG"):
        cflags += ["-O0", "-g3", "-UNDEBUG"]
        macros.append(("FS_DEBUG", "1"))
    else:
        cflags.append("-O2")
    link_args = []
    if _flag("FASTSEL_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        cflags += san
        link_args += san
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
        "fastsel._fastsel",
        sources=_sources("*.c"),
        depends=_sources("*.h"),
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


def build_key(ext, compiler_cmd=()):
    """Hash of every setting that changes the compiled module."""
    settings = {
        attr: getattr(ext, attr, None)
        for attr in ("sources", "include_dirs", "define_macros", "undef_macros",
                     "extra_compile_args", "extra_link_args", "libraries",
                     "library_dirs", "runtime_library_dirs")
    }
    settings["env"] = {k: os.environ.get(k) for k in COMPILER_ENV}
    settings["compiler"] = list(compiler_cmd)
    settings["python"] = [sys.version, sysconfig.get_config_var("EXT_SUFFIX")]
    blob = json.dumps(settings, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class BuildExt(build_ext):
    """build_ext whose objects and up-to-date check follow the settings."""

    def build_extension(self, ext):
        compiler_cmd = getattr(self.compiler, "compiler_so", None) or ()
        key = build_key(ext, compiler_cmd)
        ext_path = os.path.abspath(self.get_ext_fullpath(ext.name))
        base_temp = self.build_temp
        # one stamp per built module file: the key it was built with
        stamp = os.path.join(base_temp, "fastsel-stamps",
                             hashlib.sha256(ext_path.encode()).hexdigest()[:16])
        try:
            with open(stamp, encoding="utf-8") as f:
                built_with = f.read().strip()
        except OSError:
            built_with = None
        saved_force = self.force
        if built_with != key or not os.path.exists(ext_path):
            self.force = True
        self.build_temp = os.path.join(base_temp, "flags-" + key)
        try:
            super().build_extension(ext)
        finally:
            self.build_temp = base_temp
            self.force = saved_force
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "w", encoding="utf-8") as f:
            f.write(key + "\n")


class BdistWheel(bdist_wheel):
    """A wheel without the extension is still only for the interpreter that
    built it: tagged e.g. pp39-none-any, never py3-none-any, so it cannot be
    picked by a CPython that should get (or build) the C extension.  A
    free-threaded CPython's is tagged with its ABI and platform
    (cp313-cp313t-linux_x86_64): cp313-none-any would also suit the GIL
    build of 3.13, which must get the extension (pip's wheel cache holds the
    wheels of both builds under one key)."""

    def get_tag(self):
        tag = super().get_tag()
        if self.distribution.has_ext_modules():
            return tag
        impl = {"cpython": "cp", "pypy": "pp"}.get(sys.implementation.name)
        if impl is None:
            return tag
        version = f"{impl}{sys.version_info[0]}{sys.version_info[1]}"
        if impl == "cp" and _load_rule().gil_disabled():
            plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
            return (version, version + "t", plat)
        return (version, "none", "any")


# Commands: more can be added here (setup(cmdclass=CMDCLASS) below).
CMDCLASS = {"build_ext": BuildExt, "build_py": build_py_with_pth,
            "bdist_wheel": BdistWheel}


def ext_modules():
    rule = _load_rule()
    if rule.c_extension_supported():
        return [extension()]
    print(f"fastsel: building no C extension ({rule.why_not()}); "
          "import fastsel will serve the platform's select/selectors",
          file=sys.stderr)
    return []


setup(ext_modules=ext_modules(), cmdclass=CMDCLASS)
