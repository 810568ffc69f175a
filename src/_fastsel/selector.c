/* selector.c - the selector classes' methods other than register/modify/
 * select, their types, construction, GC and setup.  The layout of the
 * selector files is described in selector.h. */
#include "selector.h"
#include "fork.h"

#include <stdlib.h>

/* ---- the rest of the selector API --------------------------------------- */

static PyObject *
sel_close(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    SEL_FORWARD(s, "close", args, nargs, kwnames);
    if (sel_no_args(s, SEL_M_CLOSE, "close", args, nargs, kwnames) < 0) {
        return NULL;
    }
    if (s->closed) {
        Py_RETURN_NONE;
    }
    s->closed = 1;
    Py_CLEAR(s->map);
    sel_forget_all(s);
    if (s->fork_seen != fs_fork_generation()) {
        /* the inherited backend: release the child's copy only */
        s->fork_seen = fs_fork_generation();
        s->busy = 0;
        sel_ctl_init(s);
    }
    sel_finish_close(s);
    Py_RETURN_NONE;
}

static PyObject *
sel_get_key(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    SEL_FORWARD(s, "get_key", args, nargs, kwnames);
    static const char *const names[] = {"fileobj"};
    PyObject *fileobj;
    if (kwnames == NULL && nargs == 1) {
        fileobj = args[0];
    }
    else if (fs_parse_pyfunc(s->kind->owner[SEL_M_OTHER], "get_key", names,
                             1, 1, args, nargs, kwnames, &fileobj) < 0) {
        return NULL;
    }
    if (s->closed) {
        return sel_err_closed();
    }
    long cfd;
    return sel_registered_key(s, fileobj, &cfd);
}

static PyObject *
sel_get_map(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    SEL_FORWARD(s, "get_map", args, nargs, kwnames);
    if (sel_no_args(s, SEL_M_GET_MAP, "get_map", args, nargs, kwnames) < 0) {
        return NULL;
    }
    if (s->closed) {
        Py_RETURN_NONE;
    }
    return sel_map_new(s);
}

static PyObject *
sel_fileno(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    SEL_FORWARD(s, "fileno", args, nargs, kwnames);
    if (sel_no_args(s, SEL_M_FILENO, "fileno", args, nargs, kwnames) < 0) {
        return NULL;
    }
    if (s->closed) {
        return fs_closed_error(s->ops->name);
    }
    if (sel_ready(s) < 0) {
        return NULL;
    }
    return PyLong_FromLong(s->ops->fileno(s->be));
}

static PyObject *
sel_enter(sel_object *s, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    if (sel_no_args(s, SEL_M_OTHER, "__enter__", args, nargs, kwnames) < 0) {
        return NULL;
    }
    return Py_NewRef(s);
}

static PyObject *
sel_exit(sel_object *s, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    /* self.close(): a subclass may extend it */
    return PyObject_CallMethod((PyObject *)s, "close", NULL);
}

/* ---- construction and GC ------------------------------------------------ */

/* The first of our classes in type's MRO, as method lookup finds it. */
static const sel_kind *
kind_of(fs_state *st, PyTypeObject *type)
{
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        for (int k = 0; k < FS_SELECTOR_KINDS; k++) {
            if (st->selector_types[k] != NULL
                && PyTuple_GET_ITEM(mro, i)
                   == (PyObject *)st->selector_types[k]) {
                return &sel_kinds[k];
            }
        }
    }
    return NULL;
}

static PyObject *
sel_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    /* our module's state, and the mechanism, through the MRO */
    PyObject *module = PyType_GetModuleByDef(type, &fs_module_def);
    if (module == NULL) {
        PyErr_Clear();
    }
    fs_state *st = module ? fs_get_state(module) : NULL;
    const sel_kind *kind = st != NULL ? kind_of(st, type) : NULL;
    if (kind == NULL) {
        PyErr_Format(PyExc_TypeError, "cannot create '%s' instances",
                     type->tp_name);
        return NULL;
    }
    if (type == st->selector_types[kind->index]
        && (PyTuple_GET_SIZE(args) || (kwargs && PyDict_GET_SIZE(kwargs)))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", kind->name);
        return NULL;
    }
    sel_object *s = (sel_object *)type->tp_alloc(type, 0);
    if (s == NULL) {
        return NULL;
    }
    sel_ctl_init(s);
    s->st = st;
    s->kind = kind;
    s->ops = kind->ops;
    s->head = s->tail = -1;
    s->fork_seen = fs_fork_generation();
    int rc = sel_choose_backend(s, module);
    if (rc < 0) {
        Py_DECREF(s);
        return NULL;
    }
    if (rc > 0) {
        s->ops = NULL;
        return (PyObject *)s;
    }
    /* The kernel object is made now, as the stdlib does, so EMFILE (or a
     * mechanism the kernel refuses) surfaces here and DefaultSelector's
     * probe sees it. */
    if (sel_open_backend(s) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static int
sel_traverse(sel_object *s, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->dict);
    Py_VISIT(s->map);
    Py_VISIT(s->driver);
    /* the registered slots, in registration order: O(keys), not O(fds) */
    for (int32_t fd = s->head; fd >= 0;) {
        sel_slot *sl = slot_find(s, fd);
        Py_VISIT(slot_obj(sl));
        fd = sl->next;
    }
    return 0;
}

static int
sel_clear(sel_object *s)
{
    Py_CLEAR(s->dict);
    Py_CLEAR(s->map);
    Py_CLEAR(s->driver);
    sel_forget_all(s);
    return 0;
}

static void
sel_dealloc(sel_object *s)
{
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    if (s->weaklist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)s);
    }
    (void)sel_clear(s);
    if (s->be != NULL) {
        s->ops->free(s->be);
        s->be = NULL;
    }
    PyMem_Free(s->evbuf);
    if (s->fork_seen == fs_fork_generation()) {
        /* a forked child's copy may be held by a thread it does not have:
         * not touched (glibc's destroy would wait for its waiters) */
        pthread_mutex_destroy(&s->ctl_mu);
        pthread_cond_destroy(&s->ctl_cv);
    }
    tp->tp_free((PyObject *)s);
    Py_DECREF(tp);
}

static PyMethodDef sel_methods[] = {
    {"register", (PyCFunction)(void (*)(void))sel_register,
     METH_FASTCALL | METH_KEYWORDS,
     "register(fileobj, events, data=None)\n--\n\nRegister a file object."},
    {"unregister", (PyCFunction)(void (*)(void))sel_unregister,
     METH_FASTCALL | METH_KEYWORDS,
     "unregister(fileobj)\n--\n\nUnregister a file object."},
    {"modify", (PyCFunction)(void (*)(void))sel_modify,
     METH_FASTCALL | METH_KEYWORDS,
     "modify(fileobj, events, data=None)\n--\n\n"
     "Change a registered file object's events or data."},
    {"select", (PyCFunction)(void (*)(void))sel_select,
     METH_FASTCALL | METH_KEYWORDS,
     "select(timeout=None)\n--\n\n"
     "Wait for readiness; a list of (key, events)."},
    {"close", (PyCFunction)(void (*)(void))sel_close,
     METH_FASTCALL | METH_KEYWORDS,
     "close()\n--\n\nClose the selector and forget every key."},
    {"get_key", (PyCFunction)(void (*)(void))sel_get_key,
     METH_FASTCALL | METH_KEYWORDS,
     "get_key(fileobj)\n--\n\nThe key registered for a file object."},
    {"get_map", (PyCFunction)(void (*)(void))sel_get_map,
     METH_FASTCALL | METH_KEYWORDS,
     "get_map()\n--\n\nA read-only mapping of file objects to keys."},
    {"__enter__", (PyCFunction)(void (*)(void))sel_enter,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))sel_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef sel_fileno_methods[] = {
    {"fileno", (PyCFunction)(void (*)(void))sel_fileno,
     METH_FASTCALL | METH_KEYWORDS,
     "fileno()\n--\n\nThe kernel object's file descriptor."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef sel_members[] = {
    {"__dictoffset__", Py_T_PYSSIZET, offsetof(sel_object, dict),
     Py_READONLY, NULL},
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(sel_object, weaklist),
     Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

/* The stdlib's _map attribute: what get_map() returns (None once closed). */
static PyObject *
sel_get_map_attr(PyObject *self, void *Py_UNUSED(closure))
{
    sel_object *s = (sel_object *)self;
    if (s->driver != NULL) {
        return PyObject_GetAttrString(s->driver, "_map");
    }
    return sel_get_map(s, NULL, 0, NULL);
}

static PyGetSetDef sel_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"_map", sel_get_map_attr, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sel_base_slots[] = {
    {Py_tp_getset, sel_getset},
    {Py_tp_new, sel_new},
    {Py_tp_dealloc, sel_dealloc},
    {Py_tp_traverse, sel_traverse},
    {Py_tp_clear, sel_clear},
    {Py_tp_methods, sel_methods},
    {Py_tp_members, sel_members},
    {Py_tp_doc, "Base of fastsel's selector classes."},
    {0, NULL},
};

static PyType_Spec sel_base_spec = {
    .name = "fastsel._SelectorImpl",
    .basicsize = sizeof(sel_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = sel_base_slots,
};

/* The stdlib's class attribute _selector_cls: the kernel object's maker
 * (the epoll and kqueue types, the poll() function; none for select).
 * Replacing it makes the class drive whatever it makes instead. */
static int
set_selector_cls(PyObject *module, fs_state *st, const sel_kind *k)
{
    if (k->selector_cls == NULL) {
        return 0;
    }
    PyObject *cls = k->selector_cls(module, st);
    if (cls == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ImportError, "no kernel object type");
        }
        return -1;
    }
    int rc = PyObject_SetAttr((PyObject *)st->selector_types[k->index],
                              st->str_selector_cls, cls);
    Py_DECREF(cls);
    return rc;
}

/* One selector class on the base type, for a row whose backend this build
 * has. */
static int
make_selector_class(PyObject *module, fs_state *st, const sel_kind *k)
{
    PyType_Slot slots[4] = {
        {Py_tp_traverse, sel_traverse}, {Py_tp_clear, sel_clear},
        {0, NULL}, {0, NULL},
    };
    if (k->has_fileno) {
        slots[2].slot = Py_tp_methods;
        slots[2].pfunc = sel_fileno_methods;
    }
    PyType_Spec spec = {
        .name = k->type_name,
        .basicsize = sizeof(sel_object),
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
        .slots = slots,
    };
    /* 3.9 wants the bases as a tuple */
    PyObject *bases = PyTuple_Pack(1, (PyObject *)st->selector_base_type);
    if (bases == NULL) {
        return -1;
    }
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &spec, bases);
    Py_DECREF(bases);
    if (tp == NULL) {
        return -1;
    }
    st->selector_types[k->index] = tp;
    if (fs_add_object(module, k->name, (PyObject *)tp) < 0) {
        return -1;
    }
    return set_selector_cls(module, st, k);
}

#ifdef FS_DEBUG
/* FASTSEL_DEBUG_DIRECT_MAX: a lower SEL_DIRECT_MAX, so that tests reach
 * the far list with the fds this machine allows. */
static void
debug_direct_max(void)
{
    const char *v = getenv("FASTSEL_DEBUG_DIRECT_MAX");
    /* digits by hand: glibc 2.38's headers map strtol() to
     * __isoc23_strtol, too recent for the manylinux floor */
    long n = 0;
    for (; v != NULL && *v >= '0' && *v <= '9' && n < (1 << 20); v++) {
        n = n * 10 + (*v - '0');
    }
    if (n > 0 && n < (1 << 20)) {
        sel_direct_max = (int)n;
    }
}
#endif

int
fs_selector_setup(PyObject *module, fs_state *st)
{
#ifdef FS_DEBUG
    debug_direct_max();
#endif
    st->str_selector_cls = PyUnicode_InternFromString("_selector_cls");
    if (st->str_selector_cls == NULL) {
        return -1;
    }

    PyObject *selectors = PyImport_ImportModule("selectors");
    if (selectors == NULL) {
        return -1;
    }
    st->selector_key_type = PyObject_GetAttrString(selectors, "SelectorKey");
    Py_DECREF(selectors);
    if (st->selector_key_type == NULL) {
        return -1;
    }
    if (!PyType_Check(st->selector_key_type)
        || !PyType_IsSubtype((PyTypeObject *)st->selector_key_type,
                             &PyTuple_Type)) {
        PyErr_SetString(PyExc_ImportError,
                        "selectors.SelectorKey is not the stdlib's "
                        "namedtuple");
        return -1;
    }
    st->selector_base_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &sel_base_spec, NULL);
    if (st->selector_base_type == NULL) {
        return -1;
    }
    for (int k = 0; k < FS_SELECTOR_KINDS; k++) {
        assert(sel_kinds[k].index == k);
        if (sel_kinds[k].ops != NULL
            && make_selector_class(module, st, &sel_kinds[k]) < 0) {
            return -1;
        }
    }
    return sel_map_setup(module, st);
}

int
fs_selector_traverse(fs_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->selector_key_type);
    Py_VISIT(st->selector_base_type);
    for (int k = 0; k < FS_SELECTOR_KINDS; k++) {
        Py_VISIT(st->selector_types[k]);
    }
    Py_VISIT(st->selmap_base_type);
    Py_VISIT(st->selmap_type);
    Py_VISIT(st->selmap_iter_type);
    Py_VISIT(st->str_selector_cls);
    return 0;
}

void
fs_selector_clear(fs_state *st)
{
    Py_CLEAR(st->selector_key_type);
    Py_CLEAR(st->selector_base_type);
    for (int k = 0; k < FS_SELECTOR_KINDS; k++) {
        Py_CLEAR(st->selector_types[k]);
    }
    Py_CLEAR(st->selmap_base_type);
    Py_CLEAR(st->selmap_type);
    Py_CLEAR(st->selmap_iter_type);
    Py_CLEAR(st->str_selector_cls);
}
