/* debug.c - the module's debug-only entry points for tests (FASTSEL_DEBUG). */
#include "fastsel.h"
#include "debug.h"

#ifdef FS_DEBUG

#include <stdatomic.h>

static const char *const syscall_names[FS_SYS_COUNT] = {
    "epoll_ctl", "epoll_wait", "kevent", "poll", "select",
};

/* [sys][0]: calls made without the GIL, [sys][1]: with it held */
static atomic_ulong syscall_calls[FS_SYS_COUNT][2];

void
fs_debug_syscall(fs_syscall sys)
{
    int held = PyGILState_Check() ? 1 : 0;
    atomic_fetch_add_explicit(&syscall_calls[sys][held], 1,
                              memory_order_relaxed);
}

/* _debug_syscalls() -> {name: (calls without the GIL, calls with it)} */
static PyObject *
debug_syscalls(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    for (int i = 0; i < FS_SYS_COUNT; i++) {
        PyObject *v = Py_BuildValue(
            "(kk)", atomic_load(&syscall_calls[i][0]),
            atomic_load(&syscall_calls[i][1]));
        if (v == NULL || PyDict_SetItemString(d, syscall_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyMethodDef debug_methods[] = {
    {"_debug_syscalls", debug_syscalls, METH_NOARGS,
     "_debug_syscalls()\n--\n\nKernel calls so far, by GIL state (debug "
     "builds only)."},
    {NULL, NULL, 0, NULL},
};

#endif /* FS_DEBUG */

int
fs_debug_setup(PyObject *module, fs_state *Py_UNUSED(st))
{
#ifdef FS_DEBUG
    if (PyModule_AddFunctions(module, debug_methods) < 0) {
        return -1;
    }
    return fs_add_object(module, "_debug", Py_True);
#else
    return fs_add_object(module, "_debug", Py_False);
#endif
}
