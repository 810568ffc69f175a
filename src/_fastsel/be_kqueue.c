/* be_kqueue.c - the kqueue backend (backend.h) of KqueueSelector; it has no
 * modify(): KqueueSelector.modify unregisters and registers again. */
#include "fastsel.h"
#include "backend.h"
#include "debug.h"
#include "fork.h"
#include "kq.h"

#ifdef FS_HAVE_KQUEUE

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#ifdef KQB_TOKEN_TABLE
#  include <pthread.h>
#endif

/* One kevent() call per add/remove; with EV_RECEIPT every change
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
    /* add() grows the table without the GIL (ctl_nogil) while a wait()
     * in another thread reads it: the lock keeps the reader off a freed
     * table */
    pthread_mutex_t tokens_lock;
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
        errno = FS_ENOMEM;
        return NULL;
    }
    atomic_flag_clear(&b->busy);
    b->fork_gen = fs_fork_generation();
#ifdef KQB_TOKEN_TABLE
    int rc = pthread_mutex_init(&b->tokens_lock, NULL);
    if (rc != 0) {
        PyMem_RawFree(b);
        errno = rc;
        return NULL;
    }
#endif
    b->kqfd = kqueue();
    if (b->kqfd < 0 || fs_kq_set_cloexec(b->kqfd) < 0) {
        int saved = errno;
        if (b->kqfd >= 0) {
            close(b->kqfd);
        }
#ifdef KQB_TOKEN_TABLE
        pthread_mutex_destroy(&b->tokens_lock);
#endif
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
    /* a lock inherited through fork() may have been held by a thread that
     * the child does not have: leave it alone */
    if (b->fork_gen == fs_fork_generation()) {
        pthread_mutex_destroy(&b->tokens_lock);
    }
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
kqb_set_token_locked(fs_backend *b, int fd, uint64_t token)
{
    if (fd >= b->ntokens) {
        int n = b->ntokens ? b->ntokens : 64;
        while (n <= fd) {
            if (n > INT_MAX / 2) {
                errno = FS_ENOMEM;
                return -1;
            }
            n *= 2;
        }
        uint64_t *t = PyMem_RawRealloc(b->tokens, (size_t)n * sizeof(*t));
        if (t == NULL) {
            errno = FS_ENOMEM;
            return -1;
        }
        memset(t + b->ntokens, 0, (size_t)(n - b->ntokens) * sizeof(*t));
        b->tokens = t;
        b->ntokens = n;
    }
    b->tokens[fd] = token;
    return 0;
}

static int
kqb_set_token(fs_backend *b, int fd, uint64_t token)
{
    pthread_mutex_lock(&b->tokens_lock);
    int rc = kqb_set_token_locked(b, fd, token);
    int saved = errno;
    pthread_mutex_unlock(&b->tokens_lock);
    errno = saved;
    return rc;
}
#  define KQB_UDATA(token) ((void *)0)
#else
#  define KQB_UDATA(token) ((void *)(uintptr_t)(token))
#endif

#define KQB_MAX_CHANGES 2          /* both filters of one fd */

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

/* Best effort: drop both filters of fd (after a half-failed add). */
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
            /* roll back the other filter if it did get added (the READ
             * change can fail where the WRITE one succeeds: libkqueue
             * refuses an EV_ADD over a filter it has) */
            errno = err[i];
            if (n == 2 && err[1 - i] == 0) {
                kqb_forget(b, fd);
            }
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
        errno = FS_ENOMEM;
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
                   fs_kq_timespec(timeout_ns, &ts));
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
#ifdef KQB_TOKEN_TABLE
        pthread_mutex_lock(&b->tokens_lock);
        n = kqb_merge(&s, n, b, out, max);
        pthread_mutex_unlock(&b->tokens_lock);
#else
        n = kqb_merge(&s, n, b, out, max);
#endif
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
    .modify = NULL,             /* KqueueSelector re-registers instead */
    .remove = kqb_remove,
    .wait = kqb_wait,
    /* kevent may block (a FUSE file's poll hook): without the GIL, as
     * the stdlib's poller objects call it */
    .ctl_nogil = 1,
};

#else  /* !FS_HAVE_KQUEUE */

/* ISO C wants at least one declaration in a translation unit. */
typedef int fs_kqueue_backend_unavailable;

#endif /* FS_HAVE_KQUEUE */
