/* sel_ctl.c - register(), unregister() and modify(): the key bookkeeping in
 * the stdlib's order of effects, each change told to the kernel through
 * sel_kernel.c. */
#include "selector.h"

#include <errno.h>
#include <string.h>

/* ---- modify()'s window and other threads ---------------------------------
 * modify() stores its key after its kernel call and data's __ne__, as the
 * stdlib does (`_fd_to_key[key.fd] = key`), whatever code it ran meanwhile
 * did to the fd's registration: those re-entrant sequences get the stdlib's
 * results.  Another thread's change of the fd in that window would leave
 * kernel and keys apart, so each modify() is recorded in s->ctls (on its
 * caller's stack) for the window, and the table changes below mark the
 * records of other threads' modify()s of their fd `due`. */

static void
ctl_enter(sel_object *s, sel_ctl_rec *rec, int fd)
{
    rec->fd = fd;
    rec->due = 0;
    rec->owner = PyThread_get_thread_ident();
    rec->next = s->ctls;
    s->ctls = rec;
}

static void
ctl_leave(sel_object *s, sel_ctl_rec *rec)
{
    sel_ctl_rec **p = &s->ctls;
    while (*p != NULL && *p != rec) {
        p = &(*p)->next;
    }
    if (*p != NULL) {               /* a fork in the window reset the list */
        *p = rec->next;
    }
}

/* A change of fd's slot: other threads' modify() windows of fd are due. */
static void
ctl_touch(sel_object *s, long fd)
{
    if (s->ctls == NULL) {
        return;
    }
    unsigned long me = PyThread_get_thread_ident();
    for (sel_ctl_rec *r = s->ctls; r != NULL; r = r->next) {
        if (r->fd == fd && r->owner != me) {
            r->due = 1;
        }
    }
}

static sel_slot *
ctl_store(sel_object *s, int fd, PyObject *key, int events, int isbool)
{
    ctl_touch(s, fd);
    return slot_store(s, fd, key, events, isbool);
}

static PyObject *
ctl_take(sel_object *s, int fd, sel_slot *sl)
{
    ctl_touch(s, fd);
    return slot_take(s, fd, sl);
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
        return ctl_take(s, (int)cfd, sl);
    }
    PyObject *refusal = PyErr_GetRaisedException();
    sel_err_not_registered(fileobj);
    PyObject *exc = PyErr_GetRaisedException();
    if (exc != NULL && refusal != NULL) {
        PyException_SetContext(exc, refusal);   /* steals refusal */
        PyException_SetCause(exc, NULL);        /* `from None` */
    }
    else {
        Py_XDECREF(refusal);
    }
    PyErr_SetRaisedException(exc);
    return NULL;
}

/* ---- register ----------------------------------------------------------- */

/* The stdlib's order: the key is stored, then `events & EVENT_READ` and
 * `events & EVENT_WRITE` make the poller's mask (code they run sees the
 * key), the poller is told, and a refusal takes the key back.  Steals key;
 * a new reference to it, or NULL. */
static PyObject *
register_key(sel_object *s, int fd, PyObject *key)
{
    PyObject *events = PyTuple_GET_ITEM(key, 2);
    int isbool = PyBool_Check(PyTuple_GET_ITEM(key, 1));
    int exact = PyLong_CheckExact(events);
    int mask = exact ? (int)PyLong_AsLong(events) : 0;
    sel_slot *sl = ctl_store(s, fd, key, mask, isbool);
    if (sl == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    uint32_t gen = sl->gen;
    if (!exact) {
        mask = sel_poller_mask(events);
        sl = slot_find(s, fd);
        if (mask >= 0 && sl != NULL && slot_key(sl) == key) {
            slot_set_events(s, sl, mask);
        }
    }
    if (mask < 0 || (s->kind->bool_warn_ctl && sel_warn_bool_fd(isbool) < 0)) {
        goto refused;
    }
    /* that code may have closed the selector, or forked: the child's
     * rebuild from the keys added this one */
    int forked = !sel_live(s);
    if (sel_ready(s) < 0) {
        goto refused;
    }
    if (forked) {
        return key;
    }
    if (sel_kernel_ctl(s, CTL_ADD, fd, 0, mask, make_token(fd, gen)) < 0) {
        fs_errno_error(errno);
        goto refused;
    }
    return key;

refused:
    if (!s->closed) {
        Py_XDECREF(ctl_refused(s, PyTuple_GET_ITEM(key, 0), fd));
    }
    Py_DECREF(key);
    return NULL;
}

PyObject *
sel_do_register(sel_object *s, PyObject *fileobj, PyObject *events,
                PyObject *data)
{
    if (sel_ready(s) < 0) {
        return NULL;
    }
    long cfd;
    PyObject *key = sel_register_key(s, fileobj, events, data, &cfd);
    if (key == NULL) {
        return NULL;
    }
    /* fileno() and the checks may have run code that closed or forked, or
     * registered this fd (kqueue's EV_ADD would then succeed over the old
     * registration) */
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
    return register_key(s, (int)cfd, key);
}

static PyObject *do_modify(sel_object *s, PyObject *fileobj,
                           PyObject *events, PyObject *data);

/* register() and modify(): (fileobj, events, data=None), the plain
 * positional call bound without fs_parse_pyfunc. */
static PyObject *
register_or_modify(sel_object *s, int which, PyObject *const *args,
                   Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"fileobj", "events", "data"};
    const char *meth = which == SEL_M_MODIFY ? "modify" : "register";
    SEL_FORWARD(s, meth, args, nargs, kwnames);
    PyObject *a[3] = {NULL, NULL, NULL};
    if (kwnames == NULL && nargs >= 2 && nargs <= 3) {
        memcpy(a, args, (size_t)nargs * sizeof(*a));
    }
    else if (fs_parse_pyfunc(s->kind->owner[which], meth, names, 2, 3, args,
                             nargs, kwnames, a) < 0) {
        return NULL;
    }
    if (a[2] == NULL) {
        a[2] = Py_None;
    }
    return which == SEL_M_MODIFY ? do_modify(s, a[0], a[1], a[2])
                                 : sel_do_register(s, a[0], a[1], a[2]);
}

PyObject *
sel_register(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    return register_or_modify(s, SEL_M_REGISTER, args, nargs, kwnames);
}

PyObject *
sel_modify(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    return register_or_modify(s, SEL_M_MODIFY, args, nargs, kwnames);
}

/* ---- unregister --------------------------------------------------------- */

/* The slot of a registered fileobj (*cfd its fd) on a ready selector, or
 * NULL with the stdlib's error. */
static sel_slot *
ctl_lookup(sel_object *s, PyObject *fileobj, long *cfd)
{
    return sel_ready(s) < 0 ? NULL : sel_registered_slot(s, fileobj, cfd);
}

PyObject *
sel_do_unregister(sel_object *s, PyObject *fileobj)
{
    long cfd;
    sel_slot *sl = ctl_lookup(s, fileobj, &cfd);
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
    PyObject *key = ctl_take(s, (int)cfd, sl);
    /* an fd closed since registration makes the kernel refuse: ignored */
    int missing = sel_kernel_ctl(s, CTL_REMOVE, (int)cfd, events, 0, 0) < 0
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
    SEL_FORWARD(s, "unregister", args, nargs, kwnames);
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
        PyObject *exc = PyErr_GetRaisedException();
        (void)sel_kernel_ctl(s, CTL_REMOVE, (int)cfd, old, 0, 0);
        PyErr_SetRaisedException(exc);
        Py_DECREF(dropped);
    }
}

/* Make the kernel hold what fd's slot says (another thread changed fd
 * during a modify() that then stored its key over that change). */
static void
ctl_follow(sel_object *s, int fd)
{
    sel_slot *sl = slot_find(s, fd);
    if (sl != NULL) {
        (void)sel_kernel_ctl(s, CTL_SET, fd, 0, sl->events,
                         make_token(fd, sl->gen));
    }
}

/* The end of modify(), with rec entered before its kernel call (if any):
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
        ctl_leave(s, rec);
        return Py_NewRef(key);
    }
    if (dne >= 0) {
        result = sel_new_key(s->st, PyTuple_GET_ITEM(key, 0),
                             PyTuple_GET_ITEM(key, 1), events, data);
    }
    /* no Python code runs from here to the store */
    ctl_leave(s, rec);
    if (result == NULL || (rec->due && slot_find(s, cfd) == NULL)) {
        return result;
    }
    ctl_touch(s, cfd);
    if (slot_put(s, (int)cfd, result, mask) < 0) {
        Py_CLEAR(result);
    }
    else if (rec->due) {
        ctl_follow(s, (int)cfd);
    }
    return result;
}

/* _PollLikeSelector.modify (epoll, poll) after the lookup; ne: whether
 * events != key.events; mask: the key's poller mask.  The one kernel
 * modify, with no validation of events. */
static PyObject *
modify_poller(sel_object *s, PyObject *fileobj, long cfd, PyObject *key,
              int ne, int mask, PyObject *events, PyObject *data)
{
    sel_ctl_rec rec;
    if (!ne) {
        ctl_enter(s, &rec, (int)cfd);
        return modify_finish(s, cfd, key, 0, events, data, mask, &rec);
    }
    mask = sel_poller_mask(events);
    if (mask < 0) {
        return NULL;
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
        return NULL;
    }
    if (sel_ready(s) < 0) {
        return NULL;
    }
    sl = slot_find(s, cfd);             /* a warning filter may run code */
    int old = sl != NULL ? sl->events : 0;
    uint64_t token = make_token((int)cfd, sl != NULL ? sl->gen : 0);
    ctl_enter(s, &rec, (int)cfd);
    if (sel_kernel_ctl(s, CTL_MODIFY, (int)cfd, old, mask, token) < 0) {
        ctl_leave(s, &rec);
        fs_errno_error(errno);
        modify_refused(s, fileobj, cfd, old);
        return NULL;
    }
    return modify_finish(s, cfd, key, 1, events, data, mask, &rec);
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
        PyObject *k = PyObject_CallMethod((PyObject *)s, "unregister", "(O)",
                                          fileobj);
        if (k == NULL) {
            return NULL;
        }
        Py_DECREF(k);
        return PyObject_CallMethod((PyObject *)s, "register", "(OOO)",
                                   fileobj, events, data);
    }
    sel_ctl_rec rec;
    ctl_enter(s, &rec, (int)cfd);
    return modify_finish(s, cfd, key, 0, PyTuple_GET_ITEM(key, 2), data, mask,
                         &rec);
}

static PyObject *
do_modify(sel_object *s, PyObject *fileobj, PyObject *events, PyObject *data)
{
    long cfd;
    sel_slot *sl = ctl_lookup(s, fileobj, &cfd);
    if (sl == NULL) {
        return NULL;
    }
    PyObject *key = Py_NewRef(slot_key(sl));
    int mask = sl->events;
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

