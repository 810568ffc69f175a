/* selector.c - the selectors classes (EpollSelector, PollSelector,
 * SelectSelector, KqueueSelector) on top of the backend.h interface.
 *
 * One C base type keeps an fd-indexed slot array (key, generation, cached
 * (key, mask) result tuples, registration-order links) and one backend; the
 * per-mechanism subclasses differ only in their ops table and in the few
 * places where the stdlib's classes differ (timeout conversion, modify).
 * The class (the first of ours in the MRO) picks the behaviour, and its
 * _selector_cls the mechanism: fastsel's own runs natively, anything else
 * is driven through its Python methods ("a replaced _selector_cls").
 *
 * Beyond the stdlib: events carry `fd | generation << 32` so an event from
 * an old registration never reaches a new key on a reused fd; a fork bumps a
 * global counter and the child rebuilds its backend at its next call instead of
 * touching the interest list it shares with the parent; after close() every
 * mutating call raises RuntimeError('Selector is closed').
 *
 * Costs: select() keeps its event
 * buffer (epoll: batches of SEL_BATCH, drained with non-blocking waits) and
 * its (key, mask) result tuples between calls; a data-only modify() makes
 * no syscall; nothing per select() is O(registered).
 */
#include "fastsel.h"
#include "fork.h"
#include "backend.h"
#include "pyver.h"
#include "structmember.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

/* kinds: the stdlib behaviour each class follows */
enum { K_EPOLL, K_POLL, K_SELECT, K_KQUEUE, K_COUNT };

static const char *const kind_names[K_COUNT] = {
    "EpollSelector", "PollSelector", "SelectSelector", "KqueueSelector",
};

/* Static: before 3.11, PyType_FromModuleAndSpec keeps spec->name as the
 * type's tp_name without copying it. */
static const char *const kind_type_names[K_COUNT] = {
    "fastsel.EpollSelector", "fastsel.PollSelector", "fastsel.SelectSelector",
    "fastsel.KqueueSelector",
};

static const fs_backend_ops *
kind_ops(int kind)
{
    switch (kind) {
#ifdef __linux__
    case K_EPOLL:
        return &fs_epoll_backend;
#endif
    case K_POLL:
        return &fs_poll_backend;
    case K_SELECT:
        return &fs_select_backend;
#ifdef FS_HAVE_KQUEUE
    case K_KQUEUE:
        return &fs_kqueue_backend;
#endif
    default:
        return NULL;
    }
}

/* Events per backend wait; a full batch is followed by non-blocking waits
 * to drain the rest (deduplicated: level-triggered epoll re-queues what it
 * returned).  Bounds the persistent buffer at 16 KiB. */
#define SEL_BATCH 1024
/* fds at or above this go to the `far` list instead of the direct array, so
 * a bogus huge fd (accepted by poll and select) cannot allocate gigabytes. */
#define SEL_DIRECT_MAX (1 << 20)

/* Fork detection (fork.h): a selector that sees a new generation rebuilds
 * its backend before doing anything with the kernel. */

/* A slot is 24 bytes: its one object pointer is either the SelectorKey or,
 * tagged with bit 0, the cached (key, res_mask) result tuple that holds the
 * key, so caching results costs no memory per registration. */
typedef struct {
    uintptr_t obj;          /* key | cached result | 1; 0: slot free */
    uint32_t gen;           /* generation of this registration */
    int32_t prev, next;     /* registration order (fds), -1: none */
    uint8_t events;         /* kernel interest == result mask (FS_*) */
    uint8_t res_mask;
    uint8_t boolfd;         /* key.fd is a bool (3.13 warns on its use) */
} sel_slot;

#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(sel_slot) == 24, "a slot is 24 bytes on 64-bit");
#endif

typedef struct {
    int fd;
    sel_slot slot;
} sel_far;

typedef struct {
    PyObject_HEAD
    fs_state *st;
    const fs_backend_ops *ops;
    fs_backend *be;         /* NULL once closed (unless a wait holds it) */
    /* Not NULL when _selector_cls is not fastsel's own mechanism: the
     * Python driver (fastsel/_selectors.py) that calls the kernel object's
     * methods as the stdlib's class does; ops and be are then unused. */
    PyObject *driver;
    int kind;
    int closed;
    int busy;               /* a select() owns evbuf and the backend wait */
    unsigned long fork_seen;
    sel_slot *slots;        /* indexed by fd < cap */
    int cap;
    sel_far *far;           /* fds >= SEL_DIRECT_MAX, unordered */
    int nfar, farcap;
    Py_ssize_t count;
    int32_t head, tail;
    uint32_t next_gen;
    fs_event *evbuf;
    int evcap;
    uint32_t *seen;         /* drain dedupe, per direct fd (lazy) */
    int seencap;
    uint32_t epoch;
    int nbool[2];           /* select kind: bool fds read / write */
    PyObject *map;          /* get_map() result, made on first use */
    PyObject *dict;
    PyObject *weaklist;
} sel_object;

typedef struct {
    PyObject_HEAD
    sel_object *sel;
} map_object;

typedef struct {
    PyObject_HEAD
    sel_object *sel;        /* NULL when exhausted */
    int32_t next;
    uint32_t next_gen;
    Py_ssize_t count;
} mapiter_object;

static inline PyObject *
slot_key(const sel_slot *sl)
{
    return (sl->obj & 1)
        ? PyTuple_GET_ITEM((PyObject *)(sl->obj - 1), 0)
        : (PyObject *)sl->obj;
}

/* The cached result tuple, or NULL. */
static inline PyObject *
slot_res(const sel_slot *sl)
{
    return (sl->obj & 1) ? (PyObject *)(sl->obj - 1) : NULL;
}

/* The owned object (key or result), for release and GC. */
static inline PyObject *
slot_obj(const sel_slot *sl)
{
    return (PyObject *)(sl->obj & ~(uintptr_t)1);
}

/* ---- slots ------------------------------------------------------------- */

static inline sel_slot *
slot_find(sel_object *s, long fd)
{
    if (fd >= 0 && fd < s->cap) {
        sel_slot *sl = &s->slots[fd];
        return sl->obj ? sl : NULL;
    }
    if (fd >= SEL_DIRECT_MAX) {
        for (int i = 0; i < s->nfar; i++) {
            if (s->far[i].fd == fd) {
                return &s->far[i].slot;
            }
        }
    }
    return NULL;
}

/* A free slot for fd, growing the tables; NULL with MemoryError. */
static sel_slot *
slot_make(sel_object *s, int fd)
{
    if (fd >= SEL_DIRECT_MAX) {
        if (s->nfar == s->farcap) {
            int ncap = s->farcap ? s->farcap * 2 : 4;
            sel_far *nf = PyMem_Realloc(s->far, (size_t)ncap * sizeof(*nf));
            if (nf == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            s->far = nf;
            s->farcap = ncap;
        }
        sel_far *f = &s->far[s->nfar++];
        memset(f, 0, sizeof(*f));
        f->fd = fd;
        return &f->slot;
    }
    if (fd >= s->cap) {
        /* grow by 1/8: amortised O(1), and the table stays within ~6 % of
         * one 24-byte slot per fd (the stdlib's dict costs ~37 bytes) */
        int ncap = s->cap + (s->cap >> 3);
        if (ncap < fd + 1) {
            ncap = fd + 1;
        }
        if (ncap < 16) {
            ncap = 16;
        }
        if (ncap > SEL_DIRECT_MAX) {
            ncap = SEL_DIRECT_MAX;
        }
        sel_slot *ns = PyMem_Realloc(s->slots, (size_t)ncap * sizeof(*ns));
        if (ns == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(ns + s->cap, 0, (size_t)(ncap - s->cap) * sizeof(*ns));
        s->slots = ns;
        s->cap = ncap;
    }
    return &s->slots[fd];
}

/* Unlink fd's slot and return its key (a new reference to the caller);
 * the cached result is released. */
static PyObject *
slot_take(sel_object *s, int fd, sel_slot *sl)
{
    PyObject *key = slot_key(sl);
    PyObject *res = slot_res(sl);
    if (sl->prev >= 0) {
        slot_find(s, sl->prev)->next = sl->next;
    }
    else {
        s->head = sl->next;
    }
    if (sl->next >= 0) {
        slot_find(s, sl->next)->prev = sl->prev;
    }
    else {
        s->tail = sl->prev;
    }
    if (res != NULL) {
        Py_INCREF(key);         /* the tuple held it */
    }
    sl->obj = 0;
    if (sl->boolfd && s->kind == K_SELECT) {
        s->nbool[0] -= (sl->events & FS_READ) != 0;
        s->nbool[1] -= (sl->events & FS_WRITE) != 0;
    }
    if (fd >= SEL_DIRECT_MAX) {
        /* the far entry moves: sl is invalid after this */
        sel_far *f = (sel_far *)((char *)sl - offsetof(sel_far, slot));
        *f = s->far[--s->nfar];
    }
    s->count--;
    Py_XDECREF(res);
    return key;
}

static void
slot_link(sel_object *s, int fd, sel_slot *sl)
{
    sl->prev = s->tail;
    sl->next = -1;
    if (s->tail >= 0) {
        slot_find(s, s->tail)->next = fd;
    }
    else {
        s->head = fd;
    }
    s->tail = fd;
    s->count++;
    if (sl->boolfd && s->kind == K_SELECT) {
        s->nbool[0] += (sl->events & FS_READ) != 0;
        s->nbool[1] += (sl->events & FS_WRITE) != 0;
    }
}

/* Forget every key (close() and tp_clear).  Detach first, then release:
 * releasing a key's data may run arbitrary code that uses the selector. */
static void
sel_forget_all(sel_object *s)
{
    sel_slot *slots = s->slots;
    int cap = s->cap;
    sel_far *far = s->far;
    int nfar = s->nfar;
    s->slots = NULL;
    s->cap = 0;
    s->far = NULL;
    s->nfar = s->farcap = 0;
    s->count = 0;
    s->head = s->tail = -1;
    s->nbool[0] = s->nbool[1] = 0;
    PyMem_Free(s->seen);
    s->seen = NULL;
    s->seencap = 0;
    for (int i = 0; i < cap; i++) {
        Py_XDECREF(slot_obj(&slots[i]));
    }
    for (int i = 0; i < nfar; i++) {
        Py_XDECREF(slot_obj(&far[i].slot));
    }
    PyMem_Free(slots);
    PyMem_Free(far);
}

static inline uint64_t
make_token(int fd, uint32_t gen)
{
    return (uint64_t)(uint32_t)fd | ((uint64_t)gen << 32);
}

/* ---- errors ------------------------------------------------------------- */

static PyObject *
err_closed(void)
{
    PyErr_SetString(PyExc_RuntimeError, "Selector is closed");
    return NULL;
}

static PyObject *
err_not_registered(PyObject *fileobj)
{
    PyObject *msg = PyUnicode_FromFormat("%R is not registered", fileobj);
    if (msg != NULL) {
        PyErr_SetObject(PyExc_KeyError, msg);
        Py_DECREF(msg);
    }
    return NULL;
}

/* 3.13's fd conversion warns about bools, and the stdlib's selectors hand
 * key.fd (a bool when a bool was registered) to the poller on each call. */
static int
warn_bool_fd(int isbool)
{
    if (isbool && fs_ver->bool_fd_warns) {
        return PyErr_WarnEx(PyExc_RuntimeWarning,
                            "bool is used as a file descriptor", 1);
    }
    return 0;
}

static void
set_errno_error(int err)
{
    if (err == FS_ENOMEM) {
        PyErr_NoMemory();       /* the backend's own memory (backend.h) */
        return;
    }
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
}

/* ---- fork -------------------------------------------------------------- */

/* In a forked child: drop the inherited backend without touching its
 * kernel object (epoll_ctl on it would change the parent's interest list),
 * open a fresh one and re-add the current keys.  Registrations the kernel
 * now refuses (fd closed meanwhile) stay known but silent, as a registered
 * fd that is closed does in the parent. */
static int
sel_refork(sel_object *s)
{
    s->fork_seen = fs_fork_generation();
    s->busy = 0;            /* a thread waiting at fork is not here */
    if (s->be != NULL) {
        s->ops->free(s->be);
        s->be = NULL;
    }
    if (s->closed) {
        PyMem_Free(s->evbuf);
        s->evbuf = NULL;
        s->evcap = 0;
        return 0;
    }
    if (s->count == 0) {
        return 0;               /* opened on first use, as a new selector */
    }
    s->be = s->ops->open();
    if (s->be == NULL) {
        /* unusable now: behave as closed rather than crash later */
        int err = errno;
        s->closed = 1;
        sel_forget_all(s);
        set_errno_error(err);
        return -1;
    }
    for (int32_t fd = s->head; fd >= 0;) {
        sel_slot *sl = slot_find(s, fd);
        if (sl->events) {
            (void)s->ops->add(s->be, fd, sl->events, make_token(fd, sl->gen));
        }
        fd = sl->next;
    }
    return 0;
}

/* Made at construction; again on first use in a forked child that had no
 * registrations to carry over. */
static int
sel_open_backend(sel_object *s)
{
    s->be = s->ops->open();
    if (s->be == NULL) {
        set_errno_error(errno);
        return -1;
    }
    return 0;
}

/* The common entry check of every kernel-facing method. */
static inline int
sel_ready(sel_object *s)
{
    if (s->closed) {
        err_closed();
        return -1;
    }
    if (s->driver != NULL) {
        return 0;               /* the stdlib does nothing about fork */
    }
    if (s->fork_seen != fs_fork_generation() && sel_refork(s) < 0) {
        return -1;
    }
    if (s->be == NULL) {
        return sel_open_backend(s);
    }
    return 0;
}

/* ---- fileobj -> fd ------------------------------------------------------ */

/* selectors._fileobj_to_fd: a new reference to the fd object (the int
 * itself, or int(fileobj.fileno())), NULL with ValueError & co.  *cfd is
 * the fd as a C long, or -1 when it does not fit a C int. */
static PyObject *
fileobj_to_fd(fs_state *st, PyObject *fileobj, long *cfd)
{
    PyObject *fd;
    if (PyLong_Check(fileobj)) {
        Py_INCREF(fileobj);
        fd = fileobj;
    }
    else {
        PyObject *res = PyObject_CallMethodNoArgs(fileobj, st->str_fileno);
        if (res != NULL) {
            fd = PyNumber_Long(res);
            Py_DECREF(res);
        }
        else {
            fd = NULL;
        }
        if (fd == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError)
                || PyErr_ExceptionMatches(PyExc_TypeError)
                || PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "Invalid file object: %R",
                             fileobj);
            }
            return NULL;
        }
    }
    int overflow;
    long v = PyLong_AsLongAndOverflow(fd, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(fd);
        return NULL;
    }
    if (overflow < 0 || (!overflow && v < 0)) {
        PyObject *empty = PyUnicode_New(0, 0);
        PyObject *text = empty ? PyObject_Format(fd, empty) : NULL;
        Py_XDECREF(empty);
        if (text != NULL) {
            PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %U",
                         text);
            Py_DECREF(text);
        }
        Py_DECREF(fd);
        return NULL;
    }
    *cfd = (overflow || v > INT_MAX) ? -1 : v;
    return fd;
}

/* _BaseSelectorImpl._fileobj_lookup: on ValueError, a registered key whose
 * fileobj *is* this object answers (a closed socket can be unregistered). */
static PyObject *
sel_lookup(sel_object *s, PyObject *fileobj, long *cfd)
{
    PyObject *fd = fileobj_to_fd(s->st, fileobj, cfd);
    if (fd != NULL || !PyErr_ExceptionMatches(PyExc_ValueError)) {
        return fd;
    }
    for (int32_t i = s->head; i >= 0;) {
        sel_slot *sl = slot_find(s, i);
        if (PyTuple_GET_ITEM(slot_key(sl), 0) == fileobj) {
            PyErr_Clear();
            *cfd = i;
            fd = PyTuple_GET_ITEM(slot_key(sl), 1);
            Py_INCREF(fd);
            return fd;
        }
        i = sl->next;
    }
    return NULL;
}

/* ---- events ------------------------------------------------------------- */

/* register()'s check `(not events) or (events & ~3)`: the FS_* mask, or -1
 * with an exception. */
static int
check_events(PyObject *events)
{
    if (PyLong_CheckExact(events)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(events, &overflow);
        if (!overflow && v >= 1 && v <= 3) {
            return (int)v;
        }
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        goto invalid;
    }
    int t = PyObject_Not(events);
    if (t < 0) {
        return -1;
    }
    if (t) {
        goto invalid;
    }
    PyObject *m = PyLong_FromLong(~(long)(FS_READ | FS_WRITE));
    if (m == NULL) {
        return -1;
    }
    PyObject *r = PyNumber_And(events, m);
    Py_DECREF(m);
    if (r == NULL) {
        return -1;
    }
    t = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (t < 0) {
        return -1;
    }
    if (t) {
        goto invalid;
    }
    /* the kernel mask, as the stdlib computes it: events & READ, & WRITE */
    int mask = 0;
    for (int bit = FS_READ; bit <= FS_WRITE; bit <<= 1) {
        PyObject *b = PyLong_FromLong(bit);
        if (b == NULL) {
            return -1;
        }
        r = PyNumber_And(events, b);
        Py_DECREF(b);
        if (r == NULL) {
            return -1;
        }
        t = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (t < 0) {
            return -1;
        }
        if (t) {
            mask |= bit;
        }
    }
    return mask;

invalid:
    PyErr_Format(PyExc_ValueError, "Invalid events: %R", events);
    return -1;
}

/* `events & READ and IN | events & WRITE and OUT` without validation (as
 * _PollLikeSelector.modify computes it). */
static int
poller_mask(PyObject *events)
{
    if (PyLong_CheckExact(events)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(events, &overflow);
        if (!overflow) {
            return (int)(v & (FS_READ | FS_WRITE));
        }
    }
    int mask = 0;
    for (int bit = FS_READ; bit <= FS_WRITE; bit <<= 1) {
        PyObject *b = PyLong_FromLong(bit);
        if (b == NULL) {
            return -1;
        }
        PyObject *r = PyNumber_And(events, b);
        Py_DECREF(b);
        if (r == NULL) {
            return -1;
        }
        int t = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (t < 0) {
            return -1;
        }
        if (t) {
            mask |= bit;
        }
    }
    return mask;
}

/* Python's `a != b` (no identity shortcut, unlike RichCompareBool), with a
 * fast answer for objects whose != is known to be plain. */
static int
not_equal(PyObject *a, PyObject *b)
{
    if (a == b && (a == Py_None || PyLong_CheckExact(a)
                   || PyUnicode_CheckExact(a) || PyBytes_CheckExact(a))) {
        return 0;
    }
    if (PyLong_CheckExact(a) && PyLong_CheckExact(b)) {
        int o1, o2;
        long x = PyLong_AsLongAndOverflow(a, &o1);
        long y = PyLong_AsLongAndOverflow(b, &o2);
        if (!o1 && !o2) {
            return x != y;
        }
    }
    PyObject *r = PyObject_RichCompare(a, b, Py_NE);
    if (r == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* A SelectorKey allocated directly on the stdlib's namedtuple type. */
static PyObject *
new_key(fs_state *st, PyObject *fileobj, PyObject *fd, PyObject *events,
        PyObject *data)
{
    PyTypeObject *tp = (PyTypeObject *)st->selector_key_type;
    PyObject *key = tp->tp_alloc(tp, 4);
    if (key == NULL) {
        return NULL;
    }
    Py_INCREF(fileobj);
    Py_INCREF(fd);
    Py_INCREF(events);
    Py_INCREF(data);
    PyTuple_SET_ITEM(key, 0, fileobj);
    PyTuple_SET_ITEM(key, 1, fd);
    PyTuple_SET_ITEM(key, 2, events);
    PyTuple_SET_ITEM(key, 3, data);
    return key;
}

/* Replace a slot's key (modify): the cached result goes with the old key. */
static void
slot_set_key(sel_slot *sl, PyObject *key)
{
    PyObject *old = slot_obj(sl);
    sl->obj = (uintptr_t)key;
    Py_DECREF(old);
}

/* ---- argument errors --------------------------------------------------- */

/* The stdlib class that defines each method, for error texts. */
static const char *
owner_of(int kind, char meth)
{
    switch (meth) {
    case 'r':       /* register, unregister */
        return kind == K_SELECT ? "SelectSelector"
               : kind == K_KQUEUE ? "KqueueSelector" : "_PollLikeSelector";
    case 'm':       /* modify */
        return kind == K_SELECT || kind == K_KQUEUE ? "_BaseSelectorImpl"
                                                    : "_PollLikeSelector";
    case 's':       /* select */
        return kind == K_POLL ? "_PollLikeSelector" : kind_names[kind];
    case 'c':       /* close */
        return kind == K_EPOLL || kind == K_KQUEUE ? kind_names[kind]
                                                   : "_BaseSelectorImpl";
    case 'g':       /* get_map */
        return "_BaseSelectorImpl";
    case 'f':       /* fileno */
        return kind_names[kind];
    default:        /* get_key, __enter__ */
        return "BaseSelector";
    }
}

static const char *const names_reg[] = {"fileobj", "events", "data"};

/* The stdlib's parameterless methods are Python functions: their texts for
 * any argument, not METH_NOARGS'. */
static int
no_args(sel_object *s, char meth, const char *name, PyObject *const *args,
        Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        return 0;
    }
    return fs_parse_pyfunc(owner_of(s->kind, meth), name, NULL, 0, 0, args, nargs,
                      kwnames, NULL);
}

static const char *const names_timeout[] = {"timeout"};

/* ---- a replaced _selector_cls: the Python driver ------------------------
 * When _selector_cls (looked up on the instance, as the stdlib's __init__
 * does) is not fastsel's own epoll/poll/kqueue, the kernel object is made by
 * calling it and driven by fastsel._selectors' driver for the class's kind,
 * which calls the object's Python methods with the stdlib's arguments.  The
 * keys stay here; the order of the bookkeeping and of the driver calls, and
 * the error handling around them, are those of _PollLikeSelector,
 * EpollSelector and KqueueSelector. */

/* _BaseSelectorImpl.unregister: drop fileobj's key (looked up again, as the
 * stdlib does, fileno() included) and return it. */
static PyObject *
base_unregister(sel_object *s, PyObject *fileobj)
{
    long cfd;
    PyObject *fd = sel_lookup(s, fileobj, &cfd);
    if (fd == NULL) {
        return NULL;
    }
    Py_DECREF(fd);
    sel_slot *sl = cfd >= 0 ? slot_find(s, cfd) : NULL;
    if (sl == NULL) {
        return err_not_registered(fileobj);
    }
    return slot_take(s, (int)cfd, sl);
}

/* `except: super().unregister(fileobj); raise`: the key goes, the driver's
 * exception is the one raised. */
static void
drop_after_failure(sel_object *s, PyObject *fileobj)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *k = base_unregister(s, fileobj);
    if (k == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(k);
    PyErr_Restore(type, value, tb);
}

static PyObject *
call_driver(sel_object *s, const char *meth, PyObject *a, PyObject *b)
{
    PyObject *name = PyUnicode_FromString(meth);
    if (name == NULL) {
        return NULL;
    }
    /* the driver may close or release the selector: keep it alive */
    PyObject *drv = s->driver;
    Py_INCREF(drv);
    PyObject *r = PyObject_CallMethodObjArgs(drv, name, a, b, NULL);
    Py_DECREF(drv);
    Py_DECREF(name);
    return r;
}

/* register()'s checks of fileobj: its fd (a new reference; *cfd the C int)
 * when it is not registered yet, else NULL with the stdlib's KeyError, or
 * the OverflowError any poller gives an fd beyond C int (keys are kept by
 * C int fd). */
static PyObject *
lookup_unregistered(sel_object *s, PyObject *fileobj, long *cfd)
{
    PyObject *fd = sel_lookup(s, fileobj, cfd);
    if (fd == NULL) {
        return NULL;
    }
    if (*cfd >= 0 && slot_find(s, *cfd) != NULL) {
        PyErr_Format(PyExc_KeyError, "%R (FD %S) is already registered",
                     fileobj, fd);
        Py_DECREF(fd);
        return NULL;
    }
    if (*cfd < 0) {
        PyErr_SetString(PyExc_OverflowError,
                        "Python int too large to convert to C int");
        Py_DECREF(fd);
        return NULL;
    }
    return fd;
}

static PyObject *
sel_py_register(sel_object *s, PyObject *fileobj, PyObject *events,
                PyObject *data)
{
    if (check_events(events) < 0) {
        return NULL;
    }
    long cfd;
    PyObject *fd = lookup_unregistered(s, fileobj, &cfd);
    if (fd == NULL) {
        return NULL;
    }
    PyObject *key = new_key(s->st, fileobj, fd, events, data);
    Py_DECREF(fd);
    if (key == NULL) {
        return NULL;
    }
    sel_slot *sl = slot_make(s, (int)cfd);
    if (sl == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    Py_INCREF(key);
    sl->obj = (uintptr_t)key;
    sl->gen = ++s->next_gen;
    slot_link(s, (int)cfd, sl);
    PyObject *r = call_driver(s, "register", PyTuple_GET_ITEM(key, 1),
                              events);
    if (r == NULL) {
        drop_after_failure(s, fileobj);
        Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(r);
    return key;
}

static PyObject *
sel_py_unregister(sel_object *s, PyObject *fileobj)
{
    PyObject *key = base_unregister(s, fileobj);
    if (key == NULL) {
        return NULL;
    }
    /* the driver ignores OSError (an fd closed since registration) */
    PyObject *r = call_driver(s, "unregister", PyTuple_GET_ITEM(key, 1),
                              PyTuple_GET_ITEM(key, 2));
    if (r == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(r);
    return key;
}

/* The key registered for fileobj (a new reference; *cfd its fd), or NULL
 * with the stdlib's KeyError. */
static PyObject *
registered_key(sel_object *s, PyObject *fileobj, long *cfd)
{
    PyObject *fd = sel_lookup(s, fileobj, cfd);
    if (fd == NULL) {
        return NULL;
    }
    Py_DECREF(fd);
    sel_slot *sl = *cfd >= 0 ? slot_find(s, *cfd) : NULL;
    if (sl == NULL) {
        return err_not_registered(fileobj);
    }
    PyObject *key = slot_key(sl);
    Py_INCREF(key);
    return key;
}

/* _PollLikeSelector.modify */
static PyObject *
sel_py_modify(sel_object *s, PyObject *fileobj, PyObject *events,
              PyObject *data)
{
    long cfd;
    PyObject *key = registered_key(s, fileobj, &cfd);
    if (key == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    int ne = not_equal(events, PyTuple_GET_ITEM(key, 2));
    if (ne < 0) {
        goto done;
    }
    if (ne) {
        PyObject *r = call_driver(s, "modify", PyTuple_GET_ITEM(key, 1),
                                  events);
        if (r == NULL) {
            drop_after_failure(s, fileobj);
            goto done;
        }
        Py_DECREF(r);
    }
    int dne = not_equal(data, PyTuple_GET_ITEM(key, 3));
    if (dne < 0) {
        goto done;
    }
    if (!ne && !dne) {
        result = key;
        Py_INCREF(result);
        goto done;
    }
    result = new_key(s->st, PyTuple_GET_ITEM(key, 0),
                     PyTuple_GET_ITEM(key, 1), events, data);
    if (result == NULL) {
        goto done;
    }
    sel_slot *sl = slot_find(s, cfd);
    if (sl != NULL && slot_key(sl) == key) {
        Py_INCREF(result);
        slot_set_key(sl, result);
    }
done:
    Py_DECREF(key);
    return result;
}

/* The stdlib's _fd_to_key as the driver's select() reads it after the
 * kernel object's wait: a dict {key.fd: key} of the current keys. */
static PyObject *
sel_py_keys(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    sel_object *s = (sel_object *)self;
    PyObject *d = PyDict_New();
    for (int32_t fd = s->head; d != NULL && fd >= 0;) {
        sel_slot *sl = slot_find(s, fd);
        PyObject *key = slot_key(sl);
        if (PyDict_SetItem(d, PyTuple_GET_ITEM(key, 1), key) < 0) {
            Py_CLEAR(d);
            break;
        }
        /* PyDict_SetItem may run a key's __eq__: look the slot up again */
        sl = slot_find(s, fd);
        fd = sl != NULL ? sl->next : -1;
    }
    return d;
}

static PyMethodDef sel_py_keys_def = {
    "_fd_to_key", sel_py_keys, METH_NOARGS, NULL,
};

static PyObject *
sel_py_select(sel_object *s, PyObject *timeout)
{
    PyObject *keys = PyCFunction_New(&sel_py_keys_def, (PyObject *)s);
    if (keys == NULL) {
        return NULL;
    }
    PyObject *count = PyLong_FromSsize_t(s->count);
    PyObject *name = PyUnicode_FromString("select");
    PyObject *r = NULL;
    if (count != NULL && name != NULL) {
        PyObject *drv = s->driver;
        Py_INCREF(drv);
        r = PyObject_CallMethodObjArgs(drv, name, timeout, count, keys,
                                       NULL);
        Py_DECREF(drv);
    }
    Py_XDECREF(name);
    Py_XDECREF(count);
    Py_DECREF(keys);
    return r;
}

/* The kernel object and its driver, for a _selector_cls that is not `own`
 * (fastsel's mechanism of this kind).  0: native, 1: driver, -1: error. */
static int
sel_choose_backend(sel_object *s, PyObject *module)
{
    if (s->kind == K_SELECT) {
        return 0;               /* SelectSelector has no _selector_cls */
    }
    /* interned: the type attribute cache then answers */
    PyObject *cls = PyObject_GetAttr((PyObject *)s, s->st->str_selector_cls);
    if (cls == NULL) {
        return -1;
    }
    int native;
    if (s->kind == K_EPOLL) {
        native = cls == (PyObject *)s->st->epoll_type;
    }
    else if (s->kind == K_KQUEUE) {
        native = cls == (PyObject *)s->st->kqueue_type;
    }
    else {
        /* this module's poll() function */
        native = PyCFunction_Check(cls)
                 && PyCFunction_GET_SELF(cls) == module
                 && strcmp(((PyCFunctionObject *)cls)->m_ml->ml_name,
                           "poll") == 0;
    }
    if (native) {
        Py_DECREF(cls);
        return 0;
    }
    PyObject *kernel = PyObject_CallNoArgs(cls);
    Py_DECREF(cls);
    if (kernel == NULL) {
        return -1;
    }
    PyObject *mod = PyImport_ImportModule("fastsel._selectors");
    PyObject *make = mod ? PyObject_GetAttrString(mod, "_driver") : NULL;
    Py_XDECREF(mod);
    if (make == NULL) {
        Py_DECREF(kernel);
        return -1;
    }
    s->driver = PyObject_CallFunction(make, "sO", kind_names[s->kind],
                                      kernel);
    Py_DECREF(make);
    Py_DECREF(kernel);
    return s->driver == NULL ? -1 : 1;
}

/* ---- register / unregister / modify ----------------------------------- */

static PyObject *
sel_do_register(sel_object *s, PyObject *fileobj, PyObject *events,
                PyObject *data)
{
    if (sel_ready(s) < 0) {
        return NULL;
    }
    if (s->driver != NULL) {
        return sel_py_register(s, fileobj, events, data);
    }
    int mask = check_events(events);
    if (mask < 0) {
        return NULL;
    }
    long cfd;
    PyObject *fd = lookup_unregistered(s, fileobj, &cfd);
    if (fd == NULL) {
        return NULL;
    }
    int isbool = PyBool_Check(fd);
    PyObject *key = new_key(s->st, fileobj, fd, events, data);
    Py_DECREF(fd);
    if (key == NULL) {
        return NULL;
    }
    if ((s->kind == K_EPOLL || s->kind == K_POLL) && warn_bool_fd(isbool)) {
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
    uint32_t gen = ++s->next_gen;
    if (s->ops->add(s->be, (int)cfd, mask, make_token((int)cfd, gen)) < 0) {
        /* nothing was stored: no key is left behind */
        set_errno_error(errno);
        Py_DECREF(key);
        return NULL;
    }
    sel_slot *sl = slot_make(s, (int)cfd);
    if (sl == NULL) {
        (void)s->ops->remove(s->be, (int)cfd, mask);
        Py_DECREF(key);
        return NULL;
    }
    sl->obj = (uintptr_t)key;
    sl->gen = gen;
    sl->events = (uint8_t)mask;
    sl->boolfd = (uint8_t)isbool;
    slot_link(s, (int)cfd, sl);
    Py_INCREF(key);
    return key;
}

/* (fileobj, events, data=None) of register() and modify(): the plain
 * positional call is bound without parse_args. */
static int
parse_fileobj_events_data(sel_object *s, char which, const char *meth,
                          PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames, PyObject **a)
{
    if (kwnames == NULL && nargs >= 2 && nargs <= 3) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = nargs == 3 ? args[2] : Py_None;
        return 0;
    }
    if (fs_parse_pyfunc(owner_of(s->kind, which), meth, names_reg, 2, 3, args,
                   nargs, kwnames, a) < 0) {
        return -1;
    }
    if (a[2] == NULL) {
        a[2] = Py_None;
    }
    return 0;
}

static PyObject *
sel_register(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *a[3];
    if (parse_fileobj_events_data(s, 'r', "register", args, nargs, kwnames,
                                  a) < 0) {
        return NULL;
    }
    return sel_do_register(s, a[0], a[1], a[2]);
}

static PyObject *
sel_do_unregister(sel_object *s, PyObject *fileobj)
{
    if (sel_ready(s) < 0) {
        return NULL;
    }
    if (s->driver != NULL) {
        return sel_py_unregister(s, fileobj);
    }
    long cfd;
    PyObject *fd = sel_lookup(s, fileobj, &cfd);
    if (fd == NULL) {
        return NULL;
    }
    Py_DECREF(fd);
    sel_slot *sl = cfd >= 0 ? slot_find(s, cfd) : NULL;
    if (sl == NULL) {
        return err_not_registered(fileobj);
    }
    if (s->fork_seen != fs_fork_generation()) {
        /* fileno() forked: rebuild first (the slot may move) */
        if (sel_ready(s) < 0) {
            return NULL;
        }
        sl = slot_find(s, cfd);
    }
    int events = sl->events;
    int isbool = sl->boolfd;
    PyObject *key = slot_take(s, (int)cfd, sl);
    /* an fd closed since registration makes the kernel refuse: ignored */
    (void)s->ops->remove(s->be, (int)cfd, events);
    if ((s->kind == K_EPOLL || s->kind == K_POLL) && warn_bool_fd(isbool)) {
        Py_DECREF(key);
        return NULL;
    }
    return key;
}

static PyObject *
sel_unregister(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    PyObject *a[1];
    if (kwnames == NULL && nargs == 1) {
        a[0] = args[0];
    }
    else if (fs_parse_pyfunc(owner_of(s->kind, 'r'), "unregister",
                        names_reg, 1, 1, args, nargs, kwnames, a) < 0) {
        return NULL;
    }
    return sel_do_unregister(s, a[0]);
}

/* Does this instance use our own register/unregister?  (A subclass or an
 * instance attribute may override them; the stdlib's modify() then calls
 * the override.) */
static int
sel_plain(sel_object *s)
{
    return Py_TYPE(s) == s->st->selector_types[s->kind]
           && (s->dict == NULL || PyDict_GET_SIZE(s->dict) == 0);
}

/* A new key for a modify() that changed events or data; stored in fd's
 * slot if the slot still holds `key` (Python code may have run). */
static PyObject *
modify_replace(sel_object *s, long cfd, PyObject *key, PyObject *events,
               PyObject *data)
{
    PyObject *result = new_key(s->st, PyTuple_GET_ITEM(key, 0),
                               PyTuple_GET_ITEM(key, 1), events, data);
    if (result == NULL) {
        return NULL;
    }
    sel_slot *sl = slot_find(s, cfd);
    if (sl != NULL && slot_key(sl) == key) {
        Py_INCREF(result);
        slot_set_key(sl, result);
    }
    return result;
}

/* Drop fd's key after the poller refused a modify, as the stdlib does;
 * also drop any kernel leftover so the fd can be registered again. */
static void
modify_drop(sel_object *s, long cfd, sel_slot *sl)
{
    int old = sl->events;
    PyObject *k = slot_take(s, (int)cfd, sl);
    Py_DECREF(k);
    (void)s->ops->remove(s->be, (int)cfd, old);
}

/* _PollLikeSelector.modify's one kernel modify (no validation of events).
 * Returns the previous kernel mask, or -1 with an exception. */
static int
modify_poller_kernel(sel_object *s, PyObject *fileobj, long cfd,
                     PyObject *key, PyObject *events)
{
    int mask = poller_mask(events);
    if (mask < 0) {
        return -1;
    }
    sel_slot *sl = slot_find(s, cfd);   /* __and__ may have run Python code */
    if (sl == NULL || slot_key(sl) != key) {
        /* unregistered meanwhile: the stdlib's dict-free key path */
        err_not_registered(fileobj);
        return -1;
    }
    if (warn_bool_fd(sl->boolfd) < 0) {
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
        err_not_registered(fileobj);
        return -1;
    }
    if (s->ops->modify(s->be, (int)cfd, sl->events, mask,
                       make_token((int)cfd, sl->gen)) < 0) {
        int err = errno;
        modify_drop(s, cfd, sl);
        set_errno_error(err);
        return -1;
    }
    int old_mask = sl->events;
    sl->events = (uint8_t)mask;
    return old_mask;
}

/* _PollLikeSelector.modify (epoll, poll) after the lookup; ne: whether
 * events != key.events. */
static PyObject *
modify_poller(sel_object *s, PyObject *fileobj, long cfd, PyObject *key,
              int ne, PyObject *events, PyObject *data)
{
    int old_mask = -1;
    if (ne) {
        old_mask = modify_poller_kernel(s, fileobj, cfd, key, events);
        if (old_mask < 0) {
            return NULL;
        }
    }
    int dne = not_equal(data, PyTuple_GET_ITEM(key, 3));
    if (dne < 0) {
        sel_slot *sl = slot_find(s, cfd);
        if (old_mask >= 0 && sl != NULL && slot_key(sl) == key) {
            /* the key keeps its events: so does result masking */
            sl->events = (uint8_t)old_mask;
        }
        return NULL;
    }
    if (!ne && !dne) {
        Py_INCREF(key);
        return key;
    }
    return modify_replace(s, cfd, key, events, data);
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
    int dne = not_equal(data, PyTuple_GET_ITEM(key, 3));
    if (dne < 0) {
        return NULL;
    }
    if (!dne) {
        Py_INCREF(key);
        return key;
    }
    return modify_replace(s, cfd, key, PyTuple_GET_ITEM(key, 2), data);
}

static PyObject *
sel_modify(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    PyObject *a[3];
    if (parse_fileobj_events_data(s, 'm', "modify", args, nargs, kwnames,
                                  a) < 0) {
        return NULL;
    }
    PyObject *fileobj = a[0], *events = a[1], *data = a[2];
    if (sel_ready(s) < 0) {
        return NULL;
    }
    if (s->driver != NULL && (s->kind == K_EPOLL || s->kind == K_POLL)) {
        return sel_py_modify(s, fileobj, events, data);
    }
    long cfd;
    PyObject *key = registered_key(s, fileobj, &cfd);
    if (key == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    int ne = not_equal(events, PyTuple_GET_ITEM(key, 2));
    if (ne >= 0) {
        result = (s->kind == K_EPOLL || s->kind == K_POLL)
            ? modify_poller(s, fileobj, cfd, key, ne, events, data)
            : modify_base(s, fileobj, cfd, key, ne, events, data);
    }
    Py_DECREF(key);
    return result;
}

/* ---- select ------------------------------------------------------------- */

static PyObject *
call_math_ceil(PyObject *x)
{
    PyObject *math = PyImport_ImportModule("math");
    if (math == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_CallMethod(math, "ceil", "O", x);
    Py_DECREF(math);
    return r;
}

/* Epoll/Poll: `math.ceil(timeout * 1e3)` for a positive timeout, as a
 * Python int (slow, general path). */
static PyObject *
ceil_ms_object(PyObject *timeout)
{
    PyObject *k = PyFloat_FromDouble(1e3);
    if (k == NULL) {
        return NULL;
    }
    PyObject *m = PyNumber_Multiply(timeout, k);
    Py_DECREF(k);
    if (m == NULL) {
        return NULL;
    }
    PyObject *c = call_math_ceil(m);
    Py_DECREF(m);
    return c;
}

/* A TypeError from the time conversion of obj (what the poller got) gets
 * the poller's text: `legacy` (NULL: leave it) before 3.15, the shared
 * "real number" text after.  Other errors pass unchanged. */
static void
timeout_type_error(PyObject *obj, const char *legacy)
{
    if (PyErr_ExceptionMatches(PyExc_TypeError)
        && (legacy != NULL || fs_ver->timeout_rule == FS_TIMEOUT_REAL)) {
        fs_timeout_type_error(obj, legacy);
    }
}

static int
too_large(void)
{
    PyErr_SetString(PyExc_OverflowError, "timeout is too large");
    return -1;
}

/* Epoll/Poll, any timeout object: 0 with *ns = 0 when `timeout <= 0`,
 * else 1 with *c = math.ceil(timeout * 1e3); -1 with an exception. */
static int
poller_ceil_ms(PyObject *timeout, int64_t *ns, PyObject **c)
{
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) {
        return -1;
    }
    int le = PyObject_RichCompareBool(timeout, zero, Py_LE);
    Py_DECREF(zero);
    if (le < 0) {
        return -1;
    }
    if (le) {
        *ns = 0;
        return 0;
    }
    *c = ceil_ms_object(timeout);
    return *c == NULL ? -1 : 1;
}

/* After the poller's conversion to n nanoseconds (rc < 0: it failed): the
 * poller's TypeError text and (int_ms) its C int check of the
 * milliseconds. */
static int
poller_ms_result(PyObject *obj, int rc, int64_t n, fs_round_t round,
                 int int_ms, int64_t *ns)
{
    if (rc < 0) {
        timeout_type_error(obj, "timeout must be an integer or None");
        return -1;
    }
    int64_t msv = fs_ns_divide(n, 1000000, round);
    if (int_ms && (msv > INT_MAX || msv < INT_MIN)) {
        return too_large();
    }
    *ns = n < 0 ? -1 : n;
    return 0;
}

/* EpollSelector: epoll.poll(math.ceil(timeout * 1e3) * 1e-3) */
static int
epoll_timeout(PyObject *timeout, int64_t *ns)
{
    double secs;
    int fast = PyFloat_CheckExact(timeout) || PyLong_CheckExact(timeout);
    if (fast) {
        double d;
        if (PyFloat_CheckExact(timeout)) {
            d = PyFloat_AS_DOUBLE(timeout);
        }
        else {
            int overflow;
            long v = PyLong_AsLongAndOverflow(timeout, &overflow);
            if (overflow < 0 || (!overflow && v <= 0)) {
                *ns = 0;
                return 0;
            }
            d = overflow ? PyLong_AsDouble(timeout) : (double)v;
            if (d == -1.0 && PyErr_Occurred()) {
                return -1;
            }
        }
        if (d <= 0) {
            *ns = 0;
            return 0;
        }
        double ms = d * 1e3;
        if (isinf(ms)) {
            PyErr_SetString(PyExc_OverflowError,
                            "cannot convert float infinity to integer");
            return -1;
        }
        if (isnan(ms)) {
            PyErr_SetString(PyExc_ValueError,
                            "cannot convert float NaN to integer");
            return -1;
        }
        secs = ceil(ms) * 1e-3;
        if (secs < 9e9) {
            /* _PyTime_FromSecondsObject + _PyTime_AsMilliseconds(CEILING) */
            volatile double t = secs * 1e9;
            double r = ceil(t);
            int64_t n = (int64_t)r;
            int64_t msv = fs_ns_divide(n, 1000000, FS_ROUND_CEILING);
            if (msv > INT_MAX) {
                return too_large();
            }
            *ns = n;
            return 0;
        }
        /* out of range: let the general path produce the exact error */
    }
    PyObject *c;
    int pos = poller_ceil_ms(timeout, ns, &c);
    if (pos <= 0) {
        return pos;
    }
    PyObject *k = PyFloat_FromDouble(1e-3);
    PyObject *sobj = k ? PyNumber_Multiply(c, k) : NULL;
    Py_XDECREF(k);
    Py_DECREF(c);
    if (sobj == NULL) {
        return -1;
    }
    int64_t n = 0;
    int rc = fs_ns_from_seconds_object(sobj, FS_ROUND_UP, &n);
    rc = poller_ms_result(sobj, rc, n, FS_ROUND_CEILING, 1, ns);
    Py_DECREF(sobj);
    return rc;
}

/* PollSelector: poll.poll(math.ceil(timeout * 1e3)) */
static int
poll_timeout(PyObject *timeout, int64_t *ns)
{
    if (PyFloat_CheckExact(timeout) || PyLong_CheckExact(timeout)) {
        double d;
        int overflow = 0;
        if (PyFloat_CheckExact(timeout)) {
            d = PyFloat_AS_DOUBLE(timeout);
        }
        else {
            long v = PyLong_AsLongAndOverflow(timeout, &overflow);
            d = (double)v;
        }
        if (!overflow && !isnan(d)) {
            if (d <= 0) {
                *ns = 0;
                return 0;
            }
            double c = ceil(d * 1e3);
            if (c <= (double)INT_MAX) {
                *ns = (int64_t)c * 1000000;
                return 0;
            }
        }
    }
    PyObject *c;
    int pos = poller_ceil_ms(timeout, ns, &c);
    if (pos <= 0) {
        return pos;
    }
    int64_t n = 0;
    int rc = fs_ns_from_ms_object(c, FS_ROUND_UP, &n);
    rc = poller_ms_result(c, rc, n, FS_ROUND_UP,
                          !fs_poll_timeout_unbounded(), ns);
    Py_DECREF(c);
    return rc;
}

/* SelectSelector / KqueueSelector: max(timeout, 0) seconds */
static int
max0_timeout(int kind, PyObject *timeout, int64_t *ns)
{
    PyObject *t = timeout;
    if (PyFloat_CheckExact(timeout)) {
        if (PyFloat_AS_DOUBLE(timeout) < 0) {
            *ns = 0;
            return 0;
        }
    }
    else if (PyLong_CheckExact(timeout)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(timeout, &overflow);
        if (overflow < 0 || (!overflow && v <= 0)) {
            *ns = 0;
            return 0;
        }
    }
    else {
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL) {
            return -1;
        }
        /* max() keeps the first item unless a later one is greater */
        int gt = PyObject_RichCompareBool(zero, timeout, Py_GT);
        Py_DECREF(zero);
        if (gt < 0) {
            return -1;
        }
        if (gt) {
            *ns = 0;
            return 0;
        }
    }
    if (fs_ns_from_seconds_object(t, FS_ROUND_UP, ns) < 0) {
        if (kind == K_KQUEUE && fs_ver->timeout_rule != FS_TIMEOUT_REAL) {
            /* kqueue.control() up to 3.14: any failure reads so */
            const char *name = Py_TYPE(t)->tp_name;
            const char *dot = strrchr(name, '.');
            PyErr_Format(PyExc_TypeError,
                         "timeout argument must be a number or None, "
                         "got %.200s",
                         dot ? dot + 1 : name);
        }
        else {
            timeout_type_error(t, "timeout must be a float or None");
        }
        return -1;
    }
    if (*ns < 0) {
        PyErr_SetString(PyExc_ValueError, kind == K_KQUEUE
                        ? "timeout must be positive or None"
                        : "timeout must be non-negative");
        return -1;
    }
    return 0;
}

static int
sel_timeout(sel_object *s, PyObject *timeout, int64_t *ns)
{
    if (timeout == Py_None) {
        *ns = -1;
        return 0;
    }
    switch (s->kind) {
    case K_EPOLL:
        return epoll_timeout(timeout, ns);
    case K_POLL:
        return poll_timeout(timeout, ns);
    default:
        return max0_timeout(s->kind, timeout, ns);
    }
}

/* Release what close() left to a waiting select(). */
static void
sel_finish_close(sel_object *s)
{
    if (s->closed && !s->busy) {
        if (s->be != NULL) {
            s->ops->free(s->be);
            s->be = NULL;
        }
        PyMem_Free(s->evbuf);
        s->evbuf = NULL;
        s->evcap = 0;
    }
}

/* One backend wait without the GIL, EINTR retried per PEP 475.  Returns the
 * event count, or -1 with an exception set. */
static int
sel_wait(sel_object *s, int64_t timeout_ns, int max)
{
    int64_t deadline = timeout_ns > 0 ? fs_monotonic_ns() + timeout_ns : 0;
    for (;;) {
        int n, err;
        fs_backend *be = s->be;
        fs_event *buf = s->evbuf;
        if (timeout_ns == 0) {
            /* a poll that cannot block: handing the GIL over and back
             * would cost more than the call (the backend still touches
             * nothing but its own memory) */
            n = s->ops->wait(be, 0, buf, max);
            err = errno;
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            n = s->ops->wait(be, timeout_ns, buf, max);
            err = errno;
            Py_END_ALLOW_THREADS
        }
        if (n >= 0) {
            return n;
        }
        if (err != EINTR) {
            set_errno_error(err);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if (s->closed) {
            return 0;
        }
        if (timeout_ns > 0) {
            timeout_ns = deadline - fs_monotonic_ns();
            if (timeout_ns < 0) {
                return 0;
            }
        }
    }
}

/* Append the results of n events in evbuf to list, starting at index *j of
 * a list pre-sized with NULLs (or appending when *j reaches its size).
 * Drops events of registrations that are gone or replaced (generation). */
static int
sel_collect(sel_object *s, PyObject *list, int n, Py_ssize_t *j, int dedupe)
{
    for (int i = 0; i < n; i++) {
        uint64_t tok = s->evbuf[i].token;
        int fd = (int)(uint32_t)tok;
        uint32_t gen = (uint32_t)(tok >> 32);
        sel_slot *sl = slot_find(s, fd);
        if (sl == NULL || sl->gen != gen) {
            continue;
        }
        if (s->seen != NULL && fd < s->seencap) {
            if (dedupe && s->seen[fd] == s->epoch) {
                continue;
            }
            s->seen[fd] = s->epoch;
        }
        int mask = s->evbuf[i].events & sl->events;
        PyObject *t = slot_res(sl);
        if (t != NULL && sl->res_mask == mask) {
            Py_INCREF(t);
        }
        else {
            /* owned before the allocation, which may collect garbage and
             * run a finaliser that unregisters fd and frees its key */
            PyObject *key = slot_key(sl);
            Py_INCREF(key);
            PyObject *m = PyLong_FromLong(mask);   /* a cached small int */
            t = PyTuple_New(2);
            if (t == NULL) {
                Py_DECREF(key);
                Py_XDECREF(m);
                return -1;
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

static PyObject *
sel_select(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    PyObject *timeout;
    if (kwnames == NULL && nargs <= 1) {
        timeout = nargs ? args[0] : Py_None;
    }
    else {
        if (fs_parse_pyfunc(owner_of(s->kind, 's'), "select",
                       names_timeout, 0, 1, args, nargs, kwnames,
                       &timeout) < 0) {
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
    if (sel_timeout(s, timeout, &tns) < 0) {
        return NULL;
    }
    if (s->kind == K_SELECT && (s->nbool[0] || s->nbool[1])) {
        for (int i = 0; i < s->nbool[0] + s->nbool[1]; i++) {
            if (warn_bool_fd(1) < 0) {
                return NULL;
            }
        }
    }
    /* the timeout's conversion and the warnings may have run Python code
     * that closed the selector (freeing its backend) or forked */
    if (sel_ready(s) < 0) {
        return NULL;
    }
    if (s->busy) {
        /* one persistent buffer and one backend wait at a time */
        PyErr_SetString(PyExc_RuntimeError, "concurrent select() invocation");
        return NULL;
    }
    /* Only epoll hands out the rest of a ready list on the next call (it
     * re-queues what it returned); poll and select rescan from the start,
     * so they get room for every registration, as the stdlib's do. */
    int batch = s->kind == K_EPOLL ? SEL_BATCH : INT_MAX;
    int max = s->count < 1 ? 1 : (s->count > batch ? batch : (int)s->count);
    if (s->evcap < max && sel_reserve(s, max, batch) < 0) {
        return NULL;
    }
    s->busy = 1;
    PyObject *list = NULL;
    int n = sel_wait(s, tns, max);
    if (n < 0 || s->closed) {
        goto finish;
    }
    list = PyList_New(n);
    if (list == NULL) {
        goto finish;
    }
    Py_ssize_t j = 0;
    int full = n == max && max == batch && s->count > max;
    if (full) {
        /* draining follows: mark what this call has reported */
        if (s->seencap < s->cap) {
            uint32_t *ns = PyMem_Realloc(s->seen,
                                         (size_t)s->cap * sizeof(*ns));
            if (ns == NULL) {
                Py_CLEAR(list);
                PyErr_NoMemory();
                goto finish;
            }
            memset(ns + s->seencap, 0,
                   (size_t)(s->cap - s->seencap) * sizeof(*ns));
            s->seen = ns;
            s->seencap = s->cap;
        }
        s->epoch++;
    }
    if (sel_collect(s, list, n, &j, 0) < 0) {
        Py_CLEAR(list);
        goto finish;
    }
    /* Drain: epoll hands out the not-yet-returned ready fds first, then
     * the ones it returned (re-queued, level-triggered).  A batch that is
     * not full, or that brings anything already seen, means every ready
     * fd has been reported. */
    while (full && !s->closed) {
        n = sel_wait(s, 0, max);
        if (n < 0) {
            Py_CLEAR(list);
            goto finish;
        }
        Py_ssize_t before = j;
        if (s->closed) {
            break;
        }
        if (sel_collect(s, list, n, &j, 1) < 0) {
            /* also when a finaliser closed: no list with an exception */
            Py_CLEAR(list);
            break;
        }
        full = n == max && j - before == n;
    }
    if (list != NULL && j < PyList_GET_SIZE(list)) {
        if (PyList_SetSlice(list, j, PyList_GET_SIZE(list), NULL) < 0) {
            Py_CLEAR(list);
        }
    }

finish:
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

/* ---- the rest of the selector API --------------------------------------- */

static PyObject *
sel_close(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    if (no_args(s, 'c', "close", args, nargs, kwnames) < 0) {
        return NULL;
    }
    if (s->driver != NULL) {
        /* the kernel object's close() first; if it fails, nothing else
         * happens (EpollSelector/KqueueSelector.close) */
        PyObject *r = call_driver(s, "close", NULL, NULL);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    if (s->closed) {
        Py_RETURN_NONE;
    }
    s->closed = 1;
    Py_CLEAR(s->map);
    sel_forget_all(s);
    if (s->fork_seen != fs_fork_generation()) {
        /* the inherited backend: release the child's copy only */
        s->fork_seen = fs_fork_generation();
        s->busy = 0;
    }
    sel_finish_close(s);
    Py_RETURN_NONE;
}

static PyObject *
sel_get_key(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    PyObject *fileobj;
    if (kwnames == NULL && nargs == 1) {
        fileobj = args[0];
    }
    else if (fs_parse_pyfunc(owner_of(s->kind, 'k'), "get_key",
                        names_reg, 1, 1, args, nargs, kwnames, &fileobj) < 0) {
        return NULL;
    }
    if (s->closed) {
        return err_closed();
    }
    long cfd;
    return registered_key(s, fileobj, &cfd);
}

static PyObject *
sel_get_map(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    if (no_args(s, 'g', "get_map", args, nargs, kwnames) < 0) {
        return NULL;
    }
    if (s->closed) {
        Py_RETURN_NONE;
    }
    if (s->map == NULL) {
        PyTypeObject *tp = (PyTypeObject *)s->st->selmap_type;
        map_object *m = (map_object *)tp->tp_alloc(tp, 0);
        if (m == NULL) {
            return NULL;
        }
        Py_INCREF(s);
        m->sel = s;
        s->map = (PyObject *)m;
    }
    Py_INCREF(s->map);
    return s->map;
}

static PyObject *
sel_fileno(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    if (no_args(s, 'f', "fileno", args, nargs, kwnames) < 0) {
        return NULL;
    }
    if (s->driver != NULL) {
        return call_driver(s, "fileno", NULL, NULL);
    }
    if (s->closed) {
        PyErr_Format(PyExc_ValueError, "I/O operation on closed %s object",
                     s->ops->name);
        return NULL;
    }
    if (sel_ready(s) < 0) {
        return NULL;
    }
    return PyLong_FromLong(s->ops->fileno(s->be));
}

static PyObject *
sel_enter(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    if (no_args(s, 'e', "__enter__", args, nargs, kwnames) < 0) {
        return NULL;
    }
    Py_INCREF(s);
    return (PyObject *)s;
}

static PyObject *
sel_exit(sel_object *s, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    PyObject *name = PyUnicode_FromString("close");
    if (name == NULL) {
        return NULL;
    }
    /* self.close(): a subclass may extend it */
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)s, name);
    Py_DECREF(name);
    return r;
}

/* ---- construction and GC ------------------------------------------------ */

static PyObject *
sel_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    /* find our module's state and the mechanism through the base chain */
    PyObject *module = NULL;
    for (PyTypeObject *t = type; t != NULL; t = t->tp_base) {
        if (PyType_HasFeature(t, Py_TPFLAGS_HEAPTYPE)
            && ((PyHeapTypeObject *)t)->ht_module != NULL) {
            module = ((PyHeapTypeObject *)t)->ht_module;
            break;
        }
    }
    fs_state *st = module ? fs_get_state(module) : NULL;
    /* the first of our classes in the MRO, as method lookup finds it */
    int kind = -1;
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 0; st != NULL && mro != NULL
         && i < PyTuple_GET_SIZE(mro) && kind < 0; i++) {
        for (int k = 0; k < K_COUNT; k++) {
            if (PyTuple_GET_ITEM(mro, i)
                == (PyObject *)st->selector_types[k]) {
                kind = k;
                break;
            }
        }
    }
    if (kind < 0) {
        PyErr_Format(PyExc_TypeError, "cannot create '%s' instances",
                     type->tp_name);
        return NULL;
    }
    if (type == st->selector_types[kind]
        && (PyTuple_GET_SIZE(args) || (kwargs && PyDict_GET_SIZE(kwargs)))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments",
                     kind_names[kind]);
        return NULL;
    }
    sel_object *s = (sel_object *)type->tp_alloc(type, 0);
    if (s == NULL) {
        return NULL;
    }
    s->st = st;
    s->kind = kind;
    s->ops = kind_ops(kind);
    s->head = s->tail = -1;
    s->fork_seen = fs_fork_generation();
    int rc = sel_choose_backend(s, module);
    if (rc < 0) {
        Py_DECREF(s);
        return NULL;
    }
    if (rc > 0) {
        s->ops = NULL;
        return (PyObject *)s;
    }
    /* The kernel object is made now, as the stdlib does, so EMFILE (or a
     * mechanism the kernel refuses) surfaces here and DefaultSelector's
     * probe sees it. */
    if (sel_open_backend(s) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static int
sel_traverse(sel_object *s, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->dict);
    Py_VISIT(s->map);
    Py_VISIT(s->driver);
    for (int i = 0; i < s->cap; i++) {
        Py_VISIT(slot_obj(&s->slots[i]));
    }
    for (int i = 0; i < s->nfar; i++) {
        Py_VISIT(slot_obj(&s->far[i].slot));
    }
    return 0;
}

static int
sel_clear(sel_object *s)
{
    Py_CLEAR(s->dict);
    Py_CLEAR(s->map);
    Py_CLEAR(s->driver);
    sel_forget_all(s);
    return 0;
}

static void
sel_dealloc(sel_object *s)
{
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    if (s->weaklist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)s);
    }
    (void)sel_clear(s);
    if (s->be != NULL) {
        s->ops->free(s->be);
        s->be = NULL;
    }
    PyMem_Free(s->evbuf);
    tp->tp_free((PyObject *)s);
    Py_DECREF(tp);
}

static PyMethodDef sel_methods[] = {
    {"register", (PyCFunction)(void (*)(void))sel_register,
     METH_FASTCALL | METH_KEYWORDS,
     "register(fileobj, events, data=None)\n--\n\nRegister a file object."},
    {"unregister", (PyCFunction)(void (*)(void))sel_unregister,
     METH_FASTCALL | METH_KEYWORDS,
     "unregister(fileobj)\n--\n\nUnregister a file object."},
    {"modify", (PyCFunction)(void (*)(void))sel_modify,
     METH_FASTCALL | METH_KEYWORDS,
     "modify(fileobj, events, data=None)\n--\n\n"
     "Change a registered file object's events or data."},
    {"select", (PyCFunction)(void (*)(void))sel_select,
     METH_FASTCALL | METH_KEYWORDS,
     "select(timeout=None)\n--\n\n"
     "Wait for readiness; a list of (key, events)."},
    {"close", (PyCFunction)(void (*)(void))sel_close,
     METH_FASTCALL | METH_KEYWORDS,
     "close()\n--\n\nClose the selector and forget every key."},
    {"get_key", (PyCFunction)(void (*)(void))sel_get_key,
     METH_FASTCALL | METH_KEYWORDS,
     "get_key(fileobj)\n--\n\nThe key registered for a file object."},
    {"get_map", (PyCFunction)(void (*)(void))sel_get_map,
     METH_FASTCALL | METH_KEYWORDS,
     "get_map()\n--\n\nA read-only mapping of file objects to keys."},
    {"__enter__", (PyCFunction)(void (*)(void))sel_enter,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))sel_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef sel_fileno_methods[] = {
    {"fileno", (PyCFunction)(void (*)(void))sel_fileno,
     METH_FASTCALL | METH_KEYWORDS,
     "fileno()\n--\n\nThe kernel object's file descriptor."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef sel_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(sel_object, dict), READONLY,
     NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(sel_object, weaklist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

/* The stdlib's _map attribute: what get_map() returns (None once closed). */
static PyObject *
sel_get_map_attr(PyObject *self, void *Py_UNUSED(closure))
{
    return sel_get_map((sel_object *)self, NULL, 0, NULL);
}

static PyGetSetDef sel_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"_map", sel_get_map_attr, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sel_base_slots[] = {
    {Py_tp_getset, sel_getset},
    {Py_tp_new, sel_new},
    {Py_tp_dealloc, sel_dealloc},
    {Py_tp_traverse, sel_traverse},
    {Py_tp_clear, sel_clear},
    {Py_tp_methods, sel_methods},
    {Py_tp_members, sel_members},
    {Py_tp_doc, "Base of fastsel's selector classes."},
    {0, NULL},
};

static PyType_Spec sel_base_spec = {
    .name = "fastsel._SelectorImpl",
    .basicsize = sizeof(sel_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = sel_base_slots,
};

/* ---- the mapping -------------------------------------------------------- */

static PyObject *
map_lookup(map_object *m, PyObject *fileobj, PyObject *dflt)
{
    sel_object *s = m->sel;
    long cfd;
    PyObject *fd = sel_lookup(s, fileobj, &cfd);
    if (fd == NULL) {
        return NULL;
    }
    Py_DECREF(fd);
    sel_slot *sl = cfd >= 0 ? slot_find(s, cfd) : NULL;
    if (sl == NULL) {
        if (dflt == NULL) {
            return err_not_registered(fileobj);
        }
        Py_INCREF(dflt);
        return dflt;
    }
    PyObject *key = slot_key(sl);
    Py_INCREF(key);
    return key;
}

static PyObject *
map_getitem(map_object *m, PyObject *fileobj)
{
    return map_lookup(m, fileobj, NULL);
}

static const char *const names_get_own[] = {"fileobj", "default"};
static const char *const names_get_abc[] = {"key", "default"};

static PyObject *
map_get(map_object *m, PyObject *const *args, Py_ssize_t nargs,
        PyObject *kwnames)
{
    PyObject *a[2];
    if (kwnames == NULL && nargs >= 1 && nargs <= 2) {
        a[0] = args[0];
        a[1] = nargs == 2 ? args[1] : Py_None;
    }
    else {
        int own = fs_ver->map_own_get;
        if (fs_parse_pyfunc(own ? "_SelectorMapping" : "Mapping", "get",
                       own ? names_get_own : names_get_abc, 1, 2, args,
                       nargs, kwnames, a) < 0) {
            return NULL;
        }
        if (a[1] == NULL) {
            a[1] = Py_None;
        }
    }
    return map_lookup(m, a[0], a[1]);
}

static int
map_contains(map_object *m, PyObject *fileobj)
{
    PyObject *r = map_lookup(m, fileobj, Py_False);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return r != Py_False;
}

static Py_ssize_t
map_len(map_object *m)
{
    return m->sel->count;
}

static PyObject *
map_iter(map_object *m)
{
    sel_object *s = m->sel;
    PyTypeObject *tp = s->st->selmap_iter_type;
    mapiter_object *it = PyObject_GC_New(mapiter_object, tp);
    if (it == NULL) {
        return NULL;
    }
    Py_INCREF(s);
    it->sel = s;
    it->next = s->head;
    it->next_gen = s->head >= 0 ? slot_find(s, s->head)->gen : 0;
    it->count = s->count;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static int
map_traverse(map_object *m, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(m));
    Py_VISIT(m->sel);
    return 0;
}

static int
map_clear(map_object *m)
{
    Py_CLEAR(m->sel);
    return 0;
}

static void
map_dealloc(map_object *m)
{
    PyTypeObject *tp = Py_TYPE(m);
    PyObject_GC_UnTrack(m);
    (void)map_clear(m);
    tp->tp_free((PyObject *)m);
    Py_DECREF(tp);
}

static PyMethodDef map_methods[] = {
    {"get", (PyCFunction)(void (*)(void))map_get,
     METH_FASTCALL | METH_KEYWORDS,
     "get(fileobj, default=None)\n--\n\nThe key for fileobj, or default."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot map_slots[] = {
    {Py_mp_subscript, map_getitem},
    {Py_mp_length, map_len},
    {Py_sq_length, map_len},
    {Py_sq_contains, map_contains},
    {Py_tp_iter, map_iter},
    {Py_tp_methods, map_methods},
    {Py_tp_traverse, map_traverse},
    {Py_tp_clear, map_clear},
    {Py_tp_dealloc, map_dealloc},
    {0, NULL},
};

static PyType_Spec map_spec = {
    .name = "fastsel._SelectorMappingImpl",
    .basicsize = sizeof(map_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = map_slots,
};

static PyObject *
mapiter_next(mapiter_object *it)
{
    sel_object *s = it->sel;
    if (s == NULL) {
        return NULL;
    }
    if (s->count != it->count) {
        Py_CLEAR(it->sel);
        PyErr_SetString(PyExc_RuntimeError,
                        "dictionary changed size during iteration");
        return NULL;
    }
    if (it->next < 0) {
        Py_CLEAR(it->sel);
        return NULL;
    }
    sel_slot *sl = slot_find(s, it->next);
    if (sl == NULL || sl->gen != it->next_gen) {
        Py_CLEAR(it->sel);
        PyErr_SetString(PyExc_RuntimeError,
                        "dictionary keys changed during iteration");
        return NULL;
    }
    PyObject *fd = PyTuple_GET_ITEM(slot_key(sl), 1);
    it->next = sl->next;
    it->next_gen = sl->next >= 0 ? slot_find(s, sl->next)->gen : 0;
    Py_INCREF(fd);
    return fd;
}

static PyObject *
mapiter_length_hint(mapiter_object *it, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t n = 0;
    if (it->sel != NULL && it->sel->count == it->count) {
        for (int32_t fd = it->next; fd >= 0; n++) {
            sel_slot *sl = slot_find(it->sel, fd);
            if (sl == NULL) {
                break;
            }
            fd = sl->next;
        }
    }
    return PyLong_FromSsize_t(n);
}

static int
mapiter_traverse(mapiter_object *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->sel);
    return 0;
}

static void
mapiter_dealloc(mapiter_object *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    Py_CLEAR(it->sel);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

static PyMethodDef mapiter_methods[] = {
    {"__length_hint__", (PyCFunction)mapiter_length_hint, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot mapiter_slots[] = {
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, mapiter_next},
    {Py_tp_traverse, mapiter_traverse},
    {Py_tp_dealloc, mapiter_dealloc},
    {Py_tp_methods, mapiter_methods},
    {0, NULL},
};

static PyType_Spec mapiter_spec = {
    .name = "fastsel._SelectorMappingIterator",
    .basicsize = sizeof(mapiter_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = mapiter_slots,
};

/* ---- setup -------------------------------------------------------------- */

static int
make_mapping_class(PyObject *module, fs_state *st)
{
    /* class _SelectorMapping(_SelectorMappingImpl, collections.abc.Mapping):
     * the C methods come first; Mapping adds keys/items/values/__eq__ and
     * makes isinstance(m, Mapping) true, as the stdlib's class does. */
    PyObject *abc = PyImport_ImportModule("collections.abc");
    if (abc == NULL) {
        return -1;
    }
    PyObject *mapping = PyObject_GetAttrString(abc, "Mapping");
    Py_DECREF(abc);
    if (mapping == NULL) {
        return -1;
    }
    PyObject *ns = Py_BuildValue("{s:(),s:s,s:s}", "__slots__", "__module__",
                                 "fastsel", "__doc__",
                                 "Mapping of file objects to selector keys.");
    PyObject *cls = NULL;
    if (ns != NULL) {
        cls = PyObject_CallFunction((PyObject *)Py_TYPE(mapping), "s(OO)O",
                                    "_SelectorMapping",
                                    (PyObject *)st->selmap_base_type, mapping,
                                    ns);
    }
    Py_XDECREF(ns);
    Py_DECREF(mapping);
    if (cls == NULL) {
        return -1;
    }
    st->selmap_type = cls;
    return fs_add_object(module, "_SelectorMapping", cls);
}

/* The stdlib's class attribute _selector_cls: the kernel object's maker
 * (the epoll and kqueue types, the poll() function; none for select).
 * Replacing it makes the class drive whatever it makes instead. */
static int
set_selector_cls(PyObject *module, fs_state *st, int kind)
{
    PyObject *cls;
    if (kind == K_SELECT) {
        return 0;
    }
    if (kind == K_POLL) {
        cls = PyObject_GetAttrString(module, "poll");
    }
    else {
        cls = (PyObject *)(kind == K_EPOLL ? st->epoll_type
                                           : st->kqueue_type);
        Py_XINCREF(cls);
    }
    if (cls == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ImportError, "no kernel object type");
        }
        return -1;
    }
    int rc = PyObject_SetAttr((PyObject *)st->selector_types[kind],
                              st->str_selector_cls, cls);
    Py_DECREF(cls);
    return rc;
}

int
fs_selector_setup(PyObject *module, fs_state *st)
{
    st->str_selector_cls = PyUnicode_InternFromString("_selector_cls");
    if (st->str_selector_cls == NULL) {
        return -1;
    }

    PyObject *selectors = PyImport_ImportModule("selectors");
    if (selectors == NULL) {
        return -1;
    }
    st->selector_key_type = PyObject_GetAttrString(selectors, "SelectorKey");
    Py_DECREF(selectors);
    if (st->selector_key_type == NULL) {
        return -1;
    }
    if (!PyType_Check(st->selector_key_type)
        || !PyType_IsSubtype((PyTypeObject *)st->selector_key_type,
                             &PyTuple_Type)) {
        PyErr_SetString(PyExc_ImportError,
                        "selectors.SelectorKey is not the stdlib's "
                        "namedtuple");
        return -1;
    }
    st->selector_base_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &sel_base_spec, NULL);
    if (st->selector_base_type == NULL) {
        return -1;
    }
    for (int k = 0; k < K_COUNT; k++) {
        if (kind_ops(k) == NULL) {
            continue;
        }
        PyType_Slot slots[4] = {
            {Py_tp_traverse, sel_traverse}, {Py_tp_clear, sel_clear},
            {0, NULL}, {0, NULL},
        };
        int ns = 2;
        if (k == K_EPOLL || k == K_KQUEUE) {
            slots[ns].slot = Py_tp_methods;
            slots[ns].pfunc = sel_fileno_methods;
            ns++;
        }
        PyType_Spec spec = {
            .name = kind_type_names[k],
            .basicsize = sizeof(sel_object),
            .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE
                     | Py_TPFLAGS_HAVE_GC,
            .slots = slots,
        };
        /* 3.9 wants the bases as a tuple */
        PyObject *bases = PyTuple_Pack(1, (PyObject *)st->selector_base_type);
        if (bases == NULL) {
            return -1;
        }
        PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(
            module, &spec, bases);
        Py_DECREF(bases);
        if (tp == NULL) {
            return -1;
        }
        st->selector_types[k] = tp;
        if (fs_add_object(module, kind_names[k], (PyObject *)tp) < 0
            || set_selector_cls(module, st, k) < 0) {
            return -1;
        }
    }
    st->selmap_base_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &map_spec, NULL);
    if (st->selmap_base_type == NULL) {
        return -1;
    }
    st->selmap_iter_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &mapiter_spec, NULL);
    if (st->selmap_iter_type == NULL) {
        return -1;
    }
    return make_mapping_class(module, st);
}

int
fs_selector_traverse(fs_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->selector_key_type);
    Py_VISIT(st->selector_base_type);
    for (int k = 0; k < K_COUNT; k++) {
        Py_VISIT(st->selector_types[k]);
    }
    Py_VISIT(st->selmap_base_type);
    Py_VISIT(st->selmap_type);
    Py_VISIT(st->selmap_iter_type);
    Py_VISIT(st->str_selector_cls);
    return 0;
}

void
fs_selector_clear(fs_state *st)
{
    Py_CLEAR(st->selector_key_type);
    Py_CLEAR(st->selector_base_type);
    for (int k = 0; k < K_COUNT; k++) {
        Py_CLEAR(st->selector_types[k]);
    }
    Py_CLEAR(st->selmap_base_type);
    Py_CLEAR(st->selmap_type);
    Py_CLEAR(st->selmap_iter_type);
    Py_CLEAR(st->str_selector_cls);
}
