/* timeout.h - the one home of time: timeout conversion with the running
 * CPython's texts, saturating deadlines, and the PEP 475 retry loop that
 * every kernel wait of _fastsel goes through. */
#ifndef FASTSEL_TIMEOUT_H
#define FASTSEL_TIMEOUT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>

/* Timeouts are signed nanoseconds, as PyTime_t; the rounding modes of
 * _PyTime_round_t that the select module uses. */
typedef enum {
    FS_ROUND_CEILING,
    FS_ROUND_UP,              /* away from zero: CPython's ROUND_TIMEOUT */
} fs_round_t;

/* Divide nanoseconds by k with the given rounding (as _PyTime_Divide);
 * truncates, then steps from the quotient, so nothing can overflow. */
static inline int64_t
fs_ns_divide(int64_t t, int64_t k, fs_round_t round_mode)
{
    int64_t q = t / k, r = t % k;
    if (r == 0) {
        return q;
    }
    if (r > 0) {
        return q + 1;
    }
    return round_mode == FS_ROUND_CEILING ? q : q - 1;
}

/* How a select-module object reads its timeout argument (rounded away
 * from zero, so a positive timeout never waits less than asked). */
typedef struct {
    int64_t unit_ns;            /* 1000000000 (seconds) or 1000000 (ms) */
    int64_t none_ns;            /* what None stands for */
    /* the TypeError text up to 3.14 (3.15: one shared text); NULL:
     * kqueue.control()'s rule (every failure rewritten up to 3.14) */
    const char *type_text;
    const char *negative_text;  /* ValueError for a timeout < 0, or NULL */
    /* OverflowError "timeout is too large" unless the milliseconds,
     * rounded with ms_round, fit a C int */
    int int_ms;
    fs_round_t ms_round;
} fs_timeout_spec;

/* obj (None included) in ns as spec says, with the checks in the stdlib's
 * order.  0, or -1 with an exception. */
int fs_timeout_arg(PyObject *obj, const fs_timeout_spec *spec, int64_t *ns);

/* The pollers' rules: epoll.poll(), poll.poll() (its int_ms is cleared
 * where it waits with ppoll(): fs_poll_timeout_unbounded()),
 * select.select() and kqueue.control().  The selector classes hand their
 * own converted timeout to the same rule, as the stdlib's do. */
extern const fs_timeout_spec fs_epoll_timeout, fs_poll_timeout,
    fs_select_timeout, fs_kqueue_timeout;

/* now + timeout_ns (timeout_ns >= 0), saturating at INT64_MAX. */
int64_t fs_deadline(int64_t timeout_ns);

/* One kernel wait of up to timeout_ns (< 0: forever, 0: do not block),
 * rounded up to the mechanism's resolution by the callee.  Returns a count
 * >= 0, or -1 with errno set.  Runs without the GIL (see flags): it may
 * touch only memory that the caller keeps alive and nobody else changes. */
typedef int (*fs_wait_fn)(void *ctx, int64_t timeout_ns);

/* A zero timeout cannot block: call fn with the GIL held. */
#define FS_WAIT_ZERO_WITH_GIL 1

/* One call of fn, without the GIL unless flags allow a zero timeout to
 * keep it (handing the GIL over and back would cost more than a call that
 * cannot block); *err gets errno as fn left it. */
static inline int
fs_wait_once(fs_wait_fn fn, void *ctx, int64_t timeout_ns, int flags,
             int *err)
{
    int n;
    if (timeout_ns == 0 && (flags & FS_WAIT_ZERO_WITH_GIL)) {
        n = fn(ctx, 0);
        *err = errno;
    }
    else {
        Py_BEGIN_ALLOW_THREADS
        n = fn(ctx, timeout_ns);
        *err = errno;
        Py_END_ALLOW_THREADS
    }
    return n;
}

/* fs_wait_retry() after fn failed with errno err (timeout_ns and deadline
 * as it computed them). */
int fs_wait_retry_failed(fs_wait_fn fn, void *ctx, int64_t timeout_ns,
                         int64_t deadline, int flags, int (*stop)(void *ctx),
                         int err);

/* The PEP 475 loop: call fn with the GIL released; on EINTR run the signal
 * handlers and call it again with what is left of timeout_ns.  After the
 * handlers, `stop` (may be NULL) is asked with the GIL held whether to give
 * up at once with no events (a handler closed the object).  Returns fn's
 * count, 0 when the time ran out, or -1 with an exception set (the
 * handler's, MemoryError for errno FS_ENOMEM (backend.h), or OSError from
 * errno).  The first call is inline, so that fn (a constant at each call
 * site) folds into the caller: the hot path costs no more than a loop of
 * its own; the rest is fs_wait_retry_failed(). */
static inline int
fs_wait_retry(fs_wait_fn fn, void *ctx, int64_t timeout_ns, int flags,
              int (*stop)(void *ctx))
{
    /* a zero timeout needs no clock: after EINTR its time is up */
    int64_t deadline = timeout_ns > 0 ? fs_deadline(timeout_ns) : 0;
    int err;
    int n = fs_wait_once(fn, ctx, timeout_ns, flags, &err);
    if (n >= 0) {
        return n;
    }
    return fs_wait_retry_failed(fn, ctx, timeout_ns, deadline, flags, stop,
                                err);
}

#endif /* FASTSEL_TIMEOUT_H */
