/* kq.h - what the kqueue files share (kqueue.c, kevent.c, be_kqueue.c):
 * the select.kevent object's layout, close-on-exec and kevent() timeouts.
 * Only built where FS_HAVE_KQUEUE (backend.h). */
#ifndef FASTSEL_KQ_H
#define FASTSEL_KQ_H

#include "fastsel.h"

#ifdef FS_HAVE_KQUEUE

#include <fcntl.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <time.h>

static inline int
fs_kq_set_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || (!(flags & FD_CLOEXEC)
                      && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)) {
        return -1;
    }
    return 0;
}

/* kevent() with nanoseconds; timeout_ns < 0 blocks. */
static inline struct timespec *
fs_kq_timespec(int64_t timeout_ns, struct timespec *ts)
{
    if (timeout_ns < 0) {
        return NULL;
    }
    ts->tv_sec = (time_t)(timeout_ns / 1000000000);
    ts->tv_nsec = (long)(timeout_ns % 1000000000);
    return ts;
}

/* A select.kevent: one struct kevent (kevent.c). */
typedef struct {
    PyObject_HEAD
    struct kevent e;
} fs_kevent;

/* Creates the kevent type into st->kevent_type and adds it to the module. */
int fs_kevent_setup(PyObject *module, fs_state *st);

#endif /* FS_HAVE_KQUEUE */
#endif /* FASTSEL_KQ_H */
