/* debug.h - what only a FASTSEL_DEBUG build has: the probes that tests read
 * through the module's debug-only entry points (debug.c). */
#ifndef FASTSEL_DEBUG_H
#define FASTSEL_DEBUG_H

#include "fastsel.h"

#include <stdatomic.h>

/* The kernel calls whose GIL state the tests check: the stdlib releases
 * the GIL around each (a FUSE file's poll hook can block in epoll_ctl). */
typedef enum {
    FS_SYS_EPOLL_CTL,
    FS_SYS_EPOLL_WAIT,
    FS_SYS_KEVENT,
    FS_SYS_POLL,
    FS_SYS_SELECT,
    FS_SYS_COUNT
} fs_syscall;

#ifdef FS_DEBUG
/* Count one call of `sys`, by whether this thread held the GIL.  Safe
 * without the GIL. */
void fs_debug_syscall(fs_syscall sys);
#  define FS_DEBUG_SYSCALL(sys) fs_debug_syscall(sys)
/* Interest changes waiting for their turn to enter the kernel (sel_ctl.c's
 * ticket lock), for _debug_queued(). */
extern atomic_int fs_debug_ctl_queued;
#  define FS_DEBUG_CTL_QUEUED(d) atomic_fetch_add(&fs_debug_ctl_queued, (d))
#else
#  define FS_DEBUG_SYSCALL(sys) ((void)0)
#  define FS_DEBUG_CTL_QUEUED(d) ((void)0)
#endif

/* Module setup hook: `_debug` (whether this is a FASTSEL_DEBUG build) and,
 * in a debug build, the debug-only entry points. */
int fs_debug_setup(PyObject *module, fs_state *st);

#endif /* FASTSEL_DEBUG_H */
