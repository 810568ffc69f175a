/* be_kqueue.c - the kqueue backend (backend.h) of KqueueSelector; it has no
 * modify(): KqueueSelector.modify unregisters and registers again. */
#include "fastsel.h"
#include "backend.h"
#include "debug.h"
#include "fork.h"
#include "kq.h"

#ifdef FS_HAVE_KQUEUE

#include <errno.h>
#include <unistd.h>

/* One kevent() call per add/remove; with EV_RECEIPT every change
 * reports its own result, so a failure is attributed to the right filter and
 * what did succeed can be rolled back.  wait() returns one fs_event per
 * kernel event, as KqueueSelector reports one (key, events) per kevent.
 *
 * Tokens: ident carries the fd, so udata carries the tag alone (32 bits fit
 * any pointer) and wait() rebuilds fd | tag << 32 (backend.h). */
#define KQB_UDATA(token) ((void *)(uintptr_t)(uint32_t)((token) >> 32))

struct fs_backend {
    int kqfd;
    unsigned long fork_gen;
    int cap;                    /* capacity of buf, in events */
    struct kevent *buf;         /* wait()'s events, kept between waits */
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
    b->fork_gen = fs_fork_generation();
    b->kqfd = kqueue();
    if (b->kqfd < 0 || fs_kq_set_cloexec(b->kqfd) < 0) {
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
    PyMem_RawFree(b);
}

static int
kqb_fileno(fs_backend *b)
{
    int ours = b->kqfd >= 0 && b->fork_gen == fs_fork_generation();
    return ours ? b->kqfd : -1;
}

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

/* Fill ch with one change (flags) per filter in events, READ before WRITE
 * (KqueueSelector registers, and fails, in that order); returns how many. */
static int
kqb_changes(struct kevent *ch, int fd, int events, int flags, void *udata)
{
    int n = 0;
    if (events & FS_READ) {
        EV_SET(&ch[n], (uintptr_t)fd, EVFILT_READ, flags, 0, 0, udata);
        n++;
    }
    if (events & FS_WRITE) {
        EV_SET(&ch[n], (uintptr_t)fd, EVFILT_WRITE, flags, 0, 0, udata);
        n++;
    }
    return n;
}

/* Best effort: drop both filters of fd (after a half-failed add). */
static void
kqb_forget(fs_backend *b, int fd)
{
    struct kevent ch[KQB_MAX_CHANGES];
    int err[KQB_MAX_CHANGES];
    int n = kqb_changes(ch, fd, FS_READ | FS_WRITE, EV_DELETE, NULL);
    int saved = errno;
    (void)kqb_apply(b, ch, n, err);
    errno = saved;
}

/* EV_ADD or EV_DELETE fd's filters in events (deleting none makes no call):
 * 0, or -1 with the errno of the first change that failed. */
static int
kqb_ctl(fs_backend *b, int fd, int events, int flags, void *udata)
{
    struct kevent ch[KQB_MAX_CHANGES];
    int err[KQB_MAX_CHANGES];
    int n = kqb_changes(ch, fd, events, flags, udata);
    if (!kqb_live(b)) {
        return -1;
    }
    if (n == 0 && flags == EV_DELETE) {
        return 0;
    }
    if (kqb_apply(b, ch, n, err) < 0) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (err[i] != 0) {
            /* roll back the other filter of an add if it did get added
             * (the READ change can fail where the WRITE one succeeds:
             * libkqueue refuses an EV_ADD over a filter it has) */
            errno = err[i];
            if (flags == EV_ADD && n == 2 && err[1 - i] == 0) {
                kqb_forget(b, fd);
            }
            return -1;
        }
    }
    return 0;
}

static int
kqb_add(fs_backend *b, int fd, int events, uint64_t token)
{
    return kqb_ctl(b, fd, events, EV_ADD, KQB_UDATA(token));
}

static int
kqb_remove(fs_backend *b, int fd, int old_events)
{
    return kqb_ctl(b, fd, old_events, EV_DELETE, NULL);
}

#ifdef LIBKQUEUE
/* libkqueue hands out at most 512 events per call where a kernel fills the
 * list: top up n events without waiting while batches come back full.  Its
 * epoll moves what it returned to the back of the ready list, so later
 * batches hold new events until the first one comes round again: from
 * there on, everything is a repeat. */
static int
kqb_top_up(fs_backend *b, int n, int max)
{
    static const struct timespec zero = {0, 0};
    int batch = n;
    while (batch == 512 && n < max) {
        FS_DEBUG_SYSCALL(FS_SYS_KEVENT);
        batch = kevent(b->kqfd, NULL, 0, b->buf + n, max - n, &zero);
        for (int i = 0; i < batch; i++) {
            if (b->buf[n + i].ident == b->buf[0].ident
                && b->buf[n + i].filter == b->buf[0].filter) {
                return n + i;
            }
        }
        n += batch > 0 ? batch : 0;
    }
    return n;
}
#endif

static int
kqb_wait(fs_backend *b, int64_t timeout_ns, fs_event *out, int max)
{
    struct timespec ts;
    if (max <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (!kqb_live(b)) {
        return -1;
    }
    if (max > b->cap) {
        struct kevent *buf = PyMem_RawMalloc((size_t)max * sizeof(*buf));
        if (buf == NULL) {
            errno = FS_ENOMEM;
            return -1;
        }
        PyMem_RawFree(b->buf);
        b->buf = buf;
        b->cap = max;
    }
    FS_DEBUG_SYSCALL(FS_SYS_KEVENT);
    int n = kevent(b->kqfd, NULL, 0, b->buf, max,
                   fs_kq_timespec(timeout_ns, &ts));
#ifdef LIBKQUEUE
    if (n == 512) {
        n = kqb_top_up(b, n, max);
    }
#endif
    /* as KqueueSelector: one entry per kevent, its filter says which */
    for (int i = 0; i < n; i++) {
        const struct kevent *kev = &b->buf[i];
        out[i].token = (uint64_t)(uint32_t)kev->ident
                       | (uint64_t)(uint32_t)(uintptr_t)kev->udata << 32;
        out[i].events = kev->filter == EVFILT_READ ? FS_READ
                        : kev->filter == EVFILT_WRITE ? FS_WRITE : 0;
    }
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
