/* sel_wait.c - select(): the timeout, one backend wait through the PEP 475
 * loop (timeout.h), and the (key, events) results from the slot table.
 *
 * Costs: select() keeps its event buffer, sized as the stdlib sizes its
 * wait (room for every registration, grown on demand), and its (key, mask)
 * result tuples between calls; for epoll and kqueue nothing per select()
 * is O(registered). */
#include "selector.h"

#include <limits.h>
#include <string.h>

/* What the wait may touch without the GIL: the backend and evbuf, owned
 * by this select() (busy) so close() leaves them alone. */
typedef struct {
    sel_object *s;
    fs_backend *be;
    fs_event *buf;
    int max;
    int err;                /* errno of a failed snapshot in wait_stop */
} wait_ctx;

/* The interest the wait polls, taken with the GIL held (backend.h).
 * 0, or -1 with errno. */
static inline int
wait_snapshot(sel_object *s, fs_backend *be)
{
    return s->ops->snapshot != NULL ? s->ops->snapshot(be) : 0;
}

static int
wait_once(void *arg, int64_t timeout_ns)
{
    wait_ctx *c = arg;
    return c->s->ops->wait(c->be, timeout_ns, c->buf, c->max);
}

/* After a signal handler (GIL held): give up if it closed the selector;
 * it may also have rebuilt the backend (a fork in the handler), whose
 * snapshot is then taken (a failure ends the wait with c->err). */
static int
wait_stop(void *arg)
{
    wait_ctx *c = arg;
    if (c->s->closed || c->s->be == NULL) {
        return 1;
    }
    if (c->be != c->s->be && wait_snapshot(c->s, c->s->be) < 0) {
        c->err = errno;
        return 1;
    }
    c->be = c->s->be;
    return 0;
}

/* One backend wait without the GIL, EINTR retried per PEP 475.  Returns the
 * event count, or -1 with an exception set. */
static int
sel_wait(sel_object *s, int64_t timeout_ns, int max)
{
    assert(s->busy && s->be != NULL && max <= s->evcap);
    wait_ctx c = {s, s->be, s->evbuf, max, 0};
    if (wait_snapshot(s, s->be) < 0) {
        fs_errno_error(errno);
        return -1;
    }
    /* a zero timeout cannot block: the backend touches nothing but its own
     * memory, and handing the GIL over and back would cost more */
    int n = fs_wait_retry(wait_once, &c, timeout_ns, FS_WAIT_ZERO_WITH_GIL,
                          wait_stop);
    if (c.err != 0) {
        fs_errno_error(c.err);
        return -1;
    }
    return n;
}

/* A new reference to fd's (key, mask) result, cached in the slot. */
static PyObject *
result_tuple(sel_object *s, int fd, sel_slot *sl, int mask)
{
    PyObject *t = slot_res(sl);
    if (t != NULL && sl->res_mask == mask) {
        return Py_NewRef(t);
    }
    /* owned before the allocations, which may collect garbage and run a
     * finaliser that unregisters fd and frees its key */
    PyObject *key = Py_NewRef(slot_key(sl));
    PyObject *m = PyLong_FromLong(mask);
    t = m != NULL ? PyTuple_New(2) : NULL;
    if (t == NULL) {
        Py_DECREF(key);
        Py_XDECREF(m);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, key);
    PyTuple_SET_ITEM(t, 1, m);
    sl = slot_find(s, fd);
    if (sl != NULL && slot_key(sl) == key) {
        /* the slot now owns the key through the tuple */
        PyObject *old = slot_obj(sl);
        Py_INCREF(t);
        sl->obj = (uintptr_t)t | 1;
        sl->res_mask = (uint8_t)mask;
        Py_DECREF(old);
    }
    return t;
}

/* The results of n events in evbuf, in a list of at most n: events of
 * registrations that are gone or were replaced (generation) are dropped.
 * A new list, or NULL. */
static PyObject *
sel_collect(sel_object *s, int n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    Py_ssize_t j = 0;
    for (int i = 0; i < n; i++) {
        uint64_t tok = s->evbuf[i].token;
        int fd = (int)(uint32_t)tok;
        uint32_t gen = (uint32_t)(tok >> 32);
        sel_slot *sl = slot_find(s, fd);
        if (sl == NULL || sl->gen != gen) {
            continue;
        }
        PyObject *t = result_tuple(s, fd, sl, s->evbuf[i].events & sl->events);
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, j++, t);
    }
    /* a finaliser may have closed meanwhile: no list with an exception */
    if (j < n && PyList_SetSlice(list, j, n, NULL) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

/* Room for every registration's events, as the stdlib asks its poller for
 * (epoll: one per fd; kqueue: one per filter; at least 1), grown
 * geometrically: registrations come in bursts.  The count, or -1 with
 * MemoryError. */
static int
sel_reserve(sel_object *s)
{
    Py_ssize_t want = s->count * s->kind->per_key;
    if (want < 1) {
        want = 1;
    }
    if (want > INT_MAX) {
        want = INT_MAX;
    }
    if (want > s->evcap) {
        Py_ssize_t ncap = s->evcap + (s->evcap >> 1);
        ncap = ncap < want ? want : (ncap > INT_MAX ? INT_MAX : ncap);
        fs_event *nb = PyMem_Realloc(s->evbuf, (size_t)ncap * sizeof(*nb));
        if (nb == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->evbuf = nb;
        s->evcap = (int)ncap;
    }
    return (int)want;
}

/* select()'s checks before the wait: 0, or -1 with an exception. */
static int
select_prepare(sel_object *s, PyObject *timeout, int64_t *tns)
{
    if (timeout == Py_None) {
        *tns = -1;
    }
    else if (s->kind->timeout(s->kind, timeout, tns) < 0) {
        return -1;
    }
    if (s->kind->bool_warn_select) {
        for (int i = 0; i < s->nbool[0] + s->nbool[1]; i++) {
            if (sel_warn_bool_fd(1) < 0) {
                return -1;
            }
        }
    }
    /* the timeout's conversion and the warnings may have run Python code
     * that closed the selector (freeing its backend) or forked */
    if (sel_ready(s) < 0) {
        return -1;
    }
    if (s->busy) {
        /* one persistent buffer and one backend wait at a time */
        PyErr_SetString(PyExc_RuntimeError, "concurrent select() invocation");
        return -1;
    }
    return 0;
}

PyObject *
sel_select(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    SEL_FORWARD(s, "select", args, nargs, kwnames);
    static const char *const names[] = {"timeout"};
    PyObject *timeout;
    if (kwnames == NULL && nargs <= 1) {
        timeout = nargs ? args[0] : Py_None;
    }
    else {
        if (fs_parse_pyfunc(s->kind->owner[SEL_M_SELECT], "select", names, 0,
                            1, args, nargs, kwnames, &timeout) < 0) {
            return NULL;
        }
        if (timeout == NULL) {
            timeout = Py_None;
        }
    }
    if (sel_ready(s) < 0) {
        return NULL;
    }
    int64_t tns;
    if (select_prepare(s, timeout, &tns) < 0) {
        return NULL;
    }
    int max = sel_reserve(s);
    if (max < 0) {
        return NULL;
    }
    s->busy = 1;
    int n = sel_wait(s, tns, max);
    PyObject *list = NULL;
    if (n >= 0 && !s->closed) {
        list = sel_collect(s, n);
    }
    else if (n < 0 && PyErr_ExceptionMatches(PyExc_InterruptedError)) {
        /* a signal handler's InterruptedError: the stdlib's selectors
         * `except InterruptedError: return ready` around their wait */
        PyErr_Clear();
        list = PyList_New(0);
    }
    s->busy = 0;
    if (s->closed) {
        /* closed by another thread meanwhile: its keys are gone */
        sel_finish_close(s);
        if (list != NULL || !PyErr_Occurred()) {
            Py_XDECREF(list);
            list = PyList_New(0);
        }
    }
    return list;
}
