/* select.c - select.select() without the FD_SETSIZE limit (the fd sets are
 * fdbits.h bitmaps sized to the highest fd). */
#include "fastsel.h"
#include "debug.h"
#include "fdbits.h"

#include <string.h>
#include <sys/select.h>

/* Stack room: fds below FD_SETSIZE and this many entries in all three lists
 * need no allocation. */
#define STACK_WORDS (FD_SETSIZE / FS_LONG_BITS)
#define STACK_ENTRIES 256

typedef struct {
    PyObject *obj;          /* owned: fileno() may mutate the list */
    int fd;
} sel_entry;

/* One select.select() call: its entries, fd sets and what the wait saw. */
typedef struct {
    sel_entry stack_entries[STACK_ENTRIES];
    unsigned long stack_bits[3 * STACK_WORDS];
    sel_entry *e;
    Py_ssize_t n, cap;
    Py_ssize_t bounds[4];           /* e[bounds[k]:bounds[k+1]]: list k */
    unsigned long *bits;
    unsigned long *sets[3];         /* NULL for an empty list */
    int maxfd;
    /* select(2) returned: the sets hold its answer.  The kernel only
     * rewrites the bits of fds within the process's fd table, and the
     * stdlib reports whatever it finds set (as fastsel must); when the time
     * ran out after EINTR the sets are as given, and ignored. */
    int returned;
} sel_call;

#define ENTRIES_MAX (PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(sel_entry))

/* Room for want entries.  0, or -1 with MemoryError. */
static int
resize_entries(sel_call *c, Py_ssize_t want)
{
    sel_entry *grown;
    if (want > ENTRIES_MAX) {
        grown = NULL;
    }
    else if (c->e == c->stack_entries) {
        grown = PyMem_Malloc((size_t)want * sizeof(sel_entry));
        if (grown != NULL) {
            memcpy(grown, c->e, (size_t)c->n * sizeof(sel_entry));
        }
    }
    else {
        grown = PyMem_Realloc(c->e, (size_t)want * sizeof(sel_entry));
    }
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    c->e = grown;
    c->cap = want;
    return 0;
}

/* Read the three sequences into entries (fileno() called once each).
 * 0, or -1 with an exception. */
static int
collect(sel_call *c, PyObject *const *lists)
{
    /* size the entry buffer once when the lists' lengths are known */
    Py_ssize_t want = 0;
    for (int k = 0; k < 3; k++) {
        if (PyList_CheckExact(lists[k])) {
            want += PyList_GET_SIZE(lists[k]);
        }
        else if (PyTuple_CheckExact(lists[k])) {
            want += PyTuple_GET_SIZE(lists[k]);
        }
    }
    if (want > STACK_ENTRIES && want <= ENTRIES_MAX / 2
        && resize_entries(c, want) < 0) {
        return -1;
    }
    for (int k = 0; k < 3; k++) {
        PyObject *seq = PySequence_Fast(lists[k],
                                        "arguments 1-3 must be sequences");
        if (seq == NULL) {
            return -1;
        }
        /* the size is re-read each step: fileno() may shrink a list */
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            PyObject *o = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
            int fd = fs_fileno(o);
            if (fd < 0 || (c->n == c->cap
                           && resize_entries(c, c->cap * 2) < 0)) {
                Py_DECREF(o);
                Py_DECREF(seq);
                return -1;
            }
            c->e[c->n].obj = o;
            c->e[c->n].fd = fd;
            c->n++;
            if (fd > c->maxfd) {
                c->maxfd = fd;
            }
        }
        Py_DECREF(seq);
        c->bounds[k + 1] = c->n;
    }
    return 0;
}

/* The fd sets of the entries.  0, or -1 with an exception. */
static int
build_sets(sel_call *c)
{
    size_t nwords = c->maxfd < 0 ? 0 : (size_t)c->maxfd / FS_LONG_BITS + 1;
    if (nwords > STACK_WORDS) {
        /* select(2) ignores fds past the process's fd table instead of
         * failing; report a closed highest fd as it does a closed low one,
         * which also bounds the bitmaps by the fd table's size */
        if (!fs_fd_is_open(c->maxfd)) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        c->bits = PyMem_Malloc(3 * nwords * sizeof(unsigned long));
        if (c->bits == NULL) {
            c->bits = c->stack_bits;
            PyErr_NoMemory();
            return -1;
        }
    }
    for (int k = 0; k < 3; k++) {
        if (c->bounds[k + 1] == c->bounds[k]) {
            continue;           /* an empty list: no set at all */
        }
        c->sets[k] = c->bits + k * nwords;
        memset(c->sets[k], 0, nwords * sizeof(unsigned long));
        for (Py_ssize_t i = c->bounds[k]; i < c->bounds[k + 1]; i++) {
            fs_bit_set(c->sets[k], c->e[i].fd);
        }
    }
    return 0;
}

/* fs_wait_fn: one select(2) on the call's sets.  No GIL. */
static int
select_once(void *ctx, int64_t timeout_ns)
{
    sel_call *c = ctx;
    struct timeval tv, *tvp = fs_timeval(timeout_ns, &tv);
    FS_DEBUG_SYSCALL(FS_SYS_SELECT);
    int n = select(c->maxfd + 1, (fd_set *)c->sets[0], (fd_set *)c->sets[1],
                   (fd_set *)c->sets[2], tvp);
    if (n >= 0) {
        c->returned = 1;
    }
    return n;
}

/* The (rlist, wlist, xlist) result tuple: the objects whose fds the
 * answer has set, in the order given. */
static PyObject *
results(const sel_call *c)
{
    PyObject *ret = PyTuple_New(3);
    for (int k = 0; ret != NULL && k < 3; k++) {
        const unsigned long *set = c->sets[k];
        Py_ssize_t lo = c->bounds[k], hi = c->bounds[k + 1], count = 0;
        if (c->returned && set != NULL) {
            for (Py_ssize_t i = lo; i < hi; i++) {
                count += fs_bit_isset(set, c->e[i].fd);
            }
        }
        PyObject *list = PyList_New(count);
        if (list == NULL) {
            Py_CLEAR(ret);
            break;
        }
        for (Py_ssize_t i = lo, j = 0; j < count; i++) {
            if (fs_bit_isset(set, c->e[i].fd)) {
                PyList_SET_ITEM(list, j, Py_NewRef(c->e[i].obj));
                j++;
            }
        }
        PyTuple_SET_ITEM(ret, k, list);
    }
    return ret;
}

static PyObject *
fs_select(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    (void)module;
    int64_t timeout;
    PyObject *ret = NULL;

    if (fs_no_kwargs(kwnames, "select.select") < 0
        || fs_check_positional("select", nargs, 3, 4) < 0) {
        return NULL;
    }
    /* the timeout is parsed before the lists, as the stdlib does */
    if (fs_timeout_arg(nargs == 4 ? args[3] : Py_None, &fs_select_timeout,
                       &timeout) < 0) {
        return NULL;
    }
    sel_call c;
    c.e = c.stack_entries;
    c.n = 0;
    c.cap = STACK_ENTRIES;
    memset(c.bounds, 0, sizeof(c.bounds));
    c.bits = c.stack_bits;
    c.sets[0] = c.sets[1] = c.sets[2] = NULL;
    c.maxfd = -1;
    c.returned = 0;
    if (collect(&c, args) == 0 && build_sets(&c) == 0
        && fs_wait_retry(select_once, &c, timeout, 0, NULL) >= 0) {
        ret = results(&c);
    }
    for (Py_ssize_t i = 0; i < c.n; i++) {
        Py_DECREF(c.e[i].obj);
    }
    if (c.e != c.stack_entries) {
        PyMem_Free(c.e);
    }
    if (c.bits != c.stack_bits) {
        PyMem_Free(c.bits);
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
