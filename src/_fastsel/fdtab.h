/* fdtab.h - an ordered fd registry shared by the poll object and the poll and
 * select backends: a pollfd array in registration order plus an fd -> index
 * hash, so register/modify/unregister are O(1) and no Python dict is needed.
 *
 * Unregistering leaves a hole (fd == -1) so the others keep their order and
 * index; fdtab_compact() squeezes the holes out.  Nothing here touches Python
 * objects or raises: failures return -1 with errno set, so the backends can
 * use it without the GIL's help.
 */
#ifndef FASTSEL_FDTAB_H
#define FASTSEL_FDTAB_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FDTAB_EMPTY (-1)
#define FDTAB_GONE (-2)         /* hash tombstone */

typedef struct {
    struct pollfd *ent;         /* registration order; holes have fd == -1 */
    uint64_t *tok;              /* parallel tokens (backends only) or NULL */
    int len, cap;               /* used entries (holes included), capacity */
    int holes;
    int32_t *slots;             /* index into ent, FDTAB_EMPTY or FDTAB_GONE */
    uint32_t mask;              /* nslots - 1; nslots is a power of two */
    int shift;                  /* 32 - log2(nslots) */
    int used;                   /* non-empty slots, tombstones included */
    int with_tokens;
} fs_fdtab;

static inline uint32_t
fdtab_hash(const fs_fdtab *t, int fd)
{
    /* Fibonacci hashing spreads consecutive fds over the table */
    return ((uint32_t)fd * 2654435769u) >> t->shift;
}

static inline void
fdtab_init(fs_fdtab *t, int with_tokens)
{
    memset(t, 0, sizeof(*t));
    t->with_tokens = with_tokens;
}

static inline void
fdtab_free(fs_fdtab *t)
{
    free(t->ent);
    free(t->tok);
    free(t->slots);
    fdtab_init(t, t->with_tokens);
}

/* Index of fd's entry, or -1. */
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

/* A new all-empty hash with room for `need` live entries; the table is not
 * touched, so a failure leaves it consistent. */
static inline int32_t *
fdtab_new_slots(int need, uint32_t *mask, int *shift)
{
    uint32_t n = 8;
    int bits = 3;
    while (n < (uint32_t)need * 2u + 2u) {
        if (bits >= 30) {
            errno = ENOMEM;
            return NULL;
        }
        n <<= 1;
        bits++;
    }
    int32_t *slots = malloc(n * sizeof(int32_t));
    if (slots == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    memset(slots, 0xff, n * sizeof(int32_t));   /* all FDTAB_EMPTY */
    *mask = n - 1;
    *shift = 32 - bits;
    return slots;
}

/* Install `slots` and index every live entry into it. */
static inline void
fdtab_fill(fs_fdtab *t, int32_t *slots, uint32_t mask, int shift)
{
    free(t->slots);
    t->slots = slots;
    t->mask = mask;
    t->shift = shift;
    t->used = 0;
    for (int i = 0; i < t->len; i++) {
        if (t->ent[i].fd < 0) {
            continue;
        }
        uint32_t j = fdtab_hash(t, t->ent[i].fd);
        while (slots[j] != FDTAB_EMPTY) {
            j = (j + 1) & mask;
        }
        slots[j] = i;
        t->used++;
    }
}

/* Remove the holes, keeping registration order. */
static inline int
fdtab_compact(fs_fdtab *t)
{
    if (t->holes == 0) {
        return 0;
    }
    uint32_t mask;
    int shift;
    int32_t *slots = fdtab_new_slots(t->len - t->holes, &mask, &shift);
    if (slots == NULL) {
        return -1;
    }
    int j = 0;
    for (int i = 0; i < t->len; i++) {
        if (t->ent[i].fd >= 0) {
            t->ent[j] = t->ent[i];
            if (t->tok) {
                t->tok[j] = t->tok[i];
            }
            j++;
        }
    }
    t->len = j;
    t->holes = 0;
    fdtab_fill(t, slots, mask, shift);
    return 0;
}

/* Append fd (which must not be present).  Returns its index or -1/errno. */
static inline int
fdtab_add(fs_fdtab *t, int fd, short events, uint64_t token)
{
    if (t->holes > 16 && t->holes > t->len / 2) {
        /* many unregistrations since the last poll: reclaim the space */
        if (fdtab_compact(t) < 0) {
            return -1;
        }
    }
    if (t->len == t->cap) {
        if (t->cap > (INT32_MAX - 16) / 2) {
            errno = ENOMEM;
            return -1;
        }
        int cap = t->cap ? t->cap * 2 : 8;
        struct pollfd *ent = realloc(t->ent, (size_t)cap * sizeof(*ent));
        if (ent == NULL) {
            errno = ENOMEM;
            return -1;
        }
        t->ent = ent;
        if (t->with_tokens) {
            uint64_t *tok = realloc(t->tok, (size_t)cap * sizeof(*tok));
            if (tok == NULL) {
                errno = ENOMEM;
                return -1;
            }
            t->tok = tok;
        }
        t->cap = cap;
    }
    if (t->slots == NULL || (uint32_t)(t->used + 1) * 2u > t->mask + 1u) {
        uint32_t mask;
        int shift;
        int32_t *slots = fdtab_new_slots(t->len - t->holes + 1, &mask, &shift);
        if (slots == NULL) {
            return -1;
        }
        fdtab_fill(t, slots, mask, shift);
    }
    int idx = t->len;
    t->ent[idx].fd = fd;
    t->ent[idx].events = events;
    t->ent[idx].revents = 0;
    if (t->tok) {
        t->tok[idx] = token;
    }
    t->len++;
    uint32_t j = fdtab_hash(t, fd);
    while (t->slots[j] >= 0) {
        j = (j + 1) & t->mask;
    }
    if (t->slots[j] == FDTAB_EMPTY) {
        t->used++;
    }
    t->slots[j] = idx;
    return idx;
}

/* Forget fd's entry (present at index idx). */
static inline void
fdtab_remove(fs_fdtab *t, int idx)
{
    int fd = t->ent[idx].fd;
    for (uint32_t i = fdtab_hash(t, fd);; i = (i + 1) & t->mask) {
        if (t->slots[i] == idx) {
            t->slots[i] = FDTAB_GONE;
            break;
        }
    }
    t->ent[idx].fd = -1;
    t->ent[idx].events = 0;
    t->holes++;
    if (t->holes == t->len) {
        /* empty again: restart cheaply */
        t->len = 0;
        t->holes = 0;
        memset(t->slots, 0xff, (t->mask + 1u) * sizeof(int32_t));
        t->used = 0;
    }
}

/* --- the state shared by the poll and select backends (backend.h) --------
 *
 * The selector calls add/modify/remove with the GIL held, possibly while
 * another thread sits in wait() without it.  So the registry is guarded by a
 * mutex, and wait() polls a private snapshot taken under that mutex: the
 * memory the kernel writes to is never resized or freed under it.
 */
#include <pthread.h>

#include "backend.h"

struct fs_backend {
    pthread_mutex_t lock;
    fs_fdtab tab;               /* the registrations (guarded by lock) */
    int dirty;                  /* tab changed since the last snapshot */
    /* the snapshot: touched by wait() only (the selector never runs two
     * waits at once) */
    struct pollfd *wfd;
    uint64_t *wtok;
    int wlen, wcap;
    unsigned long *bits;        /* select: interest bitmaps, read then write */
    size_t nwords;              /* longs per bitmap */
    size_t bitcap;              /* nwords that bits has room for */
    int maxfd;
};

static inline fs_backend *
fsb_open(void)
{
    fs_backend *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    int rc = pthread_mutex_init(&b->lock, NULL);
    if (rc != 0) {
        free(b);
        errno = rc;
        return NULL;
    }
    fdtab_init(&b->tab, 1);
    b->maxfd = -1;
    return b;
}

static inline void
fsb_free(fs_backend *b)
{
    if (b == NULL) {
        return;
    }
    fdtab_free(&b->tab);
    free(b->wfd);
    free(b->wtok);
    free(b->bits);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static inline int
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

static inline int
fsb_add(fs_backend *b, int fd, int events, uint64_t token)
{
    int rc = 0;
    if (fd < 0) {
        errno = EBADF;          /* -1 marks a hole in the table */
        return -1;
    }
    pthread_mutex_lock(&b->lock);
    if (fdtab_find(&b->tab, fd) >= 0) {
        errno = EEXIST;
        rc = -1;
    }
    else if (fdtab_add(&b->tab, fd, fsb_pollmask(events), token) < 0) {
        rc = -1;
    }
    else {
        b->dirty = 1;
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

static inline int
fsb_modify(fs_backend *b, int fd, int old_events, int events, uint64_t token)
{
    (void)old_events;
    int rc = 0;
    pthread_mutex_lock(&b->lock);
    int idx = fdtab_find(&b->tab, fd);
    if (idx < 0) {
        errno = ENOENT;
        rc = -1;
    }
    else {
        b->tab.ent[idx].events = fsb_pollmask(events);
        b->tab.tok[idx] = token;
        b->dirty = 1;
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

static inline int
fsb_remove(fs_backend *b, int fd, int old_events)
{
    (void)old_events;
    int rc = 0;
    pthread_mutex_lock(&b->lock);
    int idx = fdtab_find(&b->tab, fd);
    if (idx < 0) {
        errno = ENOENT;
        rc = -1;
    }
    else {
        fdtab_remove(&b->tab, idx);
        b->dirty = 1;
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* Copy the registrations into the snapshot (with the lock held).  0 or
 * -1/errno; on failure the previous snapshot stays intact and dirty. */
static inline int
fsb_snapshot_locked(fs_backend *b)
{
    if (fdtab_compact(&b->tab) < 0) {
        return -1;
    }
    int n = b->tab.len;
    if (n > b->wcap) {
        struct pollfd *wfd = malloc((size_t)n * sizeof(*wfd));
        uint64_t *wtok = malloc((size_t)n * sizeof(*wtok));
        if (wfd == NULL || wtok == NULL) {
            free(wfd);
            free(wtok);
            errno = ENOMEM;
            return -1;
        }
        free(b->wfd);
        free(b->wtok);
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

#endif /* FASTSEL_FDTAB_H */
