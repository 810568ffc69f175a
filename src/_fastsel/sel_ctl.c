/* sel_ctl.c - register(), unregister() and modify(): the key bookkeeping in
 * the stdlib's order of effects, and the kernel interest changes, made
 * without the GIL where they enter the kernel. */
#include "selector.h"

#include <errno.h>

typedef enum { CTL_ADD, CTL_MODIFY, CTL_REMOVE } ctl_op;

static inline int
ctl_call(const fs_backend_ops *ops, fs_backend *be, ctl_op op, int fd,
         int old, int events, uint64_t token)
{
    switch (op) {
    case CTL_ADD:
        return ops->add(be, fd, events, token);
    case CTL_MODIFY:
        return ops->modify(be, fd, old, events, token);
    default:
        return ops->remove(be, fd, old);
    }
}

/* An interest change of fd, from its kernel call to the end of its
 * bookkeeping.  Where the kind's backend enters the kernel, the GIL is
 * released around the call, as the stdlib's poller objects do (a FUSE file's
 * poll hook may wait on a thread of this process); then
 *  - the change's record in s->ctls keeps close() from freeing the backend
 *    until ctl_leave();
 *  - the caller must look its slot up again after the call: other threads
 *    may have changed the table (and moved or grown it);
 *  - when another change of the same fd overlaps (marked in both records),
 *    the kernel may hold either outcome: ctl_leave() then makes it hold
 *    what the table holds. */
static inline void
ctl_enter(sel_object *s, sel_ctl_rec *rec, int fd)
{
    rec->fd = fd;
    rec->raced = 0;
    if (!s->ops->ctl_nogil) {
        return;                     /* nothing can run in between */
    }
    for (sel_ctl_rec *r = s->ctls; r != NULL; r = r->next) {
        if (r->fd == fd) {
            r->raced = rec->raced = 1;
        }
    }
    rec->next = s->ctls;
    s->ctls = rec;
}

/* The kernel call: 0, or -1 with errno. */
static int
ctl_kernel(sel_object *s, ctl_op op, int fd, int old, int events,
           uint64_t token)
{
    if (s->closed || s->be == NULL) {
        /* closed by another thread during an earlier call of this change */
        errno = EBADF;
        return -1;
    }
    if (!s->ops->ctl_nogil) {
        return ctl_call(s->ops, s->be, op, fd, old, events, token);
    }
    const fs_backend_ops *ops = s->ops;
    fs_backend *be = s->be;
    int rc, err;
    Py_BEGIN_ALLOW_THREADS
    rc = ctl_call(ops, be, op, fd, old, events, token);
    err = errno;
    Py_END_ALLOW_THREADS
    errno = err;
    return rc;
}

/* Unlink rec; 1 if another change of its fd overlapped it. */
static int
ctl_unlink(sel_object *s, sel_ctl_rec *rec)
{
    if (!s->ops->ctl_nogil) {
        return 0;
    }
    sel_ctl_rec **p = &s->ctls;
    while (*p != NULL && *p != rec) {
        p = &(*p)->next;
    }
    if (*p == NULL) {
        /* a fork in Python code run during the bookkeeping: the child's
         * rebuilt backend has nothing in flight */
        return 0;
    }
    *p = rec->next;
    if (s->closed) {
        sel_finish_close(s);        /* close() may have left it to us */
    }
    return rec->raced;
}

/* After a change that overlapped others of the same fd: make the kernel
 * hold what the table now holds for fd.  A round that overlaps yet another
 * change is repeated (that one will resync too), hence the bound. */
static void
ctl_resync(sel_object *s, int fd)
{
    int saved = errno;
    int raced = 1;
    for (int round = 0; raced && round < 16 && !s->closed; round++) {
        sel_ctl_rec rec;
        ctl_enter(s, &rec, fd);
        sel_slot *sl = slot_find(s, fd);
        if (sl == NULL) {
            (void)ctl_kernel(s, CTL_REMOVE, fd, FS_READ | FS_WRITE, 0, 0);
        }
        else {
            int events = sl->events;
            uint64_t token = make_token(fd, sl->gen);
            if (ctl_kernel(s, CTL_MODIFY, fd, FS_READ | FS_WRITE, events,
                           token) < 0 && errno == ENOENT && !rec.raced) {
                /* not in the kernel (epoll): add it */
                (void)ctl_kernel(s, CTL_ADD, fd, 0, events, token);
            }
        }
        raced = ctl_unlink(s, &rec);
    }
    errno = saved;
}

static void
ctl_leave(sel_object *s, sel_ctl_rec *rec)
{
    if (ctl_unlink(s, rec)) {
        ctl_resync(s, rec->fd);
    }
}

void
sel_readd_all(sel_object *s)
{
    /* a forked child: one thread, the GIL held throughout */
    for (int32_t fd = s->head; fd >= 0;) {
        sel_slot *sl = slot_find(s, fd);
        assert(sl != NULL);
        if (sl->events) {
            (void)s->ops->add(s->be, fd, sl->events, make_token(fd, sl->gen));
        }
        fd = sl->next;
    }
}

/* ---- register ----------------------------------------------------------- */

/* Store key for fd and tell the kernel, in the stdlib's order: another
 * thread sees the key while the kernel call runs, and a refusal takes it
 * back.  Steals key; a new reference to it, or NULL. */
static PyObject *
register_key(sel_object *s, int fd, PyObject *key, int mask, int isbool)
{
    sel_slot *sl = slot_store(s, fd, key, mask, isbool);
    if (sl == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    uint32_t gen = sl->gen;
    sel_ctl_rec rec;
    ctl_enter(s, &rec, fd);
    if (ctl_kernel(s, CTL_ADD, fd, 0, mask, make_token(fd, gen)) < 0) {
        int err = errno;
        sl = slot_find(s, fd);
        if (sl != NULL && sl->gen == gen) {
            Py_DECREF(slot_take(s, fd, sl));
        }
        ctl_leave(s, &rec);
        Py_DECREF(key);
        fs_errno_error(err);
        return NULL;
    }
    ctl_leave(s, &rec);
    return key;
}

PyObject *
sel_do_register(sel_object *s, PyObject *fileobj, PyObject *events,
                PyObject *data)
{
    if (sel_ready(s) < 0) {
        return NULL;
    }
    if (s->driver != NULL) {
        return sel_py_register(s, fileobj, events, data);
    }
    long cfd;
    int mask;
    PyObject *key = sel_register_key(s, fileobj, events, data, &cfd, &mask);
    if (key == NULL) {
        return NULL;
    }
    int isbool = PyBool_Check(PyTuple_GET_ITEM(key, 1));
    if (s->kind->bool_warn_ctl && sel_warn_bool_fd(isbool)) {
        Py_DECREF(key);
        return NULL;
    }
    /* fileno() and __and__ may have run code that closed or forked; the
     * allocation and the warning, code that registered this fd (kqueue's
     * EV_ADD would then succeed over the old registration) */
    if (sel_ready(s) < 0) {
        Py_DECREF(key);
        return NULL;
    }
    if (slot_find(s, cfd) != NULL) {
        PyErr_Format(PyExc_KeyError, "%R (FD %S) is already registered",
                     fileobj, PyTuple_GET_ITEM(key, 1));
        Py_DECREF(key);
        return NULL;
    }
    return register_key(s, (int)cfd, key, mask, isbool);
}

/* (fileobj, events, data=None) of register() and modify(): the plain
 * positional call is bound without fs_parse_pyfunc. */
static int
parse_fileobj_events_data(sel_object *s, int which, const char *meth,
                          PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames, PyObject **a)
{
    static const char *const names[] = {"fileobj", "events", "data"};
    if (kwnames == NULL && nargs >= 2 && nargs <= 3) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = nargs == 3 ? args[2] : Py_None;
        return 0;
    }
    if (fs_parse_pyfunc(s->kind->owner[which], meth, names, 2, 3, args,
                        nargs, kwnames, a) < 0) {
        return -1;
    }
    if (a[2] == NULL) {
        a[2] = Py_None;
    }
    return 0;
}

PyObject *
sel_register(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *a[3];
    if (parse_fileobj_events_data(s, SEL_M_REGISTER, "register", args, nargs,
                                  kwnames, a) < 0) {
        return NULL;
    }
    return sel_do_register(s, a[0], a[1], a[2]);
}

/* ---- unregister --------------------------------------------------------- */

PyObject *
sel_do_unregister(sel_object *s, PyObject *fileobj)
{
    if (sel_ready(s) < 0) {
        return NULL;
    }
    if (s->driver != NULL) {
        return sel_py_unregister(s, fileobj);
    }
    long cfd;
    sel_slot *sl = sel_registered_slot(s, fileobj, &cfd);
    if (sl == NULL) {
        return NULL;
    }
    if (s->fork_seen != fs_fork_generation()) {
        /* fileno() forked: rebuild first (the slot may move) */
        if (sel_ready(s) < 0) {
            return NULL;
        }
        sl = slot_find(s, cfd);
        assert(sl != NULL);
    }
    int events = sl->events;
    int isbool = sl->boolfd;
    /* the stdlib's order: the key goes, then the poller is told */
    PyObject *key = slot_take(s, (int)cfd, sl);
    /* an fd closed since registration makes the kernel refuse: ignored */
    sel_ctl_rec rec;
    ctl_enter(s, &rec, (int)cfd);
    (void)ctl_kernel(s, CTL_REMOVE, (int)cfd, events, 0, 0);
    ctl_leave(s, &rec);
    if (s->kind->bool_warn_ctl && sel_warn_bool_fd(isbool)) {
        Py_DECREF(key);
        return NULL;
    }
    return key;
}

PyObject *
sel_unregister(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    static const char *const names[] = {"fileobj"};
    PyObject *a[1];
    if (kwnames == NULL && nargs == 1) {
        a[0] = args[0];
    }
    else if (fs_parse_pyfunc(s->kind->owner[SEL_M_REGISTER], "unregister",
                             names, 1, 1, args, nargs, kwnames, a) < 0) {
        return NULL;
    }
    return sel_do_unregister(s, a[0]);
}

/* ---- modify ------------------------------------------------------------- */

/* Does this instance use our own register/unregister?  (A subclass or an
 * instance attribute may override them; the stdlib's modify() then calls
 * the override.) */
static int
sel_plain(sel_object *s)
{
    return Py_TYPE(s) == s->st->selector_types[s->kind->index]
           && (s->dict == NULL || PyDict_GET_SIZE(s->dict) == 0);
}

/* Drop fd's key after the poller refused a modify, as the stdlib does;
 * also drop any kernel leftover so the fd can be registered again. */
static void
modify_drop(sel_object *s, long cfd, sel_slot *sl)
{
    int old = sl->events;
    Py_DECREF(slot_take(s, (int)cfd, sl));
    sel_ctl_rec rec;
    ctl_enter(s, &rec, (int)cfd);
    (void)ctl_kernel(s, CTL_REMOVE, (int)cfd, old, 0, 0);
    ctl_leave(s, &rec);
}

/* _PollLikeSelector.modify's one kernel modify (no validation of events).
 * Returns the previous kernel mask with rec entered (the caller leaves it
 * after its bookkeeping), or -1 with an exception and rec not entered. */
static int
modify_poller_kernel(sel_object *s, PyObject *fileobj, long cfd,
                     PyObject *key, PyObject *events, sel_ctl_rec *rec)
{
    int mask = sel_poller_mask(events);
    if (mask < 0) {
        return -1;
    }
    sel_slot *sl = slot_find(s, cfd);   /* __and__ may have run Python code */
    if (sl == NULL || slot_key(sl) != key) {
        /* unregistered meanwhile: the stdlib's dict-free key path */
        sel_err_not_registered(fileobj);
        return -1;
    }
    if (s->kind->bool_warn_ctl && sel_warn_bool_fd(sl->boolfd) < 0) {
        /* raised where the stdlib's poller.modify() would: the key is
         * dropped as for any failure there.  A warning hook may have run
         * code that moved or replaced the slot. */
        sl = slot_find(s, cfd);
        if (sl != NULL && slot_key(sl) == key) {
            modify_drop(s, cfd, sl);
        }
        return -1;
    }
    if (sel_ready(s) < 0) {
        return -1;
    }
    sl = slot_find(s, cfd);             /* a warning filter may run code */
    if (sl == NULL || slot_key(sl) != key) {
        sel_err_not_registered(fileobj);
        return -1;
    }
    int old_mask = sl->events;
    uint32_t gen = sl->gen;
    ctl_enter(s, rec, (int)cfd);
    if (ctl_kernel(s, CTL_MODIFY, (int)cfd, old_mask, mask,
                   make_token((int)cfd, gen)) < 0) {
        int err = errno;
        sl = slot_find(s, cfd);
        if (sl != NULL && sl->gen == gen) {
            modify_drop(s, cfd, sl);
        }
        ctl_leave(s, rec);
        fs_errno_error(err);
        return -1;
    }
    sl = slot_find(s, cfd);
    if (sl != NULL && slot_key(sl) == key) {
        sl->events = (uint8_t)mask;
    }
    return old_mask;
}

/* _PollLikeSelector.modify (epoll, poll) after the lookup; ne: whether
 * events != key.events. */
static PyObject *
modify_poller(sel_object *s, PyObject *fileobj, long cfd, PyObject *key,
              int ne, PyObject *events, PyObject *data)
{
    int old_mask = -1;
    sel_ctl_rec rec;
    if (ne) {
        old_mask = modify_poller_kernel(s, fileobj, cfd, key, events, &rec);
        if (old_mask < 0) {
            return NULL;
        }
    }
    /* the kernel change is not over until the key is replaced: another
     * change of fd meanwhile is an overlap (ctl_leave) */
    PyObject *result;
    int dne = sel_not_equal(data, PyTuple_GET_ITEM(key, 3));
    if (dne < 0) {
        sel_slot *sl = slot_find(s, cfd);
        if (old_mask >= 0 && sl != NULL && slot_key(sl) == key) {
            /* the key keeps its events: so does result masking */
            sl->events = (uint8_t)old_mask;
        }
        result = NULL;
    }
    else if (!ne && !dne) {
        Py_INCREF(key);
        result = key;
    }
    else {
        result = sel_replace_key(s, cfd, key, events, data);
    }
    if (ne) {
        ctl_leave(s, &rec);
    }
    return result;
}

/* _BaseSelectorImpl.modify (select, kqueue) after the lookup. */
static PyObject *
modify_base(sel_object *s, PyObject *fileobj, long cfd, PyObject *key,
            int ne, PyObject *events, PyObject *data)
{
    if (ne) {
        if (sel_plain(s)) {
            PyObject *k = sel_do_unregister(s, fileobj);
            if (k == NULL) {
                return NULL;
            }
            Py_DECREF(k);
            return sel_do_register(s, fileobj, events, data);
        }
        /* self.unregister() / self.register(): overrides run */
        PyObject *name = PyUnicode_FromString("unregister");
        PyObject *k = name ? PyObject_CallMethodObjArgs(
            (PyObject *)s, name, fileobj, NULL) : NULL;
        Py_XDECREF(name);
        if (k == NULL) {
            return NULL;
        }
        Py_DECREF(k);
        name = PyUnicode_FromString("register");
        PyObject *result = name ? PyObject_CallMethodObjArgs(
            (PyObject *)s, name, fileobj, events, data, NULL) : NULL;
        Py_XDECREF(name);
        return result;
    }
    int dne = sel_not_equal(data, PyTuple_GET_ITEM(key, 3));
    if (dne < 0) {
        return NULL;
    }
    if (!dne) {
        Py_INCREF(key);
        return key;
    }
    return sel_replace_key(s, cfd, key, PyTuple_GET_ITEM(key, 2), data);
}

PyObject *
sel_modify(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    PyObject *a[3];
    if (parse_fileobj_events_data(s, SEL_M_MODIFY, "modify", args, nargs,
                                  kwnames, a) < 0) {
        return NULL;
    }
    PyObject *fileobj = a[0], *events = a[1], *data = a[2];
    if (sel_ready(s) < 0) {
        return NULL;
    }
    if (s->driver != NULL && s->kind->modify_poller) {
        return sel_py_modify(s, fileobj, events, data);
    }
    long cfd;
    PyObject *key = sel_registered_key(s, fileobj, &cfd);
    if (key == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    int ne = sel_not_equal(events, PyTuple_GET_ITEM(key, 2));
    if (ne >= 0) {
        result = s->kind->modify_poller
            ? modify_poller(s, fileobj, cfd, key, ne, events, data)
            : modify_base(s, fileobj, cfd, key, ne, events, data);
    }
    Py_DECREF(key);
    return result;
}

