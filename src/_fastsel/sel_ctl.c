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

/* The kernel's interest in fd is what this selector last asked for, in the
 * order the calls were made (GIL order); each slot notes it (kev), apart
 * from the key's events, which mask results: as with the stdlib's dict and
 * poller object, the two can differ (Python code run inside modify() may
 * change the fd's registration between the kernel call and the key store).
 *
 * Where the kind's backend enters the kernel, the GIL is released around
 * each call, as the stdlib's poller objects do (a FUSE file's poll hook may
 * wait on a thread of this process).  Other threads then run meanwhile: two
 * calls of one fd may overlap and land in either order, and fd's slot may
 * change.  So each call is recorded in s->ctls (on its caller's stack) while
 * it runs; another call of its fd then (`raced`) or a change of fd's slot
 * (`touched`, sel_ctl_touch) makes it end with a resync: the kernel is made
 * to hold the fd's kev.  A record also keeps close() from freeing the
 * backend under the call.  After a call the caller must look its slot up
 * again: the table may have changed (and moved or grown). */
static inline void
ctl_enter(sel_object *s, sel_ctl_rec *rec, int fd)
{
    rec->fd = fd;
    rec->raced = 0;
    rec->touched = 0;
    for (sel_ctl_rec *r = s->ctls; r != NULL; r = r->next) {
        if (r->fd == fd) {
            r->raced = rec->raced = 1;
        }
    }
    rec->next = s->ctls;
    s->ctls = rec;
}

void
sel_ctl_touch_slow(sel_object *s, long fd)
{
    for (sel_ctl_rec *r = s->ctls; r != NULL; r = r->next) {
        if (r->fd == fd) {
            r->touched = 1;
        }
    }
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

/* Unlink rec; 1 if others ran on its fd meanwhile (ctl_settle must resync
 * the fd). */
static int
ctl_unlink(sel_object *s, sel_ctl_rec *rec)
{
    sel_ctl_rec **p = &s->ctls;
    while (*p != NULL && *p != rec) {
        p = &(*p)->next;
    }
    if (*p == NULL) {
        /* a fork in Python code run meanwhile: the child's rebuilt backend
         * has nothing in flight */
        return 0;
    }
    *p = rec->next;
    if (s->closed) {
        sel_finish_close(s);        /* close() may have left it to us */
    }
    return rec->raced || rec->touched;
}

/* One resync round: make the kernel hold fd's kev (none without a slot). */
static void
ctl_resync_round(sel_object *s, int fd, const sel_ctl_rec *rec)
{
    const int all = FS_READ | FS_WRITE;
    sel_slot *sl = slot_find(s, fd);
    if (sl == NULL || !(sl->kev & SEL_KEV_IN)) {
        (void)ctl_kernel(s, CTL_REMOVE, fd, all, 0, 0);
        return;
    }
    int events = sl->kev & all;
    uint64_t token = make_token(fd, sl->gen);
    if (s->ops->modify == NULL) {
        /* kqueue: drop both filters, add the wanted ones */
        (void)ctl_kernel(s, CTL_REMOVE, fd, all, 0, 0);
        if (events && !rec->raced) {
            (void)ctl_kernel(s, CTL_ADD, fd, 0, events, token);
        }
    }
    else if (ctl_kernel(s, CTL_MODIFY, fd, all, events, token) < 0
             && errno == ENOENT && !rec->raced) {
        (void)ctl_kernel(s, CTL_ADD, fd, 0, events, token);
    }
}

/* After a call that others ran beside (raced != 0): resync fd.  A round
 * run beside in turn is repeated; a call that raced it is marked too and
 * resyncs when it ends, hence the bound. */
static void
ctl_settle(sel_object *s, int fd, int raced)
{
    int saved = errno;
    for (int round = 0; raced && round < 16 && !s->closed; round++) {
        sel_ctl_rec rec;
        ctl_enter(s, &rec, fd);
        ctl_resync_round(s, fd, &rec);
        raced = ctl_unlink(s, &rec);
    }
    errno = saved;
}

/* One interest change of fd: kev of fd's slot (if any) notes what the
 * kernel will hold, then the recorded kernel call.  With `pending`, the
 * resync is left to the caller (*pending: whether one is due), for after
 * its own bookkeeping.  0, or -1 with errno. */
static int
ctl_change(sel_object *s, ctl_op op, int fd, int old, int events,
           uint64_t token, int *pending)
{
    sel_slot *sl = slot_find(s, fd);
    if (sl != NULL) {
        sl->kev = op == CTL_REMOVE
            ? 0 : (uint8_t)((events & (FS_READ | FS_WRITE)) | SEL_KEV_IN);
    }
    sel_ctl_rec rec;
    ctl_enter(s, &rec, fd);
    int rc = ctl_kernel(s, op, fd, old, events, token);
    int err = errno;
    int due = ctl_unlink(s, &rec);
    if (pending != NULL) {
        *pending = due;
    }
    else {
        ctl_settle(s, fd, due);
    }
    errno = err;
    return rc;
}

/* After the kernel refused a register or modify (errno err), the stdlib's
 * `except: super().unregister(fileobj); raise`: fd's key goes and the
 * OSError is raised, or, when another thread unregistered fd meanwhile,
 * the KeyError of that unregister (its context the OSError).  1 if a key
 * was dropped. */
static int
ctl_refused(sel_object *s, PyObject *fileobj, long cfd, int err)
{
    sel_slot *sl = slot_find(s, cfd);
    if (sl != NULL) {
        Py_DECREF(slot_take(s, (int)cfd, sl));
        fs_errno_error(err);
        return 1;
    }
    fs_errno_error(err);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    sel_err_not_registered(fileobj);
    if (value != NULL) {
        PyObject *t2, *v2, *tb2;
        PyErr_Fetch(&t2, &v2, &tb2);
        PyErr_NormalizeException(&t2, &v2, &tb2);
        if (v2 != NULL) {
            PyException_SetContext(v2, value);  /* steals value */
            PyException_SetCause(v2, NULL);     /* `from None` */
        }
        else {
            Py_DECREF(value);
        }
        PyErr_Restore(t2, v2, tb2);
    }
    return 0;
}

void
sel_readd_all(sel_object *s)
{
    /* a forked child: one thread, the GIL held throughout; the parent's
     * kernel object held each fd's kev */
    for (int32_t fd = s->head; fd >= 0;) {
        sel_slot *sl = slot_find(s, fd);
        assert(sl != NULL);
        int events = sl->kev & (FS_READ | FS_WRITE);
        if ((sl->kev & SEL_KEV_IN) && events) {
            (void)s->ops->add(s->be, fd, events, make_token(fd, sl->gen));
        }
        else {
            sl->kev = 0;
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
    int pending;
    if (ctl_change(s, CTL_ADD, fd, 0, mask, make_token(fd, sl->gen),
                   &pending) < 0) {
        (void)ctl_refused(s, PyTuple_GET_ITEM(key, 0), fd, errno);
        ctl_settle(s, fd, pending);
        Py_DECREF(key);
        return NULL;
    }
    ctl_settle(s, fd, pending);
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
    int missing = ctl_change(s, CTL_REMOVE, (int)cfd, events, 0, 0, NULL) < 0
                  && errno == ENOENT && s->kind->unregister_missing;
    if (s->kind->bool_warn_ctl && sel_warn_bool_fd(isbool)) {
        Py_DECREF(key);
        return NULL;
    }
    if (missing) {
        PyObject *fd = PyLong_FromLong(cfd);
        if (fd != NULL) {
            PyErr_SetObject(PyExc_KeyError, fd);
            Py_DECREF(fd);
        }
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
    (void)ctl_change(s, CTL_REMOVE, (int)cfd, old, 0, 0, NULL);
}

/* _PollLikeSelector.modify's one kernel modify (no validation of events):
 * the new poller mask, or -1 with an exception.  *pending: other threads
 * ran on fd during the call (the caller resyncs). */
static int
modify_poller_kernel(sel_object *s, PyObject *fileobj, long cfd,
                     PyObject *key, PyObject *events, int *pending)
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
    int old = sl->events;
    if (ctl_change(s, CTL_MODIFY, (int)cfd, old, mask,
                   make_token((int)cfd, sl->gen), pending) < 0) {
        if (ctl_refused(s, fileobj, cfd, errno)) {
            /* any kernel leftover goes too, so that the fd can be
             * registered again */
            (void)ctl_change(s, CTL_REMOVE, (int)cfd, old, 0, 0, NULL);
        }
        ctl_settle(s, (int)cfd, *pending);
        return -1;
    }
    return mask;
}

/* _PollLikeSelector.modify (epoll, poll) after the lookup; ne: whether
 * events != key.events; mask: the key's poller mask. */
static PyObject *
modify_poller(sel_object *s, PyObject *fileobj, long cfd, PyObject *key,
              int ne, int mask, PyObject *events, PyObject *data)
{
    int pending = 0;
    if (ne) {
        mask = modify_poller_kernel(s, fileobj, cfd, key, events, &pending);
        if (mask < 0) {
            return NULL;
        }
    }
    /* As the stdlib: data is compared after the kernel call, and then the
     * new key is stored whatever other code did to fd's registration
     * meanwhile, even one that unregistered it.  Only if another thread
     * unregistered it while the kernel call ran (the kernel had taken this
     * call first) is the key not stored: the unregister counts as the later
     * call, and the kernel keeps agreeing with the table. */
    int dne = sel_not_equal(data, PyTuple_GET_ITEM(key, 3));
    if (dne == 0 && !ne) {
        Py_INCREF(key);
        return key;
    }
    PyObject *result = NULL;
    if (dne >= 0) {
        result = sel_new_key(s->st, PyTuple_GET_ITEM(key, 0),
                             PyTuple_GET_ITEM(key, 1), events, data);
    }
    sel_slot *sl = slot_find(s, cfd);
    int store = !pending || sl != NULL;
    if (result != NULL && store && slot_put(s, (int)cfd, result, mask) < 0) {
        Py_CLEAR(result);
    }
    if (pending) {
        /* a call of fd issued after ours may have landed first: the kernel
         * follows the key stored last */
        sl = slot_find(s, cfd);
        if (result != NULL && store && sl != NULL && slot_key(sl) == result) {
            sl->kev = (uint8_t)(mask | SEL_KEV_IN);
        }
        ctl_settle(s, (int)cfd, 1);
    }
    return result;
}

/* _BaseSelectorImpl.modify (select, kqueue) after the lookup. */
static PyObject *
modify_base(sel_object *s, PyObject *fileobj, long cfd, PyObject *key,
            int ne, int mask, PyObject *events, PyObject *data)
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
    return sel_replace_key(s, cfd, key, PyTuple_GET_ITEM(key, 2), data, mask);
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
    sel_slot *sl = sel_registered_slot(s, fileobj, &cfd);
    if (sl == NULL) {
        return NULL;
    }
    PyObject *key = slot_key(sl);
    int mask = sl->events;
    Py_INCREF(key);
    PyObject *result = NULL;
    int ne = sel_not_equal(events, PyTuple_GET_ITEM(key, 2));
    if (ne >= 0) {
        result = s->kind->modify_poller
            ? modify_poller(s, fileobj, cfd, key, ne, mask, events, data)
            : modify_base(s, fileobj, cfd, key, ne, mask, events, data);
    }
    Py_DECREF(key);
    return result;
}

