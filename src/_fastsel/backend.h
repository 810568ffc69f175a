/* backend.h - the one internal interface between the selector classes and
 * the kernel's readiness mechanisms.
 *
 * Backends: be_epoll.c (Linux), be_kqueue.c (BSD/macOS, or libkqueue),
 * be_poll_select.c (poll and select over one fdtab.h table).  The selector
 * files (sel_*.c) reach a backend only through its table; the select module's
 * objects (select.c, poll.c, epoll.c, kqueue.c, kevent.c) do not use it.
 *
 * Contract:
 *  - Events are in selectors terms: FS_READ == EVENT_READ and FS_WRITE ==
 *    EVENT_WRITE.
 *  - Every operation but wait() runs with the GIL held and must not call into
 *    Python.  wait() runs with the GIL released and must touch nothing but the
 *    backend's own wait memory and the output array.  The selector never
 *    runs two waits of one backend at once.  Backend memory comes from
 *    the PyMem_Raw* domain (usable without the GIL, and reached by
 *    _testcapi.set_nomemory), so every allocation failure is testable.
 *    Where the table sets ctl_nogil (epoll, kqueue: kernel calls that may
 *    block), add/modify/remove run without the GIL too, concurrently with
 *    wait() and with each other, so they must share no unguarded state.
 *    Where it does not (poll, select), the interest lives in the backend:
 *    snapshot() copies it for the next wait(), with the GIL held, so wait()
 *    never reads what add/modify/remove change and needs no lock.
 *  - Errors are reported as -1 (or NULL) with errno set, never as Python
 *    exceptions; the caller turns errno into the stdlib's exception.  A
 *    backend whose own memory ran out sets FS_ENOMEM, which no kernel
 *    returns, and the caller raises MemoryError (as the stdlib's dicts and
 *    buffers would); a kernel's ENOMEM stays an OSError.
 *  - `token` is the selector's `fd | (uint64_t)tag << 32` (tag: its
 *    generation of the registration, so that stale events can be
 *    recognised).  It is stored at add/modify time and handed back with
 *    each event; a backend may rely on its low 32 bits being the fd (kqueue
 *    keeps the tag alone and rebuilds the token from the ident).
 *  - wait() maps kernel events to FS_READ/FS_WRITE as the stdlib's selector
 *    for that mechanism does (e.g. EPOLLERR/EPOLLHUP report both); the caller
 *    masks with the key's events.  One fs_event per kernel event: kqueue
 *    reports read and write readiness of one fd as two (one per filter), as
 *    the stdlib's KqueueSelector does.
 *  - wait() does not retry EINTR; the caller does (PEP 475) because it must
 *    run signal handlers with the GIL.
 *
 * A replaced _selector_cls (a subclass or mock) gets no ops table: the
 * selector hands its calls to a delegate that runs the stdlib's class over
 * the replacement's object (sel_driver.c).
 */
#ifndef FASTSEL_BACKEND_H
#define FASTSEL_BACKEND_H

#include <errno.h>
#include <limits.h>
#include <stdint.h>

/* Which kernel mechanisms this build has.  kqueue: native on the BSDs and
 * macOS, or through a compatibility library chosen at build time (setup.py's
 * FASTSEL_KQUEUE switch defines FASTSEL_KQUEUE_COMPAT; Linux test builds). */
#if defined(FASTSEL_KQUEUE_COMPAT) || defined(__APPLE__) \
    || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) \
    || defined(__DragonFly__)
#  define FS_HAVE_KQUEUE 1
#endif

/* errno of a backend's allocation failure (MemoryError, see above) */
#define FS_ENOMEM (-ENOMEM)

#define FS_READ  1
#define FS_WRITE 2

typedef struct {
    uint64_t token;
    int events;                 /* FS_READ | FS_WRITE */
} fs_event;

typedef struct fs_backend fs_backend;   /* defined by each backend file */

typedef struct {
    const char *name;           /* "epoll", "kqueue", "poll", "select" */
    /* New backend state with its kernel object (if any), close-on-exec. */
    fs_backend *(*open)(void);
    /* Release the kernel object and all memory.  Safe on a closed backend,
     * and in a forked child on one inherited from the parent, the only op
     * the selector calls on such a backend: it then releases the memory but
     * not the parent's kernel object.  (No backend holds a lock, so none
     * can be inherited held.) */
    void (*free)(fs_backend *b);
    /* The kernel object's fd, or -1 when the mechanism has none. */
    int (*fileno)(fs_backend *b);
    /* Interest changes; old_events is what was last set.  add() always gets
     * a non-zero mask, but modify() may get 0 or bits outside
     * FS_READ|FS_WRITE (the stdlib's modify does not validate) and must
     * then register interest in nothing rather than fail.  modify is NULL
     * where the selector class modifies by remove + add (kqueue: the
     * stdlib's KqueueSelector.modify unregisters and registers again). */
    int (*add)(fs_backend *b, int fd, int events, uint64_t token);
    int (*modify)(fs_backend *b, int fd, int old_events, int events,
                  uint64_t token);
    int (*remove)(fs_backend *b, int fd, int old_events);
    /* Take the interest that the next wait() polls, with the GIL held:
     * the selector calls it right before each wait (a PEP 475 retry after
     * EINTR re-uses it, as CPython's poll object does).  0, or -1 with
     * errno (FS_ENOMEM when the backend's memory ran out).  NULL where the
     * kernel keeps the interest (epoll, kqueue). */
    int (*snapshot)(fs_backend *b);
    /* Wait up to timeout_ns (< 0: forever), rounding up to the mechanism's
     * resolution, and store at most `max` events in `out`.  Returns the count,
     * or -1 with errno (EINTR included).  Called without the GIL. */
    int (*wait)(fs_backend *b, int64_t timeout_ns, fs_event *out, int max);
    /* add/modify/remove are kernel calls (epoll_ctl, kevent) that the
     * selector makes without the GIL, as the stdlib's poller objects do;
     * 0 where they only change the backend's memory (poll, select). */
    int ctl_nogil;
} fs_backend_ops;

/* A wait's timeout in the milliseconds of poll(2) and epoll_wait(2): -1
 * (no limit) when negative, else rounded up (the stdlib's selectors never
 * wait less than asked) and capped at INT_MAX. */
static inline int
fs_backend_ms(int64_t timeout_ns)
{
    if (timeout_ns < 0) {
        return -1;
    }
    int64_t ms = timeout_ns / 1000000 + (timeout_ns % 1000000 != 0);
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* The backends this build has, one per file. */
#ifdef __linux__
extern const fs_backend_ops fs_epoll_backend;
#endif
#ifdef FS_HAVE_KQUEUE
extern const fs_backend_ops fs_kqueue_backend;
#endif
/* portable backends: no kernel object, wait() polls the snapshot of the
 * registrations; select's has no FD_SETSIZE limit */
extern const fs_backend_ops fs_poll_backend;
extern const fs_backend_ops fs_select_backend;

#endif /* FASTSEL_BACKEND_H */
