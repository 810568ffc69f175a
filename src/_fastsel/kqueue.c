/* kqueue.c - BSD/macOS kqueue: the select.kqueue and select.kevent objects,
 * and the readiness backend for KqueueSelector.
 *
 * Built where the platform has kqueue (FS_HAVE_KQUEUE, see backend.h); on
 * Linux only with setup.py's FASTSEL_KQUEUE switch, against libkqueue, so the
 * code can be tested there.  Elsewhere this file compiles to nothing. */
#include "fastsel.h"
#include "debug.h"
#include "fork.h"
#include "backend.h"

#ifdef FS_HAVE_KQUEUE

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <structmember.h>           /* T_* member types, 3.9 included */

/* ---- fork ----------------------------------------------------------------
 * A kqueue is not inherited by fork() (BSD semantics), so in a child every
 * kqueue fd number we hold is dead or, worse, reused.  As CPython >= 3.12.1
 * does (gh-110395), objects from before the fork read as closed in the child,
 * and their fd is neither used nor closed there.  Instead of a list of live
 * objects each remembers the fork generation (fork.h) it was opened in. */

static int
kq_set_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) {
        return -1;
    }
    if (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
        return -1;
    }
    return 0;
}

/* kevent() with nanoseconds; timeout_ns < 0 blocks. */
static inline struct timespec *
kq_timespec(int64_t timeout_ns, struct timespec *ts)
{
    if (timeout_ns < 0) {
        return NULL;
    }
    ts->tv_sec = (time_t)(timeout_ns / 1000000000);
    ts->tv_nsec = (long)(timeout_ns % 1000000000);
    return ts;
}

/* ---- readiness backend --------------------------------------------------
 * One kevent() call per add/modify/remove; with EV_RECEIPT every change
 * reports its own result, so a failure is attributed to the right filter and
 * what did succeed can be rolled back.  wait() merges the READ and WRITE
 * filter events of one fd into one fs_event. */

/* udata carries the token where a pointer holds 64 bits; elsewhere (32-bit
 * BSDs) tokens live in an fd-indexed table. */
#if UINTPTR_MAX < UINT64_MAX || defined(FS_KQ_TOKEN_TABLE)
#  define KQB_TOKEN_TABLE 1
#endif

struct fs_backend {
    int kqfd;
    unsigned long fork_gen;
    atomic_flag busy;           /* buf in use by a wait() */
    int cap;                    /* capacity of buf/idents, in events */
    int nslots;                 /* capacity of slots: power of two >= 2*cap */
    struct kevent *buf;         /* 2 * cap kernel events, kept between waits */
    uintptr_t *idents;          /* fd of each merged output event */
    int *slots;                 /* merge table: output index + 1, 0 = free */
#ifdef KQB_TOKEN_TABLE
    uint64_t *tokens;
    int ntokens;
#endif
};

static inline int
kqb_live(fs_backend *b)
{
    if (b->kqfd < 0 || b->fork_gen != fs_fork_generation()) {
        errno = EBADF;
        return 0;
    }
    return 1;
}

static fs_backend *
kqb_open(void)
{
    fs_backend *b = PyMem_RawCalloc(1, sizeof(*b));
    if (b == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_flag_clear(&b->busy);
    b->fork_gen = fs_fork_generation();
    b->kqfd = kqueue();
    if (b->kqfd < 0 || kq_set_cloexec(b->kqfd) < 0) {
        int saved = errno;
        if (b->kqfd >= 0) {
            close(b->kqfd);
        }
        PyMem_RawFree(b);
        errno = saved;
        return NULL;
    }
    return b;
}

static void
kqb_free(fs_backend *b)
{
    if (b == NULL) {
        return;
    }
    /* an fd inherited through fork() is not ours to close */
    if (b->kqfd >= 0 && b->fork_gen == fs_fork_generation()) {
        close(b->kqfd);
    }
    PyMem_RawFree(b->buf);
    PyMem_RawFree(b->idents);
    PyMem_RawFree(b->slots);
#ifdef KQB_TOKEN_TABLE
    PyMem_RawFree(b->tokens);
#endif
    PyMem_RawFree(b);
}

static int
kqb_fileno(fs_backend *b)
{
    return (b->kqfd >= 0 && b->fork_gen == fs_fork_generation()) ? b->kqfd : -1;
}

#ifdef KQB_TOKEN_TABLE
static int
kqb_set_token(fs_backend *b, int fd, uint64_t token)
{
    if (fd >= b->ntokens) {
        int n = b->ntokens ? b->ntokens : 64;
        while (n <= fd) {
            if (n > INT_MAX / 2) {
                errno = ENOMEM;
                return -1;
            }
            n *= 2;
        }
        uint64_t *t = PyMem_RawRealloc(b->tokens, (size_t)n * sizeof(*t));
        if (t == NULL) {
            errno = ENOMEM;
            return -1;
        }
        memset(t + b->ntokens, 0, (size_t)(n - b->ntokens) * sizeof(*t));
        b->tokens = t;
        b->ntokens = n;
    }
    b->tokens[fd] = token;
    return 0;
}
#  define KQB_UDATA(token) ((void *)0)
#else
#  define KQB_UDATA(token) ((void *)(uintptr_t)(token))
#endif

#define KQB_MAX_CHANGES 4

/* Apply n (<= KQB_MAX_CHANGES) changes to one fd.  err[i] gets change i's
 * errno (0: applied).  Returns -1 with errno only when the call itself failed
 * and nothing is known about the changes. */
static int
kqb_apply(fs_backend *b, struct kevent *ch, int n, int *err)
{
    static const struct timespec zero = {0, 0};
#ifdef EV_RECEIPT
    /* every change yields one receipt, in changelist order */
    struct kevent res[KQB_MAX_CHANGES];
    for (int i = 0; i < n; i++) {
        ch[i].flags |= EV_RECEIPT;
        err[i] = EIO;       /* no receipt: treat as failed */
    }
    FS_DEBUG_SYSCALL(FS_SYS_KEVENT);
    int r = kevent(b->kqfd, ch, n, res, n, &zero);
    if (r < 0) {
        return -1;
    }
    for (int i = 0; i < r && i < n; i++) {
        err[i] = (res[i].flags & EV_ERROR) ? (int)res[i].data : 0;
    }
#else
    /* Without receipts an error comes back as -1/errno only when the event
     * list is empty, so apply the changes one by one. */
    for (int i = 0; i < n; i++) {
        FS_DEBUG_SYSCALL(FS_SYS_KEVENT);
        err[i] = kevent(b->kqfd, &ch[i], 1, NULL, 0, &zero) < 0 ? errno : 0;
    }
#endif
    return 0;
}

/* Best effort: drop both filters of fd (after a failed add or modify). */
static void
kqb_forget(fs_backend *b, int fd)
{
    struct kevent ch[2];
    int err[2];
    EV_SET(&ch[0], (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    EV_SET(&ch[1], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    int saved = errno;
    (void)kqb_apply(b, ch, 2, err);
    errno = saved;
}

static int
kqb_add(fs_backend *b, int fd, int events, uint64_t token)
{
    struct kevent ch[2];
    int err[2], n = 0;
    if (!kqb_live(b)) {
        return -1;
    }
#ifdef KQB_TOKEN_TABLE
    if (kqb_set_token(b, fd, token) < 0) {
        return -1;
    }
#endif
    /* READ before WRITE: KqueueSelector registers (and fails) in that order */
    if (events & FS_READ) {
        EV_SET(&ch[n], (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0,
               KQB_UDATA(token));
        n++;
    }
    if (events & FS_WRITE) {
        EV_SET(&ch[n], (uintptr_t)fd, EVFILT_WRITE, EV_ADD, 0, 0,
               KQB_UDATA(token));
        n++;
    }
    if (kqb_apply(b, ch, n, err) < 0) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (err[i] != 0) {
            /* roll back the filter that did get added, if any */
            errno = err[i];
            if (n == 2 && i == 1 && err[0] == 0) {
                kqb_forget(b, fd);
            }
            return -1;
        }
    }
    return 0;
}

static int
kqb_modify(fs_backend *b, int fd, int old_events, int events, uint64_t token)
{
    struct kevent ch[KQB_MAX_CHANGES];
    int err[KQB_MAX_CHANGES], add[KQB_MAX_CHANGES], n = 0;
    if (!kqb_live(b)) {
        return -1;
    }
#ifdef KQB_TOKEN_TABLE
    if (kqb_set_token(b, fd, token) < 0) {
        return -1;
    }
#endif
    /* A filter that stays is deleted and added again so that it carries
     * the new token: re-adding is meant to update udata, but libkqueue
     * refuses a plain EV_ADD on a registered socket filter and keeps the
     * old udata.  All in one kevent() call either way. */
    static const short filters[2] = {EVFILT_READ, EVFILT_WRITE};
    static const int bits[2] = {FS_READ, FS_WRITE};
    for (int k = 0; k < 2; k++) {
        if (old_events & bits[k]) {
            EV_SET(&ch[n], (uintptr_t)fd, filters[k], EV_DELETE, 0, 0, NULL);
            add[n++] = 0;
        }
        if (events & bits[k]) {
            EV_SET(&ch[n], (uintptr_t)fd, filters[k], EV_ADD, 0, 0,
                   KQB_UDATA(token));
            add[n++] = 1;
        }
    }
    if (kqb_apply(b, ch, n, err) < 0) {
        return -1;
    }
    /* KqueueSelector.modify is unregister (errors ignored) + register: only
     * a failed add is an error, and then the key is gone, so leave nothing
     * of this fd registered. */
    for (int i = 0; i < n; i++) {
        if (add[i] && err[i] != 0) {
            errno = err[i];
            kqb_forget(b, fd);
            return -1;
        }
    }
    return 0;
}

static int
kqb_remove(fs_backend *b, int fd, int old_events)
{
    struct kevent ch[2];
    int err[2], n = 0;
    if (!kqb_live(b)) {
        return -1;
    }
    if (old_events & FS_READ) {
        EV_SET(&ch[n], (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
        n++;
    }
    if (old_events & FS_WRITE) {
        EV_SET(&ch[n], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
        n++;
    }
    if (n == 0) {
        return 0;
    }
    if (kqb_apply(b, ch, n, err) < 0) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (err[i] != 0) {
            errno = err[i];
            return -1;
        }
    }
    return 0;
}

/* Scratch for one wait(): kernel events (two filters per fd), merged fds and
 * the merge table. */
typedef struct {
    struct kevent *buf;
    uintptr_t *idents;
    int *slots;
} kqb_scratch;

static int
kqb_scratch_alloc(kqb_scratch *s, int cap, int nslots)
{
    s->buf = PyMem_RawMalloc(2 * (size_t)cap * sizeof(*s->buf));
    s->idents = PyMem_RawMalloc((size_t)cap * sizeof(*s->idents));
    s->slots = PyMem_RawMalloc((size_t)nslots * sizeof(*s->slots));
    if (s->buf == NULL || s->idents == NULL || s->slots == NULL) {
        PyMem_RawFree(s->buf);
        PyMem_RawFree(s->idents);
        PyMem_RawFree(s->slots);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* Merge n kernel events into at most max fs_events, one per fd.  Past max
 * distinct fds the rest is dropped: level-triggered, it comes back on the
 * next wait. */
static int
kqb_merge(const kqb_scratch *s, int n, fs_backend *b, fs_event *out, int max)
{
    int count = 0;
    /* Small results: a linear scan beats hashing.  Otherwise an open
     * addressing table keyed by fd, sized to this result only. */
    int mask = 0;
    if (n > 8) {
        int distinct = n < max ? n : max;
        int size = 16;
        while (size < 2 * distinct) {
            size *= 2;
        }
        mask = size - 1;
        memset(s->slots, 0, (size_t)size * sizeof(*s->slots));
    }
    for (int i = 0; i < n; i++) {
        const struct kevent *kev = &s->buf[i];
        int bit;
        if (kev->flags & EV_ERROR) {
            continue;
        }
        if (kev->filter == EVFILT_READ) {
            bit = FS_READ;
        }
        else if (kev->filter == EVFILT_WRITE) {
            bit = FS_WRITE;
        }
        else {
            continue;
        }
        int j = -1;
        if (mask == 0) {
            for (int k = 0; k < count; k++) {
                if (s->idents[k] == kev->ident) {
                    j = k;
                    break;
                }
            }
        }
        else {
            size_t h = ((size_t)kev->ident * 2654435761u) & (size_t)mask;
            while (s->slots[h] != 0) {
                if (s->idents[s->slots[h] - 1] == kev->ident) {
                    j = s->slots[h] - 1;
                    break;
                }
                h = (h + 1) & (size_t)mask;
            }
            if (j < 0 && count < max) {
                s->slots[h] = count + 1;
            }
        }
        if (j >= 0) {
            out[j].events |= bit;
            continue;
        }
        if (count == max) {
            continue;
        }
        s->idents[count] = kev->ident;
#ifdef KQB_TOKEN_TABLE
        out[count].token = kev->ident < (uintptr_t)b->ntokens
                           ? b->tokens[kev->ident] : 0;
#else
        (void)b;
        out[count].token = (uint64_t)(uintptr_t)kev->udata;
#endif
        out[count].events = bit;
        count++;
    }
    return count;
}

static int
kqb_wait(fs_backend *b, int64_t timeout_ns, fs_event *out, int max)
{
    struct timespec ts;
    kqb_scratch s;
    int own = 0;                /* s is a temporary of this call */

    if (max <= 0 || max > INT_MAX / 4) {
        errno = EINVAL;
        return -1;
    }
    if (!kqb_live(b)) {
        return -1;
    }
    int nslots = 16;
    while (nslots < 2 * max) {
        nslots *= 2;
    }
    if (!atomic_flag_test_and_set(&b->busy)) {
        /* the cached buffers are ours until busy is cleared */
        if (b->cap < max || b->nslots < nslots) {
            kqb_scratch t;
            if (kqb_scratch_alloc(&t, max, nslots) < 0) {
                atomic_flag_clear(&b->busy);
                return -1;
            }
            PyMem_RawFree(b->buf);
            PyMem_RawFree(b->idents);
            PyMem_RawFree(b->slots);
            b->buf = t.buf;
            b->idents = t.idents;
            b->slots = t.slots;
            b->cap = max;
            b->nslots = nslots;
        }
        s.buf = b->buf;
        s.idents = b->idents;
        s.slots = b->slots;
    }
    else {
        /* another thread is waiting on this backend: private scratch */
        if (kqb_scratch_alloc(&s, max, nslots) < 0) {
            return -1;
        }
        own = 1;
    }
    /* room for both filters of max fds, so that each comes back merged */
    FS_DEBUG_SYSCALL(FS_SYS_KEVENT);
    int n = kevent(b->kqfd, NULL, 0, s.buf, 2 * max,
                   kq_timespec(timeout_ns, &ts));
    int saved = errno;
#ifdef LIBKQUEUE
    /* libkqueue hands out at most 512 events per call where a kernel fills
     * the list: top up without waiting while batches come back full.  Its
     * epoll rotates ready fds, so the next batch holds new ones; a repeat
     * (all ready fds seen) stops the loop, and duplicates merge anyway. */
    static const struct timespec zero = {0, 0};
    int batch = n;
    while (batch == 512 && n < 2 * max) {
        FS_DEBUG_SYSCALL(FS_SYS_KEVENT);
        batch = kevent(b->kqfd, NULL, 0, s.buf + n, 2 * max - n, &zero);
        if (batch <= 0 || (s.buf[n].ident == s.buf[0].ident
                           && s.buf[n].filter == s.buf[0].filter)) {
            batch = batch < 0 ? 0 : batch;
            n += batch;
            break;
        }
        n += batch;
    }
#endif
    if (n > 0) {
        n = kqb_merge(&s, n, b, out, max);
    }
    if (own) {
        PyMem_RawFree(s.buf);
        PyMem_RawFree(s.idents);
        PyMem_RawFree(s.slots);
    }
    else {
        atomic_flag_clear(&b->busy);
    }
    errno = saved;
    return n;
}

const fs_backend_ops fs_kqueue_backend = {
    .name = "kqueue",
    .open = kqb_open,
    .free = kqb_free,
    .fileno = kqb_fileno,
    .add = kqb_add,
    .modify = kqb_modify,
    .remove = kqb_remove,
    .wait = kqb_wait,
};

/* ---- select.kevent ------------------------------------------------------ */

/* Member and argument types follow CPython's selectmodule.c per platform. */
/* The same order as CPython: long long wins where it is as wide as long. */
#if SIZEOF_UINTPTR_T == SIZEOF_LONG_LONG
#  define KQ_T_UINTPTRT     T_ULONGLONG
#  define KQ_T_INTPTRT      T_LONGLONG
#  define KQ_UINTPTRT_FMT   "K"
#  define KQ_INTPTRT_FMT    "L"
#  define KQ_INTPTRT_MIN    LLONG_MIN
#  define KQ_INTPTRT_MAX    LLONG_MAX
typedef unsigned long long kq_uintptr_arg;
typedef long long kq_intptr_arg;
#elif SIZEOF_UINTPTR_T == SIZEOF_LONG
#  define KQ_T_UINTPTRT     T_ULONG
#  define KQ_T_INTPTRT      T_LONG
#  define KQ_UINTPTRT_FMT   "k"
#  define KQ_INTPTRT_FMT    "l"
#  define KQ_INTPTRT_MIN    LONG_MIN
#  define KQ_INTPTRT_MAX    LONG_MAX
typedef unsigned long kq_uintptr_arg;
typedef long kq_intptr_arg;
#elif SIZEOF_UINTPTR_T == SIZEOF_INT
#  define KQ_T_UINTPTRT     T_UINT
#  define KQ_T_INTPTRT      T_INT
#  define KQ_UINTPTRT_FMT   "I"
#  define KQ_INTPTRT_FMT    "i"
#  define KQ_INTPTRT_MIN    INT_MIN
#  define KQ_INTPTRT_MAX    INT_MAX
typedef unsigned int kq_uintptr_arg;
typedef int kq_intptr_arg;
#else
#  error "uintptr_t does not match int, long or long long"
#endif

#ifdef __NetBSD__
   /* filter, flags and fflags are uint32_t there */
#  if SIZEOF_LONG == 4
#    define KQ_T_UINT32     T_ULONG
#    define KQ_UINT32_FMT   "k"
typedef unsigned long kq_uint32_arg;
#  else
#    define KQ_T_UINT32     T_UINT
#    define KQ_UINT32_FMT   "I"
typedef unsigned int kq_uint32_arg;
#  endif
#  define KQ_FILTER_T       KQ_T_UINT32
#  define KQ_FILTER_FMT     KQ_UINT32_FMT
#  define KQ_FLAGS_T        KQ_T_UINT32
#  define KQ_FLAGS_FMT      KQ_UINT32_FMT
#  define KQ_FFLAGS_FMT     KQ_UINT32_FMT
typedef kq_uint32_arg kq_filter_arg;
typedef kq_uint32_arg kq_flags_arg;
typedef kq_uint32_arg kq_fflags_arg;
#else
#  define KQ_FILTER_T       T_SHORT
#  define KQ_FILTER_FMT     "h"
#  define KQ_FLAGS_T        T_USHORT
#  define KQ_FLAGS_FMT      "H"
#  define KQ_FFLAGS_FMT     "I"
typedef short kq_filter_arg;
typedef unsigned short kq_flags_arg;
typedef unsigned int kq_fflags_arg;
#endif

#if defined(__NetBSD__) || defined(__OpenBSD__)
#  define KQ_T_DATA         T_LONGLONG     /* int64_t */
#  define KQ_DATA_FMT       "L"
#  define KQ_DATA_MIN       LLONG_MIN
#  define KQ_DATA_MAX       LLONG_MAX
typedef long long kq_data_arg;
#else
#  define KQ_T_DATA         KQ_T_INTPTRT
#  define KQ_DATA_FMT       KQ_INTPTRT_FMT
#  define KQ_DATA_MIN       KQ_INTPTRT_MIN
#  define KQ_DATA_MAX       KQ_INTPTRT_MAX
typedef kq_intptr_arg kq_data_arg;
#endif

typedef struct {
    PyObject_HEAD
    struct kevent e;
} fs_kevent;

#define KEV_OFF(x) offsetof(fs_kevent, e.x)
static PyMemberDef kevent_members[] = {
    {"ident", KQ_T_UINTPTRT, KEV_OFF(ident), 0, NULL},
    {"filter", KQ_FILTER_T, KEV_OFF(filter), 0, NULL},
    {"flags", KQ_FLAGS_T, KEV_OFF(flags), 0, NULL},
    {"fflags", T_UINT, KEV_OFF(fflags), 0, NULL},
    {"data", KQ_T_DATA, KEV_OFF(data), 0, NULL},
    {"udata", KQ_T_UINTPTRT, KEV_OFF(udata), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};
#undef KEV_OFF

/* Exact ints in range take the fast path; anything else goes through
 * PyArg_ParseTupleAndKeywords with CPython's own format, so conversions,
 * warnings and error texts are those of the running version. */
/* 3.15's PyArg_Parse warns for a bitwise field outside [signed min,
 * unsigned max] of its C type: such values take the slow path. */
#define KQ_BITWISE_FITS(obj, type)                                          \
    (!fs_ver->bitwise_warn                                                  \
     || fs_long_in_range((obj), -(long long)((type)-1 >> 1) - 1,            \
                         (unsigned long long)(type)-1))

static int
kevent_parse_fast(PyObject *args, kq_filter_arg *filter, kq_flags_arg *flags,
                  kq_fflags_arg *fflags, kq_data_arg *data,
                  kq_uintptr_arg *udata)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1 || n > 6) {
        return 0;
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        if (!PyLong_CheckExact(PyTuple_GET_ITEM(args, i))) {
            return 0;
        }
    }
    if ((n > 2 && !KQ_BITWISE_FITS(PyTuple_GET_ITEM(args, 2), kq_flags_arg))
        || (n > 3
            && !KQ_BITWISE_FITS(PyTuple_GET_ITEM(args, 3), kq_fflags_arg))
        || (n > 5
            && !KQ_BITWISE_FITS(PyTuple_GET_ITEM(args, 5), kq_uintptr_arg))) {
        return 0;
    }
    int overflow;
    if (n > 1) {
#ifdef __NetBSD__
        if (!KQ_BITWISE_FITS(PyTuple_GET_ITEM(args, 1), kq_filter_arg)) {
            return 0;
        }
        *filter = (kq_filter_arg)PyLong_AsUnsignedLongMask(
            PyTuple_GET_ITEM(args, 1));
#else
        long v = PyLong_AsLongAndOverflow(PyTuple_GET_ITEM(args, 1),
                                          &overflow);
        if (overflow || v < SHRT_MIN || v > SHRT_MAX) {
            return 0;       /* the slow path raises the version's error */
        }
        *filter = (short)v;
#endif
    }
    if (n > 2) {
        *flags = (kq_flags_arg)PyLong_AsUnsignedLongMask(
            PyTuple_GET_ITEM(args, 2));
    }
    if (n > 3) {
        *fflags = (kq_fflags_arg)PyLong_AsUnsignedLongMask(
            PyTuple_GET_ITEM(args, 3));
    }
    if (n > 4) {
        long long v = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(args, 4),
                                                   &overflow);
        if (overflow || v < (long long)KQ_DATA_MIN
            || v > (long long)KQ_DATA_MAX) {
            return 0;
        }
        *data = (kq_data_arg)v;
    }
    if (n > 5) {
        *udata = (kq_uintptr_arg)PyLong_AsUnsignedLongLongMask(
            PyTuple_GET_ITEM(args, 5));
    }
    return 1;
}

static int
kevent_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ident", "filter", "flags", "fflags", "data",
                             "udata", NULL};
    static const char fmt[] = "O|" KQ_FILTER_FMT KQ_FLAGS_FMT KQ_FFLAGS_FMT
                              KQ_DATA_FMT KQ_UINTPTRT_FMT ":kevent";
    fs_kevent *self = (fs_kevent *)op;
    PyObject *pfd;
    kq_filter_arg filter = EVFILT_READ;
    kq_flags_arg flags = EV_ADD;
    kq_fflags_arg fflags = 0;
    kq_data_arg data = 0;
    kq_uintptr_arg udata = 0;

    EV_SET(&self->e, 0, EVFILT_READ, EV_ADD, 0, 0, 0);
    if ((kwds == NULL || PyDict_GET_SIZE(kwds) == 0)
        && kevent_parse_fast(args, &filter, &flags, &fflags, &data, &udata)) {
        pfd = PyTuple_GET_ITEM(args, 0);
    }
    else if (!PyArg_ParseTupleAndKeywords(args, kwds, fmt, kwlist, &pfd,
                                          &filter, &flags, &fflags, &data,
                                          &udata)) {
        return -1;
    }
    /* ints (bool included) are identifiers of any filter, not only fds */
    uintptr_t ident;
    if (PyLong_Check(pfd)) {
        ident = (uintptr_t)PyLong_AsSize_t(pfd);
    }
    else {
        ident = (uintptr_t)(intptr_t)PyObject_AsFileDescriptor(pfd);
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    EV_SET(&self->e, ident, filter, flags, fflags, data,
           (void *)(uintptr_t)udata);
    return 0;
}

static PyObject *
kevent_repr(PyObject *op)
{
    const struct kevent *e = &((fs_kevent *)op)->e;
    char buf[256];
#ifdef FASTSEL_KQUEUE_COMPAT
    /* what BSD/macOS libcs print for %p (glibc would say "(nil)" for 0) */
#  define KQ_UDATA_FMT "0x%" PRIxPTR
#  define KQ_UDATA_ARG (uintptr_t)e->udata
#else
#  define KQ_UDATA_FMT "%p"
#  define KQ_UDATA_ARG (void *)e->udata
#endif
    PyOS_snprintf(buf, sizeof(buf),
                  "<select.kevent ident=%zu filter=%d flags=0x%x fflags=0x%x "
                  "data=0x%llx udata=" KQ_UDATA_FMT ">",
                  (size_t)e->ident, (int)e->filter, (unsigned int)e->flags,
                  (unsigned int)e->fflags, (long long)e->data, KQ_UDATA_ARG);
#undef KQ_UDATA_FMT
#undef KQ_UDATA_ARG
    return PyUnicode_FromString(buf);
}

static PyObject *
kevent_richcompare(PyObject *a, PyObject *b, int op)
{
    /* kevent cannot be subclassed, so its one type is the test */
    if (Py_TYPE(b) != Py_TYPE(a)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    const struct kevent *s = &((fs_kevent *)a)->e, *o = &((fs_kevent *)b)->e;
    int r;
#define KQ_CMP(x, y) ((x) != (y)) ? ((x) < (y) ? -1 : 1)
    r = KQ_CMP(s->ident, o->ident)
        : KQ_CMP(s->filter, o->filter)
        : KQ_CMP(s->flags, o->flags)
        : KQ_CMP(s->fflags, o->fflags)
        : KQ_CMP(s->data, o->data)
        : KQ_CMP((intptr_t)s->udata, (intptr_t)o->udata)
        : 0;
#undef KQ_CMP
    Py_RETURN_RICHCOMPARE(r, 0, op);
}

PyDoc_STRVAR(kevent_doc,
"kevent(ident, filter=KQ_FILTER_READ, flags=KQ_EV_ADD, fflags=0, data=0,\n\
       udata=0)\n\
\n\
This object is the equivalent of the struct kevent for the C API.\n\
\n\
See the kqueue manpage for the meaning of the arguments.  udata holds\n\
an integer only: the kernel may drop an event at any time, so it\n\
cannot own a reference to a Python object.");

static PyType_Slot kevent_slots[] = {
    {Py_tp_doc, (void *)kevent_doc},
    {Py_tp_init, kevent_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_members, kevent_members},
    {Py_tp_repr, kevent_repr},
    {Py_tp_richcompare, kevent_richcompare},
    {0, NULL},
};

static PyType_Spec kevent_spec = {
    .name = "select.kevent",
    .basicsize = sizeof(fs_kevent),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = kevent_slots,
};

/* ---- select.kqueue ------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    int fd;                     /* -1 once closed */
    unsigned long fork_gen;     /* fs_fork_generation() when the object was made */
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

static PyObject *
kq_err_closed(void)
{
    PyErr_SetString(PyExc_ValueError, "I/O operation on closed kqueue object");
    return NULL;
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
    if (fd == -1) {
        Py_BEGIN_ALLOW_THREADS
        fd = kqueue();
        Py_END_ALLOW_THREADS
        if (fd < 0) {
            self->fd = -1;
            PyErr_SetFromErrno(PyExc_OSError);
            Py_DECREF(self);
            return NULL;
        }
        self->fd = fd;
        if (kq_set_cloexec(fd) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            Py_DECREF(self);
            return NULL;
        }
    }
    else if (fd < 0) {
        /* CPython reports whatever errno holds here; be definite */
        self->fd = -1;
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    else {
        self->fd = fd;
    }
    return (PyObject *)self;
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

/* 0, or -1 with errno when close(2) failed; closed either way. */
static int
kq_close_fd(fs_kqueue *self)
{
    int fd = kq_fd(self), rc = 0;
    if (fd >= 0) {
        self->fd = -1;
        Py_BEGIN_ALLOW_THREADS
        rc = close(fd);
        Py_END_ALLOW_THREADS
    }
    return rc;
}

static void
kq_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    (void)kq_close_fd((fs_kqueue *)op);      /* nobody to tell */
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
kq_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    /* 3.15 reports a failed close(2) (gh-146205); older versions do not */
    if (kq_close_fd((fs_kqueue *)op) < 0 && fs_ver->close_raises) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
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
        return kq_err_closed();
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

static PyObject *
kq_control(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    fs_kqueue *self = (fs_kqueue *)op;
    fs_state *st = self->st;
    struct kevent chl_stack[KQ_STACK_EVENTS], evl_stack[KQ_STACK_EVENTS];
    struct kevent *chl = chl_stack, *evl = evl_stack;
    struct timespec ts, *pts = NULL;
    PyObject *seq = NULL, *result = NULL;
    int64_t timeout = 0, deadline = 0;
    int maxevents, nchanges = 0, gotevents, fd;

    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError,
                     "control expected %s%d arguments, got %zd",
                     nargs < 2 ? "at least " : "at most ", nargs < 2 ? 2 : 3,
                     nargs);
        return NULL;
    }
    if (fs_as_int(args[1], &maxevents) < 0) {
        return NULL;
    }
    PyObject *otimeout = nargs > 2 ? args[2] : Py_None;

    fd = kq_fd(self);
    if (fd < 0) {
        return kq_err_closed();
    }
    if (maxevents < 0) {
        PyErr_Format(PyExc_ValueError,
                     "Length of eventlist must be 0 or positive, got %d",
                     maxevents);
        return NULL;
    }
    if (otimeout != Py_None) {
        if (fs_ns_from_seconds_object(otimeout, FS_ROUND_UP, &timeout) < 0) {
            fs_kqueue_timeout_error(otimeout);
            return NULL;
        }
        /* _PyTime_AsTimespec floors: any negative timeout has tv_sec < 0 */
        if (timeout < 0) {
            PyErr_SetString(PyExc_ValueError,
                            "timeout must be positive or None");
            return NULL;
        }
        pts = kq_timespec(timeout, &ts);
    }

    if (args[0] != Py_None) {
        seq = PySequence_Fast(args[0], "changelist is not iterable");
        if (seq == NULL) {
            return NULL;
        }
        Py_ssize_t size = PySequence_Fast_GET_SIZE(seq);
        if (size > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "changelist is too long");
            goto error;
        }
        nchanges = (int)size;
        if (nchanges > KQ_STACK_EVENTS) {
            chl = PyMem_New(struct kevent, nchanges);
            if (chl == NULL) {
                PyErr_NoMemory();
                goto error;
            }
        }
        PyObject **items = PySequence_Fast_ITEMS(seq);
        for (int i = 0; i < nchanges; i++) {
            if (!PyObject_TypeCheck(items[i], st->kevent_type)) {
                PyErr_SetString(PyExc_TypeError,
                                "changelist must be an iterable of "
                                "select.kevent objects");
                goto error;
            }
            chl[i] = ((fs_kevent *)items[i])->e;
        }
        Py_CLEAR(seq);
    }
    if (maxevents > KQ_STACK_EVENTS) {
        evl = PyMem_New(struct kevent, maxevents);
        if (evl == NULL) {
            PyErr_NoMemory();
            goto error;
        }
    }

    if (pts != NULL) {
        /* saturate: a timeout of centuries must not wrap around */
        int64_t now = fs_monotonic_ns();
        deadline = timeout > INT64_MAX - now ? INT64_MAX : now + timeout;
    }
    for (;;) {
        int err;
        Py_BEGIN_ALLOW_THREADS
        errno = 0;
        FS_DEBUG_SYSCALL(FS_SYS_KEVENT);
        gotevents = kevent(fd, chl, nchanges, evl, maxevents, pts);
        err = errno;
        Py_END_ALLOW_THREADS
        if (gotevents >= 0 || err != EINTR) {
            errno = err;
            break;
        }
        /* PEP 475: run the handlers, then retry with the time left */
        if (PyErr_CheckSignals() < 0) {
            goto error;
        }
        if (pts != NULL) {
            int64_t left = deadline - fs_monotonic_ns();
            if (left < 0) {
                gotevents = 0;
                break;
            }
            pts = kq_timespec(left, &ts);
        }
    }
    if (gotevents < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto error;
    }

    result = PyList_New(gotevents);
    if (result == NULL) {
        goto error;
    }
    for (int i = 0; i < gotevents; i++) {
        fs_kevent *ev = PyObject_New(fs_kevent, st->kevent_type);
        if (ev == NULL) {
            Py_CLEAR(result);
            goto error;
        }
        ev->e = evl[i];
        PyList_SET_ITEM(result, i, (PyObject *)ev);
    }

error:
    Py_XDECREF(seq);
    if (chl != chl_stack) {
        PyMem_Free(chl);
    }
    if (evl != evl_stack) {
        PyMem_Free(evl);
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

int
fs_kqueue_setup(PyObject *module, fs_state *st)
{
    st->kevent_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &kevent_spec, NULL);
    if (st->kevent_type == NULL
        || fs_add_object(module, "kevent", (PyObject *)st->kevent_type) < 0) {
        return -1;
    }
    st->kqueue_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &kq_spec, NULL);
    if (st->kqueue_type == NULL
        || fs_add_object(module, "kqueue", (PyObject *)st->kqueue_type) < 0) {
        return -1;
    }

#define ADD(name, value) do {                               \
        if (fs_add_int(module, name, (long)(value)) < 0) {  \
            return -1;                                      \
        }                                                   \
    } while (0)

    /* filters */
    ADD("KQ_FILTER_READ", EVFILT_READ);
    ADD("KQ_FILTER_WRITE", EVFILT_WRITE);
#ifdef EVFILT_AIO
    ADD("KQ_FILTER_AIO", EVFILT_AIO);
#endif
#ifdef EVFILT_VNODE
    ADD("KQ_FILTER_VNODE", EVFILT_VNODE);
#endif
#ifdef EVFILT_PROC
    ADD("KQ_FILTER_PROC", EVFILT_PROC);
#endif
#ifdef EVFILT_NETDEV
    ADD("KQ_FILTER_NETDEV", EVFILT_NETDEV);
#endif
#ifdef EVFILT_SIGNAL
    ADD("KQ_FILTER_SIGNAL", EVFILT_SIGNAL);
#endif
#ifdef EVFILT_TIMER
    ADD("KQ_FILTER_TIMER", EVFILT_TIMER);
#endif

    /* flags */
    ADD("KQ_EV_ADD", EV_ADD);
    ADD("KQ_EV_DELETE", EV_DELETE);
    ADD("KQ_EV_ENABLE", EV_ENABLE);
    ADD("KQ_EV_DISABLE", EV_DISABLE);
    ADD("KQ_EV_ONESHOT", EV_ONESHOT);
    ADD("KQ_EV_CLEAR", EV_CLEAR);
#ifdef EV_SYSFLAGS
    ADD("KQ_EV_SYSFLAGS", EV_SYSFLAGS);
#endif
#ifdef EV_FLAG1
    ADD("KQ_EV_FLAG1", EV_FLAG1);
#endif
    ADD("KQ_EV_EOF", EV_EOF);
    ADD("KQ_EV_ERROR", EV_ERROR);

    /* READ/WRITE filter flag */
#ifdef NOTE_LOWAT
    ADD("KQ_NOTE_LOWAT", NOTE_LOWAT);
#endif

    /* VNODE filter flags: CPython exports them with the filter */
#ifdef EVFILT_VNODE
#  ifdef NOTE_DELETE
    ADD("KQ_NOTE_DELETE", NOTE_DELETE);
#  endif
#  ifdef NOTE_WRITE
    ADD("KQ_NOTE_WRITE", NOTE_WRITE);
#  endif
#  ifdef NOTE_EXTEND
    ADD("KQ_NOTE_EXTEND", NOTE_EXTEND);
#  endif
#  ifdef NOTE_ATTRIB
    ADD("KQ_NOTE_ATTRIB", NOTE_ATTRIB);
#  endif
#  ifdef NOTE_LINK
    ADD("KQ_NOTE_LINK", NOTE_LINK);
#  endif
#  ifdef NOTE_RENAME
    ADD("KQ_NOTE_RENAME", NOTE_RENAME);
#  endif
#  ifdef NOTE_REVOKE
    ADD("KQ_NOTE_REVOKE", NOTE_REVOKE);
#  endif
#endif

    /* PROC filter flags */
#ifdef EVFILT_PROC
#  ifdef NOTE_EXIT
    ADD("KQ_NOTE_EXIT", NOTE_EXIT);
#  endif
#  ifdef NOTE_FORK
    ADD("KQ_NOTE_FORK", NOTE_FORK);
#  endif
#  ifdef NOTE_EXEC
    ADD("KQ_NOTE_EXEC", NOTE_EXEC);
#  endif
#  ifdef NOTE_PCTRLMASK
    ADD("KQ_NOTE_PCTRLMASK", NOTE_PCTRLMASK);
#  endif
#  ifdef NOTE_PDATAMASK
    ADD("KQ_NOTE_PDATAMASK", NOTE_PDATAMASK);
#  endif
#  ifdef NOTE_TRACK
    ADD("KQ_NOTE_TRACK", NOTE_TRACK);
#  endif
#  ifdef NOTE_CHILD
    ADD("KQ_NOTE_CHILD", NOTE_CHILD);
#  endif
#  ifdef NOTE_TRACKERR
    ADD("KQ_NOTE_TRACKERR", NOTE_TRACKERR);
#  endif
#endif

    /* NETDEV filter flags */
#ifdef EVFILT_NETDEV
#  ifdef NOTE_LINKUP
    ADD("KQ_NOTE_LINKUP", NOTE_LINKUP);
#  endif
#  ifdef NOTE_LINKDOWN
    ADD("KQ_NOTE_LINKDOWN", NOTE_LINKDOWN);
#  endif
#  ifdef NOTE_LINKINV
    ADD("KQ_NOTE_LINKINV", NOTE_LINKINV);
#  endif
#endif
#undef ADD
    return 0;
}

#else  /* !FS_HAVE_KQUEUE */

/* ISO C wants at least one declaration in a translation unit. */
typedef int fs_kqueue_unavailable;

#endif /* FS_HAVE_KQUEUE */
