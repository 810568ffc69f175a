/* pyver.h - what differs between CPython versions: conversion rules and
 * texts (one row per version, chosen once at module exec) and the C API
 * switches that must be decided at compile time.
 *
 * Supporting a new CPython is one row in pyver.c (and, if its C API moved,
 * one switch below).  Nothing else in _fastsel tests PY_VERSION_HEX. */
#ifndef FASTSEL_PYVER_H
#define FASTSEL_PYVER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* --- compile time: the C API of the headers we build against ------------ */

/* 3.10: types can refuse instantiation and be immutable with a flag;
 * 3.9's select.poll type says so from tp_new instead. */
#if PY_VERSION_HEX >= 0x030A0000
#  define FS_PY_DISALLOW_INSTANTIATION \
    (Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE)
#else
#  define FS_PY_DISALLOW_INSTANTIATION 0
#  define FS_PY_POLL_TP_NEW 1
#endif

/* 3.12: the module slot that declares per-interpreter GIL support. */
#if PY_VERSION_HEX >= 0x030C0000
#  define FS_PY_HAVE_MULTIPLE_INTERPRETERS_SLOT 1
#endif

/* 3.13: PyErr_Format knows %T (a type's fully qualified name). */
#if PY_VERSION_HEX >= 0x030D0000
#  define FS_PY_HAVE_FORMAT_T 1
#endif

/* 3.10: Py_NewRef. */
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *
fs_py_newref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#  define Py_NewRef(o) fs_py_newref((PyObject *)(o))
#endif

/* 3.12: PyErr_GetRaisedException/SetRaisedException replace the
 * Fetch/Restore triple; shims here, so the code uses the new API only. */
#if PY_VERSION_HEX < 0x030C0000
static inline PyObject *
PyErr_GetRaisedException(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

static inline void
PyErr_SetRaisedException(PyObject *exc)
{
    if (exc == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *type = (PyObject *)Py_TYPE(exc);
    Py_INCREF(type);
    PyErr_Restore(type, exc, PyException_GetTraceback(exc));
}
#endif

/* 3.12: member types and flags in Python.h (Py_T_*, Py_READONLY); before,
 * structmember.h's T_* and READONLY. */
#if PY_VERSION_HEX < 0x030C0000
#  include <structmember.h>
#  define Py_T_PYSSIZET T_PYSSIZET
#  define Py_T_INT T_INT
#  define Py_T_UINT T_UINT
#  define Py_T_SHORT T_SHORT
#  define Py_T_USHORT T_USHORT
#  define Py_T_LONG T_LONG
#  define Py_T_ULONG T_ULONG
#  define Py_T_LONGLONG T_LONGLONG
#  define Py_T_ULONGLONG T_ULONGLONG
#  define Py_READONLY READONLY
#endif

/* 3.11: PyType_GetModuleByDef; 3.9 and 3.10 walk the MRO by hand. */
#if PY_VERSION_HEX < 0x030B0000
static inline PyObject *
PyType_GetModuleByDef(PyTypeObject *type, PyModuleDef *def)
{
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        PyObject *m = ((PyHeapTypeObject *)t)->ht_module;
        if (m != NULL && PyModule_GetDef(m) == def) {
            return m;
        }
    }
    PyErr_Format(PyExc_TypeError,
                 "PyType_GetModuleByDef: No superclass of '%s' has "
                 "the given module", type->tp_name);
    return NULL;
}
#endif

/* --- run time: one row per CPython version ------------------------------- */

/* How a timeout object becomes a number, and what a wrong type reads. */
typedef enum {
    FS_TIMEOUT_INT_OR_FLOAT,    /* int, __index__, float; each caller's */
    FS_TIMEOUT_REAL,            /* 3.15: also __float__; "real number" */
} fs_timeout_rule;

/* The "unsigned short" converter of poll.register()/modify(). */
typedef enum {
    FS_USHORT_LONG,             /* ints only; "value must be positive" */
    FS_USHORT_INDEX,            /* 3.14: __index__; "Cannot convert ..." */
} fs_ushort_rule;

typedef struct {
    int minor;                      /* 3.<minor>: first version of the row */
    /* OverflowError texts of the PyTime conversions */
    const char *time_int_overflow;      /* from an int */
    const char *time_float_overflow;    /* from a float; NULL: ask (3.11) */
    /* 3.9: int converters refuse floats with their own TypeError */
    int int_refuses_float;
    /* 3.10: a non-str keyword name is "keywords must be strings" */
    int kw_nonstr_error;
    /* 3.13: unknown keywords are "got an unexpected keyword argument"
     * with a "Did you mean" hint, not "'x' is an invalid keyword" */
    int kw_suggest;
    /* 3.10: argument errors of the selectors' Python methods name the
     * defining class ("Cls.meth()") */
    int qualified_names;
    /* 3.13: the poller's fd conversion warns "bool is used as a file
     * descriptor" (RuntimeWarning) for the key.fd a selector hands it */
    int bool_fd_warns;
    /* 3.13: selectors' _SelectorMapping defines get(fileobj, default)
     * itself; before, Mapping.get(key, default) answered */
    int map_own_get;
    fs_timeout_rule timeout_rule;
    fs_ushort_rule ushort_rule;
    /* 3.14: select exports EPOLLWAKEUP where the header defines it */
    int epollwakeup;
    /* 3.15: bitwise unsigned converters warn outside [signed min,
     * unsigned max] with DeprecationWarning "integer value out of range" */
    int bitwise_warn;
    /* 3.15: poll.poll() waits with ppoll() where it exists, so a timeout
     * is only limited by PyTime_t, not by a C int of milliseconds */
    int poll_ppoll;
    /* 3.15: epoll/kqueue close() raise OSError when close(2) fails */
    int close_raises;
} fs_pyver;

/* The running interpreter's row, set by fs_pyver_init() at module exec. */
extern const fs_pyver *fs_ver;

/* Choose the row (and ask the interpreter what a row leaves open).
 * Returns 0, or -1 with an exception set. */
int fs_pyver_init(void);

/* The float overflow text of the running version. */
const char *fs_pyver_float_overflow(void);

#endif /* FASTSEL_PYVER_H */
