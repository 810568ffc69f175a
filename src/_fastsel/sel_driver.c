/* sel_driver.c - a replaced _selector_cls: when _selector_cls (looked up on
 * the instance, as the stdlib's __init__ does) is not fastsel's own
 * epoll/poll/kqueue, the kernel object is made by calling it and driven by
 * fastsel._selectors' driver for the class, which calls the object's Python
 * methods with the stdlib's arguments.  The keys stay in the slot table; the
 * order of the bookkeeping and of the driver calls, and the error handling
 * around them, are those of _PollLikeSelector, EpollSelector and
 * KqueueSelector. */
#include "selector.h"

/* _BaseSelectorImpl.unregister: drop fileobj's key (looked up again, as the
 * stdlib does, fileno() included) and return it. */
static PyObject *
base_unregister(sel_object *s, PyObject *fileobj)
{
    long cfd;
    sel_slot *sl = sel_registered_slot(s, fileobj, &cfd);
    if (sl == NULL) {
        return NULL;
    }
    return slot_take(s, (int)cfd, sl);
}

/* `except: super().unregister(fileobj); raise`: the key goes, the driver's
 * exception is the one raised. */
static void
drop_after_failure(sel_object *s, PyObject *fileobj)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *k = base_unregister(s, fileobj);
    if (k == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(k);
    PyErr_Restore(type, value, tb);
}

PyObject *
sel_call_driver(sel_object *s, const char *meth, PyObject *a, PyObject *b)
{
    PyObject *name = PyUnicode_FromString(meth);
    if (name == NULL) {
        return NULL;
    }
    /* the driver may close or release the selector: keep it alive */
    PyObject *drv = s->driver;
    Py_INCREF(drv);
    PyObject *r = PyObject_CallMethodObjArgs(drv, name, a, b, NULL);
    Py_DECREF(drv);
    Py_DECREF(name);
    return r;
}

PyObject *
sel_py_register(sel_object *s, PyObject *fileobj, PyObject *events,
                PyObject *data)
{
    long cfd;
    int mask;
    PyObject *key = sel_register_key(s, fileobj, events, data, &cfd, &mask);
    if (key == NULL) {
        return NULL;
    }
    /* the driver's kernel object keeps the interest: the slot, none */
    if (slot_store(s, (int)cfd, key, 0, 0) == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *r = sel_call_driver(s, "register", PyTuple_GET_ITEM(key, 1),
                                  events);
    if (r == NULL) {
        drop_after_failure(s, fileobj);
        Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(r);
    return key;
}

PyObject *
sel_py_unregister(sel_object *s, PyObject *fileobj)
{
    PyObject *key = base_unregister(s, fileobj);
    if (key == NULL) {
        return NULL;
    }
    /* the driver ignores OSError (an fd closed since registration) */
    PyObject *r = sel_call_driver(s, "unregister", PyTuple_GET_ITEM(key, 1),
                                  PyTuple_GET_ITEM(key, 2));
    if (r == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(r);
    return key;
}

/* _PollLikeSelector.modify */
PyObject *
sel_py_modify(sel_object *s, PyObject *fileobj, PyObject *events,
              PyObject *data)
{
    long cfd;
    PyObject *key = sel_registered_key(s, fileobj, &cfd);
    if (key == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    int ne = sel_not_equal(events, PyTuple_GET_ITEM(key, 2));
    if (ne < 0) {
        goto done;
    }
    if (ne) {
        PyObject *r = sel_call_driver(s, "modify", PyTuple_GET_ITEM(key, 1),
                                      events);
        if (r == NULL) {
            drop_after_failure(s, fileobj);
            goto done;
        }
        Py_DECREF(r);
    }
    int dne = sel_not_equal(data, PyTuple_GET_ITEM(key, 3));
    if (dne < 0) {
        goto done;
    }
    if (!ne && !dne) {
        result = key;
        Py_INCREF(result);
        goto done;
    }
    /* the driver's kernel object keeps the interest: the slot, none */
    result = sel_replace_key(s, cfd, key, events, data, 0);
done:
    Py_DECREF(key);
    return result;
}

/* The stdlib's _fd_to_key as the driver's select() reads it after the
 * kernel object's wait: a dict {key.fd: key} of the current keys. */
static PyObject *
sel_py_keys(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    sel_object *s = (sel_object *)self;
    PyObject *d = PyDict_New();
    for (int32_t fd = s->head; d != NULL && fd >= 0;) {
        sel_slot *sl = slot_find(s, fd);
        PyObject *key = slot_key(sl);
        if (PyDict_SetItem(d, PyTuple_GET_ITEM(key, 1), key) < 0) {
            Py_CLEAR(d);
            break;
        }
        /* PyDict_SetItem may run a key's __eq__: look the slot up again */
        sl = slot_find(s, fd);
        fd = sl != NULL ? sl->next : -1;
    }
    return d;
}

static PyMethodDef sel_py_keys_def = {
    "_fd_to_key", sel_py_keys, METH_NOARGS, NULL,
};

PyObject *
sel_py_select(sel_object *s, PyObject *timeout)
{
    PyObject *keys = PyCFunction_New(&sel_py_keys_def, (PyObject *)s);
    if (keys == NULL) {
        return NULL;
    }
    PyObject *count = PyLong_FromSsize_t(s->count);
    PyObject *name = PyUnicode_FromString("select");
    PyObject *r = NULL;
    if (count != NULL && name != NULL) {
        PyObject *drv = s->driver;
        Py_INCREF(drv);
        r = PyObject_CallMethodObjArgs(drv, name, timeout, count, keys,
                                       NULL);
        Py_DECREF(drv);
    }
    Py_XDECREF(name);
    Py_XDECREF(count);
    Py_DECREF(keys);
    return r;
}

/* The kernel object and its driver, for a _selector_cls that is not
 * fastsel's mechanism of this kind.  0: native, 1: driver, -1: error. */
int
sel_choose_backend(sel_object *s, PyObject *module)
{
    const sel_kind *k = s->kind;
    if (k->is_native == NULL) {
        return 0;               /* the class has no _selector_cls */
    }
    /* interned: the type attribute cache then answers */
    PyObject *cls = PyObject_GetAttr((PyObject *)s, s->st->str_selector_cls);
    if (cls == NULL) {
        return -1;
    }
    if (k->is_native(cls, module, s->st)) {
        Py_DECREF(cls);
        return 0;
    }
    PyObject *kernel = PyObject_CallNoArgs(cls);
    Py_DECREF(cls);
    if (kernel == NULL) {
        return -1;
    }
    PyObject *mod = PyImport_ImportModule("fastsel._selectors");
    PyObject *make = mod ? PyObject_GetAttrString(mod, "_driver") : NULL;
    Py_XDECREF(mod);
    if (make == NULL) {
        Py_DECREF(kernel);
        return -1;
    }
    s->driver = PyObject_CallFunction(make, "sO", k->name, kernel);
    Py_DECREF(make);
    Py_DECREF(kernel);
    return s->driver == NULL ? -1 : 1;
}
