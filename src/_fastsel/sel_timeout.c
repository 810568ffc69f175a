/* sel_timeout.c - select()'s per-kind timeout rules: each stdlib class
 * converts its timeout its own way before the poller converts it again;
 * the conversion primitives and texts come from timeout.h. */
#include "selector.h"

#include <limits.h>
#include <math.h>

/* obj * k, as Python multiplies them (the general paths). */
static PyObject *
times(PyObject *obj, double k)
{
    PyObject *kobj = PyFloat_FromDouble(k);
    PyObject *r = kobj != NULL ? PyNumber_Multiply(obj, kobj) : NULL;
    Py_XDECREF(kobj);
    return r;
}

/* `timeout <op> 0`, or `0 <op> timeout` (zero_first), as Python compares. */
static int
compare_zero(PyObject *timeout, int op, int zero_first)
{
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) {
        return -1;
    }
    int r = zero_first ? PyObject_RichCompareBool(zero, timeout, op)
                       : PyObject_RichCompareBool(timeout, zero, op);
    Py_DECREF(zero);
    return r;
}

static int
too_large(void)
{
    PyErr_SetString(PyExc_OverflowError, "timeout is too large");
    return -1;
}

/* Epoll/Poll, the fast path of an exact float or an int within long: 0
 * with *ns = 0 when `timeout <= 0`, 1 with *ms = ceil(timeout * 1e3) when
 * that is finite; -1 leaves the rest (NaN, infinities, other types, ints
 * past long) to ceil_ms_general(), which gives the stdlib's errors. */
static int
fast_ceil_ms(PyObject *timeout, int64_t *ns, double *ms)
{
    double d;
    if (PyFloat_CheckExact(timeout)) {
        d = PyFloat_AS_DOUBLE(timeout);
    }
    else if (PyLong_CheckExact(timeout)) {
        int overflow;       /* below LONG_MIN, d is -1: <= 0 as well */
        d = (double)PyLong_AsLongAndOverflow(timeout, &overflow);
        if (overflow > 0) {
            return -1;
        }
    }
    else {
        return -1;
    }
    if (d <= 0) {
        *ns = 0;
        return 0;
    }
    *ms = ceil(d * 1e3);
    return isfinite(*ms) ? 1 : -1;
}

/* Epoll/Poll, any timeout object: `timeout <= 0` is 0; else
 * math.ceil(timeout * 1e3), times scale (epoll: 1e-3, back to seconds), is
 * what the poller's rule converts (positive, unless a custom __ceil__ says
 * otherwise: < 0 then waits for ever).  0, or -1 with an exception. */
static int
ceil_ms_general(const fs_timeout_spec *spec, PyObject *timeout, double scale,
                int64_t *ns)
{
    int le = compare_zero(timeout, Py_LE, 0);
    if (le != 0) {              /* an error, or timeout <= 0 */
        *ns = 0;
        return le < 0 ? -1 : 0;
    }
    PyObject *m = times(timeout, 1e3);
    PyObject *math = m != NULL ? PyImport_ImportModule("math") : NULL;
    PyObject *c = math != NULL ? PyObject_CallMethod(math, "ceil", "O", m)
                               : NULL;
    Py_XDECREF(math);
    Py_XDECREF(m);
    if (c != NULL && scale != 1.0) {
        PyObject *scaled = times(c, scale);
        Py_DECREF(c);
        c = scaled;
    }
    int64_t n = 0;
    int rc = c != NULL ? fs_timeout_arg(c, spec, &n) : -1;
    Py_XDECREF(c);
    *ns = n < 0 ? -1 : n;
    return rc;
}

/* EpollSelector: epoll.poll(math.ceil(timeout * 1e3) * 1e-3) */
int
sel_epoll_timeout(const sel_kind *k, PyObject *timeout, int64_t *ns)
{
    double ms;
    int fast = fast_ceil_ms(timeout, ns, &ms);
    if (fast == 0) {
        return 0;
    }
    if (fast > 0 && ms * 1e-3 < 9e9) {
        /* _PyTime_FromSecondsObject + _PyTime_AsMilliseconds(CEILING) */
        volatile double t = ms * 1e-3 * 1e9;
        int64_t n = (int64_t)ceil(t);
        if (fs_ns_divide(n, 1000000, FS_ROUND_CEILING) > INT_MAX) {
            return too_large();
        }
        *ns = n;
        return 0;
    }
    /* out of range: let the general path produce the exact error */
    return ceil_ms_general(k->poller_timeout, timeout, 1e-3, ns);
}

/* PollSelector: poll.poll(math.ceil(timeout * 1e3)) */
int
sel_poll_timeout(const sel_kind *k, PyObject *timeout, int64_t *ns)
{
    double ms;
    int fast = fast_ceil_ms(timeout, ns, &ms);
    if (fast == 0) {
        return 0;
    }
    if (fast > 0 && ms <= (double)INT_MAX) {
        *ns = (int64_t)ms * 1000000;
        return 0;
    }
    fs_timeout_spec spec = *k->poller_timeout;
    spec.int_ms = !fs_poll_timeout_unbounded();
    return ceil_ms_general(&spec, timeout, 1.0, ns);
}

/* SelectSelector / KqueueSelector: max(timeout, 0) seconds */
int
sel_max0_timeout(const sel_kind *k, PyObject *timeout, int64_t *ns)
{
    int zero;                   /* the result is 0 seconds */
    if (PyFloat_CheckExact(timeout)) {
        zero = PyFloat_AS_DOUBLE(timeout) < 0;
    }
    else if (PyLong_CheckExact(timeout)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(timeout, &overflow);
        zero = overflow < 0 || (!overflow && v <= 0);
    }
    else {
        /* max() keeps the first item unless a later one is greater */
        zero = compare_zero(timeout, Py_GT, 1);
        if (zero < 0) {
            return -1;
        }
    }
    if (zero) {
        *ns = 0;
        return 0;
    }
    return fs_timeout_arg(timeout, k->poller_timeout, ns);
}
