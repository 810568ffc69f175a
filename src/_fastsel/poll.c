/* poll.c - select.poll() objects over an fd table (fdtab.h). */
#include "fastsel.h"
#include "debug.h"
#include "fdtab.h"

#include <poll.h>

typedef struct {
    PyObject_HEAD
    /* registrations, in registration order; each token is a strong
     * reference to the fd's int object, made once at register() so poll()
     * results need no int allocation */
    fs_fdtab tab;
    /* What poll(2) runs on: a copy of tab taken with the GIL when tab has
     * changed, so register()/unregister() from another thread during a poll
     * never resize or free the memory the kernel is writing to.  pobj holds
     * its own references to the fd ints. */
    struct pollfd *pfd;
    PyObject **pobj;
    int plen, pcap;
    int dirty;
    int running;            /* a poll() is waiting (issue 8865) */
} fs_poll;

#define TOK_OBJ(tok) ((PyObject *)(uintptr_t)(tok))

/* --- the poll object ---------------------------------------------------- */

/* register (modify == 0) and modify: the stdlib's checks in its order. */
static PyObject *
poll_set(fs_poll *self, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames, int modify)
{
    unsigned short mask = POLLIN | POLLPRI | POLLOUT;
    if (fs_no_kwargs(kwnames, modify ? "poll.modify" : "poll.register") < 0
        || fs_check_positional(modify ? "modify" : "register", nargs,
                               1 + modify, 2) < 0) {
        return NULL;
    }
    int fd = fs_fileno(args[0]);
    if (fd < 0 || (nargs == 2 && fs_as_ushort(args[1], &mask) < 0)) {
        return NULL;
    }
    int idx = fdtab_find(&self->tab, fd);
    if (idx >= 0) {
        /* like a dict store: the fd keeps its place */
        self->tab.ent[idx].events = (short)mask;
    }
    else if (modify) {
        errno = ENOENT;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    else {
        PyObject *key;
        if (PyLong_CheckExact(args[0])) {
            key = args[0];      /* fd == the int itself */
            Py_INCREF(key);
        }
        else if ((key = PyLong_FromLong(fd)) == NULL) {
            return NULL;
        }
        if (fdtab_add(&self->tab, fd, (short)mask,
                      (uint64_t)(uintptr_t)key) < 0) {
            Py_DECREF(key);
            return PyErr_NoMemory();
        }
    }
    self->dirty = 1;
    Py_RETURN_NONE;
}

static PyObject *
poll_register(fs_poll *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    return poll_set(self, args, nargs, kwnames, 0);
}

static PyObject *
poll_modify(fs_poll *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    return poll_set(self, args, nargs, kwnames, 1);
}

static PyObject *
poll_unregister(fs_poll *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    if (fs_no_kwargs(kwnames, "poll.unregister") < 0) {
        return NULL;
    }
    if (nargs != 1) {
        /* the stdlib's unregister is METH_O */
        PyErr_Format(PyExc_TypeError, "poll.unregister() takes exactly one "
                     "argument (%zd given)", nargs);
        return NULL;
    }
    int fd = fs_fileno(args[0]);
    if (fd < 0) {
        return NULL;
    }
    int idx = fdtab_find(&self->tab, fd);
    if (idx < 0) {
        /* KeyError(fd), as dict's (its args a 1-tuple) */
        PyObject *tup = Py_BuildValue("(i)", fd);
        if (tup != NULL) {
            PyErr_SetObject(PyExc_KeyError, tup);
            Py_DECREF(tup);
        }
        return NULL;
    }
    PyObject *key = TOK_OBJ(self->tab.tok[idx]);
    fdtab_remove(&self->tab, idx);
    self->dirty = 1;
    Py_DECREF(key);
    Py_RETURN_NONE;
}

/* Refresh the private copy polled by poll() (GIL held, no poll running). */
static int
poll_sync(fs_poll *self)
{
    if (fdtab_compact(&self->tab) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    int n = self->tab.len;
    if (n > self->pcap) {
        struct pollfd *pfd = PyMem_Realloc(self->pfd,
                                           (size_t)n * sizeof(*pfd));
        if (pfd == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->pfd = pfd;
        PyObject **pobj = PyMem_Realloc(self->pobj, (size_t)n * sizeof(*pobj));
        if (pobj == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->pobj = pobj;
        self->pcap = n;
    }
    if (n > 0) {
        memcpy(self->pfd, self->tab.ent, (size_t)n * sizeof(*self->pfd));
    }
    /* take the new references before dropping the old ones */
    for (int i = 0; i < n; i++) {
        Py_INCREF(TOK_OBJ(self->tab.tok[i]));
    }
    for (int i = 0; i < self->plen; i++) {
        Py_DECREF(self->pobj[i]);
    }
    for (int i = 0; i < n; i++) {
        self->pobj[i] = TOK_OBJ(self->tab.tok[i]);
    }
    self->plen = n;
    self->dirty = 0;
    return 0;
}

/* ppoll() where the system has it (Linux, FreeBSD, NetBSD, OpenBSD;
 * not macOS), as CPython's HAVE_PPOLL. */
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) \
    || defined(__OpenBSD__) || defined(__DragonFly__)
#  define FS_PPOLL_OK 1
#else
#  define FS_PPOLL_OK 0
#endif

int
fs_poll_timeout_unbounded(void)
{
    return FS_PPOLL_OK && fs_ver->poll_ppoll;
}

/* What one poll() waits on. */
typedef struct {
    struct pollfd *pfd;
    nfds_t nfd;
    int use_ppoll;                  /* never set unless FS_PPOLL_OK */
} poll_call;

/* fs_wait_fn: one poll(2) (or ppoll) of the private copy.  No GIL. */
static int
poll_once(void *ctx, int64_t timeout_ns)
{
    poll_call *c = ctx;
    FS_DEBUG_SYSCALL(FS_SYS_POLL);
#if FS_PPOLL_OK
    if (c->use_ppoll) {
        struct timespec ts;
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        return ppoll(c->pfd, c->nfd, timeout_ns < 0 ? NULL : &ts, NULL);
    }
#endif
    /* checked to fit an int before the first call; never grows after */
    long long ms = timeout_ns < 0 ? -1
                   : fs_ns_divide(timeout_ns, 1000000, FS_ROUND_UP);
    if (ms < 0) {
        /* any negative timeout blocks; some systems want exactly INFTIM */
#ifdef INFTIM
        ms = INFTIM;
#else
        ms = -1;
#endif
    }
    return poll(c->pfd, c->nfd, (int)ms);
}

static PyObject *
poll_poll(fs_poll *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    int64_t timeout;
    poll_call c;
    c.use_ppoll = fs_poll_timeout_unbounded();
    fs_timeout_spec spec = fs_poll_timeout;
    spec.int_ms = !c.use_ppoll;     /* ppoll() takes any PyTime_t */
    if (fs_no_kwargs(kwnames, "poll.poll") < 0
        || fs_check_positional("poll", nargs, 0, 1) < 0
        || fs_timeout_arg(nargs == 0 ? Py_None : args[0], &spec,
                          &timeout) < 0) {
        return NULL;
    }
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "concurrent poll() invocation");
        return NULL;
    }
    if (self->dirty && poll_sync(self) < 0) {
        return NULL;
    }

    c.pfd = self->pfd;
    c.nfd = (nfds_t)self->plen;
    self->running = 1;
    int n = fs_wait_retry(poll_once, &c, timeout, 0, NULL);

    /* Still marked running while the results are read: an allocation here
     * may run a finalizer (and so other threads) that polls again, and that
     * must not re-sync pfd/pobj under this loop. */
    PyObject *result = n < 0 ? NULL : PyList_New(n);
    for (int i = 0, j = 0; result != NULL && j < n && i < (int)c.nfd; i++) {
        if (c.pfd[i].revents == 0) {
            continue;
        }
        PyObject *tup = PyTuple_New(2);
        if (tup == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, j, tup);
        j++;
        PyTuple_SET_ITEM(tup, 0, Py_NewRef(self->pobj[i]));
        /* & 0xffff: revents is a short (POLLNVAL is 0x8000 on AIX) */
        PyObject *v = PyLong_FromLong(c.pfd[i].revents & 0xffff);
        if (v == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyTuple_SET_ITEM(tup, 1, v);
    }
    self->running = 0;
    return result;
}

static void
poll_dealloc(fs_poll *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    for (int i = 0; i < self->tab.len; i++) {
        if (self->tab.ent[i].fd >= 0) {
            Py_DECREF(TOK_OBJ(self->tab.tok[i]));
        }
    }
    fdtab_free(&self->tab);
    for (int i = 0; i < self->plen; i++) {
        Py_DECREF(self->pobj[i]);
    }
    PyMem_Free(self->pfd);
    PyMem_Free(self->pobj);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

#ifdef FS_PY_POLL_TP_NEW
/* 3.9 has no Py_TPFLAGS_DISALLOW_INSTANTIATION; its select.poll says this */
static PyObject *
poll_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    (void)type;
    (void)args;
    (void)kwargs;
    PyErr_SetString(PyExc_TypeError, "Cannot create 'poll' instances");
    return NULL;
}
#endif

static PyMethodDef poll_methods[] = {
    {"register", (PyCFunction)(void (*)(void))poll_register,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("register($self, fd,\n"
               "         eventmask=select.POLLIN | select.POLLPRI "
               "| select.POLLOUT, /)\n"
               "--\n\n"
               "Watch fd for the events in eventmask (again: replace them).")},
    {"modify", (PyCFunction)(void (*)(void))poll_modify,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("modify($self, fd, eventmask, /)\n--\n\n"
               "Change the events watched for a registered fd.")},
    {"unregister", (PyCFunction)(void (*)(void))poll_unregister,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("unregister($self, fd, /)\n--\n\n"
               "Stop watching fd.")},
    {"poll", (PyCFunction)(void (*)(void))poll_poll,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("poll($self, timeout=None, /)\n--\n\n"
               "Wait up to timeout milliseconds (None or negative: no limit)\n"
               "and return [(fd, revents), ...] for the fds with events.")},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot poll_slots[] = {
    {Py_tp_dealloc, poll_dealloc},
    {Py_tp_methods, poll_methods},
#ifdef FS_PY_POLL_TP_NEW
    {Py_tp_new, poll_tp_new},
#endif
    {0, NULL},
};

/* Named as the stdlib's type so that messages naming it are identical. */
static PyType_Spec poll_spec = {
    .name = "select.poll",
    .basicsize = sizeof(fs_poll),
    .flags = Py_TPFLAGS_DEFAULT | FS_PY_DISALLOW_INSTANTIATION,
    .slots = poll_slots,
};

static PyObject *
fs_poll_new(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    (void)args;
    if (fs_no_kwargs(kwnames, "select.poll") < 0) {
        return NULL;
    }
    if (nargs != 0) {
        PyErr_Format(PyExc_TypeError,
                     "select.poll() takes no arguments (%zd given)", nargs);
        return NULL;
    }
    fs_state *st = fs_get_state(module);
    fs_poll *self = PyObject_New(fs_poll, st->poll_type);
    if (self == NULL) {
        return NULL;
    }
    fdtab_init(&self->tab);
    self->pfd = NULL;
    self->pobj = NULL;
    self->plen = self->pcap = 0;
    self->dirty = 0;
    self->running = 0;
    return (PyObject *)self;
}

static PyMethodDef poll_functions[] = {
    {"poll", (PyCFunction)(void (*)(void))fs_poll_new,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("poll($module, /)\n--\n\n"
               "Return a new poll object: register fds, then poll() them.")},
    {NULL, NULL, 0, NULL},
};

int
fs_poll_setup(PyObject *module, fs_state *st)
{
    st->poll_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &poll_spec, NULL);
    if (st->poll_type == NULL) {
        return -1;
    }
    if (PyModule_AddFunctions(module, poll_functions) < 0) {
        return -1;
    }
    static const fs_int_const consts[] = {
        {"POLLIN", POLLIN},
        {"POLLPRI", POLLPRI},
        {"POLLOUT", POLLOUT},
        {"POLLERR", POLLERR},
        {"POLLHUP", POLLHUP},
        {"POLLNVAL", POLLNVAL},
#ifdef POLLRDNORM
        {"POLLRDNORM", POLLRDNORM},
#endif
#ifdef POLLRDBAND
        {"POLLRDBAND", POLLRDBAND},
#endif
#ifdef POLLWRNORM
        {"POLLWRNORM", POLLWRNORM},
#endif
#ifdef POLLWRBAND
        {"POLLWRBAND", POLLWRBAND},
#endif
#ifdef POLLMSG
        {"POLLMSG", POLLMSG},
#endif
#ifdef POLLRDHUP
        {"POLLRDHUP", POLLRDHUP},
#endif
    };
    return fs_add_ints(module, consts, Py_ARRAY_LENGTH(consts));
}
