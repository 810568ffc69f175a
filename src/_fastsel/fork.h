/* fork.h: the one fork detector of every object that holds kernel state. */
#ifndef FASTSEL_FORK_H
#define FASTSEL_FORK_H

#include "fastsel.h"

#include <stdatomic.h>

/* Bumped in the child of every fork(); an object remembers the value it was
 * made under and treats a different one as "inherited across fork". */
extern atomic_ulong fs_fork_gen;

static inline unsigned long
fs_fork_generation(void)
{
    return atomic_load_explicit(&fs_fork_gen, memory_order_relaxed);
}

/* Module setup hook: registers the child handler once per process. */
int fs_fork_setup(PyObject *module, fs_state *st);

#endif
