/* selector.h - the selector classes' internal types, shared by the
 * selector*.c / sel_*.c files only: the kind descriptor, the object, its
 * key/slot table and the inline helpers of the hot paths.
 *
 * One C base type keeps an fd-indexed slot array (key, generation, cached
 * (key, mask) result tuples, registration-order links) and one backend
 * (backend.h); the classes differ only by their row of the kind table
 * (sel_kinds.c).  The class (the first of ours in the MRO) picks the row;
 * a replaced _selector_cls hands every call to the stdlib's own class
 * (sel_driver.c).
 *
 * Beyond the stdlib: events carry `fd | generation << 32` so an event from
 * an old registration never reaches a new key on a reused fd; a fork bumps a
 * global counter and the child rebuilds its backend at its next call instead
 * of touching the interest list it shares with the parent; after close()
 * every mutating call raises RuntimeError('Selector is closed').
 *
 * Files: selector.c (methods, types, construction, GC, setup), sel_kinds.c
 * (the kind table), sel_slots.c (the key/slot table), sel_keys.c (fileobj ->
 * fd, event masks, keys, errors), sel_kernel.c (the kernel object's life
 * cycle and interest changes), sel_ctl.c (register/unregister/modify),
 * sel_timeout.c (per-kind timeout rules),
 * sel_wait.c (select(): wait, results), sel_driver.c (a replaced
 * _selector_cls), sel_map.c (get_map()'s mapping and its iterator).
 */
#ifndef FASTSEL_SELECTOR_H
#define FASTSEL_SELECTOR_H

#include "fastsel.h"
#include "backend.h"
#include "fork.h"

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the kind descriptor -------------------------------------------------
 * One row per class: everything in which the stdlib's classes differ. */

/* The stdlib methods whose defining class appears in argument errors. */
enum {
    SEL_M_REGISTER,         /* register, unregister */
    SEL_M_MODIFY,
    SEL_M_SELECT,
    SEL_M_CLOSE,
    SEL_M_GET_MAP,
    SEL_M_FILENO,
    SEL_M_OTHER,            /* get_key, __enter__: BaseSelector */
    SEL_M_COUNT
};

typedef struct sel_kind sel_kind;
struct sel_kind {
    int index;                  /* into fs_state.selector_types */
    const char *name;           /* the stdlib class: "EpollSelector" */
    /* static: before 3.11, PyType_FromModuleAndSpec keeps spec->name */
    const char *type_name;
    const fs_backend_ops *ops;  /* NULL: not in this build */
    const char *owner[SEL_M_COUNT];
    /* select()'s timeout rule: timeout (not None) -> ns, 0 or -1 */
    int (*timeout)(const sel_kind *k, PyObject *timeout, int64_t *ns);
    /* the poller's own rule, applied to what the class's rule made */
    const fs_timeout_spec *poller_timeout;
    /* 1: _PollLikeSelector.modify (one kernel modify, no validation);
     * 0: _BaseSelectorImpl.modify (unregister + register) */
    int modify_poller;
    int bool_warn_ctl;          /* the poller converts key.fd in register,
                                 * unregister and modify (3.13 warns) */
    int bool_warn_select;       /* select.select() converts every key.fd */
    /* unregister() of a key the kernel object lacks (modify() stored it
     * again after an unregister run inside it) raises the poller's
     * KeyError(fd), as select.poll's unregister() does */
    int unregister_missing;
    /* events a registration can bring per wait: the room select() asks
     * the kernel for is this times the registrations, as the stdlib's
     * (kqueue: one per filter) */
    int per_key;
    int has_fileno;             /* the class defines fileno() */
    /* The kernel object's maker, the stdlib's _selector_cls (a new
     * reference); NULL: the class has none. */
    PyObject *(*selector_cls)(PyObject *module, fs_state *st);
};

extern const sel_kind sel_kinds[FS_SELECTOR_KINDS];

/* ---- the object --------------------------------------------------------- */

/* fds at or above this go to the `far` list instead of the direct array, so
 * a bogus huge fd (accepted by poll and select) cannot allocate gigabytes.
 * A FASTSEL_DEBUG build reads it from FASTSEL_DEBUG_DIRECT_MAX at import,
 * so that tests reach the far list with the fds a test machine allows. */
#ifdef FS_DEBUG
extern int sel_direct_max;
#  define SEL_DIRECT_MAX sel_direct_max
#else
#  define SEL_DIRECT_MAX (1 << 20)
#endif

/* A slot is 24 bytes: its one object pointer is either the SelectorKey or,
 * tagged with bit 0, the cached (key, res_mask) result tuple that holds the
 * key, so caching results costs no memory per registration. */
typedef struct {
    uintptr_t obj;          /* key | cached result | 1; 0: slot free */
    uint32_t gen;           /* generation of this registration */
    int32_t prev, next;     /* registration order (fds), -1: none */
    uint8_t events;         /* the key's events as FS_*: masks results */
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

/* A modify() between its lookup and its key store (sel_ctl.c), on its
 * caller's stack. */
typedef struct sel_ctl_rec {
    struct sel_ctl_rec *next;
    unsigned long owner;    /* the thread making it */
    int fd;
    int due;                /* another thread changed fd meanwhile */
} sel_ctl_rec;

typedef struct {
    PyObject_HEAD
    fs_state *st;
    const sel_kind *kind;
    const fs_backend_ops *ops;
    fs_backend *be;         /* NULL once closed (unless a call holds it) */
    /* Not NULL when _selector_cls is not fastsel's own mechanism: the
     * stdlib's class running over what it makes (sel_driver.c), which
     * every method hands its call to; the rest of the object is unused. */
    PyObject *driver;
    int closed;
    int busy;               /* a select() owns evbuf and the backend wait */
    /* kernel calls of interest changes (sel_ctl.c): tickets taken with the
     * GIL (ctl_next), served in order under ctl_mu (ctl_serving,
     * ctl_waiting); inflight: calls between ticket and return */
    pthread_mutex_t ctl_mu;
    pthread_cond_t ctl_cv;
    uint64_t ctl_next, ctl_serving;
    int ctl_waiting;
    int inflight;
    /* modify()s between lookup and store (sel_ctl.c), or NULL */
    struct sel_ctl_rec *ctls;
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
    int nbool[2];           /* bool_warn_select: bool fds read / write */
    PyObject *map;          /* get_map() result, made on first use */
    PyObject *dict;
    PyObject *weaklist;
} sel_object;

/* ---- slots (sel_slots.c; the lookups inline: every call uses them) ------ */

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

/* The far entry that holds sl (sl must be a far slot). */
static inline sel_far *
slot_far(sel_slot *sl)
{
    return (sel_far *)((char *)sl - offsetof(sel_far, slot));
}

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
                assert(s->far[i].slot.obj != 0);
                return &s->far[i].slot;
            }
        }
    }
    return NULL;
}

static inline uint64_t
make_token(int fd, uint32_t gen)
{
    return (uint64_t)(uint32_t)fd | ((uint64_t)gen << 32);
}

/* Store a new registration of key for fd (the slot takes a reference) in
 * registration order; NULL with MemoryError. */
sel_slot *slot_store(sel_object *s, int fd, PyObject *key, int events,
                     int boolfd);
/* Set a slot's events (the key's mask of results). */
void slot_set_events(sel_object *s, sel_slot *sl, int events);
/* Unlink fd's slot and return its key (a new reference to the caller);
 * the cached result is released.  A far slot moves: sl is invalid after. */
PyObject *slot_take(sel_object *s, int fd, sel_slot *sl);
/* modify()'s `_fd_to_key[fd] = key`, done after Python code that may have
 * changed fd's registration: fd's slot gets key (the slot takes a
 * reference) and its poller mask `events`; with no slot (unregistered
 * meanwhile) key is registered again, as in the stdlib's dict, but not in
 * the kernel.  0 (replaced), 1 (registered again), or -1 with
 * MemoryError. */
int slot_put(sel_object *s, int fd, PyObject *key, int events);
/* Forget every key (close() and tp_clear). */
void sel_forget_all(sel_object *s);
/* FASTSEL_DEBUG: assert the table's invariants (whole table when small). */
#ifdef FS_DEBUG
void sel_check_table(sel_object *s);
#  define SEL_CHECK(s) sel_check_table(s)
#else
#  define SEL_CHECK(s) ((void)0)
#endif

/* ---- keys, lookups and errors (sel_keys.c) ------------------------------ */

PyObject *sel_err_closed(void);
PyObject *sel_err_not_registered(PyObject *fileobj);
/* 3.13's bool-fd RuntimeWarning where the stdlib's poller would give it;
 * 0, or -1 with the exception of a warning filter. */
int sel_warn_bool_fd(int isbool);
/* _BaseSelectorImpl._fileobj_lookup: a new reference to the fd object,
 * *cfd the C int fd (-1: beyond C int), or NULL with the stdlib's error. */
PyObject *sel_lookup(sel_object *s, PyObject *fileobj, long *cfd);
/* The slot registered for fileobj (*cfd its fd): 0 with *sl (NULL: none),
 * or -1 with the lookup's exception. */
int sel_find_slot(sel_object *s, PyObject *fileobj, long *cfd, sel_slot **sl);
/* The slot registered for fileobj (*cfd its fd), or NULL with the lookup's
 * exception or the stdlib's KeyError. */
sel_slot *sel_registered_slot(sel_object *s, PyObject *fileobj, long *cfd);
/* The key registered for fileobj (a new reference; *cfd its fd), or NULL
 * with the stdlib's KeyError. */
PyObject *sel_registered_key(sel_object *s, PyObject *fileobj, long *cfd);
/* register()'s checks and its new key (*cfd its fd): NULL with the
 * stdlib's error when events are invalid or fileobj is registered
 * already. */
PyObject *sel_register_key(sel_object *s, PyObject *fileobj,
                           PyObject *events, PyObject *data, long *cfd);
/* _PollLikeSelector.modify's unvalidated mask, or -1. */
int sel_poller_mask(PyObject *events);
/* Python's `a != b`: 1, 0, or -1 with an exception. */
int sel_not_equal(PyObject *a, PyObject *b);
/* A SelectorKey on the stdlib's namedtuple type, or NULL. */
PyObject *sel_new_key(fs_state *st, PyObject *fileobj, PyObject *fd,
                      PyObject *events, PyObject *data);
/* A bound Python function's texts for any argument of a parameterless
 * method of the stdlib's: 0, or -1 with TypeError. */
int sel_no_args(sel_object *s, int meth, const char *name,
                PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

/* ---- the kernel object and interest changes (sel_kernel.c) ------------- */

/* Not forked since s last looked: code run inside a call of the parent's
 * must not touch the kernel object a forked child shares with it (the
 * child's next call rebuilds it from the keys). */
static inline int
sel_live(sel_object *s)
{
    return s->fork_seen == fs_fork_generation();
}

/* The entry check of every kernel-facing method: closed, forked, lazily
 * opened backend.  0, or -1 with an exception. */
int sel_ready_slow(sel_object *s);

static inline int
sel_ready(sel_object *s)
{
    if (!s->closed && s->be != NULL && sel_live(s)) {
        return 0;
    }
    return sel_ready_slow(s);
}

/* Open the backend (at construction): 0, or -1 with the stdlib's error. */
int sel_open_backend(sel_object *s);
/* Release what close() left to a select() or an interest change that was
 * running without the GIL, once none is. */
void sel_finish_close(sel_object *s);
/* The ticket lock of kernel calls, in a new object or a forked child. */
void sel_ctl_init(sel_object *s);
/* Re-add every key to a fresh backend (a forked child). */
void sel_readd_all(sel_object *s);

/* CTL_SET: make the kernel hold `events` for fd whatever it held before,
 * as one call in ticket order (two calls could let another thread's change
 * of fd in between). */
typedef enum { CTL_ADD, CTL_MODIFY, CTL_REMOVE, CTL_SET } sel_ctl_op;

/* One kernel interest change, in ticket order: 0, or -1 with errno
 * (EBADF once closed or forked). */
int sel_kernel_ctl(sel_object *s, sel_ctl_op op, int fd, int old,
                   int events, uint64_t token);

/* ---- register / unregister / modify (sel_ctl.c) ------------------------- */

PyObject *sel_do_register(sel_object *s, PyObject *fileobj,
                          PyObject *events, PyObject *data);
PyObject *sel_do_unregister(sel_object *s, PyObject *fileobj);
PyObject *sel_modify(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames);
PyObject *sel_register(sel_object *s, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames);
PyObject *sel_unregister(sel_object *s, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames);

/* ---- select (sel_wait.c, sel_timeout.c) --------------------------------- */

PyObject *sel_select(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames);
/* The kinds' timeout rules, for the table. */
int sel_epoll_timeout(const sel_kind *k, PyObject *timeout, int64_t *ns);
int sel_poll_timeout(const sel_kind *k, PyObject *timeout, int64_t *ns);
int sel_max0_timeout(const sel_kind *k, PyObject *timeout, int64_t *ns);

/* ---- a replaced _selector_cls (sel_driver.c) ---------------------------- */

/* Decide the mechanism: 0 native, 1 delegated (s->driver set), -1 error. */
int sel_choose_backend(sel_object *s, PyObject *module);
/* The stdlib's method `meth` on the delegate, with the caller's
 * arguments. */
PyObject *sel_forward(sel_object *s, const char *meth, PyObject *const *args,
                      Py_ssize_t nargs, PyObject *kwnames);

/* A method's first step: a delegated selector hands the call over. */
#define SEL_FORWARD(s, meth, args, nargs, kwnames)                          \
    do {                                                                    \
        if ((s)->driver != NULL) {                                          \
            return sel_forward((s), (meth), (args), (nargs), (kwnames));    \
        }                                                                   \
    } while (0)

/* ---- get_map() (sel_map.c) ---------------------------------------------- */

/* s's mapping, made on first use (a new reference), or NULL. */
PyObject *sel_map_new(sel_object *s);
int sel_map_setup(PyObject *module, fs_state *st);

#endif /* FASTSEL_SELECTOR_H */
