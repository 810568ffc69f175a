/* sel_timeout.c - select()'s per-kind timeout rules: each stdlib class
 * converts its timeout its own way before the poller converts it again;
 * the conversion primitives and texts come from timeout.h. */
#include "selector.h"

#include <limits.h>
#include <math.h>

/* Epoll/Poll: `math.ceil(timeout * 1e3)` for a positive timeout, as a
 * Python int (slow, general path). */
static PyObject *
ceil_ms_object(PyObject *timeout)
{
    PyObject *k = PyFloat_FromDouble(1e3);
    if (k == NULL) {
        return NULL;
    }
    PyObject *m = PyNumber_Multiply(timeout, k);
    Py_DECREF(k);
    if (m == NULL) {
        return NULL;
    }
    PyObject *math = PyImport_ImportModule("math");
    PyObject *c = math ? PyObject_CallMethod(math, "ceil", "O", m) : NULL;
    Py_XDECREF(math);
    Py_DECREF(m);
    return c;
}

/* A TypeError from the time conversion of obj (what the poller got) gets
 * the poller's text (fs_timeout_type_error); other errors pass unchanged.
 * This one is select.select()'s, for the kind table. */
void
sel_select_timeout_error(PyObject *timeout)
{
    if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        fs_timeout_type_error(timeout, "timeout must be a float or None");
    }
}

static int
too_large(void)
{
    PyErr_SetString(PyExc_OverflowError, "timeout is too large");
    return -1;
}

/* Epoll/Poll, any timeout object: 0 with *ns = 0 when `timeout <= 0`,
 * else 1 with *c = math.ceil(timeout * 1e3); -1 with an exception. */
static int
poller_ceil_ms(PyObject *timeout, int64_t *ns, PyObject **c)
{
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) {
        return -1;
    }
    int le = PyObject_RichCompareBool(timeout, zero, Py_LE);
    Py_DECREF(zero);
    if (le < 0) {
        return -1;
    }
    if (le) {
        *ns = 0;
        return 0;
    }
    *c = ceil_ms_object(timeout);
    return *c == NULL ? -1 : 1;
}

/* After the poller's conversion to n nanoseconds (rc < 0: it failed): the
 * poller's TypeError text and (int_ms) its C int check of the
 * milliseconds. */
static int
poller_ms_result(PyObject *obj, int rc, int64_t n, fs_round_t round,
                 int int_ms, int64_t *ns)
{
    if (rc < 0) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            fs_timeout_type_error(obj, "timeout must be an integer or None");
        }
        return -1;
    }
    int64_t msv = fs_ns_divide(n, 1000000, round);
    if (int_ms && (msv > INT_MAX || msv < INT_MIN)) {
        return too_large();
    }
    *ns = n < 0 ? -1 : n;
    return 0;
}

/* EpollSelector: epoll.poll(math.ceil(timeout * 1e3) * 1e-3) */
int
sel_epoll_timeout(const sel_kind *Py_UNUSED(k), PyObject *timeout,
                  int64_t *ns)
{
    if (PyFloat_CheckExact(timeout) || PyLong_CheckExact(timeout)) {
        double d;
        if (PyFloat_CheckExact(timeout)) {
            d = PyFloat_AS_DOUBLE(timeout);
        }
        else {
            int overflow;
            long v = PyLong_AsLongAndOverflow(timeout, &overflow);
            if (overflow < 0 || (!overflow && v <= 0)) {
                *ns = 0;
                return 0;
            }
            d = overflow ? PyLong_AsDouble(timeout) : (double)v;
            if (d == -1.0 && PyErr_Occurred()) {
                return -1;
            }
        }
        if (d <= 0) {
            *ns = 0;
            return 0;
        }
        double ms = d * 1e3;
        if (isinf(ms)) {
            PyErr_SetString(PyExc_OverflowError,
                            "cannot convert float infinity to integer");
            return -1;
        }
        if (isnan(ms)) {
            PyErr_SetString(PyExc_ValueError,
                            "cannot convert float NaN to integer");
            return -1;
        }
        double secs = ceil(ms) * 1e-3;
        if (secs < 9e9) {
            /* _PyTime_FromSecondsObject + _PyTime_AsMilliseconds(CEILING) */
            volatile double t = secs * 1e9;
            double r = ceil(t);
            int64_t n = (int64_t)r;
            int64_t msv = fs_ns_divide(n, 1000000, FS_ROUND_CEILING);
            if (msv > INT_MAX) {
                return too_large();
            }
            *ns = n;
            return 0;
        }
        /* out of range: let the general path produce the exact error */
    }
    PyObject *c;
    int pos = poller_ceil_ms(timeout, ns, &c);
    if (pos <= 0) {
        return pos;
    }
    PyObject *k = PyFloat_FromDouble(1e-3);
    PyObject *sobj = k ? PyNumber_Multiply(c, k) : NULL;
    Py_XDECREF(k);
    Py_DECREF(c);
    if (sobj == NULL) {
        return -1;
    }
    int64_t n = 0;
    int rc = fs_ns_from_seconds_object(sobj, FS_ROUND_UP, &n);
    rc = poller_ms_result(sobj, rc, n, FS_ROUND_CEILING, 1, ns);
    Py_DECREF(sobj);
    return rc;
}

/* PollSelector: poll.poll(math.ceil(timeout * 1e3)) */
int
sel_poll_timeout(const sel_kind *Py_UNUSED(k), PyObject *timeout,
                 int64_t *ns)
{
    if (PyFloat_CheckExact(timeout) || PyLong_CheckExact(timeout)) {
        double d;
        int overflow = 0;
        if (PyFloat_CheckExact(timeout)) {
            d = PyFloat_AS_DOUBLE(timeout);
        }
        else {
            long v = PyLong_AsLongAndOverflow(timeout, &overflow);
            d = (double)v;
        }
        if (!overflow && !isnan(d)) {
            if (d <= 0) {
                *ns = 0;
                return 0;
            }
            double c = ceil(d * 1e3);
            if (c <= (double)INT_MAX) {
                *ns = (int64_t)c * 1000000;
                return 0;
            }
        }
    }
    PyObject *c;
    int pos = poller_ceil_ms(timeout, ns, &c);
    if (pos <= 0) {
        return pos;
    }
    int64_t n = 0;
    int rc = fs_ns_from_ms_object(c, FS_ROUND_UP, &n);
    rc = poller_ms_result(c, rc, n, FS_ROUND_UP,
                          !fs_poll_timeout_unbounded(), ns);
    Py_DECREF(c);
    return rc;
}

/* SelectSelector / KqueueSelector: max(timeout, 0) seconds */
int
sel_max0_timeout(const sel_kind *k, PyObject *timeout, int64_t *ns)
{
    if (PyFloat_CheckExact(timeout)) {
        if (PyFloat_AS_DOUBLE(timeout) < 0) {
            *ns = 0;
            return 0;
        }
    }
    else if (PyLong_CheckExact(timeout)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(timeout, &overflow);
        if (overflow < 0 || (!overflow && v <= 0)) {
            *ns = 0;
            return 0;
        }
    }
    else {
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL) {
            return -1;
        }
        /* max() keeps the first item unless a later one is greater */
        int gt = PyObject_RichCompareBool(zero, timeout, Py_GT);
        Py_DECREF(zero);
        if (gt < 0) {
            return -1;
        }
        if (gt) {
            *ns = 0;
            return 0;
        }
    }
    if (fs_ns_from_seconds_object(timeout, FS_ROUND_UP, ns) < 0) {
        k->timeout_error(timeout);
        return -1;
    }
    if (*ns < 0) {
        PyErr_SetString(PyExc_ValueError, k->negative_timeout);
        return -1;
    }
    return 0;
}
