# fastsel - two entry points:
#   make run    build the sdist and a wheel from it into a virtualenv, run the demo (a
#               select() echo server on 127.0.0.1 against a few concurrent clients), then
#               the quick benchmark (python -m fastsel bench --quick, under a minute)
#   make test   sdist -> wheel per interpreter -> auditwheel -> fresh venv -> the sdist's
#               tests, on every CPython >= 3.9 and PyPy found, CPython 3.14/3.15 (+ debug
#               builds) from the Debian-unstable root, aarch64 and s390x under qemu-user,
#               and the kqueue build (.ci/matrix); release artefacts in .venv/ci/release
#
# Everything goes under .venv/ (see .ci/matrix), built with -Werror.
# Knobs: PYTHON=... (interpreter for `make run`), PYTEST_ARGS=... (extra arguments for
# pytest), INTERPRETERS="/path/python ..." (override host discovery).

SHELL := /bin/bash
PYTHON ?= python3
PYTEST_ARGS ?=
export FASTSEL_WERROR ?= 1

.PHONY: run test clean

run:
	@PYTHON="$(PYTHON)" bash .ci/matrix run

test:
	@PYTEST_ARGS="$(PYTEST_ARGS)" bash .ci/matrix test

clean:
	rm -rf .venv build *.egg-info
