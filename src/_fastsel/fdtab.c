/* fdtab.c - the fd registry of fdtab.h: growth, removal, compaction. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "fdtab.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

void
fdtab_init(fs_fdtab *t)
{
    memset(t, 0, sizeof(*t));
}

void
fdtab_free(fs_fdtab *t)
{
    PyMem_RawFree(t->ent);
    PyMem_RawFree(t->tok);
    PyMem_RawFree(t->slots);
    fdtab_init(t);
}

/* Enter ent[idx] into the hash at the first free slot (empty or a
 * tombstone) of its probe sequence. */
static void
insert(fs_fdtab *t, int idx)
{
    uint32_t j = fdtab_hash(t, t->ent[idx].fd);
    while (t->slots[j] >= 0) {
        j = (j + 1) & t->mask;
    }
    if (t->slots[j] == FDTAB_EMPTY) {
        t->used++;
    }
    t->slots[j] = idx;
}

/* A new hash with room for `need` live entries, indexing them after the
 * holes were squeezed out when `squeeze`.  0, or -1/ENOMEM with the table
 * unchanged (the hash is allocated before anything moves). */
static int
rehash(fs_fdtab *t, int need, int squeeze)
{
    uint32_t n = 8;
    int bits = 3;
    while (n < (uint32_t)need * 2u + 2u) {
        if (bits >= 30) {
            errno = ENOMEM;
            return -1;
        }
        n <<= 1;
        bits++;
    }
    int32_t *slots = PyMem_RawMalloc(n * sizeof(int32_t));
    if (slots == NULL) {
        errno = ENOMEM;
        return -1;
    }
    memset(slots, 0xff, n * sizeof(int32_t));   /* all FDTAB_EMPTY */
    if (squeeze) {
        int j = 0;
        for (int i = 0; i < t->len; i++) {
            if (t->ent[i].fd >= 0) {
                t->ent[j] = t->ent[i];
                t->tok[j] = t->tok[i];
                j++;
            }
        }
        assert(j == t->len - t->holes);
        t->len = j;
        t->holes = 0;
    }
    PyMem_RawFree(t->slots);
    t->slots = slots;
    t->mask = n - 1;
    t->shift = 32 - bits;
    t->used = 0;
    for (int i = 0; i < t->len; i++) {
        if (t->ent[i].fd >= 0) {
            insert(t, i);
        }
    }
    return 0;
}

int
fdtab_compact(fs_fdtab *t)
{
    return t->holes == 0 ? 0 : rehash(t, t->len - t->holes, 1);
}

/* Room for one more entry at ent[len]; 0 or -1/ENOMEM, table unchanged. */
static int
reserve(fs_fdtab *t)
{
    if (t->len < t->cap) {
        return 0;
    }
    if (t->cap > (INT32_MAX - 16) / 2) {
        errno = ENOMEM;
        return -1;
    }
    int cap = t->cap ? t->cap * 2 : 8;
    struct pollfd *ent = PyMem_RawRealloc(t->ent, (size_t)cap * sizeof(*ent));
    if (ent == NULL) {
        errno = ENOMEM;
        return -1;
    }
    t->ent = ent;
    uint64_t *tok = PyMem_RawRealloc(t->tok, (size_t)cap * sizeof(*tok));
    if (tok == NULL) {
        /* ent only got bigger: cap stays, so nothing is inconsistent */
        errno = ENOMEM;
        return -1;
    }
    t->tok = tok;
    t->cap = cap;
    return 0;
}

int
fdtab_add(fs_fdtab *t, int fd, short events, uint64_t token)
{
    assert(fd >= 0 && fdtab_find(t, fd) < 0);
    if (t->holes > 16 && t->holes > t->len / 2) {
        /* many unregistrations since the last poll: reclaim the space */
        if (fdtab_compact(t) < 0) {
            return -1;
        }
    }
    if (reserve(t) < 0) {
        return -1;
    }
    if ((t->slots == NULL || (uint32_t)(t->used + 1) * 2u > t->mask + 1u)
        && rehash(t, t->len - t->holes + 1, 0) < 0) {
        return -1;
    }
    int idx = t->len;
    t->ent[idx].fd = fd;
    t->ent[idx].events = events;
    t->ent[idx].revents = 0;
    t->tok[idx] = token;
    t->len++;
    insert(t, idx);
    return idx;
}

void
fdtab_remove(fs_fdtab *t, int idx)
{
    assert(idx >= 0 && idx < t->len && t->ent[idx].fd >= 0);
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
