/* sel_driver.c - a replaced _selector_cls: the stdlib's own class runs over
 * the object the replacement makes, and the C class hands it every call.
 *
 * When _selector_cls (looked up on the instance, as the stdlib's __init__
 * does) is not fastsel's own epoll/poll/kqueue, the selector gets a
 * delegate (fastsel/_selectors.py): an instance of the stdlib's class whose
 * register/unregister, which the stdlib's modify() calls on self, come back
 * to this object.  Each method of the C class then calls the stdlib's
 * method on the delegate with the caller's arguments: the stdlib's logic,
 * argument errors, keys and mapping, exactly. */
#include "selector.h"

#include <string.h>

PyObject *
sel_forward(sel_object *s, const char *meth, PyObject *const *args,
            Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *name = PyUnicode_FromFormat("_std_%s", meth);
    if (name == NULL) {
        return NULL;
    }
    Py_ssize_t n = nargs + (kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8], **stack = small;
    if (n + 1 > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
        stack = PyMem_Malloc((size_t)(n + 1) * sizeof(*stack));
        if (stack == NULL) {
            Py_DECREF(name);
            return PyErr_NoMemory();
        }
    }
    /* the call may close or release the selector: keep the delegate */
    PyObject *drv = s->driver;
    Py_INCREF(drv);
    stack[0] = drv;
    if (n > 0) {
        memcpy(stack + 1, args, (size_t)n * sizeof(*stack));
    }
    PyObject *r = PyObject_VectorcallMethod(name, stack, (size_t)nargs + 1,
                                            kwnames);
    Py_DECREF(drv);
    Py_DECREF(name);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return r;
}

int
sel_choose_backend(sel_object *s, PyObject *module)
{
    const sel_kind *k = s->kind;
    if (k->selector_cls == NULL) {
        return 0;               /* the class has no _selector_cls */
    }
    /* interned: the type attribute cache then answers */
    PyObject *cls = PyObject_GetAttr((PyObject *)s, s->st->str_selector_cls);
    if (cls == NULL) {
        return -1;
    }
    PyObject *own = k->selector_cls(module, s->st);
    PyErr_Clear();              /* no poll in the module: not ours */
    int native = own != NULL && cls == own;
    Py_XDECREF(own);
    Py_DECREF(cls);
    if (native) {
        return 0;
    }
    PyObject *mod = PyImport_ImportModule("fastsel._selectors");
    PyObject *make = mod ? PyObject_GetAttrString(mod, "_delegate") : NULL;
    Py_XDECREF(mod);
    if (make == NULL) {
        return -1;
    }
    s->driver = PyObject_CallFunction(make, "sO", k->name, (PyObject *)s);
    Py_DECREF(make);
    return s->driver == NULL ? -1 : 1;
}
