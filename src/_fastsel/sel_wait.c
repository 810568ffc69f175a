/* sel_wait.c - select(): the timeout, one backend wait through the PEP 475
 * loop (timeout.h), the (key, events) results from the slot table, and the
 * drain of an epoll ready list longer than one batch.
 *
 * Costs: select() keeps its event buffer (epoll: batches of SEL_BATCH,
 * drained with non-blocking waits) and its (key, mask) result tuples between
 * calls; nothing per select() is O(registered). */
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

/* How sel_collect treats the drain's per-fd marks. */
enum {
    COLLECT_PLAIN,          /* a call that does not drain */
    COLLECT_MARK,           /* the first batch of a draining call */
    COLLECT_DEDUPE,         /* a drain batch: skip what was reported */
};

/* Room for a mark per direct fd (the far list keeps its own). */
static int
seen_grow(sel_object *s)
{
    uint32_t *ns = PyMem_Realloc(s->seen, (size_t)s->cap * sizeof(*ns));
    if (ns == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(ns + s->seencap, 0, (size_t)(s->cap - s->seencap) * sizeof(*ns));
    s->seen = ns;
    s->seencap = s->cap;
    return 0;
}

/* 1 if this select() call reported fd already (COLLECT_DEDUPE), else mark
 * it and return 0; -1 with MemoryError. */
static int
seen_before(sel_object *s, int fd, sel_slot *sl, int mode)
{
    uint32_t *mark;
    if (fd >= SEL_DIRECT_MAX) {
        mark = &slot_far(sl)->seen;
    }
    else {
        assert(fd < s->cap);
        if (fd >= s->seencap && seen_grow(s) < 0) {
            return -1;
        }
        mark = &s->seen[fd];
    }
    if (mode == COLLECT_DEDUPE && *mark == s->epoch) {
        return 1;
    }
    *mark = s->epoch;
    return 0;
}

/* A new reference to fd's (key, mask) result, cached in the slot. */
static PyObject *
result_tuple(sel_object *s, int fd, sel_slot *sl, int mask)
{
    PyObject *t = slot_res(sl);
    if (t != NULL && sl->res_mask == mask) {
        Py_INCREF(t);
        return t;
    }
    /* owned before the allocations, which may collect garbage and run a
     * finaliser that unregisters fd and frees its key */
    PyObject *key = slot_key(sl);
    Py_INCREF(key);
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

/* Append the results of n events in evbuf to list, starting at index *j of
 * a list pre-sized with NULLs (or appending when *j reaches its size).
 * Drops events of registrations that are gone or replaced (generation). */
static int
sel_collect(sel_object *s, PyObject *list, int n, Py_ssize_t *j, int mode)
{
    for (int i = 0; i < n; i++) {
        uint64_t tok = s->evbuf[i].token;
        int fd = (int)(uint32_t)tok;
        uint32_t gen = (uint32_t)(tok >> 32);
        sel_slot *sl = slot_find(s, fd);
        if (sl == NULL || sl->gen != gen) {
            continue;
        }
        if (mode != COLLECT_PLAIN) {
            int seen = seen_before(s, fd, sl, mode);
            if (seen < 0) {
                return -1;
            }
            if (seen) {
                continue;
            }
        }
        PyObject *t = result_tuple(s, fd, sl, s->evbuf[i].events & sl->events);
        if (t == NULL) {
            return -1;
        }
        if (*j < PyList_GET_SIZE(list)) {
            PyList_SET_ITEM(list, *j, t);
        }
        else {
            int rc = PyList_Append(list, t);
            Py_DECREF(t);
            if (rc < 0) {
                return -1;
            }
        }
        (*j)++;
    }
    return 0;
}

/* Room for max events in evbuf (never more than batch). */
static int
sel_reserve(sel_object *s, int max, int batch)
{
    /* grow geometrically: registrations come in bursts */
    int ncap = s->evcap > INT_MAX / 2 ? INT_MAX : s->evcap * 2;
    if (ncap < max) {
        ncap = max;
    }
    if (ncap > batch) {
        ncap = batch;
    }
    fs_event *nb = PyMem_Realloc(s->evbuf, (size_t)ncap * sizeof(*nb));
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->evbuf = nb;
    s->evcap = ncap;
    return 0;
}

/* Drain: epoll hands out the not-yet-returned ready fds first, then the
 * ones it returned (re-queued, level-triggered).  A batch that is not full,
 * or that brings anything already seen, means every ready fd has been
 * reported.  0, or -1 with an exception. */
static int
select_drain(sel_object *s, PyObject *list, Py_ssize_t *j, int max)
{
    while (!s->closed) {
        int n = sel_wait(s, 0, max);
        if (n < 0) {
            return -1;
        }
        if (s->closed) {
            break;
        }
        Py_ssize_t before = *j;
        if (sel_collect(s, list, n, j, COLLECT_DEDUPE) < 0) {
            return -1;
        }
        if (n != max || *j - before != n) {
            break;
        }
    }
    return 0;
}

/* The wait and its results, with evbuf and the backend owned (busy): a new
 * list, or NULL (with an exception, or without when closed meanwhile). */
static PyObject *
select_results(sel_object *s, int64_t tns, int max, int batch)
{
    int n = sel_wait(s, tns, max);
    if (n < 0 || s->closed) {
        return NULL;
    }
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    Py_ssize_t j = 0;
    int full = n == max && max == batch && s->count > max;
    if (full) {
        s->epoch++;             /* draining follows: a new set of marks */
    }
    if (sel_collect(s, list, n, &j, full ? COLLECT_MARK : COLLECT_PLAIN) < 0
        || (full && select_drain(s, list, &j, max) < 0)) {
        /* also when a finaliser closed: no list with an exception */
        Py_DECREF(list);
        return NULL;
    }
    if (j < PyList_GET_SIZE(list)
        && PyList_SetSlice(list, j, PyList_GET_SIZE(list), NULL) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    return list;
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
    if (s->driver != NULL) {
        return sel_py_select(s, timeout);
    }
    int64_t tns;
    if (select_prepare(s, timeout, &tns) < 0) {
        return NULL;
    }
    /* Only epoll hands out the rest of a ready list on the next call (it
     * re-queues what it returned); poll and select rescan from the start,
     * so they get room for every registration, as the stdlib's do, and
     * kqueue room for every filter (KqueueSelector's _max_events): two per
     * registration, its read and write events being separate. */
    int batch = s->kind->batch;
    Py_ssize_t want = s->ops->per_filter ? 2 * s->count : s->count;
    int max = want < 1 ? 1 : (want > batch ? batch : (int)want);
    if (s->evcap < max && sel_reserve(s, max, batch) < 0) {
        return NULL;
    }
    s->busy = 1;
    PyObject *list = select_results(s, tns, max, batch);
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
