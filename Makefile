# fastsel - two entry points:
#   make run    build fastsel into a virtualenv, run the demo (a select() echo
#               server on 127.0.0.1 against a few concurrent clients), then the
#               quick benchmark (python -m fastsel bench --quick, under a minute)
#   make test   build and test the installed package on every CPython >= 3.9
#               found (pyenv versions and the default python3), one venv each
#
# Both create their virtualenvs under .venv/<version>/ and install with pip
# (non-editable: the installed package is what runs), built with -Werror.
# Knobs: PYTHON=... (interpreter for `make run`), PYTEST_ARGS=... (extra
# arguments for pytest), INTERPRETERS="/path/python ..." (override discovery).

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
