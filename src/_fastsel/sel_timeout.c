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
    int le = compare_zero(timeout, Py_LE, 0);
    if (le < 0) {
        return -1;
    }
    if (le) {
        *ns = 0;
        return 0;
    }
    PyObject *m = times(timeout, 1e3);
    PyObject *math = m != NULL ? PyImport_ImportModule("math") : NULL;
    *c = math != NULL ? PyObject_CallMethod(math, "ceil", "O", m) : NULL;
    Py_XDECREF(math);
    Py_XDECREF(m);
    return *c == NULL ? -1 : 1;
}

/* Epoll/Poll, the fast path of an exact float or an int within long: 0
 * with *ns = 0 when `timeout <= 0`, 1 with *ms = ceil(timeout * 1e3) when
 * that is finite; -1 leaves the rest (NaN, infinities, other types, ints
 * past long) to poller_ceil_ms(), which gives the stdlib's errors. */
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
    PyObject *c;
    int pos = poller_ceil_ms(timeout, ns, &c);
    if (pos <= 0) {
        return pos;
    }
    PyObject *sobj = times(c, 1e-3);
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
    double ms;
    int fast = fast_ceil_ms(timeout, ns, &ms);
    if (fast == 0) {
        return 0;
    }
    if (fast > 0 && ms <= (double)INT_MAX) {
        *ns = (int64_t)ms * 1000000;
        return 0;
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
