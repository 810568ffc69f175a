#!/usr/bin/env bash
# Build fastsel._fastsel with AddressSanitizer + UndefinedBehaviorSanitizer, as a
# FASTSEL_DEBUG=1 build (C asserts on, and the debug-only entry points that the
# debug_build tests drive, e.g. tests/test_backends.py), and run the
# whole pytest suite against that build with the sanitizer runtimes preloaded
# (the interpreter itself is not instrumented, so the runtime must be loaded
# before anything else).  Fails on a test failure or on any sanitizer report,
# including one from a child process (reports go to per-process log files).
#
#   tools/sanitize.sh [pytest args...]        default: the whole tests/ dir
#
# Knobs: PYTHON (default python3), SANITIZE_BUILD (build dir, default
# /tmp/fastsel-asan-<python version>), SANITIZE_TIMEOUT (seconds, default 900:
# the -O0 debug build under ASan took 300-400 s for ~2040 tests on a loaded
# 2-core machine), SANITIZE_TEST_TIMEOUT (per test, default 300: a hung test
# fails with every thread's stack instead of stopping the whole run silently).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
BUILD="${SANITIZE_BUILD:-/tmp/fastsel-asan-$VER}"
LOGS="$BUILD/reports"
TIMEOUT="${SANITIZE_TIMEOUT:-900}"

ASAN_RT="$(gcc -print-file-name=libasan.so)"
UBSAN_RT="$(gcc -print-file-name=libubsan.so)"
for rt in "$ASAN_RT" "$UBSAN_RT"; do
    [[ -e "$rt" ]] || { echo "sanitize.sh: runtime $rt not found" >&2; exit 2; }
done

echo "==> building fastsel._fastsel with ASan+UBSan ($PYTHON, $VER) into $BUILD"
rm -rf "$BUILD"
mkdir -p "$BUILD/t" "$LOGS"
# The whole package (build, not build_ext): the extension lives inside it,
# so $BUILD/fastsel must be a complete package to shadow an installed one.
FASTSEL_SANITIZE=1 FASTSEL_DEBUG=1 FASTSEL_WERROR=1 "$PYTHON" setup.py -q build \
    --build-lib "$BUILD" --build-temp "$BUILD/t" >"$BUILD/build.log" 2>&1 \
    || { cat "$BUILD/build.log" >&2; exit 2; }
# The extension must really be instrumented.
# (no grep -q: with pipefail, nm's SIGPIPE would fail the check)
nm -D "$BUILD"/fastsel/_fastsel*.so | grep __asan_ >/dev/null \
    || { echo "sanitize.sh: $BUILD has no ASan symbols" >&2; exit 2; }
# ... and be the debug build (its tests would skip in a release build).
grep -a _debug_backend "$BUILD"/fastsel/_fastsel*.so >/dev/null \
    || { echo "sanitize.sh: $BUILD was not built with FASTSEL_DEBUG=1" >&2; exit 2; }

if [[ $# -eq 0 ]]; then
    set -- tests
fi

echo "==> pytest $* (sanitizers preloaded; reports in $LOGS)"
# detect_leaks=0: CPython keeps memory alive at exit on purpose; leaks are
# measured by tests/test_leaks.py instead.  PYTHONMALLOC=malloc sends every
# Python allocation through ASan's malloc, so overruns into objects are seen.
# allocator_may_return_null=1: an impossible request (epoll.poll(maxevents=
# 2**31-1) in the stdlib too) fails with NULL -> MemoryError, as with glibc.
# tests/test_leaks.py runs its loops short and without judging memory growth
# (ASan's quarantine holds freed memory): the loops still run every path.
# pytest runs in $BUILD: the working directory comes first on sys.path (of
# python -m pytest and of every `python -c` child a test starts), and the
# checkout's fastsel/ has no extension in it; $BUILD/fastsel is the build.
# Paths among the arguments are the checkout's, made absolute.
args=()
for a in "$@"; do
    case "$a" in
        --ignore=*|--deselect=*)
            p="${a#*=}"; [[ "$p" == /* ]] || p="$ROOT/$p"; args+=("${a%%=*}=$p") ;;
        -*) args+=("$a") ;;
        *) if [[ "$a" != /* && -e "$ROOT/${a%%::*}" ]]; then args+=("$ROOT/$a"); else args+=("$a"); fi ;;
    esac
done
cd "$BUILD"
rc=0
env LD_PRELOAD="$ASAN_RT $UBSAN_RT${LD_PRELOAD:+ $LD_PRELOAD}" \
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:allocator_may_return_null=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$LOGS/asan" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$LOGS/ubsan" \
    PYTHONMALLOC=malloc \
    FASTSEL_LEAK_N="${FASTSEL_LEAK_N:-2000}" FASTSEL_LEAK_METERS=0 \
    PYTHONFAULTHANDLER=1 \
    PYTHONPATH="$BUILD${PYTHONPATH:+:$PYTHONPATH}" \
    timeout "$TIMEOUT" "$PYTHON" -m pytest -q -p no:cacheprovider --rootdir "$ROOT" \
        --timeout="${SANITIZE_TEST_TIMEOUT:-300}" --timeout-method=thread "${args[@]}" || rc=$?

reports=("$LOGS"/*)
if [[ -e "${reports[0]}" ]]; then
    echo "==> sanitizer reports:" >&2
    for f in "${reports[@]}"; do
        echo "--- $f" >&2
        cat "$f" >&2
    done
    exit 1
fi
if [[ $rc -ne 0 ]]; then
    echo "==> pytest failed under the sanitizers (exit $rc)" >&2
    exit "$rc"
fi
echo "==> sanitizers: clean"
