/* args.h - the one home of argument binding and conversion: every binder
 * and converter of _fastsel, with the running CPython's error texts. */
#ifndef FASTSEL_ARGS_H
#define FASTSEL_ARGS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* ---- converters (Argument Clinic's, and PyObject_AsFileDescriptor) ----- */

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

/* ---- binders ------------------------------------------------------------ */

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

/* A positional-or-keyword signature of a C function (Argument Clinic). */
typedef struct {
    const char *fname;
    int nreq;                       /* leading required parameters */
    int nparams;
    const char *names[4];
} fs_clinic_sig;

/* Bind as _PyArg_UnpackKeywords does: fill out[0..nparams) with borrowed
 * values (NULL: not given).  Keywords come either as a vectorcall kwnames
 * tuple (values after the positionals in args) or as tp_new's dict
 * (kwnames NULL).  0, or -1 with TypeError set. */
int fs_parse_clinic_any(const fs_clinic_sig *sig, PyObject *const *args,
                        Py_ssize_t nargs, PyObject *kwnames,
                        PyObject *kwdict, PyObject **out);

/* The same, with the plain positional call inline (epoll.poll() is a hot
 * path: a call of its own costs ~5 % of it). */
static inline int
fs_parse_clinic(const fs_clinic_sig *sig, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames, PyObject *kwdict,
                PyObject **out)
{
    if (kwnames != NULL || kwdict != NULL || nargs < sig->nreq
            || nargs > sig->nparams) {
        return fs_parse_clinic_any(sig, args, nargs, kwnames, kwdict, out);
    }
    for (int i = 0; i < sig->nparams; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    return 0;
}

/* The most parameters a bound Python method of the stdlib selectors has
 * (register(fileobj, events, data), `self` not counted). */
#define FS_PYFUNC_MAX_PARAMS 4

/* Bind as CPython binds a Python function's arguments, for the stdlib
 * selectors' methods: `names` (nreq of them required, at most nmax <=
 * FS_PYFUNC_MAX_PARAMS), out filled with borrowed values (NULL: absent).
 * Texts name `owner.meth` from 3.10 on, and counts include self.
 * 0, or -1 with TypeError set. */
int fs_parse_pyfunc(const char *owner, const char *meth,
                    const char *const *names, int nreq, int nmax,
                    PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames, PyObject **out);

#endif /* FASTSEL_ARGS_H */
