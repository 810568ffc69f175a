/* sel_kernel.c - the selector's kernel object: its life cycle (opened
 * lazily, rebuilt from the keys in a forked child, released after close)
 * and the interest changes, made in the GIL's order without the GIL. */
#include "selector.h"
#include "debug.h"

#include <errno.h>

/* ---- the life cycle ----------------------------------------------------- */

/* Made at construction; again on first use in a forked child that had no
 * registrations to carry over. */
int
sel_open_backend(sel_object *s)
{
    s->be = s->ops->open();
    if (s->be == NULL) {
        fs_errno_error(errno);
        return -1;
    }
    return 0;
}

/* In a forked child: drop the inherited backend without touching its
 * kernel object (epoll_ctl on it would change the parent's interest list),
 * open a fresh one and re-add the current keys.  Registrations the kernel
 * now refuses (fd closed meanwhile) stay known but silent, as a registered
 * fd that is closed does in the parent. */
static int
sel_refork(sel_object *s)
{
    s->fork_seen = fs_fork_generation();
    /* threads that were waiting or in an interest change at fork are not
     * here */
    s->busy = 0;
    sel_ctl_init(s);
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
        fs_errno_error(err);
        return -1;
    }
    sel_readd_all(s);
    return 0;
}

int
sel_ready_slow(sel_object *s)
{
    if (s->closed) {
        sel_err_closed();
        return -1;
    }
    if (s->fork_seen != fs_fork_generation() && sel_refork(s) < 0) {
        return -1;
    }
    if (s->be == NULL) {
        return sel_open_backend(s);
    }
    return 0;
}

void
sel_finish_close(sel_object *s)
{
    if (s->closed && !s->busy && s->inflight == 0) {
        if (s->be != NULL) {
            s->ops->free(s->be);
            s->be = NULL;
        }
        PyMem_Free(s->evbuf);
        s->evbuf = NULL;
        s->evcap = 0;
    }
}

/* ---- interest changes --------------------------------------------------- */

static int
ctl_call(const fs_backend_ops *ops, fs_backend *be, sel_ctl_op op, int fd,
         int old, int events, uint64_t token)
{
    switch (op) {
    case CTL_ADD:
        return ops->add(be, fd, events, token);
    case CTL_MODIFY:
        return ops->modify(be, fd, old, events, token);
    case CTL_REMOVE:
        return ops->remove(be, fd, old);
    default:
        break;
    }
    const int all = FS_READ | FS_WRITE;
    if (ops->modify == NULL) {
        /* kqueue: both filters go, the wanted ones come back (libkqueue
         * refuses an EV_ADD over a filter it has) */
        (void)ops->remove(be, fd, all);
        return events ? ops->add(be, fd, events, token) : 0;
    }
    if (ops->modify(be, fd, all, events, token) < 0 && errno == ENOENT) {
        return ops->add(be, fd, events, token);
    }
    return 0;
}

/* Kernel calls in the GIL's order.  Where the kind's backend enters the
 * kernel, the GIL is released around each call, as the stdlib's poller
 * objects do (a FUSE file's poll hook may wait on a thread of this
 * process).  A call takes a ticket with the GIL and enters the kernel, the
 * selector's lock held, when that ticket is served, so the kernel sees the
 * calls of one selector one at a time and in the order their callers made
 * them: what it holds is always what the sequence of calls, as the table
 * saw it, left.  The price: an interest change that blocks in the kernel
 * holds up the selector's other changes (never its select()).  `inflight`
 * keeps close() from freeing the backend under a call. */

/* The ticket lock in a new or forked object: the parent's may be held by a
 * thread the child does not have, so it is made anew, never waited on. */
void
sel_ctl_init(sel_object *s)
{
    pthread_mutex_init(&s->ctl_mu, NULL);
    pthread_cond_init(&s->ctl_cv, NULL);
    s->ctl_next = s->ctl_serving = 0;
    s->ctl_waiting = 0;
    s->inflight = 0;
    s->ctls = NULL;
}

/* The kernel call, in ticket order: 0, or -1 with errno. */
int
sel_kernel_ctl(sel_object *s, sel_ctl_op op, int fd, int old, int events,
               uint64_t token)
{
    if (s->closed || s->be == NULL || !sel_live(s)) {
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
    uint64_t ticket = s->ctl_next++;
    int rc, err;
    s->inflight++;
    FS_DEBUG_CTL_QUEUED(1);
    Py_BEGIN_ALLOW_THREADS
    /* held through the call: one lock and unlock when nobody waits */
    pthread_mutex_lock(&s->ctl_mu);
    if (s->ctl_serving != ticket) {
        s->ctl_waiting++;
        do {
            pthread_cond_wait(&s->ctl_cv, &s->ctl_mu);
        } while (s->ctl_serving != ticket);
        s->ctl_waiting--;
    }
    FS_DEBUG_CTL_QUEUED(-1);
    rc = ctl_call(ops, be, op, fd, old, events, token);
    err = errno;
    s->ctl_serving++;
    if (s->ctl_waiting) {
        pthread_cond_broadcast(&s->ctl_cv);
    }
    pthread_mutex_unlock(&s->ctl_mu);
    Py_END_ALLOW_THREADS
    s->inflight--;
    if (s->closed) {
        sel_finish_close(s);        /* close() may have left it to us */
    }
    errno = err;
    return rc;
}

void
sel_readd_all(sel_object *s)
{
    /* a forked child (one thread, the GIL held throughout) rebuilds its
     * kernel object from its keys, an empty interest included */
    for (int32_t fd = s->head; fd >= 0;) {
        sel_slot *sl = slot_find(s, fd);
        assert(sl != NULL);
        (void)s->ops->add(s->be, fd, sl->events, make_token(fd, sl->gen));
        fd = sl->next;
    }
}
