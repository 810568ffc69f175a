/* fdtab.h - an ordered fd registry (pure data structure): a pollfd array in
 * registration order plus an fd -> index hash, so register/modify/unregister
 * are O(1) and no Python dict is needed.  Used by the poll object (poll.c)
 * and the poll and select backends (be_poll_select.c).
 *
 * Unregistering leaves a hole (fd == -1) so the others keep their order and
 * index; fdtab_compact() squeezes the holes out.  Nothing here touches Python
 * objects or raises: failures return -1 with errno set.  Memory comes from
 * the PyMem_Raw* domain, as all backend memory (backend.h).
 */
#ifndef FASTSEL_FDTAB_H
#define FASTSEL_FDTAB_H

#include <poll.h>
#include <stdint.h>

#define FDTAB_EMPTY (-1)
#define FDTAB_GONE (-2)         /* hash tombstone */

typedef struct {
    struct pollfd *ent;         /* registration order; holes have fd == -1 */
    uint64_t *tok;              /* a token per entry, parallel to ent */
    int len, cap;               /* used entries (holes included), capacity */
    int holes;
    int32_t *slots;             /* index into ent, FDTAB_EMPTY or FDTAB_GONE */
    uint32_t mask;              /* nslots - 1; nslots is a power of two */
    int shift;                  /* 32 - log2(nslots) */
    int used;                   /* non-empty slots, tombstones included */
} fs_fdtab;

static inline uint32_t
fdtab_hash(const fs_fdtab *t, int fd)
{
    /* Fibonacci hashing spreads consecutive fds over the table */
    return ((uint32_t)fd * 2654435769u) >> t->shift;
}

/* Index of fd's entry, or -1.  Inline: every register/modify looks up. */
static inline int
fdtab_find(const fs_fdtab *t, int fd)
{
    if (t->slots == NULL) {
        return -1;
    }
    for (uint32_t i = fdtab_hash(t, fd);; i = (i + 1) & t->mask) {
        int32_t s = t->slots[i];
        if (s == FDTAB_EMPTY) {
            return -1;
        }
        if (s >= 0 && t->ent[s].fd == fd) {
            return s;
        }
    }
}

/* An empty table (no memory yet). */
void fdtab_init(fs_fdtab *t);
/* Release the memory; the table is empty and usable afterwards. */
void fdtab_free(fs_fdtab *t);
/* Append fd (which must not be present).  Returns its index, or -1 with
 * errno ENOMEM and the table unchanged. */
int fdtab_add(fs_fdtab *t, int fd, short events, uint64_t token);
/* Forget the entry at index idx. */
void fdtab_remove(fs_fdtab *t, int idx);
/* Remove the holes, keeping registration order.  0, or -1 with errno
 * ENOMEM and the table unchanged. */
int fdtab_compact(fs_fdtab *t);

#endif /* FASTSEL_FDTAB_H */
