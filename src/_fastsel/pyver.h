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

/* --- run time: one row per CPython version ------------------------------- */

/* How a timeout object becomes a number. */
typedef enum {
    /* int (or __index__) and float only; a wrong type is reported by each
     * caller with its own text ("timeout must be a float or None", ...) */
    FS_TIMEOUT_INT_OR_FLOAT,
    /* 3.15: also anything with __float__; a wrong type is
     * "timeout must be a real number or None, not <type>" everywhere */
    FS_TIMEOUT_REAL,
} fs_timeout_rule;

/* The "unsigned short" converter of poll.register()/modify(). */
typedef enum {
    /* exact int subclasses only: "an integer is required",
     * "value must be positive", unsigned long's overflow text past it */
    FS_USHORT_LONG,
    /* 3.14: __index__ accepted; "Cannot convert negative int",
     * "Python int too large for C unsigned short" */
    FS_USHORT_INDEX,
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
