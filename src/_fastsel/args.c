/* args.c - every argument binder and converter, with CPython's error texts. */
#include "fastsel.h"
#include "args.h"
#include "pyver.h"

#include <limits.h>
#include <string.h>

/* ---- converters -------------------------------------------------------- */

int
fs_fileno(PyObject *obj)
{
    /* Exact ints are the common case (selectors pass fds); everything else,
     * bools included, takes CPython's own path so warnings and error texts
     * follow the running version. */
    if (PyLong_CheckExact(obj)) {
        int v;
        if (fs_as_int(obj, &v) < 0) {
            return -1;
        }
        if (v < 0) {
            PyErr_Format(PyExc_ValueError,
                         "file descriptor cannot be a negative integer (%i)",
                         v);
            return -1;
        }
        return v;
    }
    return PyObject_AsFileDescriptor(obj);
}

/* 3.9's int converters refuse floats with their own TypeError. */
static int
refuse_float(PyObject *obj)
{
    if (fs_ver->int_refuses_float && PyFloat_Check(obj)) {
        PyErr_SetString(PyExc_TypeError,
                        "integer argument expected, got float");
        return -1;
    }
    return 0;
}

/* A new reference to obj as an int: itself, or its __index__(). */
static PyObject *
index_of(PyObject *obj)
{
    return PyLong_Check(obj) ? Py_NewRef(obj) : PyNumber_Index(obj);
}

int
fs_as_int(PyObject *obj, int *out)
{
    if (refuse_float(obj) < 0) {
        return -1;
    }
    int overflow;
    long v = PyLong_AsLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || v > INT_MAX || v < INT_MIN) {
        PyErr_SetString(PyExc_OverflowError,
                        "Python int too large to convert to C int");
        return -1;
    }
    *out = (int)v;
    return 0;
}

int
fs_long_in_range(PyObject *v, long long min, unsigned long long max)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    unsigned long long u = (unsigned long long)x;
    if (overflow > 0) {
        u = PyLong_AsUnsignedLongLong(v);   /* OverflowError past 2**64 */
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (overflow != 0) {
        return overflow > 0 && u <= max;
    }
    return x >= min && (x < 0 || u <= max);
}

int
fs_as_uint_mask(PyObject *obj, unsigned int *out)
{
    if (refuse_float(obj) < 0) {
        return -1;
    }
    if (!fs_ver->bitwise_warn) {
        unsigned long v = PyLong_AsUnsignedLongMask(obj);
        if (v == (unsigned long)-1 && PyErr_Occurred()) {
            return -1;
        }
        *out = (unsigned int)v;
        return 0;
    }
    /* __index__ once, then the range check on its result */
    PyObject *n = index_of(obj);
    if (n == NULL) {
        return -1;
    }
    int rc = 0;
    if (!fs_long_in_range(n, INT_MIN, UINT_MAX)
        && PyErr_WarnEx(PyExc_DeprecationWarning,
                        "integer value out of range", 1) < 0) {
        rc = -1;
    }
    else {
        *out = (unsigned int)PyLong_AsUnsignedLongMask(n);
    }
    Py_DECREF(n);
    return rc;
}

/* Up to 3.13 PyLong only, and unsigned long decides past LONG_MAX; 3.14+
 * through __index__, with its own negative text. */
int
fs_as_ushort(PyObject *obj, unsigned short *out)
{
    int by_index = fs_ver->ushort_rule == FS_USHORT_INDEX;
    if (!by_index && !PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "an integer is required");
        return -1;
    }
    PyObject *n = index_of(obj);
    if (n == NULL) {
        return -1;
    }
    int overflow, rc = -1;
    long v = PyLong_AsLongAndOverflow(n, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        goto done;
    }
    if (overflow < 0 || (overflow == 0 && v < 0)) {
        PyErr_SetString(PyExc_ValueError, by_index
                        ? "Cannot convert negative int"
                        : "value must be positive");
        goto done;
    }
    if (overflow > 0 && !by_index) {
        unsigned long u = PyLong_AsUnsignedLong(n);
        if (u == (unsigned long)-1 && PyErr_Occurred()) {
            goto done;
        }
    }
    if (overflow > 0 || v > USHRT_MAX) {
        PyErr_SetString(PyExc_OverflowError,
                        "Python int too large for C unsigned short");
        goto done;
    }
    *out = (unsigned short)v;
    rc = 0;
done:
    Py_DECREF(n);
    return rc;
}

/* 3.13 adds "Did you mean ...?" to unknown keywords, choosing with CPython's
 * edit distance (suggestions.c): on UTF-8 bytes, after dropping the common
 * prefix and suffix; insert/delete cost 2, substitution 2, or 1 for an
 * ASCII letter of the other case; no match past 40 remaining bytes or past
 * (len(a) + len(b) + 3) / 3. */
#define SUGGEST_MAX_LEN 40

static Py_ssize_t
suggest_distance(const char *a, Py_ssize_t na, const char *b, Py_ssize_t nb)
{
    while (na && nb && a[0] == b[0]) {
        a++, na--, b++, nb--;
    }
    while (na && nb && a[na - 1] == b[nb - 1]) {
        na--, nb--;
    }
    if (na == 0 || nb == 0) {
        return (na + nb) * 2;
    }
    if (na > SUGGEST_MAX_LEN || nb > SUGGEST_MAX_LEN) {
        return PY_SSIZE_T_MAX;
    }
    /* one DP row: row[j] = cost(a[:i], b[:j]) */
    Py_ssize_t row[SUGGEST_MAX_LEN + 1];
    for (Py_ssize_t j = 0; j <= nb; j++) {
        row[j] = 2 * j;
    }
    for (Py_ssize_t i = 1; i <= na; i++) {
        Py_ssize_t diag = row[0];
        row[0] = 2 * i;
        for (Py_ssize_t j = 1; j <= nb; j++) {
            char x = a[i - 1], y = b[j - 1];
            Py_ssize_t sub = 2;
            if (x == y) {
                sub = 0;
            }
            else if ((x ^ y) == 0x20 && (x | 0x20) >= 'a'
                     && (x | 0x20) <= 'z') {
                sub = 1;
            }
            Py_ssize_t best = diag + sub;
            Py_ssize_t del = (row[j] < row[j - 1] ? row[j] : row[j - 1]) + 2;
            if (del < best) {
                best = del;
            }
            diag = row[j];
            row[j] = best;
        }
    }
    return row[nb];
}

static const char *
suggest_keyword(const char *const *names, int n, PyObject *key)
{
    Py_ssize_t nkey;
    const char *k = PyUnicode_AsUTF8AndSize(key, &nkey);
    if (k == NULL) {
        PyErr_Clear();              /* CPython: no suggestion then either */
        return NULL;
    }
    /* the first name at the smallest distance within the limit wins */
    const char *best = NULL;
    Py_ssize_t best_dist = PY_SSIZE_T_MAX;
    for (int j = 0; j < n; j++) {
        Py_ssize_t nname = (Py_ssize_t)strlen(names[j]);
        Py_ssize_t limit = (nkey + nname + 3) * 2 / 6;
        if (limit > best_dist - 1) {
            limit = best_dist - 1;
        }
        Py_ssize_t d = suggest_distance(k, nkey, names[j], nname);
        if (d <= limit) {
            best = names[j];
            best_dist = d;
        }
    }
    return best;
}

/* ---- Argument Clinic binding (_PyArg_UnpackKeywords) ------------------- */

/* The next keyword (*key) and its value (*val) from a vectorcall kwnames
 * tuple (values after the positionals, at kwvals) or from tp_new's dict;
 * 0 at the end.  *pos starts at 0. */
static int
kw_next(PyObject *kwnames, PyObject *const *kwvals, PyObject *kwdict,
        Py_ssize_t *pos, PyObject **key, PyObject **val)
{
    if (kwdict != NULL) {
        return PyDict_Next(kwdict, pos, key, val);
    }
    if (*pos >= PyTuple_GET_SIZE(kwnames)) {
        return 0;
    }
    *key = PyTuple_GET_ITEM(kwnames, *pos);
    *val = kwvals[(*pos)++];
    return 1;
}

/* Value passed for `name`, borrowed, or NULL.  Not PyDict_GetItemString:
 * it allocates the key and swallows a MemoryError, which then reads as an
 * unknown keyword. */
static PyObject *
kw_find(PyObject *kwnames, PyObject *const *kwvals, PyObject *kwdict,
        const char *name)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (kw_next(kwnames, kwvals, kwdict, &pos, &k, &v)) {
        if (PyUnicode_Check(k)
            && PyUnicode_CompareWithASCIIString(k, name) == 0) {
            return v;
        }
    }
    return NULL;
}

/* The index of the str key in names[0..n), or n. */
static int
name_index(PyObject *key, const char *const *names, int n)
{
    int j = 0;
    while (j < n && PyUnicode_CompareWithASCIIString(key, names[j]) != 0) {
        j++;
    }
    return j;
}

/* "got an unexpected keyword argument", with 3.13's hint from names. */
static void
unexpected_keyword(const char *fname, PyObject *key,
                   const char *const *names, int n)
{
    const char *hint = fs_ver->kw_suggest
        ? suggest_keyword(names, n, key) : NULL;
    if (hint != NULL) {
        PyErr_Format(PyExc_TypeError,
                     "%s() got an unexpected keyword argument '%S'."
                     " Did you mean '%s'?", fname, key, hint);
        return;
    }
    PyErr_Format(PyExc_TypeError,
                 "%s() got an unexpected keyword argument '%S'", fname, key);
}

static void
kw_unexpected(const fs_clinic_sig *sig, PyObject *kwnames,
              PyObject *const *kwvals, PyObject *kwdict)
{
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    while (kw_next(kwnames, kwvals, kwdict, &pos, &key, &val)) {
        if (!PyUnicode_Check(key) && fs_ver->kw_nonstr_error) {
            PyErr_SetString(PyExc_TypeError, "keywords must be strings");
            return;
        }
        if (PyUnicode_Check(key)
            && name_index(key, sig->names, sig->nparams) < sig->nparams) {
            continue;
        }
        if (fs_ver->kw_suggest) {
            unexpected_keyword(sig->fname, key, sig->names, sig->nparams);
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "'%S' is an invalid keyword argument for %s()",
                         key, sig->fname);
        }
        return;
    }
    PyErr_Format(PyExc_TypeError, "invalid keyword argument for %s()",
                 sig->fname);
}

/* In _PyArg_UnpackKeywords's order: count check, then missing required
 * parameters, then name-and-position clashes, then unknown names. */
int
fs_parse_clinic_any(const fs_clinic_sig *sig, PyObject *const *args,
                    Py_ssize_t nargs, PyObject *kwnames, PyObject *kwdict,
                    PyObject **out)
{
    Py_ssize_t nkw = kwdict != NULL ? PyDict_GET_SIZE(kwdict)
                     : kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > sig->nparams) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d %sargument%s (%zd given)",
                     sig->fname, sig->nparams, nargs == 0 ? "keyword " : "",
                     sig->nparams == 1 ? "" : "s", nargs + nkw);
        return -1;
    }
    PyObject *const *kwvals = args + nargs;
    Py_ssize_t unmatched = nkw;
    for (int i = 0; i < sig->nparams; i++) {
        out[i] = i < nargs ? args[i] : NULL;
        if (out[i] == NULL && nkw > 0) {
            out[i] = kw_find(kwnames, kwvals, kwdict, sig->names[i]);
            unmatched -= out[i] != NULL;
        }
        if (out[i] == NULL && i < sig->nreq) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s' (pos %d)",
                         sig->fname, sig->names[i], i + 1);
            return -1;
        }
    }
    if (unmatched > 0) {
        for (int i = 0; i < nargs; i++) {
            if (kw_find(kwnames, kwvals, kwdict, sig->names[i])) {
                PyErr_Format(PyExc_TypeError,
                             "argument for %s() given by name ('%s') "
                             "and position (%d)",
                             sig->fname, sig->names[i], i + 1);
                return -1;
            }
        }
        kw_unexpected(sig, kwnames, kwvals, kwdict);
        return -1;
    }
    return 0;
}

/* ---- Python-function binding (the stdlib selectors' methods) ---------- */

int
fs_parse_pyfunc(const char *owner, const char *meth, const char *const *names,
                int nreq, int nmax, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames, PyObject **out)
{
    char fname[96];
    PyOS_snprintf(fname, sizeof(fname), "%s%s%s",
                  fs_ver->qualified_names ? owner : "",
                  fs_ver->qualified_names ? "." : "", meth);
    /* bound as CPython binds a Python function's arguments: positionals
     * into their parameters, then keywords (unknown or duplicate names fail
     * first), then the count of positionals, then missing parameters */
    int i;
    for (i = 0; i < nmax; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *val;
    while (kwnames != NULL
           && kw_next(kwnames, args + nargs, NULL, &pos, &name, &val)) {
        int j = name_index(name, names, nmax);
        if (j == nmax) {
            /* the stdlib's methods are Python functions: `self` is a
             * parameter too, already bound */
            if (PyUnicode_CompareWithASCIIString(name, "self") == 0) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got multiple values for argument 'self'",
                             fname);
                return -1;
            }
            const char *cands[1 + FS_PYFUNC_MAX_PARAMS] = {"self"};
            for (j = 0; j < nmax && j < FS_PYFUNC_MAX_PARAMS; j++) {
                cands[1 + j] = names[j];
            }
            unexpected_keyword(fname, name, cands, 1 + j);
            return -1;
        }
        if (out[j] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%s'",
                         fname, names[j]);
            return -1;
        }
        out[j] = val;
    }
    if (nargs > nmax) {
        if (nreq == nmax) {
            PyErr_Format(PyExc_TypeError,
                         "%s() takes %d positional argument%s but %zd %s "
                         "given",
                         fname, nmax + 1, nmax == 0 ? "" : "s", nargs + 1,
                         nargs + 1 == 1 ? "was" : "were");
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "%s() takes from %d to %d positional arguments but "
                         "%zd were given", fname, nreq + 1, nmax + 1,
                         nargs + 1);
        }
        return -1;
    }
    int missing[FS_PYFUNC_MAX_PARAMS], nmiss = 0;
    for (i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            missing[nmiss++] = i;
        }
    }
    if (nmiss) {
        PyObject *list = PyUnicode_FromFormat("'%s'", names[missing[0]]);
        for (int m = 1; list != NULL && m < nmiss; m++) {
            PyObject *t = PyUnicode_FromFormat(
                "%U%s'%s'", list,
                m == nmiss - 1 ? (nmiss > 2 ? ", and " : " and ") : ", ",
                names[missing[m]]);
            Py_SETREF(list, t);
        }
        if (list != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing %d required positional argument%s: %U",
                         fname, nmiss, nmiss == 1 ? "" : "s", list);
            Py_DECREF(list);
        }
        return -1;
    }
    return 0;
}
