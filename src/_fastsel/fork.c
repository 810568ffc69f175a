/* fork.c: registers the process-wide fork hook once and reports its failure. */
#include "fork.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>

atomic_ulong fs_fork_gen;

/* 0: not registered, 1: being registered, 2: done, 3: failed (errno kept).
 * No pthread_once: it would raise the wheel's glibc floor to 2.34. */
static atomic_int hook_state;
static int hook_errno;

static void
after_fork_child(void)
{
    /* the child runs one thread here */
    atomic_fetch_add_explicit(&fs_fork_gen, 1, memory_order_relaxed);
}

int
fs_fork_setup(PyObject *module, fs_state *st)
{
    (void)module;
    (void)st;
    int expected = 0;
    if (atomic_compare_exchange_strong(&hook_state, &expected, 1)) {
        hook_errno = pthread_atfork(NULL, NULL, after_fork_child);
        atomic_store(&hook_state, hook_errno == 0 ? 2 : 3);
    }
    /* another interpreter may be registering right now: wait for its answer */
    int s;
    while ((s = atomic_load(&hook_state)) == 1) {
        sched_yield();
    }
    if (s == 3) {
        /* without the hook, fork safety is not guaranteed: refuse to load */
        errno = hook_errno;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}
