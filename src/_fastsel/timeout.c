/* timeout.c - the one home of time: timeout conversion, deadlines, and the
 * PEP 475 retry loop every kernel wait goes through. */
#include "fastsel.h"
#include "pyver.h"
#include "timeout.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <time.h>

/* Replace a TypeError from a timeout's conversion with the running
 * version's text: `legacy` up to 3.14 (each poller has its own), the
 * shared "timeout must be a real number or None, not <type>" after. */
static void
timeout_type_error(PyObject *obj, const char *legacy)
{
    /* only rows of 3.13+, whose headers know %T, have this rule */
#ifdef FS_PY_HAVE_FORMAT_T
    if (fs_ver->timeout_rule == FS_TIMEOUT_REAL) {
        PyErr_Format(PyExc_TypeError,
                     "timeout must be a real number or None, not %T", obj);
        return;
    }
#else
    (void)obj;
#endif
    PyErr_SetString(PyExc_TypeError, legacy);
}

/* kqueue.control()'s rule: up to 3.14 every conversion failure becomes
 * "timeout argument must be a number or None, got <name>"; 3.15 rewrites
 * only a TypeError, as timeout_type_error. */
static void
kqueue_timeout_error(PyObject *obj)
{
    if (fs_ver->timeout_rule == FS_TIMEOUT_REAL) {
        /* 3.15 lets OverflowError and ValueError through (gh-154836) */
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            timeout_type_error(obj, NULL);
        }
        return;
    }
    /* up to 3.14 any failure becomes this, with the type's last name */
    const char *name = Py_TYPE(obj)->tp_name;
    const char *dot = strrchr(name, '.');
    PyErr_Format(PyExc_TypeError,
                 "timeout argument must be a number or None, got %.200s",
                 dot != NULL ? dot + 1 : name);
}

static double
round_double(double x, fs_round_t round_mode)
{
    /* volatile keeps x87 excess precision out of the comparison */
    volatile double d = x;
    if (round_mode == FS_ROUND_CEILING || d >= 0) {
        return ceil(d);
    }
    return floor(d);                /* FS_ROUND_UP: away from zero */
}

/* obj in units of unit_to_ns (seconds or milliseconds: int or float; 3.15:
 * anything with __float__) to nanoseconds, as _PyTime_FromSecondsObject
 * and _PyTime_FromMillisecondsObject do, with the running version's
 * exceptions and texts. */
static int
ns_from_object(PyObject *obj, fs_round_t round_mode, int64_t unit_to_ns,
               int64_t *ns)
{
    int is_float = PyFloat_Check(obj);
    double d = 0.0;
    if (is_float) {
        d = PyFloat_AS_DOUBLE(obj);
    }
    else if (fs_ver->timeout_rule == FS_TIMEOUT_REAL && !PyLong_Check(obj)
             && !PyIndex_Check(obj)) {
        /* 3.15: whatever __float__ gives (a TypeError here is the
         * caller's "real number" error) */
        d = PyFloat_AsDouble(obj);
        if (d == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        is_float = 1;
    }
    if (is_float) {
        if (isnan(d)) {
            PyErr_SetString(PyExc_ValueError,
                            "Invalid value NaN (not a number)");
            return -1;
        }
        d = round_double(d * (double)unit_to_ns, round_mode);
        if (!((double)INT64_MIN <= d && d < -(double)INT64_MIN)) {
            PyErr_SetString(PyExc_OverflowError, fs_pyver_float_overflow());
            return -1;
        }
        *ns = (int64_t)d;
        return 0;
    }
    long long v = PyLong_AsLongLong(obj);
    int failed = v == -1 && PyErr_Occurred();
    if (failed && !PyErr_ExceptionMatches(PyExc_OverflowError)) {
        return -1;
    }
    if (failed || (v > 0 && v > INT64_MAX / unit_to_ns)
        || (v < 0 && v < INT64_MIN / unit_to_ns)) {
        PyErr_SetString(PyExc_OverflowError, fs_ver->time_int_overflow);
        return -1;
    }
    *ns = (int64_t)v * unit_to_ns;
    return 0;
}

/* epoll: seconds, its milliseconds (towards +inf) checked against a C int.
 * None is INT64_MIN: a negative timeout above -1 ms rounds to 0 ms and does
 * not block, any other blocks. */
const fs_timeout_spec fs_epoll_timeout = {
    1000000000, INT64_MIN, "timeout must be an integer or None", NULL,
    1, FS_ROUND_CEILING,
};

/* poll: milliseconds (< 0: none) */
const fs_timeout_spec fs_poll_timeout = {
    1000000, -1, "timeout must be an integer or None", NULL, 1, FS_ROUND_UP,
};

/* select, kqueue: seconds (None: -1), rounded away from zero, so any
 * negative has tv_sec < 0; kqueue has its own error rule */
const fs_timeout_spec fs_select_timeout = {
    1000000000, -1, "timeout must be a float or None",
    "timeout must be non-negative", 0, FS_ROUND_UP,
};

const fs_timeout_spec fs_kqueue_timeout = {
    1000000000, -1, NULL, "timeout must be positive or None", 0, FS_ROUND_UP,
};

int
fs_timeout_arg(PyObject *obj, const fs_timeout_spec *spec, int64_t *ns)
{
    *ns = spec->none_ns;
    if (obj == Py_None) {
        return 0;
    }
    if (ns_from_object(obj, FS_ROUND_UP, spec->unit_ns, ns) < 0) {
        if (spec->type_text == NULL) {
            kqueue_timeout_error(obj);
        }
        else if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            timeout_type_error(obj, spec->type_text);
        }
        return -1;
    }
    if (spec->negative_text != NULL && *ns < 0) {
        PyErr_SetString(PyExc_ValueError, spec->negative_text);
        return -1;
    }
    int64_t ms = fs_ns_divide(*ns, 1000000, spec->ms_round);
    if (spec->int_ms && (ms < INT_MIN || ms > INT_MAX)) {
        PyErr_SetString(PyExc_OverflowError, "timeout is too large");
        return -1;
    }
    return 0;
}

static int64_t
monotonic_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer on POSIX systems */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
fs_deadline(int64_t timeout_ns)
{
    /* PyTime_t allows timeouts of centuries: saturate rather than wrap */
    int64_t now = monotonic_ns();
    return timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
}

int
fs_wait_retry_failed(fs_wait_fn fn, void *ctx, int64_t timeout_ns,
                     int64_t deadline, int flags, int (*stop)(void *ctx),
                     int err)
{
    for (;;) {
        if (err != EINTR) {
            fs_errno_error(err);
            return -1;
        }
        /* PEP 475: run the handlers, then wait for what is left */
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if (stop != NULL && stop(ctx)) {
            return 0;
        }
        if (timeout_ns == 0) {
            return 0;
        }
        if (timeout_ns > 0) {
            timeout_ns = deadline - monotonic_ns();
            if (timeout_ns < 0) {
                return 0;
            }
        }
        int n = fs_wait_once(fn, ctx, timeout_ns, flags, &err);
        if (n >= 0) {
            return n;
        }
    }
}
