/* epoll.c - the select.epoll object (Linux). */
#include "fastsel.h"
#include "debug.h"

#ifdef __linux__

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>     /* FD_SETSIZE: poll()'s default maxevents */
#include <unistd.h>

/* Event buffers up to this many entries stay with the object between polls;
 * a larger maxevents gets a buffer for that call only, as the stdlib does,
 * so one huge request does not pin memory for the object's lifetime. */
#define EP_KEEP_MAX 65536

/* poll() results come from a per-fd cache of (fd, events) tuples when the
 * GIL serialises access to it: an event loop sees the same fds ready with
 * the same masks over and over, and a reused immutable tuple costs an
 * INCREF where a new one costs two allocations and two frees.  The cache
 * covers fds below this bound; its tuples hold only ints, so no cycles. */
#ifndef Py_GIL_DISABLED
#  define EP_TCACHE 1
#  define EP_TCACHE_MAX 65536
#endif

typedef struct {
    PyObject *tuple;                /* (fd, mask), or NULL */
    uint32_t mask;
} ep_cached;

typedef struct {
    PyObject_HEAD
    int epfd;                       /* -1 once closed */
    /* Busy flag for buf: the stdlib lets several threads poll one object at
     * once, so a poll that finds buf taken uses a private buffer instead. */
    atomic_int busy;
    int cap;                        /* entries in buf */
    struct epoll_event *buf;        /* PyMem, kept between polls */
    int tc_len;                     /* entries in tc, indexed by fd */
    ep_cached *tc;                  /* result tuple cache, PyMem */
} ep_object;

/* -- construction --------------------------------------------------------- */

static PyObject *
ep_new_object(PyTypeObject *type, int fd)
{
    ep_object *self = PyObject_New(ep_object, type);
    if (self == NULL) {
        return NULL;
    }
    atomic_init(&self->busy, 0);
    self->cap = 0;
    self->buf = NULL;
    self->tc_len = 0;
    self->tc = NULL;
    if (fd == -1) {
        /* fromfd(-1) also lands here and opens a fresh epoll, as in CPython */
        fd = epoll_create1(EPOLL_CLOEXEC);
    }
    self->epfd = fd;
    if (fd < 0) {
        /* raise first: the dealloc below may clobber errno */
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static const fs_clinic_sig sig_new = {"epoll", 0, 2, {"sizehint", "flags"}};

static PyObject *
ep_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *a[2];
    int sizehint = -1, flags = 0;
    if (fs_parse_clinic(&sig_new, &PyTuple_GET_ITEM(args, 0),
                        PyTuple_GET_SIZE(args), NULL, kwargs, a) < 0
        || (a[0] != NULL && fs_as_int(a[0], &sizehint) < 0)
        || (a[1] != NULL && fs_as_int(a[1], &flags) < 0)) {
        return NULL;
    }
    /* sizehint is only checked (epoll_create1 ignores it), as the stdlib */
    if (sizehint != -1 && sizehint <= 0) {
        PyErr_SetString(PyExc_ValueError, "negative sizehint");
        return NULL;
    }
    if (flags && flags != EPOLL_CLOEXEC) {
        PyErr_SetString(PyExc_OSError, "invalid flags");
        return NULL;
    }
    return ep_new_object(type, -1);
}

static PyObject *
ep_fromfd(PyObject *cls, PyObject *arg)
{
    int fd;
    if (fs_as_int(arg, &fd) < 0) {
        return NULL;
    }
    if (fd < -1) {
        /* CPython reports errno as it finds it; make it deterministic */
        errno = 0;
    }
    return ep_new_object((PyTypeObject *)cls, fd);
}

static void
ep_dealloc(ep_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->epfd >= 0) {
        close(self->epfd);
    }
    PyMem_Free(self->buf);
    for (int i = 0; i < self->tc_len; i++) {
        Py_XDECREF(self->tc[i].tuple);
    }
    PyMem_Free(self->tc);
    PyObject_Free(self);
    Py_DECREF(tp);
}

/* -- plain methods -------------------------------------------------------- */

static PyObject *
ep_close(ep_object *self, PyObject *Py_UNUSED(ignored))
{
    /* The buffer stays: another thread may be inside poll() using it. */
    return fs_close_fd(&self->epfd);
}

static PyObject *
ep_get_closed(ep_object *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->epfd < 0);
}

static PyObject *
ep_fileno(ep_object *self, PyObject *Py_UNUSED(ignored))
{
    if (self->epfd < 0) {
        return fs_closed_error("epoll");
    }
    return PyLong_FromLong(self->epfd);
}

static PyObject *
ep_enter(ep_object *self, PyObject *Py_UNUSED(ignored))
{
    if (self->epfd < 0) {
        return fs_closed_error("epoll");
    }
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *
ep_exit(ep_object *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    if (fs_check_positional("__exit__", nargs, 0, 3) < 0) {
        return NULL;
    }
    return ep_close(self, NULL);
}

/* -- interest list -------------------------------------------------------- */

static const fs_clinic_sig sig_register =
    {"register", 1, 2, {"fd", "eventmask"}};
static const fs_clinic_sig sig_modify = {"modify", 2, 2, {"fd", "eventmask"}};
static const fs_clinic_sig sig_unregister = {"unregister", 1, 1, {"fd", NULL}};
static const fs_clinic_sig sig_poll = {"poll", 0, 2, {"timeout", "maxevents"}};

/* register, modify and unregister: (fd[, eventmask]) bound and converted
 * in the stdlib's order, then one epoll_ctl(). */
static PyObject *
ep_ctl(ep_object *self, const fs_clinic_sig *sig, int op,
       PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[2] = {NULL, NULL};
    unsigned int mask = op == EPOLL_CTL_DEL ? 0
                        : EPOLLIN | EPOLLPRI | EPOLLOUT;
    struct epoll_event ev;
    int rc;
    if (fs_parse_clinic(sig, args, nargs, kwnames, NULL, a) < 0) {
        return NULL;
    }
    int fd = fs_fileno(a[0]);
    if (fd < 0 || (a[1] != NULL && fs_as_uint_mask(a[1], &mask) < 0)) {
        return NULL;
    }
#ifdef EP_TCACHE
    /* an unregistered fd is likely to be closed next: let its tuple go */
    if (op == EPOLL_CTL_DEL && fd < self->tc_len) {
        Py_CLEAR(self->tc[fd].tuple);
    }
#endif
    int epfd = self->epfd;
    if (epfd < 0) {
        return fs_closed_error("epoll");
    }
    ev.events = mask;
    ev.data.u64 = 0;
    ev.data.fd = fd;
    /* The GIL goes, as in CPython: ADD calls the file's poll hook, which for
     * a FUSE file may wait on a daemon thread of this very process. */
    Py_BEGIN_ALLOW_THREADS
    FS_DEBUG_SYSCALL(FS_SYS_EPOLL_CTL);
    rc = epoll_ctl(epfd, op, fd, &ev);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *
ep_register(ep_object *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    return ep_ctl(self, &sig_register, EPOLL_CTL_ADD, args, nargs, kwnames);
}

static PyObject *
ep_modify(ep_object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    return ep_ctl(self, &sig_modify, EPOLL_CTL_MOD, args, nargs, kwnames);
}

static PyObject *
ep_unregister(ep_object *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    return ep_ctl(self, &sig_unregister, EPOLL_CTL_DEL, args, nargs,
                  kwnames);
}

/* -- poll ----------------------------------------------------------------- */

static PyObject *
ep_new_tuple(int fd, uint32_t mask)
{
    PyObject *t = PyTuple_New(2);
    PyObject *v = t != NULL ? PyLong_FromLong(fd) : NULL;
    if (v != NULL) {
        PyTuple_SET_ITEM(t, 0, v);
        v = PyLong_FromUnsignedLong(mask);
    }
    if (v == NULL) {
        Py_XDECREF(t);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 1, v);
    return t;
}

#ifdef EP_TCACHE
/* Grow the tuple cache to cover fd; 0 if it cannot (then no caching). */
static int
ep_tcache_cover(ep_object *self, int fd)
{
    if (fd >= EP_TCACHE_MAX) {
        return 0;
    }
    int len = self->tc_len ? self->tc_len : 64;
    while (len <= fd) {
        len *= 2;
    }
    if (len > EP_TCACHE_MAX) {
        len = EP_TCACHE_MAX;
    }
    ep_cached *nt = PyMem_Realloc(self->tc, (size_t)len * sizeof(*nt));
    if (nt == NULL) {
        return 0;                   /* a missed optimisation, not an error */
    }
    memset(nt + self->tc_len, 0, (size_t)(len - self->tc_len) * sizeof(*nt));
    self->tc = nt;
    self->tc_len = len;
    return 1;
}
#endif

/* The list of (fd, events) tuples for the kernel's array. */
static PyObject *
ep_results(ep_object *self, const struct epoll_event *evs, int n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        uint32_t mask = evs[i].events;
        PyObject *t;
#ifdef EP_TCACHE
        int cached = (unsigned int)fd < (unsigned int)self->tc_len
                     || (fd >= 0 && ep_tcache_cover(self, fd));
        if (cached && self->tc[fd].tuple != NULL
            && self->tc[fd].mask == mask) {
            PyList_SET_ITEM(list, i, Py_NewRef(self->tc[fd].tuple));
            continue;
        }
#endif
        t = ep_new_tuple(fd, mask);
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
#ifdef EP_TCACHE
        /* The allocation may have run a GC finaliser that polled this
         * object and resized the cache: index it afresh. */
        if (cached && (unsigned int)fd < (unsigned int)self->tc_len) {
            Py_XSETREF(self->tc[fd].tuple, Py_NewRef(t));
            self->tc[fd].mask = mask;
        }
#endif
        PyList_SET_ITEM(list, i, t);
    }
    (void)self;
    return list;
}

/* One poll(): the object and the buffer the kernel fills. */
typedef struct {
    ep_object *self;
    int epfd;                       /* read with the GIL before each wait */
    struct epoll_event *evs;
    int maxevents;
} ep_call;

/* fs_wait_fn: one epoll_wait().  No GIL. */
static int
ep_wait_once(void *ctx, int64_t timeout_ns)
{
    ep_call *c = ctx;
    /* as the stdlib: a negative timeout that rounds to 0 ms does not block */
    int64_t t = fs_ns_divide(timeout_ns, 1000000, FS_ROUND_CEILING);
    int ms = t < 0 ? -1 : (int)t;
    FS_DEBUG_SYSCALL(FS_SYS_EPOLL_WAIT);
    return epoll_wait(c->epfd, c->evs, c->maxevents, ms);
}

/* After a signal handler (GIL held): it may have closed the object, and
 * the retry then fails as the stdlib's does, on the fd it reads again. */
static int
ep_after_signal(void *ctx)
{
    ep_call *c = ctx;
    c->epfd = c->self->epfd;
    return 0;
}

static PyObject *
ep_poll(ep_object *self, PyObject *const *args, Py_ssize_t nargs,
        PyObject *kwnames)
{
    PyObject *a[2] = {NULL, NULL};
    int maxevents = -1;
    int64_t timeout;

    if (fs_parse_clinic(&sig_poll, args, nargs, kwnames, NULL, a) < 0) {
        return NULL;
    }
    /* conversion order as CPython's: maxevents's type, closed, timeout,
     * maxevents's value */
    if (a[1] != NULL && fs_as_int(a[1], &maxevents) < 0) {
        return NULL;
    }
    if (self->epfd < 0) {
        return fs_closed_error("epoll");
    }
    if (fs_timeout_arg(a[0] != NULL ? a[0] : Py_None, &fs_epoll_timeout,
                       &timeout) < 0) {
        return NULL;
    }
    if (maxevents == -1) {
        maxevents = FD_SETSIZE - 1;
    }
    else if (maxevents < 1) {
        PyErr_Format(PyExc_ValueError,
                     "maxevents must be greater than 0, got %d", maxevents);
        return NULL;
    }

    /* The object's buffer if no other poll() holds it and the request is
     * not oversized; otherwise a buffer for this call alone. */
    struct epoll_event *evs = NULL;
    int shared = 0;
    if (maxevents <= EP_KEEP_MAX && atomic_exchange(&self->busy, 1) == 0) {
        shared = 1;
        if (self->cap < maxevents) {
            struct epoll_event *nb = PyMem_Realloc(
                self->buf, (size_t)maxevents * sizeof(*nb));
            if (nb == NULL) {
                atomic_store(&self->busy, 0);
                return PyErr_NoMemory();
            }
            self->buf = nb;
            self->cap = maxevents;
        }
        evs = self->buf;
    }
    else {
        evs = PyMem_New(struct epoll_event, maxevents);
        if (evs == NULL) {
            return PyErr_NoMemory();
        }
    }

    ep_call c = {self, self->epfd, evs, maxevents};
    PyObject *result = NULL;
    int n = fs_wait_retry(ep_wait_once, &c, timeout, 0, ep_after_signal);
    if (n >= 0) {
        result = ep_results(self, evs, n);
    }
    if (shared) {
        atomic_store(&self->busy, 0);
    }
    else {
        PyMem_Free(evs);
    }
    return result;
}

/* -- type ----------------------------------------------------------------- */

PyDoc_STRVAR(ep_doc,
"epoll(sizehint=-1, flags=0)\n\
\n\
Returns an epolling object.\n\
\n\
sizehint must be a positive integer or -1 for the default size; it is\n\
checked but otherwise unused.  flags is ignored, but must be 0 or\n\
EPOLL_CLOEXEC when given.  The descriptor is always close-on-exec.");

static PyMethodDef ep_methods[] = {
    {"close", (PyCFunction)ep_close, METH_NOARGS,
     PyDoc_STR("close($self, /)\n--\n\n"
               "Close the epoll control file descriptor.\n\n"
               "Further operations on the epoll object will raise an "
               "exception.")},
    {"fileno", (PyCFunction)ep_fileno, METH_NOARGS,
     PyDoc_STR("fileno($self, /)\n--\n\n"
               "Return the epoll control file descriptor.")},
    {"modify", (PyCFunction)(void (*)(void))ep_modify,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("modify($self, /, fd, eventmask)\n--\n\n"
               "Modify event mask for a registered file descriptor.\n\n"
               "  fd\n"
               "    the target file descriptor of the operation\n"
               "  eventmask\n"
               "    a bit set composed of the various EPOLL constants")},
    {"register", (PyCFunction)(void (*)(void))ep_register,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("register($self, /, fd,\n"
               "         eventmask=select.EPOLLIN | select.EPOLLPRI | "
               "select.EPOLLOUT)\n--\n\n"
               "Registers a new fd or raises an OSError if the fd is already "
               "registered.\n\n"
               "  fd\n"
               "    the target file descriptor of the operation\n"
               "  eventmask\n"
               "    a bit set composed of the various EPOLL constants\n\n"
               "The epoll interface supports all file descriptors that "
               "support poll.")},
    {"unregister", (PyCFunction)(void (*)(void))ep_unregister,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("unregister($self, /, fd)\n--\n\n"
               "Remove a registered file descriptor from the epoll object.\n\n"
               "  fd\n"
               "    the target file descriptor of the operation")},
    {"poll", (PyCFunction)(void (*)(void))ep_poll,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("poll($self, /, timeout=None, maxevents=-1)\n--\n\n"
               "Wait for events on the epoll file descriptor.\n\n"
               "  timeout\n"
               "    the maximum time to wait in seconds (as float);\n"
               "    a timeout of None or -1 makes poll wait indefinitely\n"
               "  maxevents\n"
               "    the maximum number of events returned; -1 means no "
               "limit\n\n"
               "Returns a list containing any descriptors that have events "
               "to report,\n"
               "as a list of (fd, events) 2-tuples.")},
    {"fromfd", (PyCFunction)ep_fromfd, METH_O | METH_CLASS,
     PyDoc_STR("fromfd($type, fd, /)\n--\n\n"
               "Create an epoll object from a given control fd.")},
    {"__enter__", (PyCFunction)ep_enter, METH_NOARGS,
     PyDoc_STR("__enter__($self, /)\n--\n\n")},
    {"__exit__", (PyCFunction)(void (*)(void))ep_exit, METH_FASTCALL,
     PyDoc_STR("__exit__($self, exc_type=None, exc_value=None, "
               "exc_tb=None, /)\n--\n\n")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ep_getset[] = {
    {"closed", (getter)ep_get_closed, NULL,
     "True if the epoll handler is closed", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ep_slots[] = {
    {Py_tp_new, ep_tp_new},
    {Py_tp_dealloc, ep_dealloc},
    {Py_tp_methods, ep_methods},
    {Py_tp_getset, ep_getset},
    {Py_tp_doc, (void *)ep_doc},
    {0, NULL},
};

/* No Py_TPFLAGS_BASETYPE: select.epoll cannot be subclassed either. */
static PyType_Spec ep_spec = {
    .name = "fastsel.epoll",
    .basicsize = sizeof(ep_object),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = ep_slots,
};

int
fs_epoll_setup(PyObject *module, fs_state *st)
{
    static const fs_int_const consts[] = {
        /* exactly the names CPython's selectmodule.c exports */
        {"EPOLLIN", EPOLLIN},
        {"EPOLLOUT", EPOLLOUT},
        {"EPOLLPRI", EPOLLPRI},
        {"EPOLLERR", EPOLLERR},
        {"EPOLLHUP", EPOLLHUP},
#ifdef EPOLLRDHUP
        {"EPOLLRDHUP", EPOLLRDHUP},
#endif
        {"EPOLLET", (long)(unsigned int)EPOLLET},
#ifdef EPOLLONESHOT
        {"EPOLLONESHOT", EPOLLONESHOT},
#endif
#ifdef EPOLLEXCLUSIVE
        {"EPOLLEXCLUSIVE", EPOLLEXCLUSIVE},
#endif
#ifdef EPOLLRDNORM
        {"EPOLLRDNORM", EPOLLRDNORM},
#endif
#ifdef EPOLLRDBAND
        {"EPOLLRDBAND", EPOLLRDBAND},
#endif
#ifdef EPOLLWRNORM
        {"EPOLLWRNORM", EPOLLWRNORM},
#endif
#ifdef EPOLLWRBAND
        {"EPOLLWRBAND", EPOLLWRBAND},
#endif
#ifdef EPOLLMSG
        {"EPOLLMSG", EPOLLMSG},
#endif
        {"EPOLL_CLOEXEC", EPOLL_CLOEXEC},   /* used above unguarded */
    };
    if (fs_add_ints(module, consts, Py_ARRAY_LENGTH(consts)) < 0) {
        return -1;
    }
#ifdef EPOLLWAKEUP
    /* exported from 3.14 on */
    if (fs_ver->epollwakeup
        && PyModule_AddIntConstant(module, "EPOLLWAKEUP", EPOLLWAKEUP) < 0) {
        return -1;
    }
#endif
    st->epoll_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ep_spec,
                                                              NULL);
    if (st->epoll_type == NULL) {
        return -1;
    }
    return fs_add_object(module, "epoll", (PyObject *)st->epoll_type);
}

#endif /* __linux__ */
