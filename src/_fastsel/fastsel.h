/* fastsel.h - what every translation unit of _fastsel shares: the module
 * state, and the setup hook each object file exports. */
#ifndef FASTSEL_H
#define FASTSEL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "backend.h"            /* FS_HAVE_*: the mechanisms this build has */
#include "pyver.h"              /* fs_ver: what differs between versions */
#include "args.h"               /* argument binding and conversion */
#include "timeout.h"            /* timeouts, deadlines, the EINTR loop */

/* The selector classes: one row each in sel_kinds.c. */
#define FS_SELECTOR_KINDS 4

/* Per-module state (PEP 489/573).  Objects keep a borrowed pointer to it:
 * their heap type owns the module, so the state outlives every instance. */
typedef struct {
    PyTypeObject *poll_type;
    PyObject *str_fileno;           /* interned "fileno" */
    PyTypeObject *kqueue_type;      /* NULL unless FS_HAVE_KQUEUE */
    PyTypeObject *kevent_type;
    PyTypeObject *epoll_type;       /* NULL off Linux */
    /* selector.c and sel_*.c */
    PyObject *selector_key_type;    /* the stdlib's selectors.SelectorKey */
    PyTypeObject *selector_base_type;
    PyTypeObject *selector_types[FS_SELECTOR_KINDS];  /* sel_kinds.c */
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

/* --- module.c ------------------------------------------------------------ */

/* The module's definition: its types find their module state through it. */
extern struct PyModuleDef fs_module_def;

/* One int constant of the module. */
typedef struct {
    const char *name;
    long value;
} fs_int_const;
/* Add the n constants of table to the module; -1 on error. */
int fs_add_ints(PyObject *module, const fs_int_const *table, size_t n);
/* PyModule_AddObjectRef for 3.9 too: does not steal; -1 on error. */
int fs_add_object(PyObject *module, const char *name, PyObject *value);
/* The exception of a failed kernel call or backend operation with errno
 * err: MemoryError for FS_ENOMEM (backend.h), else OSError. */
void fs_errno_error(int err);
/* The close() method of a poller object over *fd: close(2) without the
 * GIL if *fd >= 0, leaving -1.  None, or NULL with the version's error. */
PyObject *fs_close_fd(int *fd);
/* ValueError "I/O operation on closed <kind> object"; returns NULL. */
PyObject *fs_closed_error(const char *kind);

/* --- poll.c ------------------------------------------------------------- */

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
