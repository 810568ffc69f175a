/* fork.c: registers the process-wide fork hook once, reports its failure. */
#include "fork.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

atomic_ulong fs_fork_gen;

/* 0: not registered; > 0: being registered by a thread of that process
 * (pid); HOOK_DONE; HOOK_FAILED (errno kept).  No pthread_once: it would
 * raise the wheel's glibc floor to 2.34. */
#define HOOK_DONE (-1)
#define HOOK_FAILED (-2)
static atomic_long hook_state;
static int hook_errno;

static void
after_fork_child(void)
{
    /* the child runs one thread here */
    atomic_fetch_add_explicit(&fs_fork_gen, 1, memory_order_relaxed);
}

int
fs_fork_setup(PyObject *Py_UNUSED(module), fs_state *Py_UNUSED(st))
{
    long me = (long)getpid(), s;
    for (;;) {
        long expected = 0;
        if (atomic_compare_exchange_strong(&hook_state, &expected, me)) {
            hook_errno = pthread_atfork(NULL, NULL, after_fork_child);
            atomic_store(&hook_state, hook_errno == 0 ? HOOK_DONE
                                                      : HOOK_FAILED);
        }
        s = atomic_load(&hook_state);
        if (s > 0 && s != me) {
            /* forked while a thread of the parent was registering: that
             * thread is not here, so register again (if both did, a fork
             * bumps the generation twice, which is as good) */
            atomic_compare_exchange_strong(&hook_state, &s, 0);
            continue;
        }
        if (s < 0) {
            break;
        }
        sched_yield();          /* another interpreter is registering */
    }
    if (s == HOOK_FAILED) {
        /* without the hook, fork safety is not guaranteed: refuse to load */
        errno = hook_errno;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}
