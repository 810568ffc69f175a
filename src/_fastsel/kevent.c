/* kevent.c - the select.kevent object: construction with CPython's
 * per-platform argument types, repr and ordering. */
#include "fastsel.h"
#include "kq.h"

#ifdef FS_HAVE_KQUEUE

#include <inttypes.h>
#include <limits.h>
#include <stddef.h>                 /* offsetof */


/* Member and argument types follow CPython's selectmodule.c per platform. */
/* The same order as CPython: long long wins where it is as wide as long. */
#if SIZEOF_UINTPTR_T == SIZEOF_LONG_LONG
#  define KQ_T_UINTPTRT     Py_T_ULONGLONG
#  define KQ_T_INTPTRT      Py_T_LONGLONG
#  define KQ_UINTPTRT_FMT   "K"
#  define KQ_INTPTRT_FMT    "L"
typedef unsigned long long kq_uintptr_arg;
typedef long long kq_intptr_arg;
#elif SIZEOF_UINTPTR_T == SIZEOF_LONG
#  define KQ_T_UINTPTRT     Py_T_ULONG
#  define KQ_T_INTPTRT      Py_T_LONG
#  define KQ_UINTPTRT_FMT   "k"
#  define KQ_INTPTRT_FMT    "l"
typedef unsigned long kq_uintptr_arg;
typedef long kq_intptr_arg;
#elif SIZEOF_UINTPTR_T == SIZEOF_INT
#  define KQ_T_UINTPTRT     Py_T_UINT
#  define KQ_T_INTPTRT      Py_T_INT
#  define KQ_UINTPTRT_FMT   "I"
#  define KQ_INTPTRT_FMT    "i"
typedef unsigned int kq_uintptr_arg;
typedef int kq_intptr_arg;
#else
#  error "uintptr_t does not match int, long or long long"
#endif

#ifdef __NetBSD__
   /* filter, flags and fflags are uint32_t there */
#  if SIZEOF_LONG == 4
#    define KQ_T_UINT32     Py_T_ULONG
#    define KQ_UINT32_FMT   "k"
typedef unsigned long kq_uint32_arg;
#  else
#    define KQ_T_UINT32     Py_T_UINT
#    define KQ_UINT32_FMT   "I"
typedef unsigned int kq_uint32_arg;
#  endif
#  define KQ_FILTER_T       KQ_T_UINT32
#  define KQ_FILTER_FMT     KQ_UINT32_FMT
#  define KQ_FLAGS_T        KQ_T_UINT32
#  define KQ_FLAGS_FMT      KQ_UINT32_FMT
#  define KQ_FFLAGS_FMT     KQ_UINT32_FMT
typedef kq_uint32_arg kq_filter_arg;
typedef kq_uint32_arg kq_flags_arg;
typedef kq_uint32_arg kq_fflags_arg;
#else
#  define KQ_FILTER_T       Py_T_SHORT
#  define KQ_FILTER_FMT     "h"
#  define KQ_FLAGS_T        Py_T_USHORT
#  define KQ_FLAGS_FMT      "H"
#  define KQ_FFLAGS_FMT     "I"
typedef short kq_filter_arg;
typedef unsigned short kq_flags_arg;
typedef unsigned int kq_fflags_arg;
#endif

#if defined(__NetBSD__) || defined(__OpenBSD__)
#  define KQ_T_DATA         Py_T_LONGLONG     /* int64_t */
#  define KQ_DATA_FMT       "L"
typedef long long kq_data_arg;
#else
#  define KQ_T_DATA         KQ_T_INTPTRT
#  define KQ_DATA_FMT       KQ_INTPTRT_FMT
typedef kq_intptr_arg kq_data_arg;
#endif


#define KEV_OFF(x) offsetof(fs_kevent, e.x)
static PyMemberDef kevent_members[] = {
    {"ident", KQ_T_UINTPTRT, KEV_OFF(ident), 0, NULL},
    {"filter", KQ_FILTER_T, KEV_OFF(filter), 0, NULL},
    {"flags", KQ_FLAGS_T, KEV_OFF(flags), 0, NULL},
    {"fflags", Py_T_UINT, KEV_OFF(fflags), 0, NULL},
    {"data", KQ_T_DATA, KEV_OFF(data), 0, NULL},
    {"udata", KQ_T_UINTPTRT, KEV_OFF(udata), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};
#undef KEV_OFF

/* Exact ints in range take the fast path; anything else goes through
 * PyArg_ParseTupleAndKeywords with CPython's own format, so conversions,
 * warnings and error texts are those of the running version. */
/* 3.15's PyArg_Parse warns for a bitwise field outside [signed min,
 * unsigned max] of its C type: such values take the slow path. */
#define KQ_BITWISE_FITS(obj, type)                                          \
    (!fs_ver->bitwise_warn                                                  \
     || fs_long_in_range((obj), -(long long)((type)-1 >> 1) - 1,            \
                         (unsigned long long)(type)-1))

static int
kevent_parse_fast(PyObject *args, kq_filter_arg *filter, kq_flags_arg *flags,
                  kq_fflags_arg *fflags, kq_data_arg *data,
                  kq_uintptr_arg *udata)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *const *a = &PyTuple_GET_ITEM(args, 0);
    if (n < 1 || n > 6) {
        return 0;
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        if (!PyLong_CheckExact(a[i])) {
            return 0;
        }
    }
    if ((n > 2 && !KQ_BITWISE_FITS(a[2], kq_flags_arg))
        || (n > 3 && !KQ_BITWISE_FITS(a[3], kq_fflags_arg))
        || (n > 5 && !KQ_BITWISE_FITS(a[5], kq_uintptr_arg))) {
        return 0;
    }
    int overflow;
    if (n > 1) {
#ifdef __NetBSD__
        if (!KQ_BITWISE_FITS(a[1], kq_filter_arg)) {
            return 0;
        }
        *filter = (kq_filter_arg)PyLong_AsUnsignedLongMask(a[1]);
#else
        long v = PyLong_AsLongAndOverflow(a[1], &overflow);
        if (overflow || v < SHRT_MIN || v > SHRT_MAX) {
            return 0;       /* the slow path raises the version's error */
        }
        *filter = (short)v;
#endif
    }
    if (n > 2) {
        *flags = (kq_flags_arg)PyLong_AsUnsignedLongMask(a[2]);
    }
    if (n > 3) {
        *fflags = (kq_fflags_arg)PyLong_AsUnsignedLongMask(a[3]);
    }
    if (n > 4) {
        long long v = PyLong_AsLongLongAndOverflow(a[4], &overflow);
        /* out of range if it does not survive kq_data_arg */
        if (overflow || (long long)(kq_data_arg)v != v) {
            return 0;
        }
        *data = (kq_data_arg)v;
    }
    if (n > 5) {
        *udata = (kq_uintptr_arg)PyLong_AsUnsignedLongLongMask(a[5]);
    }
    return 1;
}

static int
kevent_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ident", "filter", "flags", "fflags", "data",
                             "udata", NULL};
    static const char fmt[] = "O|" KQ_FILTER_FMT KQ_FLAGS_FMT KQ_FFLAGS_FMT
                              KQ_DATA_FMT KQ_UINTPTRT_FMT ":kevent";
    fs_kevent *self = (fs_kevent *)op;
    PyObject *pfd;
    kq_filter_arg filter = EVFILT_READ;
    kq_flags_arg flags = EV_ADD;
    kq_fflags_arg fflags = 0;
    kq_data_arg data = 0;
    kq_uintptr_arg udata = 0;

    EV_SET(&self->e, 0, EVFILT_READ, EV_ADD, 0, 0, 0);
    if ((kwds == NULL || PyDict_GET_SIZE(kwds) == 0)
        && kevent_parse_fast(args, &filter, &flags, &fflags, &data, &udata)) {
        pfd = PyTuple_GET_ITEM(args, 0);
    }
    else if (!PyArg_ParseTupleAndKeywords(args, kwds, fmt, kwlist, &pfd,
                                          &filter, &flags, &fflags, &data,
                                          &udata)) {
        return -1;
    }
    /* ints (bool included) are identifiers of any filter, not only fds */
    uintptr_t ident;
    if (PyLong_Check(pfd)) {
        ident = (uintptr_t)PyLong_AsSize_t(pfd);
    }
    else {
        ident = (uintptr_t)(intptr_t)PyObject_AsFileDescriptor(pfd);
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    EV_SET(&self->e, ident, filter, flags, fflags, data,
           (void *)(uintptr_t)udata);
    return 0;
}

static PyObject *
kevent_repr(PyObject *op)
{
    const struct kevent *e = &((fs_kevent *)op)->e;
    char buf[256];
#ifdef FASTSEL_KQUEUE_COMPAT
    /* what BSD/macOS libcs print for %p (glibc would say "(nil)" for 0) */
#  define KQ_UDATA_FMT "0x%" PRIxPTR
#  define KQ_UDATA_ARG (uintptr_t)e->udata
#else
#  define KQ_UDATA_FMT "%p"
#  define KQ_UDATA_ARG (void *)e->udata
#endif
    PyOS_snprintf(buf, sizeof(buf),
                  "<select.kevent ident=%zu filter=%d flags=0x%x fflags=0x%x "
                  "data=0x%llx udata=" KQ_UDATA_FMT ">",
                  (size_t)e->ident, (int)e->filter, (unsigned int)e->flags,
                  (unsigned int)e->fflags, (long long)e->data, KQ_UDATA_ARG);
#undef KQ_UDATA_FMT
#undef KQ_UDATA_ARG
    return PyUnicode_FromString(buf);
}

static PyObject *
kevent_richcompare(PyObject *a, PyObject *b, int op)
{
    /* kevent cannot be subclassed, so its one type is the test */
    if (Py_TYPE(b) != Py_TYPE(a)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    const struct kevent *s = &((fs_kevent *)a)->e, *o = &((fs_kevent *)b)->e;
    int r;
#define KQ_CMP(x, y) ((x) != (y)) ? ((x) < (y) ? -1 : 1)
    r = KQ_CMP(s->ident, o->ident)
        : KQ_CMP(s->filter, o->filter)
        : KQ_CMP(s->flags, o->flags)
        : KQ_CMP(s->fflags, o->fflags)
        : KQ_CMP(s->data, o->data)
        : KQ_CMP((intptr_t)s->udata, (intptr_t)o->udata)
        : 0;
#undef KQ_CMP
    Py_RETURN_RICHCOMPARE(r, 0, op);
}

PyDoc_STRVAR(kevent_doc,
"kevent(ident, filter=KQ_FILTER_READ, flags=KQ_EV_ADD, fflags=0, data=0,\n\
       udata=0)\n\
\n\
This object is the equivalent of the struct kevent for the C API.\n\
\n\
See the kqueue manpage for the meaning of the arguments.  udata holds\n\
an integer only: the kernel may drop an event at any time, so it\n\
cannot own a reference to a Python object.");

static PyType_Slot kevent_slots[] = {
    {Py_tp_doc, (void *)kevent_doc},
    {Py_tp_init, kevent_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_members, kevent_members},
    {Py_tp_repr, kevent_repr},
    {Py_tp_richcompare, kevent_richcompare},
    {0, NULL},
};

static PyType_Spec kevent_spec = {
    .name = "select.kevent",
    .basicsize = sizeof(fs_kevent),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = kevent_slots,
};

int
fs_kevent_setup(PyObject *module, fs_state *st)
{
    st->kevent_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &kevent_spec, NULL);
    if (st->kevent_type == NULL) {
        return -1;
    }
    return fs_add_object(module, "kevent", (PyObject *)st->kevent_type);
}

#else  /* !FS_HAVE_KQUEUE */

/* ISO C wants at least one declaration in a translation unit. */
typedef int fs_kevent_unavailable;

#endif /* FS_HAVE_KQUEUE */
