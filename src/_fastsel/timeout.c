/* timeout.c - the one home of time: timeout conversion, deadlines, and the
 * PEP 475 retry loop every kernel wait goes through. */
#include "fastsel.h"
#include "pyver.h"
#include "timeout.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

void
fs_timeout_type_error(PyObject *obj, const char *legacy)
{
    if (fs_ver->timeout_rule == FS_TIMEOUT_REAL) {
#ifdef FS_PY_HAVE_FORMAT_T
        PyErr_Format(PyExc_TypeError,
                     "timeout must be a real number or None, not %T", obj);
#else
        /* no row before 3.13 has this rule */
        PyErr_Format(PyExc_TypeError,
                     "timeout must be a real number or None, not %.200s",
                     Py_TYPE(obj)->tp_name);
#endif
        return;
    }
    PyErr_SetString(PyExc_TypeError, legacy);
}

void
fs_kqueue_timeout_error(PyObject *obj)
{
    if (fs_ver->timeout_rule == FS_TIMEOUT_REAL) {
        /* 3.15 lets OverflowError and ValueError through (gh-154836) */
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            fs_timeout_type_error(obj, NULL);
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

static void
time_overflow(void)
{
    PyErr_SetString(PyExc_OverflowError, fs_ver->time_int_overflow);
}

static void
time_t_overflow(void)
{
    PyErr_SetString(PyExc_OverflowError, fs_pyver_float_overflow());
}

static double
round_double(double x, fs_round_t round_mode)
{
    /* volatile keeps x87 excess precision out of the comparison */
    volatile double d = x;
    switch (round_mode) {
    case FS_ROUND_CEILING:
        return ceil(d);
    case FS_ROUND_UP:
    default:
        return d >= 0 ? ceil(d) : floor(d);
    }
}

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
            time_t_overflow();
            return -1;
        }
        *ns = (int64_t)d;
        return 0;
    }
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            time_overflow();
        }
        return -1;
    }
    if ((v > 0 && v > INT64_MAX / unit_to_ns)
        || (v < 0 && v < INT64_MIN / unit_to_ns)) {
        time_overflow();
        return -1;
    }
    *ns = (int64_t)v * unit_to_ns;
    return 0;
}

int
fs_ns_from_seconds_object(PyObject *obj, fs_round_t round_mode, int64_t *ns)
{
    return ns_from_object(obj, round_mode, 1000000000, ns);
}

int
fs_ns_from_ms_object(PyObject *obj, fs_round_t round_mode, int64_t *ns)
{
    return ns_from_object(obj, round_mode, 1000000, ns);
}

int64_t
fs_monotonic_ns(void)
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
    int64_t now = fs_monotonic_ns();
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
            timeout_ns = deadline - fs_monotonic_ns();
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
