/* fastsel.h - what every translation unit of _fastsel shares: module state,
 * fd and timeout conversion, and the setup hook each object file exports. */
#ifndef FASTSEL_H
#define FASTSEL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "backend.h"            /* FS_HAVE_*: the mechanisms this build has */
#include "pyver.h"              /* fs_ver: what differs between versions */

/* Per-module state (PEP 489/573).  Objects keep a borrowed pointer to it:
 * their heap type owns the module, so the state outlives every instance. */
typedef struct {
    PyTypeObject *poll_type;
    PyObject *str_fileno;           /* interned "fileno" */
    PyTypeObject *kqueue_type;      /* NULL unless FS_HAVE_KQUEUE */
    PyTypeObject *kevent_type;
    PyTypeObject *epoll_type;       /* NULL off Linux */
    /* selector.c */
    PyObject *selector_key_type;    /* the stdlib's selectors.SelectorKey */
    PyTypeObject *selector_base_type;
    PyTypeObject *selector_types[4];    /* Epoll, Poll, Select, Kqueue */
    PyTypeObject *selmap_base_type;
    PyObject *selmap_type;          /* its Python subclass with Mapping */
    PyTypeObject *selmap_iter_type;
    PyObject *str_selector_cls;     /* interned "_selector_cls" */
} fs_state;

static inline fs_state *
fs_get_state(PyObject *module)
{
    return (fs_state *)PyModule_GetState(module);
}

/* --- util.c ------------------------------------------------------------- */

/* The stdlib's fd conversion (PyObject_AsFileDescriptor) with an exact-int
 * fast path.  Returns the fd, or -1 with an exception set. */
int fs_fileno(PyObject *obj);

/* Argument Clinic's `int` converter (_PyLong_AsInt) with the running
 * version's texts.  Returns 0, or -1 with an exception set. */
int fs_as_int(PyObject *obj, int *out);

/* Argument Clinic's unsigned_int(bitwise=True): any int modulo 2**32, with
 * the running version's warning for values outside [INT_MIN, UINT_MAX].
 * Returns 0, or -1 with an exception set. */
int fs_as_uint_mask(PyObject *obj, unsigned int *out);

/* Argument Clinic's unsigned_short (_PyLong_UnsignedShort_Converter) with
 * the running version's rules and texts.  0, or -1 with an exception. */
int fs_as_ushort(PyObject *obj, unsigned short *out);

/* 1 if the int v lies in [min, max], else 0.  Never raises. */
int fs_long_in_range(PyObject *v, long long min, unsigned long long max);

/* Replace a TypeError from fs_ns_from_*_object() with the running
 * version's text: `legacy` up to 3.14 (each caller has its own), the
 * shared "timeout must be a real number or None, not <type>" after. */
void fs_timeout_type_error(PyObject *obj, const char *legacy);

/* The same for kqueue.control(), whose rule differs: up to 3.14 every
 * conversion failure becomes "timeout argument must be a number or None,
 * got <name>"; 3.15 rewrites only a TypeError, as fs_timeout_type_error. */
void fs_kqueue_timeout_error(PyObject *obj);

/* Argument Clinic's checks for positional-only functions, with its texts.
 * Each returns 0, or -1 with TypeError set. */
static inline int
fs_no_kwargs(PyObject *kwnames, const char *funcname)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments",
                     funcname);
        return -1;
    }
    return 0;
}

/* _PyArg_CheckPositional */
static inline int
fs_check_positional(const char *name, Py_ssize_t nargs, Py_ssize_t min,
                    Py_ssize_t max)
{
    if (nargs < min || nargs > max) {
        Py_ssize_t n = nargs < min ? min : max;
        PyErr_Format(PyExc_TypeError, "%s expected %s%zd argument%s, got %zd",
                     name, min == max ? "" : nargs < min ? "at least "
                     : "at most ", n, n == 1 ? "" : "s", nargs);
        return -1;
    }
    return 0;
}

/* The keyword CPython 3.13+ would suggest ("Did you mean ...?") for the
 * unknown keyword `key` among `names`, or NULL.  Never raises. */
const char *fs_suggest_keyword(const char *const *names, int n,
                               PyObject *key);

/* Timeouts are carried as signed nanoseconds, as CPython's _PyTime_t is.
 * Rounding modes match CPython's _PyTime_round_t. */
typedef enum {
    FS_ROUND_FLOOR,
    FS_ROUND_CEILING,
    FS_ROUND_HALF_EVEN,
    FS_ROUND_UP,              /* away from zero: CPython's ROUND_TIMEOUT */
} fs_round_t;

/* Convert seconds (int or float; 3.15: anything with __float__) to
 * nanoseconds like _PyTime_FromSecondsObject, with the same exceptions and
 * texts for the running CPython version. */
int fs_ns_from_seconds_object(PyObject *obj, fs_round_t round, int64_t *ns);
/* Same for milliseconds (_PyTime_FromMillisecondsObject). */
int fs_ns_from_ms_object(PyObject *obj, fs_round_t round, int64_t *ns);
/* Divide nanoseconds by unit with the given rounding (as _PyTime_AsMilliseconds). */
int64_t fs_ns_divide(int64_t ns, int64_t unit, fs_round_t round);
/* CLOCK_MONOTONIC in nanoseconds. */
int64_t fs_monotonic_ns(void);

/* Add an int constant to the module; -1 on error. */
int fs_add_int(PyObject *module, const char *name, long value);
/* PyModule_AddObjectRef for 3.9 too: does not steal; -1 on error. */
int fs_add_object(PyObject *module, const char *name, PyObject *value);

/* --- poll.c --------------------------------------------------------------- */

/* 1 where poll.poll() takes any PyTime_t timeout (3.15 with ppoll(): no
 * "timeout is too large" past a C int of milliseconds), else 0. */
int fs_poll_timeout_unbounded(void);

/* --- per-file setup hooks, called from the module's exec slot ------------ */
int fs_select_setup(PyObject *module, fs_state *st);
int fs_poll_setup(PyObject *module, fs_state *st);
int fs_selector_setup(PyObject *module, fs_state *st);
int fs_selector_traverse(fs_state *st, visitproc visit, void *arg);
void fs_selector_clear(fs_state *st);
#ifdef FS_HAVE_KQUEUE
int fs_kqueue_setup(PyObject *module, fs_state *st);
#endif
#ifdef __linux__
int fs_epoll_setup(PyObject *module, fs_state *st);
#endif

#endif /* FASTSEL_H */
