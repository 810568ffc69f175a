/* debug.c - the module's debug-only entry points for tests (FASTSEL_DEBUG). */
#include "fastsel.h"
#include "debug.h"

#ifdef FS_DEBUG

#include "backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static const char *const syscall_names[FS_SYS_COUNT] = {
    "epoll_ctl", "epoll_wait", "kevent", "poll", "select",
};

/* [sys][0]: calls made without the GIL, [sys][1]: with it held */
static atomic_ulong syscall_calls[FS_SYS_COUNT][2];

/* ---- the hold gate: _debug_hold(name, timeout) --------------------------
 * Makes the next call of one kernel function wait, before it enters the
 * kernel, until _debug_release() or until `timeout` seconds passed: the
 * tests' way to run other threads' calls while one is "in the kernel" (as a
 * FUSE poll hook would keep it), deterministically.  A call made with the
 * GIL held waits too: then nothing else can run, and the timeout ends it. */

static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static atomic_int hold_armed = -1;      /* fs_syscall to hold, -1: none */
static int hold_waiting;                /* calls waiting at the gate */
static unsigned long hold_round;        /* bumped by each release */
static double hold_timeout;

static void
debug_hold(fs_syscall sys)
{
    int want = (int)sys;
    if (!atomic_compare_exchange_strong(&hold_armed, &want, -1)) {
        return;
    }
    /* pthread_cond_timedwait's clock (a wall-clock step moves the
     * deadline: this is a test aid) */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    pthread_mutex_lock(&hold_lock);
    double t = (double)until.tv_sec + until.tv_nsec * 1e-9 + hold_timeout;
    until.tv_sec = (time_t)t;
    until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
    unsigned long round = hold_round;
    hold_waiting++;
    while (hold_round == round
           && pthread_cond_timedwait(&hold_cond, &hold_lock, &until) == 0) {
    }
    hold_waiting--;
    pthread_mutex_unlock(&hold_lock);
}

void
fs_debug_syscall(fs_syscall sys)
{
    int held = PyGILState_Check() ? 1 : 0;
    atomic_fetch_add_explicit(&syscall_calls[sys][held], 1,
                              memory_order_relaxed);
    if (atomic_load_explicit(&hold_armed, memory_order_relaxed) >= 0) {
        int saved = errno;
        debug_hold(sys);
        errno = saved;
    }
}

/* _debug_hold(name, timeout): hold the next call of kernel function name */
static PyObject *
debug_hold_arm(PyObject *Py_UNUSED(module), PyObject *args)
{
    const char *name;
    double timeout;
    if (!PyArg_ParseTuple(args, "sd:_debug_hold", &name, &timeout)) {
        return NULL;
    }
    for (int i = 0; i < FS_SYS_COUNT; i++) {
        if (strcmp(syscall_names[i], name) == 0) {
            if (!(timeout > 0 && timeout <= 600)) {
                PyErr_SetString(PyExc_ValueError,
                                "timeout must be in (0, 600] seconds");
                return NULL;
            }
            pthread_mutex_lock(&hold_lock);
            hold_timeout = timeout;
            pthread_mutex_unlock(&hold_lock);
            atomic_store(&hold_armed, i);
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_ValueError, "no kernel function '%s' is probed", name);
    return NULL;
}

/* _debug_held() -> the number of calls waiting at the gate */
static PyObject *
debug_hold_count(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&hold_lock);
    int n = hold_waiting;
    pthread_mutex_unlock(&hold_lock);
    return PyLong_FromLong(n);
}

atomic_int fs_debug_ctl_queued;

/* _debug_queued() -> the number of interest changes waiting for an earlier
 * one of their selector to leave the kernel */
static PyObject *
debug_ctl_queued(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(atomic_load(&fs_debug_ctl_queued));
}

/* _debug_release(): disarm, and let every waiting call go */
static PyObject *
debug_hold_release(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    atomic_store(&hold_armed, -1);
    pthread_mutex_lock(&hold_lock);
    hold_round++;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);
    Py_RETURN_NONE;
}

/* _debug_syscalls() -> {name: (calls without the GIL, calls with it)} */
static PyObject *
debug_syscalls(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    for (int i = 0; i < FS_SYS_COUNT; i++) {
        PyObject *v = Py_BuildValue(
            "(kk)", atomic_load(&syscall_calls[i][0]),
            atomic_load(&syscall_calls[i][1]));
        if (v == NULL || PyDict_SetItemString(d, syscall_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

/* ---- _debug_backend(name): one backend.h table, driven from Python ------
 *
 * Tests reach each backend (epoll, kqueue, poll, select) through its
 * fs_backend_ops only, as the selector does: add(fd, events, tag) hands
 * the backend the selector's token fd | tag << 32, errno becomes OSError,
 * wait() takes the snapshot with the GIL, runs without it (one at a time)
 * and returns [(tag, events), ...].  A backend whose ops->modify is NULL
 * says so (has_modify False; modify() raises NotImplementedError). */

static const fs_backend_ops *const debug_backend_table[] = {
#ifdef __linux__
    &fs_epoll_backend,
#endif
#ifdef FS_HAVE_KQUEUE
    &fs_kqueue_backend,
#endif
    &fs_poll_backend,
    &fs_select_backend,
};

#define DEBUG_NBACKENDS \
    (sizeof(debug_backend_table) / sizeof(debug_backend_table[0]))

typedef struct {
    PyObject_HEAD
    const fs_backend_ops *ops;
    fs_backend *b;              /* NULL once closed */
    int waits;                  /* wait() calls under way (GIL released) */
} debug_backend;

static PyObject *
debug_backend_names(void)
{
    PyObject *names = PyTuple_New((Py_ssize_t)DEBUG_NBACKENDS);
    for (size_t i = 0; names != NULL && i < DEBUG_NBACKENDS; i++) {
        PyObject *s = PyUnicode_FromString(debug_backend_table[i]->name);
        if (s == NULL) {
            Py_CLEAR(names);
            break;
        }
        PyTuple_SET_ITEM(names, (Py_ssize_t)i, s);
    }
    return names;
}

static PyObject *
debug_backend_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"name", NULL};
    const char *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s:_debug_backend", kwlist,
                                     &name)) {
        return NULL;
    }
    const fs_backend_ops *ops = NULL;
    for (size_t i = 0; i < DEBUG_NBACKENDS; i++) {
        if (strcmp(debug_backend_table[i]->name, name) == 0) {
            ops = debug_backend_table[i];
        }
    }
    if (ops == NULL) {
        PyObject *names = debug_backend_names();
        if (names != NULL) {
            PyErr_Format(PyExc_ValueError,
                         "no backend '%s' in this build (it has %R)", name,
                         names);
            Py_DECREF(names);
        }
        return NULL;
    }
    debug_backend *self = (debug_backend *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->ops = ops;
    self->b = ops->open();
    if (self->b == NULL) {
        fs_errno_error(errno);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
debug_backend_dealloc(PyObject *op)
{
    debug_backend *self = (debug_backend *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->b != NULL) {
        self->ops->free(self->b);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* The open backend, or NULL with ValueError once closed. */
static fs_backend *
debug_backend_get(debug_backend *self)
{
    if (self->b == NULL) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed backend");
    }
    return self->b;
}

/* rc < 0: the backend's errno as OSError (its subclasses included). */
static PyObject *
debug_backend_result(int rc)
{
    if (rc < 0) {
        fs_errno_error(errno);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* An "O&" converter: a 32-bit tag as the high half of the selector's token
 * fd | tag << 32 (backend.h); the caller ors in the fd. */
static int
debug_tag(PyObject *obj, void *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        return 0;
    }
    if (v > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a tag is 32 bits");
        return 0;
    }
    *(uint64_t *)out = (uint64_t)v << 32;
    return 1;
}

static PyObject *
debug_backend_add(PyObject *op, PyObject *args)
{
    debug_backend *self = (debug_backend *)op;
    int fd, events;
    uint64_t tag;
    if (!PyArg_ParseTuple(args, "iiO&:add", &fd, &events, debug_tag, &tag)
        || debug_backend_get(self) == NULL) {
        return NULL;
    }
    return debug_backend_result(
        self->ops->add(self->b, fd, events, tag | (uint32_t)fd));
}

static PyObject *
debug_backend_modify(PyObject *op, PyObject *args)
{
    debug_backend *self = (debug_backend *)op;
    int fd, old_events, events;
    uint64_t tag;
    if (!PyArg_ParseTuple(args, "iiiO&:modify", &fd, &old_events, &events,
                          debug_tag, &tag)
        || debug_backend_get(self) == NULL) {
        return NULL;
    }
    if (self->ops->modify == NULL) {
        PyErr_Format(PyExc_NotImplementedError,
                     "the %s backend has no modify(): its selector removes "
                     "and adds", self->ops->name);
        return NULL;
    }
    return debug_backend_result(self->ops->modify(self->b, fd, old_events,
                                                  events, tag | (uint32_t)fd));
}

static PyObject *
debug_backend_remove(PyObject *op, PyObject *args)
{
    debug_backend *self = (debug_backend *)op;
    int fd, old_events;
    if (!PyArg_ParseTuple(args, "ii:remove", &fd, &old_events)
        || debug_backend_get(self) == NULL) {
        return NULL;
    }
    return debug_backend_result(self->ops->remove(self->b, fd, old_events));
}

static PyObject *
debug_events_list(const fs_event *out, int n)
{
    PyObject *list = PyList_New(n);
    for (int i = 0; list != NULL && i < n; i++) {
        /* the tag: the fd half is the selector's slot lookup */
        PyObject *item = Py_BuildValue("(ki)",
                                       (unsigned long)(out[i].token >> 32),
                                       out[i].events);
        if (item == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* wait(timeout_ns=0, max=64): one ops->wait() without the GIL, no EINTR
 * retry (InterruptedError, after the signal handlers ran). */
static PyObject *
debug_backend_wait(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"timeout_ns", "max", NULL};
    debug_backend *self = (debug_backend *)op;
    long long timeout_ns = 0;
    int max = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|Li:wait", kwlist,
                                     &timeout_ns, &max)
        || debug_backend_get(self) == NULL) {
        return NULL;
    }
    if (max < 0) {
        PyErr_SetString(PyExc_ValueError, "max must be >= 0");
        return NULL;
    }
    if (self->waits > 0) {
        /* backend.h: one wait of a backend at a time, as the selector's */
        PyErr_SetString(PyExc_RuntimeError, "concurrent wait()");
        return NULL;
    }
    fs_backend *b = self->b;
    if (self->ops->snapshot != NULL && self->ops->snapshot(b) < 0) {
        return debug_backend_result(-1);
    }
    /* max == 0 reaches the backend (its EINVAL is tested) */
    fs_event *out = PyMem_New(fs_event, max > 0 ? max : 1);
    if (out == NULL) {
        return PyErr_NoMemory();
    }
    int n, saved_errno;
    self->waits++;              /* close() refuses meanwhile */
    Py_BEGIN_ALLOW_THREADS
    n = self->ops->wait(b, (int64_t)timeout_ns, out, max);
    saved_errno = errno;
    Py_END_ALLOW_THREADS
    self->waits--;
    errno = saved_errno;
    PyObject *result = n < 0 ? debug_backend_result(n)
                             : debug_events_list(out, n);
    PyMem_Free(out);
    return result;
}

static PyObject *
debug_backend_fileno(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    debug_backend *self = (debug_backend *)op;
    if (debug_backend_get(self) == NULL) {
        return NULL;
    }
    return PyLong_FromLong(self->ops->fileno(self->b));
}

static PyObject *
debug_backend_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    debug_backend *self = (debug_backend *)op;
    if (self->waits > 0) {
        PyErr_SetString(PyExc_RuntimeError, "close() during wait()");
        return NULL;
    }
    if (self->b != NULL) {
        self->ops->free(self->b);
        self->b = NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
debug_backend_get_name(PyObject *op, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(((debug_backend *)op)->ops->name);
}

static PyObject *
debug_backend_get_has_modify(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((debug_backend *)op)->ops->modify != NULL);
}

static PyObject *
debug_backend_get_closed(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((debug_backend *)op)->b == NULL);
}

static PyMethodDef debug_backend_methods[] = {
    {"add", debug_backend_add, METH_VARARGS,
     "add(fd, events, token): ops->add"},
    {"modify", debug_backend_modify, METH_VARARGS,
     "modify(fd, old_events, events, token): ops->modify"},
    {"remove", debug_backend_remove, METH_VARARGS,
     "remove(fd, old_events): ops->remove"},
    {"wait", (PyCFunction)(void (*)(void))debug_backend_wait,
     METH_VARARGS | METH_KEYWORDS,
     "wait(timeout_ns=0, max=64) -> [(token, events), ...]: ops->wait, "
     "without the GIL"},
    {"fileno", debug_backend_fileno, METH_NOARGS, "ops->fileno"},
    {"close", debug_backend_close, METH_NOARGS, "ops->free; idempotent"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef debug_backend_getset[] = {
    {"name", debug_backend_get_name, NULL, "the ops table's name", NULL},
    {"has_modify", debug_backend_get_has_modify, NULL,
     "whether the ops table has modify()", NULL},
    {"closed", debug_backend_get_closed, NULL, "close() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot debug_backend_slots[] = {
    {Py_tp_new, debug_backend_new},
    {Py_tp_dealloc, debug_backend_dealloc},
    {Py_tp_methods, debug_backend_methods},
    {Py_tp_getset, debug_backend_getset},
    {Py_tp_doc, "_debug_backend(name): one backend.h ops table (debug "
                "builds only)"},
    {0, NULL},
};

static PyType_Spec debug_backend_spec = {
    .name = "fastsel._fastsel._debug_backend",
    .basicsize = sizeof(debug_backend),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = debug_backend_slots,
};

static PyMethodDef debug_methods[] = {
    {"_debug_syscalls", debug_syscalls, METH_NOARGS,
     "_debug_syscalls()\n--\n\nKernel calls so far, by GIL state (debug "
     "builds only)."},
    {"_debug_hold", debug_hold_arm, METH_VARARGS,
     "_debug_hold(name, timeout)\n--\n\nMake the next call of kernel "
     "function name wait until _debug_release() or timeout (debug builds "
     "only)."},
    {"_debug_held", debug_hold_count, METH_NOARGS,
     "_debug_held()\n--\n\nCalls waiting at the hold (debug builds "
     "only)."},
    {"_debug_queued", debug_ctl_queued, METH_NOARGS,
     "_debug_queued() -> interest changes waiting for their turn"},
    {"_debug_release", debug_hold_release, METH_NOARGS,
     "_debug_release()\n--\n\nDisarm the hold and let waiting calls go "
     "(debug builds only)."},
    {NULL, NULL, 0, NULL},
};

#endif /* FS_DEBUG */

int
fs_debug_setup(PyObject *module, fs_state *Py_UNUSED(st))
{
#ifdef FS_DEBUG
    if (PyModule_AddFunctions(module, debug_methods) < 0) {
        return -1;
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &debug_backend_spec,
                                              NULL);
    if (type == NULL) {
        return -1;
    }
    int rc = fs_add_object(module, "_debug_backend", type);
    Py_DECREF(type);
    if (rc < 0) {
        return -1;
    }
    return fs_add_object(module, "_debug", Py_True);
#else
    return fs_add_object(module, "_debug", Py_False);
#endif
}
