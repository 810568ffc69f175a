/* module.c - the module: state, multi-phase init, shared constants. */
#include "fastsel.h"
#include "debug.h"
#include "fork.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>

int
fs_add_ints(PyObject *module, const fs_int_const *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (PyModule_AddIntConstant(module, table[i].name,
                                    table[i].value) < 0) {
            return -1;
        }
    }
    return 0;
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

void
fs_errno_error(int err)
{
    if (err == FS_ENOMEM) {
        PyErr_NoMemory();       /* the backend's own memory */
        return;
    }
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
}

PyObject *
fs_close_fd(int *fd)
{
    int f = *fd, rc = 0;
    if (f >= 0) {
        *fd = -1;
        Py_BEGIN_ALLOW_THREADS
        rc = close(f);
        Py_END_ALLOW_THREADS
    }
    /* 3.15 reports a failed close(2) (gh-146205); closed either way */
    if (rc < 0 && fs_ver->close_raises) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

PyObject *
fs_closed_error(const char *kind)
{
    PyErr_Format(PyExc_ValueError, "I/O operation on closed %s object", kind);
    return NULL;
}

typedef int (*fs_setup_fn)(PyObject *, fs_state *);

/* Each object file contributes its types, functions and constants here. */
static const fs_setup_fn setup_hooks[] = {
    fs_fork_setup,          /* first: objects with kernel state rely on it */
    fs_select_setup,
    fs_poll_setup,
#ifdef FS_HAVE_KQUEUE
    fs_kqueue_setup,
#endif
#ifdef __linux__
    fs_epoll_setup,
#endif
    fs_selector_setup,      /* the selector classes use the backends */
    fs_debug_setup,
};

static int
fastsel_exec(PyObject *module)
{
    fs_state *st = fs_get_state(module);

    if (fs_pyver_init() < 0) {
        return -1;
    }
    st->str_fileno = PyUnicode_InternFromString("fileno");
    if (st->str_fileno == NULL) {
        return -1;
    }
    /* select.error has been an alias of OSError since 3.3 */
    if (fs_add_object(module, "error", PyExc_OSError) < 0) {
        return -1;
    }
#ifdef PIPE_BUF
    if (PyModule_AddIntConstant(module, "PIPE_BUF", PIPE_BUF) < 0) {
        return -1;
    }
#endif
    for (size_t i = 0; i < Py_ARRAY_LENGTH(setup_hooks); i++) {
        if (setup_hooks[i](module, st) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
fastsel_traverse(PyObject *module, visitproc visit, void *arg)
{
    fs_state *st = fs_get_state(module);
    Py_VISIT(st->poll_type);
    Py_VISIT(st->kqueue_type);
    Py_VISIT(st->kevent_type);
    Py_VISIT(st->epoll_type);
    return fs_selector_traverse(st, visit, arg) ? -1 : 0;
}

static int
fastsel_clear(PyObject *module)
{
    fs_state *st = fs_get_state(module);
    Py_CLEAR(st->poll_type);
    Py_CLEAR(st->kqueue_type);
    Py_CLEAR(st->kevent_type);
    Py_CLEAR(st->epoll_type);
    fs_selector_clear(st);
    Py_CLEAR(st->str_fileno);
    return 0;
}

static void
fastsel_free(void *module)
{
    (void)fastsel_clear((PyObject *)module);
}

static PyModuleDef_Slot fastsel_slots[] = {
    {Py_mod_exec, fastsel_exec},
#ifdef FS_PY_HAVE_MULTIPLE_INTERPRETERS_SLOT
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(fastsel_doc,
"C core of fastsel: the select module's surface (select, poll, epoll,\n"
"kqueue) and the selectors' hot paths.  Use the fastsel package.");

struct PyModuleDef fs_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastsel._fastsel",
    .m_doc = fastsel_doc,
    .m_size = sizeof(fs_state),
    .m_slots = fastsel_slots,
    .m_traverse = fastsel_traverse,
    .m_clear = fastsel_clear,
    .m_free = fastsel_free,
};

PyMODINIT_FUNC
PyInit__fastsel(void)
{
    return PyModuleDef_Init(&fs_module_def);
}
