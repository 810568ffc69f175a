/* select.c - select.select() without the FD_SETSIZE limit, and the select(2)
 * backend of the selectors.
 *
 * The fd sets are bitmaps of longs sized to the highest fd (the layout of
 * fd_set), filled by hand: FD_SET/FD_ISSET on fds >= FD_SETSIZE abort under
 * _FORTIFY_SOURCE, and select(2) itself only reads nfds bits.
 */
#include "fastsel.h"
#include "debug.h"
#include "fdtab.h"

#include <limits.h>
#include <sys/select.h>
#include <unistd.h>

#define LONG_BITS ((int)(sizeof(unsigned long) * CHAR_BIT))
/* Stack room: fds below FD_SETSIZE and this many entries in all three lists
 * need no allocation. */
#define STACK_WORDS (FD_SETSIZE / LONG_BITS)

/* 0 with errno EBADF when fd is not open.  dup2(fd, fd) checks without side
 * effects; fcntl() would tie the wheel to glibc 2.28's fcntl64. */
static inline int
fd_is_open(int fd)
{
    return dup2(fd, fd) == fd || errno != EBADF;
}
#define STACK_ENTRIES 256

typedef struct {
    PyObject *obj;          /* strong reference: fileno() may mutate the list */
    int fd;
} sel_entry;

static inline void
bit_set(unsigned long *set, int fd)
{
    set[fd / LONG_BITS] |= 1UL << (fd % LONG_BITS);
}

static inline int
bit_isset(const unsigned long *set, int fd)
{
    return (set[fd / LONG_BITS] >> (fd % LONG_BITS)) & 1;
}

static PyObject *
result_list(const sel_entry *e, Py_ssize_t lo, Py_ssize_t hi,
            const unsigned long *set, int scan)
{
    Py_ssize_t count = 0;
    if (scan && set != NULL) {
        for (Py_ssize_t i = lo; i < hi; i++) {
            count += bit_isset(set, e[i].fd);
        }
    }
    PyObject *list = PyList_New(count);
    if (list == NULL || count == 0) {
        return list;
    }
    Py_ssize_t j = 0;
    for (Py_ssize_t i = lo; i < hi; i++) {
        if (bit_isset(set, e[i].fd)) {
            Py_INCREF(e[i].obj);
            PyList_SET_ITEM(list, j, e[i].obj);
            j++;
        }
    }
    return list;
}

static PyObject *
fs_select(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    (void)module;
    sel_entry stack_entries[STACK_ENTRIES];
    unsigned long stack_bits[3 * STACK_WORDS];
    sel_entry *e = stack_entries;
    Py_ssize_t n = 0, cap = STACK_ENTRIES;
    Py_ssize_t bounds[4] = {0, 0, 0, 0};
    unsigned long *bits = stack_bits;
    unsigned long *sets[3] = {NULL, NULL, NULL};
    struct timeval tv, *tvp = NULL;
    int64_t timeout = 0, deadline = 0;
    int maxfd = -1, ready = 0, err = 0;
    /* Read the sets back whenever select(2) returned, even with 0: the
     * kernel only rewrites the bits of fds within the process's fd table,
     * and the stdlib reports whatever it finds set (as fastsel must). */
    int scan = 1;
    PyObject *ret = NULL;

    if (fs_no_kwargs(kwnames, "select.select") < 0
        || fs_check_positional("select", nargs, 3, 4) < 0) {
        return NULL;
    }
    /* the timeout is parsed before the lists, as the stdlib does */
    if (nargs == 4 && args[3] != Py_None) {
        if (fs_ns_from_seconds_object(args[3], FS_ROUND_UP, &timeout) < 0) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                fs_timeout_type_error(args[3],
                                      "timeout must be a float or None");
            }
            return NULL;
        }
        /* rounded away from zero to us, any negative has tv_sec < 0 */
        if (timeout < 0) {
            PyErr_SetString(PyExc_ValueError, "timeout must be non-negative");
            return NULL;
        }
        int64_t us = fs_ns_divide(timeout, 1000, FS_ROUND_UP);
        tv.tv_sec = (time_t)(us / 1000000);
        tv.tv_usec = (suseconds_t)(us % 1000000);
        tvp = &tv;
    }

    /* size the entry buffer once when the lists' lengths are known */
    Py_ssize_t want = 0;
    for (int k = 0; k < 3; k++) {
        if (PyList_CheckExact(args[k])) {
            want += PyList_GET_SIZE(args[k]);
        }
        else if (PyTuple_CheckExact(args[k])) {
            want += PyTuple_GET_SIZE(args[k]);
        }
    }
    if (want > STACK_ENTRIES
        && want <= PY_SSIZE_T_MAX / 2 / (Py_ssize_t)sizeof(sel_entry)) {
        e = PyMem_Malloc((size_t)want * sizeof(sel_entry));
        if (e == NULL) {
            return PyErr_NoMemory();
        }
        cap = want;
    }

    for (int k = 0; k < 3; k++) {
        PyObject *seq = PySequence_Fast(args[k],
                                        "arguments 1-3 must be sequences");
        if (seq == NULL) {
            goto finally;
        }
        /* the size is re-read each step: fileno() may shrink a list */
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
            Py_INCREF(o);
            int fd = fs_fileno(o);
            if (fd < 0) {
                Py_DECREF(o);
                Py_DECREF(seq);
                goto finally;
            }
            if (n == cap) {
                sel_entry *grown;
                if (cap > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)sizeof(sel_entry)) {
                    grown = NULL;
                }
                else if (e == stack_entries) {
                    grown = PyMem_Malloc((size_t)cap * 2 * sizeof(sel_entry));
                    if (grown != NULL) {
                        memcpy(grown, e, (size_t)n * sizeof(sel_entry));
                    }
                }
                else {
                    grown = PyMem_Realloc(e, (size_t)cap * 2 * sizeof(sel_entry));
                }
                if (grown == NULL) {
                    Py_DECREF(o);
                    Py_DECREF(seq);
                    PyErr_NoMemory();
                    goto finally;
                }
                e = grown;
                cap *= 2;
            }
            e[n].obj = o;
            e[n].fd = fd;
            n++;
            if (fd > maxfd) {
                maxfd = fd;
            }
        }
        Py_DECREF(seq);
        bounds[k + 1] = n;
    }

    size_t nwords = maxfd < 0 ? 0 : (size_t)maxfd / LONG_BITS + 1;
    if (nwords > STACK_WORDS) {
        /* select(2) ignores fds past the process's fd table instead of
         * failing; report a closed highest fd as it does a closed low one,
         * which also bounds the bitmaps by the fd table's size */
        if (!fd_is_open(maxfd)) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto finally;
        }
        bits = PyMem_Malloc(3 * nwords * sizeof(unsigned long));
        if (bits == NULL) {
            PyErr_NoMemory();
            goto finally;
        }
    }
    for (int k = 0; k < 3; k++) {
        if (bounds[k + 1] == bounds[k]) {
            continue;           /* an empty list: no set at all */
        }
        sets[k] = bits + k * nwords;
        memset(sets[k], 0, nwords * sizeof(unsigned long));
        for (Py_ssize_t i = bounds[k]; i < bounds[k + 1]; i++) {
            bit_set(sets[k], e[i].fd);
        }
    }

    if (timeout > 0) {
        deadline = fs_monotonic_ns() + timeout;
    }
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        FS_DEBUG_SYSCALL(FS_SYS_SELECT);
        ready = select(maxfd + 1, (fd_set *)sets[0], (fd_set *)sets[1],
                       (fd_set *)sets[2], tvp);
        err = errno;
        Py_END_ALLOW_THREADS
        if (ready >= 0 || err != EINTR) {
            break;
        }
        /* PEP 475: run the handlers, then wait for what is left */
        if (PyErr_CheckSignals() < 0) {
            goto finally;
        }
        if (tvp != NULL) {
            /* timeout 0 has no deadline: it is past as soon as it is read */
            int64_t left = timeout == 0 ? -1 : deadline - fs_monotonic_ns();
            if (left < 0) {
                ready = 0;
                scan = 0;       /* the sets were left as given: ignore them */
                break;
            }
            int64_t us = fs_ns_divide(left, 1000, FS_ROUND_CEILING);
            tv.tv_sec = (time_t)(us / 1000000);
            tv.tv_usec = (suseconds_t)(us % 1000000);
        }
    }
    if (ready < 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto finally;
    }

    ret = PyTuple_New(3);
    if (ret == NULL) {
        goto finally;
    }
    for (int k = 0; k < 3; k++) {
        PyObject *list = result_list(e, bounds[k], bounds[k + 1], sets[k],
                                     scan);
        if (list == NULL) {
            Py_CLEAR(ret);
            goto finally;
        }
        PyTuple_SET_ITEM(ret, k, list);
    }

finally:
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(e[i].obj);
    }
    if (e != stack_entries) {
        PyMem_Free(e);
    }
    if (bits != stack_bits) {
        PyMem_Free(bits);
    }
    return ret;
}

PyDoc_STRVAR(fs_select_doc,
"select($module, rlist, wlist, xlist, timeout=None, /)\n--\n\n"
"Block until some of the given file descriptors can be read from (rlist),\n"
"written to (wlist) or have an exceptional condition (xlist).\n\n"
"Each list is any iterable of ints or of objects with a fileno() method.\n"
"timeout is in seconds (int or float); None waits with no limit and 0\n"
"only checks.  Returns three new lists with the ready objects themselves,\n"
"in the order given.\n\n"
"Unlike the stdlib's, file descriptors are not limited to FD_SETSIZE.");

static PyMethodDef select_functions[] = {
    {"select", (PyCFunction)(void (*)(void))fs_select,
     METH_FASTCALL | METH_KEYWORDS, fs_select_doc},
    {NULL, NULL, 0, NULL},
};

int
fs_select_setup(PyObject *module, fs_state *st)
{
    (void)st;
    return PyModule_AddFunctions(module, select_functions);
}

/* --- the select(2) backend (backend.h) ---------------------------------- */

static int
cmp_fd(const void *a, const void *b)
{
    int x = ((const struct pollfd *)a)->fd, y = ((const struct pollfd *)b)->fd;
    return (x > y) - (x < y);
}

/* Snapshot the registrations sorted by fd (results come out in fd order)
 * with their interest bitmaps.  Lock held. */
static int
selectb_snapshot_locked(fs_backend *b)
{
    if (fsb_snapshot_locked(b) < 0) {
        return -1;
    }
    int n = b->wlen, maxfd = -1;
    if (n > 1) {
        /* tokens must follow their fds: sort (pollfd, token) pairs */
        struct pair {
            struct pollfd p;
            uint64_t tok;
        } *tmp = malloc((size_t)n * sizeof(*tmp));
        if (tmp == NULL) {
            b->dirty = 1;
            errno = ENOMEM;
            return -1;
        }
        for (int i = 0; i < n; i++) {
            tmp[i].p = b->wfd[i];
            tmp[i].tok = b->wtok[i];
        }
        qsort(tmp, (size_t)n, sizeof(*tmp), cmp_fd);
        for (int i = 0; i < n; i++) {
            b->wfd[i] = tmp[i].p;
            b->wtok[i] = tmp[i].tok;
        }
        free(tmp);
    }
    if (n > 0) {
        maxfd = b->wfd[n - 1].fd;
        if (maxfd >= FD_SETSIZE && !fd_is_open(maxfd)) {
            /* as select.select(): select(2) would silently ignore it */
            b->dirty = 1;
            return -1;
        }
    }
    size_t nwords = maxfd < 0 ? 0 : (size_t)maxfd / LONG_BITS + 1;
    /* room for the interest sets and the two working copies */
    if (nwords > b->bitcap || b->bits == NULL) {
        unsigned long *bits = malloc((4 * nwords + 1) * sizeof(unsigned long));
        if (bits == NULL) {
            b->dirty = 1;
            errno = ENOMEM;
            return -1;
        }
        free(b->bits);
        b->bits = bits;
        b->bitcap = nwords;
    }
    b->nwords = nwords;
    b->maxfd = maxfd;
    memset(b->bits, 0, 2 * nwords * sizeof(unsigned long));
    for (int i = 0; i < n; i++) {
        if (b->wfd[i].events & POLLIN) {
            bit_set(b->bits, b->wfd[i].fd);
        }
        if (b->wfd[i].events & POLLOUT) {
            bit_set(b->bits + nwords, b->wfd[i].fd);
        }
    }
    return 0;
}

static int
selectb_wait(fs_backend *b, int64_t timeout_ns, fs_event *out, int max)
{
    struct timeval tv, *tvp = NULL;
    if (timeout_ns >= 0) {
        int64_t us = fs_ns_divide(timeout_ns, 1000, FS_ROUND_CEILING);
        tv.tv_sec = (time_t)(us / 1000000);
        tv.tv_usec = (suseconds_t)(us % 1000000);
        tvp = &tv;
    }
    pthread_mutex_lock(&b->lock);
    int rc = b->dirty ? selectb_snapshot_locked(b) : 0;
    pthread_mutex_unlock(&b->lock);
    if (rc < 0) {
        return -1;
    }
    size_t nw = b->nwords;
    unsigned long *r = b->bits + 2 * nw, *w = b->bits + 3 * nw;
    if (nw > 0) {
        memcpy(r, b->bits, 2 * nw * sizeof(unsigned long));
    }
    FS_DEBUG_SYSCALL(FS_SYS_SELECT);
    int n = select(b->maxfd + 1, nw ? (fd_set *)r : NULL,
                   nw ? (fd_set *)w : NULL, NULL, tvp);
    if (n <= 0) {
        return n;
    }
    int k = 0;
    for (int i = 0; i < b->wlen && k < max; i++) {
        int fd = b->wfd[i].fd;
        int ev = (bit_isset(r, fd) ? FS_READ : 0)
                 | (bit_isset(w, fd) ? FS_WRITE : 0);
        if (ev) {
            out[k].token = b->wtok[i];
            out[k].events = ev;
            k++;
        }
    }
    return k;
}

const fs_backend_ops fs_select_backend = {
    .name = "select",
    .open = fsb_open,
    .free = fsb_free,
    .fileno = fsb_fileno,
    .add = fsb_add,
    .modify = fsb_modify,
    .remove = fsb_remove,
    .wait = selectb_wait,
};
