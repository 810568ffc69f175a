/* sel_keys.c - from a file object to its key: fileobj -> fd lookups, the
 * events checks, SelectorKey construction, and the selector's errors, all
 * with the stdlib's texts. */
#include "selector.h"

#include <errno.h>
#include <limits.h>

PyObject *
sel_err_closed(void)
{
    PyErr_SetString(PyExc_RuntimeError, "Selector is closed");
    return NULL;
}

PyObject *
sel_err_not_registered(PyObject *fileobj)
{
    PyObject *msg = PyUnicode_FromFormat("%R is not registered", fileobj);
    if (msg != NULL) {
        PyErr_SetObject(PyExc_KeyError, msg);
        Py_DECREF(msg);
    }
    return NULL;
}

/* 3.13's fd conversion warns about bools, and the stdlib's selectors hand
 * key.fd (a bool when a bool was registered) to the poller on each call. */
int
sel_warn_bool_fd(int isbool)
{
    if (isbool && fs_ver->bool_fd_warns) {
        return PyErr_WarnEx(PyExc_RuntimeWarning,
                            "bool is used as a file descriptor", 1);
    }
    return 0;
}

/* ValueError("Invalid file descriptor: <fd>") with format(fd, ''). */
static void
invalid_fd(PyObject *fd)
{
    PyObject *empty = PyUnicode_New(0, 0);
    PyObject *text = empty ? PyObject_Format(fd, empty) : NULL;
    Py_XDECREF(empty);
    if (text != NULL) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %U", text);
        Py_DECREF(text);
    }
}

/* selectors._fileobj_to_fd: a new reference to the fd object (the int
 * itself, or int(fileobj.fileno())), NULL with ValueError & co.  *cfd is
 * the fd as a C long, or -1 when it does not fit a C int. */
static PyObject *
fileobj_to_fd(fs_state *st, PyObject *fileobj, long *cfd)
{
    PyObject *fd;
    if (PyLong_Check(fileobj)) {
        fd = Py_NewRef(fileobj);
    }
    else {
        PyObject *res = PyObject_CallMethodNoArgs(fileobj, st->str_fileno);
        fd = res != NULL ? PyNumber_Long(res) : NULL;
        Py_XDECREF(res);
        if (fd == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError)
                || PyErr_ExceptionMatches(PyExc_TypeError)
                || PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "Invalid file object: %R",
                             fileobj);
            }
            return NULL;
        }
    }
    int overflow;
    long v = PyLong_AsLongAndOverflow(fd, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(fd);
        return NULL;
    }
    if (overflow < 0 || (!overflow && v < 0)) {
        invalid_fd(fd);
        Py_DECREF(fd);
        return NULL;
    }
    *cfd = (overflow || v > INT_MAX) ? -1 : v;
    return fd;
}

/* On ValueError, a registered key whose fileobj *is* this object answers
 * (a closed socket can be unregistered). */
PyObject *
sel_lookup(sel_object *s, PyObject *fileobj, long *cfd)
{
    PyObject *fd = fileobj_to_fd(s->st, fileobj, cfd);
    if (fd != NULL || !PyErr_ExceptionMatches(PyExc_ValueError)) {
        return fd;
    }
    for (int32_t i = s->head; i >= 0;) {
        sel_slot *sl = slot_find(s, i);
        assert(sl != NULL);
        if (PyTuple_GET_ITEM(slot_key(sl), 0) == fileobj) {
            PyErr_Clear();
            *cfd = i;
            fd = PyTuple_GET_ITEM(slot_key(sl), 1);
            return Py_NewRef(fd);
        }
        i = sl->next;
    }
    return NULL;
}

int
sel_find_slot(sel_object *s, PyObject *fileobj, long *cfd, sel_slot **sl)
{
    PyObject *fd = sel_lookup(s, fileobj, cfd);
    if (fd == NULL) {
        return -1;
    }
    Py_DECREF(fd);
    *sl = *cfd >= 0 ? slot_find(s, *cfd) : NULL;
    return 0;
}

sel_slot *
sel_registered_slot(sel_object *s, PyObject *fileobj, long *cfd)
{
    sel_slot *sl;
    if (sel_find_slot(s, fileobj, cfd, &sl) < 0) {
        return NULL;
    }
    if (sl == NULL) {
        sel_err_not_registered(fileobj);
    }
    return sl;
}

PyObject *
sel_registered_key(sel_object *s, PyObject *fileobj, long *cfd)
{
    sel_slot *sl = sel_registered_slot(s, fileobj, cfd);
    if (sl == NULL) {
        return NULL;
    }
    return Py_NewRef(slot_key(sl));
}

/* Keys are kept by C int fd: an fd beyond it gets the OverflowError any
 * poller gives it. */
static PyObject *
lookup_unregistered(sel_object *s, PyObject *fileobj, long *cfd)
{
    PyObject *fd = sel_lookup(s, fileobj, cfd);
    if (fd == NULL) {
        return NULL;
    }
    if (*cfd >= 0 && slot_find(s, *cfd) != NULL) {
        PyErr_Format(PyExc_KeyError, "%R (FD %S) is already registered",
                     fileobj, fd);
        Py_DECREF(fd);
        return NULL;
    }
    if (*cfd < 0) {
        PyErr_SetString(PyExc_OverflowError,
                        "Python int too large to convert to C int");
        Py_DECREF(fd);
        return NULL;
    }
    return fd;
}

/* bool(events & m), as Python computes it: 1, 0, or -1 with an
 * exception. */
static int
and_is_true(PyObject *events, long m)
{
    PyObject *mobj = PyLong_FromLong(m);
    PyObject *r = mobj != NULL ? PyNumber_And(events, mobj) : NULL;
    Py_XDECREF(mobj);
    if (r == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* `events & READ` and `events & WRITE` as Python computes them: the FS_*
 * mask, or -1 with an exception. */
static int
kernel_mask(PyObject *events)
{
    int mask = 0;
    for (int bit = FS_READ; bit <= FS_WRITE; bit <<= 1) {
        int t = and_is_true(events, bit);
        if (t < 0) {
            return -1;
        }
        if (t) {
            mask |= bit;
        }
    }
    return mask;
}

/* register()'s check `(not events) or (events & ~3)`: 0, or -1 with an
 * exception.  The poller's mask is computed after the key is stored, as
 * the stdlib does (sel_ctl.c). */
static int
check_events(PyObject *events)
{
    if (PyLong_CheckExact(events)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(events, &overflow);
        if (!overflow && v >= 1 && v <= 3) {
            return 0;
        }
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        goto invalid;
    }
    int t = PyObject_Not(events);
    if (t < 0) {
        return -1;
    }
    if (t) {
        goto invalid;
    }
    t = and_is_true(events, ~(long)(FS_READ | FS_WRITE));
    if (t < 0) {
        return -1;
    }
    if (t) {
        goto invalid;
    }
    return 0;

invalid:
    PyErr_Format(PyExc_ValueError, "Invalid events: %R", events);
    return -1;
}

/* `events & READ and IN | events & WRITE and OUT` without validation */
int
sel_poller_mask(PyObject *events)
{
    if (PyLong_CheckExact(events)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(events, &overflow);
        if (!overflow) {
            return (int)(v & (FS_READ | FS_WRITE));
        }
    }
    return kernel_mask(events);
}

/* no identity shortcut (unlike RichCompareBool), with a fast answer for
 * objects whose != is known to be plain */
int
sel_not_equal(PyObject *a, PyObject *b)
{
    if (a == b && (a == Py_None || PyLong_CheckExact(a)
                   || PyUnicode_CheckExact(a) || PyBytes_CheckExact(a))) {
        return 0;
    }
    if (PyLong_CheckExact(a) && PyLong_CheckExact(b)) {
        int o1, o2;
        long x = PyLong_AsLongAndOverflow(a, &o1);
        long y = PyLong_AsLongAndOverflow(b, &o2);
        if (!o1 && !o2) {
            return x != y;
        }
    }
    PyObject *r = PyObject_RichCompare(a, b, Py_NE);
    if (r == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* allocated directly on the stdlib's namedtuple type */
PyObject *
sel_new_key(fs_state *st, PyObject *fileobj, PyObject *fd, PyObject *events,
            PyObject *data)
{
    PyTypeObject *tp = (PyTypeObject *)st->selector_key_type;
    PyObject *key = tp->tp_alloc(tp, 4);
    if (key == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(key, 0, Py_NewRef(fileobj));
    PyTuple_SET_ITEM(key, 1, Py_NewRef(fd));
    PyTuple_SET_ITEM(key, 2, Py_NewRef(events));
    PyTuple_SET_ITEM(key, 3, Py_NewRef(data));
    return key;
}

PyObject *
sel_register_key(sel_object *s, PyObject *fileobj, PyObject *events,
                 PyObject *data, long *cfd)
{
    if (check_events(events) < 0) {
        return NULL;
    }
    PyObject *fd = lookup_unregistered(s, fileobj, cfd);
    if (fd == NULL) {
        return NULL;
    }
    PyObject *key = sel_new_key(s->st, fileobj, fd, events, data);
    Py_DECREF(fd);
    return key;
}

/* The stdlib's parameterless methods are Python functions: their texts for
 * any argument, not METH_NOARGS'. */
int
sel_no_args(sel_object *s, int meth, const char *name, PyObject *const *args,
            Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        return 0;
    }
    return fs_parse_pyfunc(s->kind->owner[meth], name, NULL, 0, 0, args,
                           nargs, kwnames, NULL);
}
