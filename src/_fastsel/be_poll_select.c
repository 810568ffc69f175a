/* be_poll_select.c - the poll(2) and select(2) backends (backend.h) over one
 * fd table.  add/modify/remove change the table with the GIL held; wait()
 * reads only the snapshot that snapshot() took with the GIL right before it
 * (as CPython's poll object updates its array), so the memory the kernel
 * writes to is never resized or freed under it and no lock is needed.
 */
#include "fastsel.h"
#include "backend.h"
#include "debug.h"
#include "fdbits.h"
#include "fdtab.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

struct fs_backend {
    fs_fdtab tab;               /* the registrations */
    int dirty;                  /* tab changed since the last snapshot */
    /* the snapshot: written by snapshot(), read by wait() */
    struct pollfd *wfd;
    uint64_t *wtok;
    int wlen, wcap;
    unsigned long *bits;        /* select: interest bitmaps, read then write */
    size_t nwords;              /* longs per bitmap */
    size_t bitcap;              /* nwords that bits has room for */
    int maxfd;
};

/* ---- shared by both backends ------------------------------------------- */

static fs_backend *
fsb_open(void)
{
    fs_backend *b = PyMem_RawCalloc(1, sizeof(*b));
    if (b == NULL) {
        errno = FS_ENOMEM;
        return NULL;
    }
    fdtab_init(&b->tab);
    b->maxfd = -1;
    return b;
}

static void
fsb_free(fs_backend *b)
{
    if (b == NULL) {
        return;
    }
    fdtab_free(&b->tab);
    PyMem_RawFree(b->wfd);
    PyMem_RawFree(b->wtok);
    PyMem_RawFree(b->bits);
    PyMem_RawFree(b);
}

static int
fsb_fileno(fs_backend *b)
{
    (void)b;
    return -1;
}

static inline short
fsb_pollmask(int events)
{
    return (short)(((events & FS_READ) ? POLLIN : 0)
                   | ((events & FS_WRITE) ? POLLOUT : 0));
}

static int
fsb_add(fs_backend *b, int fd, int events, uint64_t token)
{
    if (fd < 0) {
        errno = EBADF;          /* -1 marks a hole in the table */
        return -1;
    }
    if (fdtab_find(&b->tab, fd) >= 0) {
        errno = EEXIST;
        return -1;
    }
    if (fdtab_add(&b->tab, fd, fsb_pollmask(events), token) < 0) {
        errno = FS_ENOMEM;      /* the table's only failure */
        return -1;
    }
    b->dirty = 1;
    return 0;
}

static int
fsb_modify(fs_backend *b, int fd, int old_events, int events, uint64_t token)
{
    (void)old_events;
    int idx = fdtab_find(&b->tab, fd);
    if (idx < 0) {
        errno = ENOENT;
        return -1;
    }
    b->tab.ent[idx].events = fsb_pollmask(events);
    b->tab.tok[idx] = token;
    b->dirty = 1;
    return 0;
}

static int
fsb_remove(fs_backend *b, int fd, int old_events)
{
    (void)old_events;
    int idx = fdtab_find(&b->tab, fd);
    if (idx < 0) {
        errno = ENOENT;
        return -1;
    }
    fdtab_remove(&b->tab, idx);
    b->dirty = 1;
    return 0;
}

/* Copy the registrations into the snapshot.  0 or -1/errno; on failure
 * the previous snapshot stays intact and dirty. */
static int
copy_snapshot(fs_backend *b)
{
    if (fdtab_compact(&b->tab) < 0) {
        errno = FS_ENOMEM;
        return -1;
    }
    int n = b->tab.len;
    if (n > b->wcap) {
        struct pollfd *wfd = PyMem_RawMalloc((size_t)n * sizeof(*wfd));
        uint64_t *wtok = PyMem_RawMalloc((size_t)n * sizeof(*wtok));
        if (wfd == NULL || wtok == NULL) {
            PyMem_RawFree(wfd);
            PyMem_RawFree(wtok);
            errno = FS_ENOMEM;
            return -1;
        }
        PyMem_RawFree(b->wfd);
        PyMem_RawFree(b->wtok);
        b->wfd = wfd;
        b->wtok = wtok;
        b->wcap = n;
    }
    if (n > 0) {
        memcpy(b->wfd, b->tab.ent, (size_t)n * sizeof(*b->wfd));
        memcpy(b->wtok, b->tab.tok, (size_t)n * sizeof(*b->wtok));
    }
    b->wlen = n;
    b->dirty = 0;
    return 0;
}

/* Store a wait's result in out[k] if it has events: the new count. */
static inline int
put_event(fs_event *out, int k, uint64_t token, int events)
{
    if (events) {
        out[k].token = token;
        out[k].events = events;
        k++;
    }
    return k;
}

/* ---- poll(2) ------------------------------------------------------------ */

static int
pollb_snapshot(fs_backend *b)
{
    return b->dirty ? copy_snapshot(b) : 0;
}

static int
pollb_wait(fs_backend *b, int64_t timeout_ns, fs_event *out, int max)
{
    FS_DEBUG_SYSCALL(FS_SYS_POLL);
    int n = poll(b->wfd, (nfds_t)b->wlen, fs_backend_ms(timeout_ns));
    if (n <= 0) {
        return n;
    }
    int k = 0;
    for (int i = 0; i < b->wlen && k < n && k < max; i++) {
        short rev = b->wfd[i].revents;
        /* as the stdlib's PollSelector: anything but POLLIN counts as
         * writable, anything but POLLOUT as readable (ERR/HUP/NVAL: both) */
        int ev = ((rev & ~POLLIN) ? FS_WRITE : 0)
                 | ((rev & ~POLLOUT) ? FS_READ : 0);
        k = put_event(out, k, b->wtok[i], ev);
    }
    return k;
}

/* poll and select share everything but the snapshot's form and the wait */
#define FSB_OPS(nm, snap, wt)                                               \
    {                                                                       \
        .name = (nm), .open = fsb_open, .free = fsb_free,                   \
        .fileno = fsb_fileno, .add = fsb_add, .modify = fsb_modify,         \
        .remove = fsb_remove, .snapshot = (snap), .wait = (wt),             \
    }

const fs_backend_ops fs_poll_backend =
    FSB_OPS("poll", pollb_snapshot, pollb_wait);

/* ---- select(2) ---------------------------------------------------------- */

/* qsort order of tokens: by fd, their low 32 bits (backend.h) */
static int
cmp_token_fd(const void *a, const void *b)
{
    uint32_t x = (uint32_t)*(const uint64_t *)a;
    uint32_t y = (uint32_t)*(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The snapshot's interest bitmaps, and its tokens sorted by fd: results
 * come out in fd order.  On failure the snapshot stays dirty. */
static int
selectb_snapshot(fs_backend *b)
{
    if (!b->dirty) {
        return 0;
    }
    if (copy_snapshot(b) < 0) {
        return -1;
    }
    int n = b->wlen;
    if (n > 1) {
        qsort(b->wtok, (size_t)n, sizeof(*b->wtok), cmp_token_fd);
    }
    int maxfd = n > 0 ? (int)(uint32_t)b->wtok[n - 1] : -1;
    if (maxfd >= FD_SETSIZE && !fs_fd_is_open(maxfd)) {
        /* as select.select(): select(2) would silently ignore it */
        b->dirty = 1;
        return -1;
    }
    size_t nwords = maxfd < 0 ? 0 : (size_t)maxfd / FS_LONG_BITS + 1;
    /* room for the interest sets and the two working copies */
    if (nwords > b->bitcap || b->bits == NULL) {
        unsigned long *bits = PyMem_RawMalloc((4 * nwords + 1)
                                              * sizeof(unsigned long));
        if (bits == NULL) {
            b->dirty = 1;
            errno = FS_ENOMEM;
            return -1;
        }
        PyMem_RawFree(b->bits);
        b->bits = bits;
        b->bitcap = nwords;
    }
    b->nwords = nwords;
    b->maxfd = maxfd;
    memset(b->bits, 0, 2 * nwords * sizeof(unsigned long));
    for (int i = 0; i < n; i++) {
        if (b->wfd[i].events & POLLIN) {
            fs_bit_set(b->bits, b->wfd[i].fd);
        }
        if (b->wfd[i].events & POLLOUT) {
            fs_bit_set(b->bits + nwords, b->wfd[i].fd);
        }
    }
    return 0;
}

static int
selectb_wait(fs_backend *b, int64_t timeout_ns, fs_event *out, int max)
{
    struct timeval tv, *tvp = fs_timeval(timeout_ns, &tv);
    size_t nw = b->nwords;
    unsigned long *r = b->bits + 2 * nw, *w = b->bits + 3 * nw;
    if (nw > 0) {
        memcpy(r, b->bits, 2 * nw * sizeof(unsigned long));
    }
    FS_DEBUG_SYSCALL(FS_SYS_SELECT);
    int n = select(b->maxfd + 1, nw ? (fd_set *)r : NULL,
                   nw ? (fd_set *)w : NULL, NULL, tvp);
    if (n <= 0) {
        return n;
    }
    int k = 0;
    for (int i = 0; i < b->wlen && k < max; i++) {
        int fd = (int)(uint32_t)b->wtok[i];
        int ev = (fs_bit_isset(r, fd) ? FS_READ : 0)
                 | (fs_bit_isset(w, fd) ? FS_WRITE : 0);
        k = put_event(out, k, b->wtok[i], ev);
    }
    return k;
}

const fs_backend_ops fs_select_backend =
    FSB_OPS("select", selectb_snapshot, selectb_wait);
