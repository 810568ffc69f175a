"""setup.py: build switches always take effect, also over an old build/ tree;
the module exports one symbol; debug-only entry points exist only in debug builds.

pip builds in the source tree, so a ``build/`` left by an earlier build is
reused; setup.py must not hand back objects or a module compiled with other
settings.  Builds a copy of the sources twice with different switches and
checks the compiler really ran again with the new flags, then that a third
build with unchanged settings is reported up to date.

The extension is built with ``-fvisibility=hidden``: its dynamic symbol table
(read here from the ELF file itself, no tool needed) defines
``PyInit__fastsel`` and nothing else.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest

from _helpers import REPO

pytestmark = pytest.mark.c_impl

BUILD_FILES = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "src", "fastsel")
SWITCHES = ("FASTSEL_DEBUG", "FASTSEL_SANITIZE", "FASTSEL_KQUEUE", "FASTSEL_WERROR")


@pytest.fixture
def source_copy(tmp_path):
    if not all(os.path.exists(os.path.join(REPO, f)) for f in BUILD_FILES):
        pytest.skip(f"the build files are not beside the tests ({REPO}): "
                    "tests run outside a checkout or sdist")
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed (it is in the 'test' extra)")
    dest = tmp_path / "src-copy"
    dest.mkdir()
    for name in BUILD_FILES:
        src = os.path.join(REPO, name)
        if os.path.isdir(src):
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.so", "*.o"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def build(where, **switches: str) -> tuple:
    """``setup.py build_ext`` in ``where``: (compiler lines, built module
    bytes, build output, module path)."""
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env.update(switches)
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", "out"],
                          cwd=str(where), env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    compiles = [line for line in output.splitlines() if " -c src/_fastsel/" in line]
    built = glob.glob(os.path.join(str(where), "out", "fastsel", "_fastsel*"))
    assert len(built) == 1, built
    with open(built[0], "rb") as f:
        return compiles, f.read(), output, built[0]


def test_switch_change_rebuilds_and_same_switches_do_not(source_copy) -> None:
    plain, plain_so, _, plain_path = build(source_copy)
    assert plain and all("-O2" in line and "-g3" not in line for line in plain), plain
    # FASTSEL_DEBUG=1 over the same build/ tree: every object is compiled
    # again with the debug flags, and a different module comes out
    debug, debug_so, _, debug_path = build(source_copy, FASTSEL_DEBUG="1")
    nsources = len(glob.glob(os.path.join(str(source_copy), "src", "_fastsel", "*.c")))
    assert len(debug) == nsources, debug
    assert all("-O0" in line and "-g3" in line and "-UNDEBUG" in line for line in debug), debug
    assert debug_so != plain_so
    # -g3 puts the macro table in the module
    assert b".debug_macro" in debug_so and b".debug_macro" not in plain_so
    # the same settings again: nothing to do
    assert debug_entry_points(debug_path) == [True, True, True, True]
    assert exported_symbols(debug_path) == {("PyInit__fastsel", "FUNC")}
    again, again_so, output, _ = build(source_copy, FASTSEL_DEBUG="1")
    assert again == [] and again_so == debug_so, output
    # and back: the plain module again, not the debug one left in out/
    back, back_so, _, back_path = build(source_copy)
    assert len(back) == nsources and b".debug_macro" not in back_so
    assert debug_entry_points(back_path) == [False, False, False, False]


def debug_entry_points(module_path: str) -> list:
    """[_debug, has _debug_syscalls, has _debug_backend, _debug_backend
    opens the poll backend] for the module file, loaded in a child."""
    code = textwrap.dedent("""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("fastsel._fastsel", sys.argv[1])
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        opens = False
        if hasattr(m, "_debug_backend"):
            b = m._debug_backend("poll")
            opens = b.name == "poll" and b.wait(0) == []
            b.close()
        print(m._debug is True, hasattr(m, "_debug_syscalls"),
              hasattr(m, "_debug_backend"), opens)
    """)
    proc = subprocess.run([sys.executable, "-c", code, module_path], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [w == "True" for w in proc.stdout.split()]


# --- the dynamic symbol table ---------------------------------------------------

_SYM_TYPES = {0: "NOTYPE", 1: "OBJECT", 2: "FUNC", 3: "SECTION", 4: "FILE",
              5: "COMMON", 6: "TLS", 10: "IFUNC"}
SHT_DYNSYM = 11


def exported_symbols(path: str) -> set:
    """{(name, type)} of the symbols an ELF shared object exports: defined
    (section index not SHN_UNDEF), GLOBAL/WEAK/GNU_UNIQUE binding, default
    or protected visibility, read from its .dynsym section."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        pytest.skip(f"{path} is not an ELF file: this check reads ELF symbol tables "
                    "(Linux, BSD); a Mach-O module (macOS) is not read")
    is64, end = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        shdr, sym = end + "IIQQQQIIQQ", end + "IBBHQQ"
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        shdr, sym = end + "IIIIIIIIII", end + "IIIBBH"
    sections = [struct.unpack_from(shdr, data, shoff + i * shentsize) for i in range(shnum)]
    out = set()
    for sh in sections:
        if sh[1] != SHT_DYNSYM:
            continue
        offset, size, link, entsize = sh[4], sh[5], sh[6], sh[9]
        strtab = sections[link][4]
        for i in range(1, size // entsize):      # entry 0 is the null symbol
            fields = struct.unpack_from(sym, data, offset + i * entsize)
            if is64:
                name, info, other, shndx = fields[0], fields[1], fields[2], fields[3]
            else:
                name, info, other, shndx = fields[0], fields[3], fields[4], fields[5]
            bind, visibility = info >> 4, other & 3
            if shndx == 0 or bind not in (1, 2, 10) or visibility not in (0, 3):
                continue
            text = data[strtab + name:data.index(b"\0", strtab + name)].decode()
            out.add((text, _SYM_TYPES.get(info & 0xF, str(info & 0xF))))
    return out


def test_installed_module_exports_only_its_init_function() -> None:
    from fastsel import _fastsel
    exported = exported_symbols(_fastsel.__file__)
    assert exported == {("PyInit__fastsel", "FUNC")}, sorted(exported)
    nm = shutil.which("nm")
    if nm is not None:      # the reader agrees with binutils where it is there
        proc = subprocess.run([nm, "-D", "--defined-only", _fastsel.__file__],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        names = {line.split()[-1] for line in proc.stdout.splitlines() if line.strip()}
        assert names == {name for name, _ in exported}, proc.stdout


def test_symbol_reader_sees_what_an_export_table_holds() -> None:
    """The reader is not blind: the interpreter (its executable, linked with
    -export-dynamic, or its shared libpython) exports the C API."""
    import sysconfig
    paths = [os.path.realpath(sys.executable)]
    libdir, ldlib = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and ldlib and os.path.exists(os.path.join(libdir, ldlib)):
        paths.append(os.path.join(libdir, ldlib))
    exported = set().union(*(exported_symbols(p) for p in paths))
    assert {("PyList_New", "FUNC"), ("PyModule_FromDefAndSpec2", "FUNC"),
            ("_Py_NoneStruct", "OBJECT")} <= exported, (paths, len(exported))


def test_debug_entry_points_follow_the_build() -> None:
    """The installed module: `_debug` says whether it is a FASTSEL_DEBUG build,
    and the debug-only entry points exist exactly then."""
    from fastsel import _fastsel
    assert _fastsel._debug in (True, False)
    for name in ("_debug_syscalls", "_debug_backend", "_debug_hold", "_debug_held",
                 "_debug_release"):
        assert hasattr(_fastsel, name) is _fastsel._debug, name

