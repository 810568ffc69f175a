/* be_epoll.c - the epoll backend (backend.h) of EpollSelector (Linux). */
#include "fastsel.h"
#include "backend.h"
#include "debug.h"

#ifdef __linux__

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Memory is PyMem_Raw*: wait() grows its buffer without the GIL. */
struct fs_backend {
    int epfd;
    int cap;                        /* capacity of buf, in events */
    struct epoll_event *buf;        /* kept between waits: no malloc each */
};

static fs_backend *
epb_open(void)
{
    fs_backend *b = PyMem_RawCalloc(1, sizeof(*b));
    if (b == NULL) {
        errno = FS_ENOMEM;
        return NULL;
    }
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        int saved = errno;
        PyMem_RawFree(b);
        errno = saved;
        return NULL;
    }
    return b;
}

static void
epb_free(fs_backend *b)
{
    if (b == NULL) {
        return;
    }
    if (b->epfd >= 0) {
        close(b->epfd);
    }
    PyMem_RawFree(b->buf);
    PyMem_RawFree(b);
}

static int
epb_fileno(fs_backend *b)
{
    return b->epfd;
}

static inline uint32_t
to_epoll(int events)
{
    return ((events & FS_READ) ? EPOLLIN : 0)
           | ((events & FS_WRITE) ? EPOLLOUT : 0);
}

/* EPOLL_CTL_DEL gets a zeroed event too: pre-2.6.9 kernels want one. */
static int
epb_ctl(fs_backend *b, int op, int fd, int events, uint64_t token)
{
    struct epoll_event ev;
    ev.events = to_epoll(events);
    ev.data.u64 = token;
    FS_DEBUG_SYSCALL(FS_SYS_EPOLL_CTL);
    return epoll_ctl(b->epfd, op, fd, &ev);
}

static int
epb_add(fs_backend *b, int fd, int events, uint64_t token)
{
    return epb_ctl(b, EPOLL_CTL_ADD, fd, events, token);
}

static int
epb_modify(fs_backend *b, int fd, int old_events, int events, uint64_t token)
{
    (void)old_events;
    return epb_ctl(b, EPOLL_CTL_MOD, fd, events, token);
}

static int
epb_remove(fs_backend *b, int fd, int old_events)
{
    (void)old_events;
    return epb_ctl(b, EPOLL_CTL_DEL, fd, 0, 0);
}

static int
epb_wait(fs_backend *b, int64_t timeout_ns, fs_event *out, int max)
{
    if (max <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (b->cap < max) {
        struct epoll_event *nb = PyMem_RawRealloc(b->buf,
                                                  (size_t)max * sizeof(*nb));
        if (nb == NULL) {
            errno = FS_ENOMEM;
            return -1;
        }
        b->buf = nb;
        b->cap = max;
    }
    FS_DEBUG_SYSCALL(FS_SYS_EPOLL_WAIT);
    int n = epoll_wait(b->epfd, b->buf, max, fs_backend_ms(timeout_ns));
    for (int i = 0; i < n; i++) {
        uint32_t e = b->buf[i].events;
        /* as the stdlib's EpollSelector: anything but IN counts as writable,
         * anything but OUT as readable, so ERR/HUP wake both */
        out[i].events = ((e & ~(uint32_t)EPOLLIN) ? FS_WRITE : 0)
                        | ((e & ~(uint32_t)EPOLLOUT) ? FS_READ : 0);
        out[i].token = b->buf[i].data.u64;
    }
    return n;
}

const fs_backend_ops fs_epoll_backend = {
    .name = "epoll",
    .open = epb_open,
    .free = epb_free,
    .fileno = epb_fileno,
    .add = epb_add,
    .modify = epb_modify,
    .remove = epb_remove,
    .wait = epb_wait,
    /* epoll_ctl may block (a FUSE file's poll hook): without the GIL, as
     * the stdlib's poller objects call it */
    .ctl_nogil = 1,
};

#else  /* !__linux__ */

/* ISO C wants at least one declaration in a translation unit. */
typedef int fs_epoll_backend_unavailable;

#endif /* __linux__ */
