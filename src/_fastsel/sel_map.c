/* sel_map.c - get_map()'s read-only mapping (fileobj -> key, the stdlib's
 * _SelectorMapping with collections.abc.Mapping mixed in) and its iterator,
 * both live views of the slot table. */
#include "selector.h"

typedef struct {
    PyObject_HEAD
    sel_object *sel;        /* NULL once tp_clear broke a cycle */
    fs_state *st;
} map_object;

typedef struct {
    PyObject_HEAD
    sel_object *sel;        /* NULL when exhausted */
    int32_t next;
    uint32_t next_gen;
    Py_ssize_t count;
} mapiter_object;

PyObject *
sel_map_new(sel_object *s)
{
    if (s->map == NULL) {
        PyTypeObject *tp = (PyTypeObject *)s->st->selmap_type;
        map_object *m = (map_object *)tp->tp_alloc(tp, 0);
        if (m == NULL) {
            return NULL;
        }
        m->sel = (sel_object *)Py_NewRef(s);
        m->st = s->st;
        s->map = (PyObject *)m;
    }
    return Py_NewRef(s->map);
}

static PyObject *
map_lookup(map_object *m, PyObject *fileobj, PyObject *dflt)
{
    sel_object *s = m->sel;
    long cfd;
    sel_slot *sl = NULL;
    /* NULL: tp_clear broke a cycle; the mapping is then empty */
    if (s != NULL && sel_find_slot(s, fileobj, &cfd, &sl) < 0) {
        return NULL;
    }
    if (sl == NULL) {
        if (dflt == NULL) {
            return sel_err_not_registered(fileobj);
        }
        return Py_NewRef(dflt);
    }
    return Py_NewRef(slot_key(sl));
}

static PyObject *
map_getitem(map_object *m, PyObject *fileobj)
{
    return map_lookup(m, fileobj, NULL);
}

static const char *const names_get_own[] = {"fileobj", "default"};
static const char *const names_get_abc[] = {"key", "default"};

static PyObject *
map_get(map_object *m, PyObject *const *args, Py_ssize_t nargs,
        PyObject *kwnames)
{
    PyObject *a[2];
    if (kwnames == NULL && nargs >= 1 && nargs <= 2) {
        a[0] = args[0];
        a[1] = nargs == 2 ? args[1] : Py_None;
    }
    else {
        int own = fs_ver->map_own_get;
        if (fs_parse_pyfunc(own ? "_SelectorMapping" : "Mapping", "get",
                       own ? names_get_own : names_get_abc, 1, 2, args,
                       nargs, kwnames, a) < 0) {
            return NULL;
        }
        if (a[1] == NULL) {
            a[1] = Py_None;
        }
    }
    return map_lookup(m, a[0], a[1]);
}

static int
map_contains(map_object *m, PyObject *fileobj)
{
    PyObject *r = map_lookup(m, fileobj, Py_False);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return r != Py_False;
}

static Py_ssize_t
map_len(map_object *m)
{
    return m->sel != NULL ? m->sel->count : 0;
}

static PyObject *
map_iter(map_object *m)
{
    sel_object *s = m->sel;
    mapiter_object *it = PyObject_GC_New(mapiter_object,
                                         m->st->selmap_iter_type);
    if (it == NULL) {
        return NULL;
    }
    Py_XINCREF(s);
    it->sel = s;
    it->next = s != NULL ? s->head : -1;
    it->next_gen = it->next >= 0 ? slot_find(s, s->head)->gen : 0;
    it->count = s != NULL ? s->count : 0;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static int
map_traverse(map_object *m, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(m));
    Py_VISIT(m->sel);
    return 0;
}

static int
map_clear(map_object *m)
{
    Py_CLEAR(m->sel);
    return 0;
}

static void
map_dealloc(map_object *m)
{
    PyTypeObject *tp = Py_TYPE(m);
    PyObject_GC_UnTrack(m);
    (void)map_clear(m);
    tp->tp_free((PyObject *)m);
    Py_DECREF(tp);
}

static PyMethodDef map_methods[] = {
    {"get", (PyCFunction)(void (*)(void))map_get,
     METH_FASTCALL | METH_KEYWORDS,
     "get(fileobj, default=None)\n--\n\nThe key for fileobj, or default."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot map_slots[] = {
    {Py_mp_subscript, map_getitem},
    {Py_mp_length, map_len},
    {Py_sq_length, map_len},
    {Py_sq_contains, map_contains},
    {Py_tp_iter, map_iter},
    {Py_tp_methods, map_methods},
    {Py_tp_traverse, map_traverse},
    {Py_tp_clear, map_clear},
    {Py_tp_dealloc, map_dealloc},
    {0, NULL},
};

static PyType_Spec map_spec = {
    .name = "fastsel._SelectorMappingImpl",
    .basicsize = sizeof(map_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = map_slots,
};

static PyObject *
mapiter_next(mapiter_object *it)
{
    sel_object *s = it->sel;
    if (s == NULL) {
        return NULL;
    }
    if (s->count != it->count) {
        Py_CLEAR(it->sel);
        PyErr_SetString(PyExc_RuntimeError,
                        "dictionary changed size during iteration");
        return NULL;
    }
    if (it->next < 0) {
        Py_CLEAR(it->sel);
        return NULL;
    }
    sel_slot *sl = slot_find(s, it->next);
    if (sl == NULL || sl->gen != it->next_gen) {
        Py_CLEAR(it->sel);
        PyErr_SetString(PyExc_RuntimeError,
                        "dictionary keys changed during iteration");
        return NULL;
    }
    PyObject *fd = PyTuple_GET_ITEM(slot_key(sl), 1);
    it->next = sl->next;
    it->next_gen = sl->next >= 0 ? slot_find(s, sl->next)->gen : 0;
    return Py_NewRef(fd);
}

static PyObject *
mapiter_length_hint(mapiter_object *it, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t n = 0;
    if (it->sel != NULL && it->sel->count == it->count) {
        for (int32_t fd = it->next; fd >= 0; n++) {
            sel_slot *sl = slot_find(it->sel, fd);
            if (sl == NULL) {
                break;
            }
            fd = sl->next;
        }
    }
    return PyLong_FromSsize_t(n);
}

static int
mapiter_traverse(mapiter_object *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->sel);
    return 0;
}

static void
mapiter_dealloc(mapiter_object *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    Py_CLEAR(it->sel);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

static PyMethodDef mapiter_methods[] = {
    {"__length_hint__", (PyCFunction)mapiter_length_hint, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot mapiter_slots[] = {
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, mapiter_next},
    {Py_tp_traverse, mapiter_traverse},
    {Py_tp_dealloc, mapiter_dealloc},
    {Py_tp_methods, mapiter_methods},
    {0, NULL},
};

static PyType_Spec mapiter_spec = {
    .name = "fastsel._SelectorMappingIterator",
    .basicsize = sizeof(mapiter_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = mapiter_slots,
};

static int
make_mapping_class(PyObject *module, fs_state *st)
{
    /* class _SelectorMapping(_SelectorMappingImpl, collections.abc.Mapping):
     * the C methods come first; Mapping adds keys/items/values/__eq__ and
     * makes isinstance(m, Mapping) true, as the stdlib's class does. */
    PyObject *abc = PyImport_ImportModule("collections.abc");
    if (abc == NULL) {
        return -1;
    }
    PyObject *mapping = PyObject_GetAttrString(abc, "Mapping");
    Py_DECREF(abc);
    if (mapping == NULL) {
        return -1;
    }
    PyObject *ns = Py_BuildValue("{s:(),s:s,s:s}", "__slots__", "__module__",
                                 "fastsel", "__doc__",
                                 "Mapping of file objects to selector keys.");
    PyObject *cls = NULL;
    if (ns != NULL) {
        cls = PyObject_CallFunction((PyObject *)Py_TYPE(mapping), "s(OO)O",
                                    "_SelectorMapping",
                                    (PyObject *)st->selmap_base_type, mapping,
                                    ns);
    }
    Py_XDECREF(ns);
    Py_DECREF(mapping);
    if (cls == NULL) {
        return -1;
    }
    st->selmap_type = cls;
    return fs_add_object(module, "_SelectorMapping", cls);
}

int
sel_map_setup(PyObject *module, fs_state *st)
{
    st->selmap_base_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &map_spec, NULL);
    if (st->selmap_base_type == NULL) {
        return -1;
    }
    st->selmap_iter_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &mapiter_spec, NULL);
    if (st->selmap_iter_type == NULL) {
        return -1;
    }
    return make_mapping_class(module, st);
}
