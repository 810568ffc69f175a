/* sel_slots.c - the selector's key/slot table: fd-indexed slots (a far list
 * above SEL_DIRECT_MAX), the registration-order links, and the invariants a
 * FASTSEL_DEBUG build asserts. */
#include "selector.h"

#include <string.h>

#ifdef FS_DEBUG
int sel_direct_max = 1 << 20;
#endif

/* A free slot for fd, growing the tables; NULL with MemoryError. */
static sel_slot *
slot_make(sel_object *s, int fd)
{
    assert(fd >= 0 && slot_find(s, fd) == NULL);
    if (fd >= SEL_DIRECT_MAX) {
        if (s->nfar == s->farcap) {
            if (s->farcap > INT_MAX / 2) {
                PyErr_NoMemory();
                return NULL;
            }
            int ncap = s->farcap ? s->farcap * 2 : 4;
            sel_far *nf = PyMem_Realloc(s->far, (size_t)ncap * sizeof(*nf));
            if (nf == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            s->far = nf;
            s->farcap = ncap;
        }
        sel_far *f = &s->far[s->nfar++];
        memset(f, 0, sizeof(*f));
        f->fd = fd;
        return &f->slot;
    }
    if (fd >= s->cap) {
        /* grow by 1/8: amortised O(1), and the table stays within ~6 % of
         * one 24-byte slot per fd (the stdlib's dict costs ~37 bytes) */
        int ncap = s->cap + (s->cap >> 3);
        if (ncap < fd + 1) {
            ncap = fd + 1;
        }
        if (ncap < 16) {
            ncap = 16;
        }
        if (ncap > SEL_DIRECT_MAX) {
            ncap = SEL_DIRECT_MAX;
        }
        sel_slot *ns = PyMem_Realloc(s->slots, (size_t)ncap * sizeof(*ns));
        if (ns == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(ns + s->cap, 0, (size_t)(ncap - s->cap) * sizeof(*ns));
        s->slots = ns;
        s->cap = ncap;
    }
    return &s->slots[fd];
}

/* A linked neighbour: it must exist, or the links are broken. */
static inline sel_slot *
slot_linked(sel_object *s, int32_t fd)
{
    sel_slot *sl = slot_find(s, fd);
    assert(sl != NULL);
    return sl;
}

/* bool_warn_select's counts of bool fds read / written: d = +1 or -1 */
static inline void
slot_count_bool(sel_object *s, const sel_slot *sl, int d)
{
    if (sl->boolfd && s->kind->bool_warn_select) {
        s->nbool[0] += d * ((sl->events & FS_READ) != 0);
        s->nbool[1] += d * ((sl->events & FS_WRITE) != 0);
        assert(s->nbool[0] >= 0 && s->nbool[1] >= 0);
    }
}

static void
slot_link(sel_object *s, int fd, sel_slot *sl)
{
    assert(sl->obj != 0 && slot_find(s, fd) == sl);
    assert(sl->gen != 0 && sl->gen == s->next_gen);
    sl->prev = s->tail;
    sl->next = -1;
    if (s->tail >= 0) {
        slot_linked(s, s->tail)->next = fd;
    }
    else {
        assert(s->head < 0 && s->count == 0);
        s->head = fd;
    }
    s->tail = fd;
    s->count++;
    slot_count_bool(s, sl, 1);
    SEL_CHECK(s);
}

sel_slot *
slot_store(sel_object *s, int fd, PyObject *key, int events, int boolfd)
{
    sel_slot *sl = slot_make(s, fd);
    if (sl == NULL) {
        return NULL;
    }
    Py_INCREF(key);
    sl->obj = (uintptr_t)key;
    /* 0 is never a generation (it wraps after 2^32 registrations: by then
     * no event of the old registration is left to confuse) */
    if (++s->next_gen == 0) {
        s->next_gen = 1;
    }
    sl->gen = s->next_gen;
    sl->events = (uint8_t)events;
    sl->boolfd = (uint8_t)boolfd;
    slot_link(s, fd, sl);
    return sl;
}

PyObject *
slot_take(sel_object *s, int fd, sel_slot *sl)
{
    assert(s->count > 0 && sl->obj != 0 && slot_find(s, fd) == sl);
    PyObject *key = slot_key(sl);
    PyObject *res = slot_res(sl);
    if (sl->prev >= 0) {
        assert(slot_linked(s, sl->prev)->next == fd);
        slot_linked(s, sl->prev)->next = sl->next;
    }
    else {
        assert(s->head == fd);
        s->head = sl->next;
    }
    if (sl->next >= 0) {
        assert(slot_linked(s, sl->next)->prev == fd);
        slot_linked(s, sl->next)->prev = sl->prev;
    }
    else {
        assert(s->tail == fd);
        s->tail = sl->prev;
    }
    if (res != NULL) {
        Py_INCREF(key);         /* the tuple held it */
    }
    sl->obj = 0;
    slot_count_bool(s, sl, -1);
    if (fd >= SEL_DIRECT_MAX) {
        /* the far entry moves: sl is invalid after this */
        sel_far *f = slot_far(sl);
        assert(f >= s->far && f < s->far + s->nfar && f->fd == fd);
        *f = s->far[--s->nfar];
    }
    s->count--;
    SEL_CHECK(s);
    Py_XDECREF(res);
    return key;
}

void
slot_set_events(sel_object *s, sel_slot *sl, int events)
{
    slot_count_bool(s, sl, -1);
    sl->events = (uint8_t)events;
    slot_count_bool(s, sl, 1);
}

int
slot_put(sel_object *s, int fd, PyObject *key, int events)
{
    sel_slot *sl = slot_find(s, fd);
    if (sl == NULL) {
        return slot_store(s, fd, key, events,
                          PyBool_Check(PyTuple_GET_ITEM(key, 1))) ? 1 : -1;
    }
    slot_set_events(s, sl, events);
    PyObject *prev = slot_obj(sl);
    Py_INCREF(key);
    sl->obj = (uintptr_t)key;
    SEL_CHECK(s);
    Py_DECREF(prev);            /* may run code: the slot is consistent */
    return 0;
}

void
sel_forget_all(sel_object *s)
{
    /* Detach first, then release: releasing a key's data may run
     * arbitrary code that uses the selector. */
    SEL_CHECK(s);
    sel_slot *slots = s->slots;
    int cap = s->cap;
    sel_far *far = s->far;
    int nfar = s->nfar;
    s->slots = NULL;
    s->cap = 0;
    s->far = NULL;
    s->nfar = s->farcap = 0;
    s->count = 0;
    s->head = s->tail = -1;
    s->nbool[0] = s->nbool[1] = 0;
    for (int i = 0; i < cap; i++) {
        Py_XDECREF(slot_obj(&slots[i]));
    }
    for (int i = 0; i < nfar; i++) {
        Py_XDECREF(slot_obj(&far[i].slot));
    }
    PyMem_Free(slots);
    PyMem_Free(far);
}

#ifdef FS_DEBUG
/* The whole table when it is small (the walk is O(registered)); the O(1)
 * checks run at every change in any case. */
#define SEL_CHECK_MAX 64

void
sel_check_table(sel_object *s)
{
    assert(s->count >= 0 && s->nfar >= 0 && s->nfar <= s->farcap);
    assert(s->cap <= SEL_DIRECT_MAX);
    assert((s->head < 0) == (s->count == 0));
    assert((s->tail < 0) == (s->count == 0));
    if (s->count > SEL_CHECK_MAX) {
        return;
    }
    Py_ssize_t n = 0, direct = 0;
    int nbool[2] = {0, 0};
    int32_t prev = -1;
    for (int32_t fd = s->head; fd >= 0; n++) {
        assert(n < s->count);
        sel_slot *sl = slot_find(s, fd);
        assert(sl != NULL && sl->prev == prev);
        assert(sl->gen != 0);
        assert(slot_key(sl) != NULL);
        if (sl->boolfd && s->kind->bool_warn_select) {
            nbool[0] += (sl->events & FS_READ) != 0;
            nbool[1] += (sl->events & FS_WRITE) != 0;
        }
        prev = fd;
        fd = sl->next;
    }
    assert(n == s->count && prev == s->tail);
    assert(nbool[0] == s->nbool[0] && nbool[1] == s->nbool[1]);
    for (int i = 0; i < s->cap; i++) {
        direct += s->slots[i].obj != 0;
    }
    for (int i = 0; i < s->nfar; i++) {
        assert(s->far[i].fd >= SEL_DIRECT_MAX && s->far[i].slot.obj != 0);
    }
    assert(direct + s->nfar == s->count);
}
#endif
