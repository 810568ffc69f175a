/* kqueue.c - the select.kqueue object and the module's KQ_* constants.
 *
 * Built where the platform has kqueue (FS_HAVE_KQUEUE, see backend.h); on
 * Linux only with setup.py's FASTSEL_KQUEUE switch, against libkqueue, so the
 * code can be tested there.  Elsewhere this file compiles to nothing. */
#include "fastsel.h"
#include "debug.h"
#include "fork.h"
#include "kq.h"

#ifdef FS_HAVE_KQUEUE

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

/* Fork: a kqueue is not inherited by fork() (BSD semantics), so in a child
 * every kqueue fd number we hold is dead or, worse, reused.  As CPython
 * >= 3.12.1 does (gh-110395), objects from before the fork read as closed in
 * the child, and their fd is neither used nor closed there.  Instead of a
 * list of live objects each remembers the fork generation (fork.h) it was
 * opened in. */

typedef struct {
    PyObject_HEAD
    int fd;                     /* -1 once closed */
    unsigned long fork_gen;     /* fs_fork_generation() at its making */
    fs_state *st;
} fs_kqueue;

/* The fd, or -1 when closed or inherited through fork(). */
static inline int
kq_fd(fs_kqueue *self)
{
    if (self->fd >= 0 && self->fork_gen != fs_fork_generation()) {
        self->fd = -1;          /* the child must not use or close it */
    }
    return self->fd;
}

/* fd == -1 opens a new kqueue, as CPython's newKqueue_Object does. */
static PyObject *
kq_new_object(PyTypeObject *type, int fd)
{
    fs_state *st = PyType_GetModuleState(type);
    if (st == NULL) {
        return NULL;
    }
    fs_kqueue *self = (fs_kqueue *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->st = st;
    self->fork_gen = fs_fork_generation();
    self->fd = fd;
    if (fd == -1) {
        Py_BEGIN_ALLOW_THREADS
        fd = kqueue();
        Py_END_ALLOW_THREADS
        self->fd = fd;
        if (fd < 0 || fs_kq_set_cloexec(fd) < 0) {
            goto error;
        }
    }
    else if (fd < 0) {
        /* CPython reports whatever errno holds here; be definite */
        self->fd = -1;
        errno = EBADF;
        goto error;
    }
    return (PyObject *)self;

error:
    PyErr_SetFromErrno(PyExc_OSError);
    Py_DECREF(self);
    return NULL;
}

static PyObject *
kq_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "kqueue() takes no positional arguments");
        return NULL;
    }
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "kqueue() takes no keyword arguments");
        return NULL;
    }
    return kq_new_object(type, -1);
}

static void
kq_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    int fd = kq_fd((fs_kqueue *)op);
    if (fd >= 0) {
        Py_BEGIN_ALLOW_THREADS
        (void)close(fd);                    /* nobody to tell */
        Py_END_ALLOW_THREADS
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
kq_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    fs_kqueue *self = (fs_kqueue *)op;
    (void)kq_fd(self);      /* one inherited through fork() is not closed */
    return fs_close_fd(&self->fd);
}

static PyObject *
kq_get_closed(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(kq_fd((fs_kqueue *)op) < 0);
}

static PyObject *
kq_fileno(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    int fd = kq_fd((fs_kqueue *)op);
    if (fd < 0) {
        return fs_closed_error("kqueue");
    }
    return PyLong_FromLong(fd);
}

static PyObject *
kq_fromfd(PyObject *cls, PyObject *arg)
{
    int fd;
    if (fs_as_int(arg, &fd) < 0) {
        return NULL;
    }
    return kq_new_object((PyTypeObject *)cls, fd);
}

/* Small change and event lists live on the stack. */
#define KQ_STACK_EVENTS 16

/* One control() call: the kernel's arguments. */
typedef struct {
    int fd;
    struct kevent chl_stack[KQ_STACK_EVENTS], evl_stack[KQ_STACK_EVENTS];
    struct kevent *chl, *evl;
    int nchanges, maxevents;
} kq_call;

/* Copy the changelist (None or a sequence of kevents) and size the event
 * list.  0, or -1 with an exception. */
static int
kq_prepare(kq_call *c, fs_state *st, PyObject *changelist)
{
    if (changelist != Py_None) {
        PyObject *seq = PySequence_Fast(changelist,
                                        "changelist is not iterable");
        if (seq == NULL) {
            return -1;
        }
        Py_ssize_t size = PySequence_Fast_GET_SIZE(seq);
        if (size > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "changelist is too long");
            Py_DECREF(seq);
            return -1;
        }
        if (size > KQ_STACK_EVENTS) {
            c->chl = PyMem_New(struct kevent, size);
            if (c->chl == NULL) {
                c->chl = c->chl_stack;
                PyErr_NoMemory();
                Py_DECREF(seq);
                return -1;
            }
        }
        PyObject **items = PySequence_Fast_ITEMS(seq);
        for (Py_ssize_t i = 0; i < size; i++) {
            if (!PyObject_TypeCheck(items[i], st->kevent_type)) {
                PyErr_SetString(PyExc_TypeError,
                                "changelist must be an iterable of "
                                "select.kevent objects");
                Py_DECREF(seq);
                return -1;
            }
            c->chl[i] = ((fs_kevent *)items[i])->e;
        }
        c->nchanges = (int)size;
        Py_DECREF(seq);
    }
    if (c->maxevents > KQ_STACK_EVENTS) {
        c->evl = PyMem_New(struct kevent, c->maxevents);
        if (c->evl == NULL) {
            c->evl = c->evl_stack;
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* fs_wait_fn: one kevent() with the whole changelist (a retry after EINTR
 * submits it again, as the stdlib's).  No GIL. */
static int
kq_control_once(void *ctx, int64_t timeout_ns)
{
    kq_call *c = ctx;
    struct timespec ts;
    /* libkqueue can fail without setting errno: never report a stale one */
    errno = 0;
    FS_DEBUG_SYSCALL(FS_SYS_KEVENT);
    return kevent(c->fd, c->chl, c->nchanges, c->evl, c->maxevents,
                  fs_kq_timespec(timeout_ns, &ts));
}

/* The list of n new kevent objects. */
static PyObject *
kq_results(fs_state *st, const struct kevent *evl, int n)
{
    PyObject *result = PyList_New(n);
    if (result == NULL) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        fs_kevent *ev = PyObject_New(fs_kevent, st->kevent_type);
        if (ev == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        ev->e = evl[i];
        PyList_SET_ITEM(result, i, (PyObject *)ev);
    }
    return result;
}

static PyObject *
kq_control(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    fs_kqueue *self = (fs_kqueue *)op;
    int64_t timeout;
    kq_call c;

    if (fs_check_positional("control", nargs, 2, 3) < 0
        || fs_as_int(args[1], &c.maxevents) < 0) {
        return NULL;
    }
    c.fd = kq_fd(self);
    if (c.fd < 0) {
        return fs_closed_error("kqueue");
    }
    if (c.maxevents < 0) {
        PyErr_Format(PyExc_ValueError,
                     "Length of eventlist must be 0 or positive, got %d",
                     c.maxevents);
        return NULL;
    }
    if (fs_timeout_arg(nargs > 2 ? args[2] : Py_None, &fs_kqueue_timeout,
                       &timeout) < 0) {
        return NULL;
    }
    c.chl = c.chl_stack;
    c.evl = c.evl_stack;
    c.nchanges = 0;
    PyObject *result = NULL;
    if (kq_prepare(&c, self->st, args[0]) == 0) {
        int n = fs_wait_retry(kq_control_once, &c, timeout, 0, NULL);
        if (n >= 0) {
            result = kq_results(self->st, c.evl, n);
        }
    }
    if (c.chl != c.chl_stack) {
        PyMem_Free(c.chl);
    }
    if (c.evl != c.evl_stack) {
        PyMem_Free(c.evl);
    }
    return result;
}

static PyMethodDef kq_methods[] = {
    {"fromfd", (PyCFunction)kq_fromfd, METH_O | METH_CLASS,
     PyDoc_STR("fromfd($type, fd, /)\n--\n\n"
               "Create a kqueue object from a given control fd.")},
    {"close", kq_close, METH_NOARGS,
     PyDoc_STR("close($self, /)\n--\n\n"
               "Close the kqueue control file descriptor.\n\n"
               "Further operations on the kqueue object will raise an "
               "exception.")},
    {"fileno", kq_fileno, METH_NOARGS,
     PyDoc_STR("fileno($self, /)\n--\n\n"
               "Return the kqueue control file descriptor.")},
    {"control", (PyCFunction)(void (*)(void))kq_control, METH_FASTCALL,
     PyDoc_STR("control($self, changelist, maxevents, timeout=None, /)\n--\n\n"
               "Calls the kernel kevent function.\n\n"
               "  changelist\n"
               "    Must be an iterable of kevent objects describing the "
               "changes to be made\n"
               "    to the kernel's watch list or None.\n"
               "  maxevents\n"
               "    The maximum number of events that the kernel will "
               "return.\n"
               "  timeout\n"
               "    The maximum time to wait in seconds, or else None to "
               "wait forever.\n"
               "    This accepts floats for smaller timeouts, too.")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef kq_getset[] = {
    {"closed", kq_get_closed, NULL,
     PyDoc_STR("True if the kqueue handler is closed"), NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(kq_doc,
"kqueue()\n\
--\n\
\n\
Kqueue syscall wrapper.\n\
\n\
For example, to start watching a socket for input:\n\
>>> kq = kqueue()\n\
>>> sock = socket()\n\
>>> sock.connect((host, port))\n\
>>> kq.control([kevent(sock, KQ_FILTER_WRITE, KQ_EV_ADD)], 0)\n\
\n\
To wait one second for it to become writeable:\n\
>>> kq.control(None, 1, 1000)\n\
\n\
To stop listening:\n\
>>> kq.control([kevent(sock, KQ_FILTER_WRITE, KQ_EV_DELETE)], 0)");

static PyType_Slot kq_slots[] = {
    {Py_tp_doc, (void *)kq_doc},
    {Py_tp_new, kq_tp_new},
    {Py_tp_dealloc, kq_dealloc},
    {Py_tp_methods, kq_methods},
    {Py_tp_getset, kq_getset},
    {0, NULL},
};

static PyType_Spec kq_spec = {
    .name = "select.kqueue",
    .basicsize = sizeof(fs_kqueue),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = kq_slots,
};

/* ---- module setup ------------------------------------------------------- */

/* The KQ_* names CPython's selectmodule.c exports, where the system has
 * them. */
static const fs_int_const kq_consts[] = {
    /* filters */
    {"KQ_FILTER_READ", (long)(EVFILT_READ)},
    {"KQ_FILTER_WRITE", (long)(EVFILT_WRITE)},
#ifdef EVFILT_AIO
    {"KQ_FILTER_AIO", (long)(EVFILT_AIO)},
#endif
#ifdef EVFILT_VNODE
    {"KQ_FILTER_VNODE", (long)(EVFILT_VNODE)},
#endif
#ifdef EVFILT_PROC
    {"KQ_FILTER_PROC", (long)(EVFILT_PROC)},
#endif
#ifdef EVFILT_NETDEV
    {"KQ_FILTER_NETDEV", (long)(EVFILT_NETDEV)},
#endif
#ifdef EVFILT_SIGNAL
    {"KQ_FILTER_SIGNAL", (long)(EVFILT_SIGNAL)},
#endif
#ifdef EVFILT_TIMER
    {"KQ_FILTER_TIMER", (long)(EVFILT_TIMER)},
#endif

    /* flags */
    {"KQ_EV_ADD", (long)(EV_ADD)},
    {"KQ_EV_DELETE", (long)(EV_DELETE)},
    {"KQ_EV_ENABLE", (long)(EV_ENABLE)},
    {"KQ_EV_DISABLE", (long)(EV_DISABLE)},
    {"KQ_EV_ONESHOT", (long)(EV_ONESHOT)},
    {"KQ_EV_CLEAR", (long)(EV_CLEAR)},
#ifdef EV_SYSFLAGS
    {"KQ_EV_SYSFLAGS", (long)(EV_SYSFLAGS)},
#endif
#ifdef EV_FLAG1
    {"KQ_EV_FLAG1", (long)(EV_FLAG1)},
#endif
    {"KQ_EV_EOF", (long)(EV_EOF)},
    {"KQ_EV_ERROR", (long)(EV_ERROR)},

    /* READ/WRITE filter flag */
#ifdef NOTE_LOWAT
    {"KQ_NOTE_LOWAT", (long)(NOTE_LOWAT)},
#endif

    /* VNODE filter flags: CPython exports them with the filter */
#ifdef EVFILT_VNODE
#  ifdef NOTE_DELETE
    {"KQ_NOTE_DELETE", (long)(NOTE_DELETE)},
#  endif
#  ifdef NOTE_WRITE
    {"KQ_NOTE_WRITE", (long)(NOTE_WRITE)},
#  endif
#  ifdef NOTE_EXTEND
    {"KQ_NOTE_EXTEND", (long)(NOTE_EXTEND)},
#  endif
#  ifdef NOTE_ATTRIB
    {"KQ_NOTE_ATTRIB", (long)(NOTE_ATTRIB)},
#  endif
#  ifdef NOTE_LINK
    {"KQ_NOTE_LINK", (long)(NOTE_LINK)},
#  endif
#  ifdef NOTE_RENAME
    {"KQ_NOTE_RENAME", (long)(NOTE_RENAME)},
#  endif
#  ifdef NOTE_REVOKE
    {"KQ_NOTE_REVOKE", (long)(NOTE_REVOKE)},
#  endif
#endif

    /* PROC filter flags */
#ifdef EVFILT_PROC
#  ifdef NOTE_EXIT
    {"KQ_NOTE_EXIT", (long)(NOTE_EXIT)},
#  endif
#  ifdef NOTE_FORK
    {"KQ_NOTE_FORK", (long)(NOTE_FORK)},
#  endif
#  ifdef NOTE_EXEC
    {"KQ_NOTE_EXEC", (long)(NOTE_EXEC)},
#  endif
#  ifdef NOTE_PCTRLMASK
    {"KQ_NOTE_PCTRLMASK", (long)(NOTE_PCTRLMASK)},
#  endif
#  ifdef NOTE_PDATAMASK
    {"KQ_NOTE_PDATAMASK", (long)(NOTE_PDATAMASK)},
#  endif
#  ifdef NOTE_TRACK
    {"KQ_NOTE_TRACK", (long)(NOTE_TRACK)},
#  endif
#  ifdef NOTE_CHILD
    {"KQ_NOTE_CHILD", (long)(NOTE_CHILD)},
#  endif
#  ifdef NOTE_TRACKERR
    {"KQ_NOTE_TRACKERR", (long)(NOTE_TRACKERR)},
#  endif
#endif

    /* NETDEV filter flags */
#ifdef EVFILT_NETDEV
#  ifdef NOTE_LINKUP
    {"KQ_NOTE_LINKUP", (long)(NOTE_LINKUP)},
#  endif
#  ifdef NOTE_LINKDOWN
    {"KQ_NOTE_LINKDOWN", (long)(NOTE_LINKDOWN)},
#  endif
#  ifdef NOTE_LINKINV
    {"KQ_NOTE_LINKINV", (long)(NOTE_LINKINV)},
#  endif
#endif
};

int
fs_kqueue_setup(PyObject *module, fs_state *st)
{
    if (fs_kevent_setup(module, st) < 0) {
        return -1;
    }
    st->kqueue_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &kq_spec, NULL);
    if (st->kqueue_type == NULL
        || fs_add_object(module, "kqueue", (PyObject *)st->kqueue_type) < 0) {
        return -1;
    }
    return fs_add_ints(module, kq_consts, Py_ARRAY_LENGTH(kq_consts));
}

#else  /* !FS_HAVE_KQUEUE */

/* ISO C wants at least one declaration in a translation unit. */
typedef int fs_kqueue_unavailable;

#endif /* FS_HAVE_KQUEUE */
