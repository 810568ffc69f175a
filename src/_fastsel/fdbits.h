/* fdbits.h - what select.select() (select.c) and the select backend
 * (be_poll_select.c) share: fd_set-layout bitmaps of any size, the
 * highest-fd check and select(2)'s timeout.
 *
 * The sets are arrays of longs sized to the highest fd (the layout of
 * fd_set), filled by hand: FD_SET/FD_ISSET on fds >= FD_SETSIZE abort under
 * _FORTIFY_SOURCE, and select(2) itself only reads nfds bits.
 */
#ifndef FASTSEL_FDBITS_H
#define FASTSEL_FDBITS_H

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <sys/time.h>
#include <unistd.h>

#include "timeout.h"

#define FS_LONG_BITS ((int)(sizeof(unsigned long) * CHAR_BIT))

static inline void
fs_bit_set(unsigned long *set, int fd)
{
    set[fd / FS_LONG_BITS] |= 1UL << (fd % FS_LONG_BITS);
}

static inline int
fs_bit_isset(const unsigned long *set, int fd)
{
    return (set[fd / FS_LONG_BITS] >> (fd % FS_LONG_BITS)) & 1;
}

/* 0 with errno EBADF when fd is not open.  select(2) ignores fds past the
 * process's fd table instead of failing, so a high fd is checked first.
 * dup2(fd, fd) checks without side effects; fcntl() would tie the wheel to
 * glibc 2.28's fcntl64. */
static inline int
fs_fd_is_open(int fd)
{
    return dup2(fd, fd) == fd || errno != EBADF;
}

/* select(2)'s timeout for timeout_ns (< 0: NULL, no limit), rounded up to
 * whole microseconds. */
static inline struct timeval *
fs_timeval(int64_t timeout_ns, struct timeval *tv)
{
    if (timeout_ns < 0) {
        return NULL;
    }
    int64_t us = fs_ns_divide(timeout_ns, 1000, FS_ROUND_CEILING);
    tv->tv_sec = (time_t)(us / 1000000);
    tv->tv_usec = (suseconds_t)(us % 1000000);
    return tv;
}

#endif /* FASTSEL_FDBITS_H */
