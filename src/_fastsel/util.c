/* util.c - conversions shared by every object: fds, timeouts, clocks. */
#include "fastsel.h"
#include "pyver.h"

#include <math.h>
#include <string.h>
#include <time.h>

int
fs_fileno(PyObject *obj)
{
    /* Exact ints are the common case (selectors pass fds); everything else,
     * bools included, takes CPython's own path so warnings and error texts
     * follow the running version. */
    if (PyLong_CheckExact(obj)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(obj, &overflow);
        if (overflow || v > INT_MAX || v < INT_MIN) {
            PyErr_SetString(PyExc_OverflowError,
                            "Python int too large to convert to C int");
            return -1;
        }
        if (v < 0) {
            PyErr_Format(PyExc_ValueError,
                         "file descriptor cannot be a negative integer (%i)",
                         (int)v);
            return -1;
        }
        return (int)v;
    }
    return PyObject_AsFileDescriptor(obj);
}

int
fs_as_int(PyObject *obj, int *out)
{
    if (fs_ver->int_refuses_float && PyFloat_Check(obj)) {
        PyErr_SetString(PyExc_TypeError,
                        "integer argument expected, got float");
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
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (overflow < 0) {
        return 0;
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return u <= max;
    }
    return x >= min && (x < 0 || (unsigned long long)x <= max);
}

int
fs_as_uint_mask(PyObject *obj, unsigned int *out)
{
    if (fs_ver->int_refuses_float && PyFloat_Check(obj)) {
        PyErr_SetString(PyExc_TypeError,
                        "integer argument expected, got float");
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
    PyObject *n = PyLong_Check(obj) ? obj : PyNumber_Index(obj);
    if (n == NULL) {
        return -1;
    }
    if (n == obj) {
        Py_INCREF(n);
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

/* Up to 3.13: PyLong only, and unsigned long decides past LONG_MAX. */
static int
ushort_from_long(PyObject *obj, unsigned short *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "an integer is required");
        return -1;
    }
    int overflow;
    long v = PyLong_AsLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && v < 0)) {
        PyErr_SetString(PyExc_ValueError, "value must be positive");
        return -1;
    }
    if (overflow > 0) {
        unsigned long u = PyLong_AsUnsignedLong(obj);
        if (u == (unsigned long)-1 && PyErr_Occurred()) {
            return -1;
        }
        v = LONG_MAX;
    }
    if (v > USHRT_MAX) {
        PyErr_SetString(PyExc_OverflowError,
                        "Python int too large for C unsigned short");
        return -1;
    }
    *out = (unsigned short)v;
    return 0;
}

/* 3.14+: through __index__, one text per direction. */
static int
ushort_from_index(PyObject *obj, unsigned short *out)
{
    PyObject *n = PyLong_Check(obj) ? obj : PyNumber_Index(obj);
    if (n == NULL) {
        return -1;
    }
    if (n == obj) {
        Py_INCREF(n);
    }
    int overflow;
    long v = PyLong_AsLongAndOverflow(n, &overflow);
    Py_DECREF(n);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && v < 0)) {
        PyErr_SetString(PyExc_ValueError, "Cannot convert negative int");
        return -1;
    }
    if (overflow > 0 || v > USHRT_MAX) {
        PyErr_SetString(PyExc_OverflowError,
                        "Python int too large for C unsigned short");
        return -1;
    }
    *out = (unsigned short)v;
    return 0;
}

int
fs_as_ushort(PyObject *obj, unsigned short *out)
{
    if (fs_ver->ushort_rule == FS_USHORT_INDEX) {
        return ushort_from_index(obj, out);
    }
    return ushort_from_long(obj, out);
}

void
fs_timeout_type_error(PyObject *obj, const char *legacy)
{
    if (fs_ver->timeout_rule == FS_TIMEOUT_REAL) {
#ifdef FS_PY_HAVE_FORMAT_T
        PyErr_Format(PyExc_TypeError,
                     "timeout must be a real number or None, not %T", obj);
#else
        /* no row before 3.13 has this rule */
        PyErr_Format(PyExc_TypeError,
                     "timeout must be a real number or None, not %.200s",
                     Py_TYPE(obj)->tp_name);
#endif
        return;
    }
    PyErr_SetString(PyExc_TypeError, legacy);
}

void
fs_kqueue_timeout_error(PyObject *obj)
{
    if (fs_ver->timeout_rule == FS_TIMEOUT_REAL) {
        /* 3.15 lets OverflowError and ValueError through (gh-154836) */
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            fs_timeout_type_error(obj, NULL);
        }
        return;
    }
    /* up to 3.14 any failure becomes this, with the type's last name */
    const char *name = Py_TYPE(obj)->tp_name;
    const char *dot = strrchr(name, '.');
    PyErr_Format(PyExc_TypeError,
                 "timeout argument must be a number or None, got %.200s",
                 dot != NULL ? dot + 1 : name);
}

static void
time_overflow(void)
{
    PyErr_SetString(PyExc_OverflowError, fs_ver->time_int_overflow);
}

static void
time_t_overflow(void)
{
    PyErr_SetString(PyExc_OverflowError, fs_pyver_float_overflow());
}

static double
round_half_even(double x)
{
    double rounded = round(x);
    if (fabs(x - rounded) == 0.5) {
        /* halfway case: round to even */
        rounded = 2.0 * round(x / 2.0);
    }
    return rounded;
}

static double
round_double(double x, fs_round_t round_mode)
{
    /* volatile keeps x87 excess precision out of the comparison */
    volatile double d = x;
    switch (round_mode) {
    case FS_ROUND_HALF_EVEN:
        return round_half_even(d);
    case FS_ROUND_CEILING:
        return ceil(d);
    case FS_ROUND_FLOOR:
        return floor(d);
    case FS_ROUND_UP:
    default:
        return d >= 0 ? ceil(d) : floor(d);
    }
}

static int
ns_from_object(PyObject *obj, fs_round_t round_mode, int64_t unit_to_ns,
               int64_t *ns)
{
    int is_float = PyFloat_Check(obj);
    double d = 0.0;
    if (is_float) {
        d = PyFloat_AS_DOUBLE(obj);
    }
    else if (fs_ver->timeout_rule == FS_TIMEOUT_REAL && !PyLong_Check(obj)
             && !PyIndex_Check(obj)) {
        /* 3.15: whatever __float__ gives (a TypeError here is the
         * caller's "real number" error) */
        d = PyFloat_AsDouble(obj);
        if (d == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        is_float = 1;
    }
    if (is_float) {
        if (isnan(d)) {
            PyErr_SetString(PyExc_ValueError,
                            "Invalid value NaN (not a number)");
            return -1;
        }
        d = round_double(d * (double)unit_to_ns, round_mode);
        if (!((double)INT64_MIN <= d && d < -(double)INT64_MIN)) {
            time_t_overflow();
            return -1;
        }
        *ns = (int64_t)d;
        return 0;
    }
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            time_overflow();
        }
        return -1;
    }
    if ((v > 0 && v > INT64_MAX / unit_to_ns)
        || (v < 0 && v < INT64_MIN / unit_to_ns)) {
        time_overflow();
        return -1;
    }
    *ns = (int64_t)v * unit_to_ns;
    return 0;
}

int
fs_ns_from_seconds_object(PyObject *obj, fs_round_t round_mode, int64_t *ns)
{
    return ns_from_object(obj, round_mode, 1000000000, ns);
}

int
fs_ns_from_ms_object(PyObject *obj, fs_round_t round_mode, int64_t *ns)
{
    return ns_from_object(obj, round_mode, 1000000, ns);
}

int64_t
fs_ns_divide(int64_t t, int64_t k, fs_round_t round_mode)
{
    /* Mirrors CPython's _PyTime_Divide: integer division with rounding. */
    if (round_mode == FS_ROUND_HALF_EVEN) {
        int64_t x = t / k, r = t % k, abs_r = r < 0 ? -r : r;
        if (abs_r > k / 2 || (abs_r == k / 2 && (x & 1))) {
            x += t >= 0 ? 1 : -1;
        }
        return x;
    }
    /* Truncate, then step away from the truncated quotient when rounding
     * asks for it; written so that no intermediate can overflow. */
    int64_t q = t / k, r = t % k;
    if (r == 0) {
        return q;
    }
    if (round_mode == FS_ROUND_CEILING) {
        return r > 0 ? q + 1 : q;
    }
    if (round_mode == FS_ROUND_FLOOR) {
        return r < 0 ? q - 1 : q;
    }
    /* FS_ROUND_UP: away from zero */
    return r > 0 ? q + 1 : q - 1;
}

int64_t
fs_monotonic_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer on POSIX systems */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
fs_add_int(PyObject *module, const char *name, long value)
{
    return PyModule_AddIntConstant(module, name, value);
}

int
fs_add_object(PyObject *module, const char *name, PyObject *value)
{
    Py_INCREF(value);
    if (PyModule_AddObject(module, name, value) < 0) {
        Py_DECREF(value);
        return -1;
    }
    return 0;
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

const char *
fs_suggest_keyword(const char *const *names, int n, PyObject *key)
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
