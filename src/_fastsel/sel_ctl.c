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
 * calls of one fd may land in the other order, and fd's slot may change.
 * So a change is recorded in s->ctls (on its caller's stack) from its kernel
 * call to the end of its bookkeeping.  A change of fd by another thread
 * meanwhile (its kernel call, or a change of fd's slot: sel_ctl_touch)
 * marks the record `due`, and the last change of fd to end resyncs the
 * kernel to the fd's kev.  Changes made by the same thread (Python code run
 * inside a call) mark nothing: they are the stdlib's sequence of effects,
 * and get its results.  A record also keeps close() from freeing the
 * backend under the call.  After a kernel call the caller must look its
 * slot up again: the table may have changed (and moved or grown). */

/* Changes in flight are the parent's: a child forked by Python code run
 * inside a call has none, and must not touch the parent's kernel object
 * (its next call rebuilds the backend from kev). */
static inline int
ctl_live(sel_object *s)
{
    return s->fork_seen == fs_fork_generation();
}

static inline void
ctl_enter(sel_object *s, sel_ctl_rec *rec, int fd)
{
    rec->fd = fd;
    rec->due = 0;
    rec->owner = PyThread_get_thread_ident();
    rec->next = NULL;
    if (!ctl_live(s)) {
        return;                     /* not linked: ctl_unlink finds none */
    }
    for (sel_ctl_rec *r = s->ctls; r != NULL; r = r->next) {
        if (r->fd == fd && r->owner != rec->owner) {
            r->due = rec->due = 1;
        }
    }
    rec->next = s->ctls;
    s->ctls = rec;
}

void
sel_ctl_touch_slow(sel_object *s, long fd)
{
    if (!ctl_live(s)) {
        return;
    }
    unsigned long me = PyThread_get_thread_ident();
    for (sel_ctl_rec *r = s->ctls; r != NULL; r = r->next) {
        if (r->fd == fd && r->owner != me) {
            r->due = 1;
        }
    }
}

/* What a change's kernel call will make the kernel hold for fd, noted in
 * fd's slot (if any) when the call is made. */
static inline void
ctl_note(sel_object *s, ctl_op op, int fd, int events)
{
    sel_slot *sl = slot_find(s, fd);
    if (sl != NULL) {
        sl->kev = op == CTL_REMOVE
            ? 0 : (uint8_t)((events & (FS_READ | FS_WRITE)) | SEL_KEV_IN);
    }
}

/* The kernel call: 0, or -1 with errno. */
static int
ctl_kernel(sel_object *s, ctl_op op, int fd, int old, int events,
           uint64_t token)
{
    if (s->closed || s->be == NULL || !ctl_live(s)) {
        /* closed by another thread during an earlier call of this change,
         * or forked by code run inside it */
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

/* Unlink rec: 1 if it is due a resync, 0 if not or if rec was not linked
 * (a fork reset the list). */
static int
ctl_unlink(sel_object *s, sel_ctl_rec *rec)
{
    sel_ctl_rec **p = &s->ctls;
    while (*p != NULL && *p != rec) {
        p = &(*p)->next;
    }
    if (*p == NULL) {
        return 0;
    }
    *p = rec->next;
    if (s->closed) {
        sel_finish_close(s);        /* close() may have left it to us */
    }
    return rec->due;
}

/* One resync round: make the kernel hold fd's kev (none without a slot). */
static void
ctl_resync_round(sel_object *s, int fd)
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
        /* kqueue: both filters go, the wanted ones come back (libkqueue
         * refuses an EV_ADD over a filter it has) */
        (void)ctl_kernel(s, CTL_REMOVE, fd, all, 0, 0);
        if (events) {
            (void)ctl_kernel(s, CTL_ADD, fd, 0, events, token);
        }
    }
    else if (ctl_kernel(s, CTL_MODIFY, fd, all, events, token) < 0
             && errno == ENOENT) {
        (void)ctl_kernel(s, CTL_ADD, fd, 0, events, token);
    }
}

/* End rec's change.  The last change of its fd to end resyncs the kernel,
 * in rounds (each a change of its own) until one runs with no other
 * thread's change of fd beside it: a change still under way (even one
 * blocked in the kernel) is left the resync instead, so nobody goes round
 * while another call is in the kernel. */
static void ctl_leave_slow(sel_object *s, sel_ctl_rec *rec);

static inline void
ctl_leave(sel_object *s, sel_ctl_rec *rec)
{
    if (s->ctls == rec && !rec->due && !s->closed) {
        s->ctls = rec->next;        /* the common case: nothing beside it */
        return;
    }
    ctl_leave_slow(s, rec);
}

static void
ctl_leave_slow(sel_object *s, sel_ctl_rec *rec)
{
    int saved = errno;
    int fd = rec->fd;
    int due = ctl_unlink(s, rec);
    while (due && !s->closed && ctl_live(s)) {
        for (sel_ctl_rec *r = s->ctls; r != NULL; r = r->next) {
            if (r->fd == fd) {
                r->due = 1;
                errno = saved;
                return;
            }
        }
        sel_ctl_rec round;
        ctl_enter(s, &round, fd);
        ctl_resync_round(s, fd);
        due = ctl_unlink(s, &round);
    }
    errno = saved;
}

/* A change of fd in one kernel call, noted and recorded: 0, or -1 with
 * errno. */
static int
ctl_change(sel_object *s, ctl_op op, int fd, int old, int events,
           uint64_t token)
{
    sel_ctl_rec rec;
    ctl_enter(s, &rec, fd);
    ctl_note(s, op, fd, events);
    int rc = ctl_kernel(s, op, fd, old, events, token);
    ctl_leave(s, &rec);
    return rc;
}

/* After the poller refused a register or modify (its exception set), the
 * stdlib's `except: super().unregister(fileobj); raise`: fd's key goes (a
 * new reference to it is returned), or, when other code unregistered fd
 * meanwhile, that unregister's KeyError replaces the exception (as its
 * context) and NULL is returned. */
static PyObject *
ctl_refused(sel_object *s, PyObject *fileobj, long cfd)
{
    sel_slot *sl = slot_find(s, cfd);
    if (sl != NULL) {
        return slot_take(s, (int)cfd, sl);
    }
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
    return NULL;
}

void
sel_readd_all(sel_object *s)
{
    /* a forked child: one thread, the GIL held throughout; the parent's
     * kernel object held each fd's kev (an empty interest included) */
    for (int32_t fd = s->head; fd >= 0;) {
        sel_slot *sl = slot_find(s, fd);
        assert(sl != NULL);
        if (sl->kev & SEL_KEV_IN) {
            (void)s->ops->add(s->be, fd, sl->kev & (FS_READ | FS_WRITE),
                              make_token(fd, sl->gen));
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
    uint64_t token = make_token(fd, sl->gen);
    sel_ctl_rec rec;
    ctl_enter(s, &rec, fd);
    ctl_note(s, CTL_ADD, fd, mask);
    if (ctl_kernel(s, CTL_ADD, fd, 0, mask, token) < 0) {
        fs_errno_error(errno);
        PyObject *dropped = ctl_refused(s, PyTuple_GET_ITEM(key, 0), fd);
        ctl_leave(s, &rec);
        Py_XDECREF(dropped);
        Py_DECREF(key);
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
    int missing = ctl_change(s, CTL_REMOVE, (int)cfd, events, 0, 0) < 0
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

/* Drop fd's key after the poller refused a modify (its exception set), as
 * the stdlib does; also drop any kernel leftover so that the fd can be
 * registered again, before the key's release can run code. */
static void
modify_refused(sel_object *s, PyObject *fileobj, long cfd, int old)
{
    PyObject *dropped = ctl_refused(s, fileobj, cfd);
    if (dropped != NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        (void)ctl_change(s, CTL_REMOVE, (int)cfd, old, 0, 0);
        PyErr_Restore(type, value, tb);
        Py_DECREF(dropped);
    }
}

/* _PollLikeSelector.modify's one kernel modify (no validation of events),
 * with rec entered for its bookkeeping (modify_poller leaves it): the new
 * poller mask, or -1 with an exception and rec left. */
static int
modify_poller_kernel(sel_object *s, PyObject *fileobj, long cfd,
                     PyObject *key, PyObject *events, sel_ctl_rec *rec)
{
    int mask = sel_poller_mask(events);
    if (mask < 0) {
        return -1;
    }
    /* __and__ may have run code that changed fd's registration: the stdlib
     * goes on with the key it looked up, and its poller with whatever it
     * has for the fd */
    sel_slot *sl;
    if (s->kind->bool_warn_ctl
            && sel_warn_bool_fd(PyBool_Check(PyTuple_GET_ITEM(key, 1))) < 0) {
        /* raised where the stdlib's poller.modify() would */
        sl = slot_find(s, cfd);
        modify_refused(s, fileobj, cfd, sl != NULL ? sl->events : 0);
        return -1;
    }
    if (sel_ready(s) < 0) {
        return -1;
    }
    sl = slot_find(s, cfd);             /* a warning filter may run code */
    int old = sl != NULL ? sl->events : 0;
    uint64_t token = make_token((int)cfd, sl != NULL ? sl->gen : 0);
    ctl_enter(s, rec, (int)cfd);
    ctl_note(s, CTL_MODIFY, (int)cfd, mask);
    if (ctl_kernel(s, CTL_MODIFY, (int)cfd, old, mask, token) < 0) {
        fs_errno_error(errno);
        modify_refused(s, fileobj, cfd, old);
        ctl_leave(s, rec);
        return -1;
    }
    return mask;
}

/* The end of modify(), with rec entered (after the kernel call, if any):
 * data is compared, as the stdlib does after that call; if it or the events
 * changed, a new key with `events` and data is stored for fd (mask: its
 * poller mask) and returned, else the key itself.  As the stdlib,
 * `_fd_to_key[key.fd] = key`, whatever code run meanwhile did to fd's
 * registration, even unregistering it.  If another thread changed it
 * (rec->due), consistency with the kernel decides instead: a key it
 * unregistered stays unregistered (the unregister counts as the later
 * call), and the kernel follows the key stored last.  Leaves rec. */
static PyObject *
modify_finish(sel_object *s, long cfd, PyObject *key, int changed,
              PyObject *events, PyObject *data, int mask, sel_ctl_rec *rec)
{
    PyObject *result = NULL;
    int dne = sel_not_equal(data, PyTuple_GET_ITEM(key, 3));
    if (dne == 0 && !changed) {
        Py_INCREF(key);
        ctl_leave(s, rec);
        return key;
    }
    if (dne >= 0) {
        result = sel_new_key(s->st, PyTuple_GET_ITEM(key, 0),
                             PyTuple_GET_ITEM(key, 1), events, data);
    }
    if (result != NULL && (!rec->due || slot_find(s, cfd) != NULL)
            && slot_put(s, (int)cfd, result, mask) < 0) {
        Py_CLEAR(result);
    }
    sel_slot *sl = slot_find(s, cfd);   /* the old key's release ran code */
    if (rec->due && result != NULL && sl != NULL && slot_key(sl) == result) {
        sl->kev = (uint8_t)(mask | SEL_KEV_IN);
    }
    ctl_leave(s, rec);
    return result;
}

/* _PollLikeSelector.modify (epoll, poll) after the lookup; ne: whether
 * events != key.events; mask: the key's poller mask. */
static PyObject *
modify_poller(sel_object *s, PyObject *fileobj, long cfd, PyObject *key,
              int ne, int mask, PyObject *events, PyObject *data)
{
    sel_ctl_rec rec;
    if (ne) {
        mask = modify_poller_kernel(s, fileobj, cfd, key, events, &rec);
        if (mask < 0) {
            return NULL;
        }
    }
    else {
        ctl_enter(s, &rec, (int)cfd);
    }
    return modify_finish(s, cfd, key, ne, events, data, mask, &rec);
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
    sel_ctl_rec rec;
    ctl_enter(s, &rec, (int)cfd);
    return modify_finish(s, cfd, key, 0, PyTuple_GET_ITEM(key, 2), data, mask,
                         &rec);
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

