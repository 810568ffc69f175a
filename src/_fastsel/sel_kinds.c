/* sel_kinds.c - the selector kind table: one row per class, holding every
 * way in which the stdlib's EpollSelector, PollSelector, SelectSelector and
 * KqueueSelector differ.  Adding a selector class is adding a row. */
#include "selector.h"

/* epoll and kqueue: the select-module type is _selector_cls */
static PyObject *
type_ref(PyTypeObject *tp)
{
    Py_XINCREF(tp);
    return (PyObject *)tp;
}

static PyObject *
epoll_cls(PyObject *Py_UNUSED(module), fs_state *st)
{
    return type_ref(st->epoll_type);
}

static PyObject *
kqueue_cls(PyObject *Py_UNUSED(module), fs_state *st)
{
    return type_ref(st->kqueue_type);
}

static PyObject *
poll_cls(PyObject *module, fs_state *Py_UNUSED(st))
{
    return PyObject_GetAttrString(module, "poll");
}

const sel_kind sel_kinds[FS_SELECTOR_KINDS] = {
    {
        .index = 0,
        .name = "EpollSelector",
        .type_name = "fastsel.EpollSelector",
#ifdef __linux__
        .ops = &fs_epoll_backend,
#endif
        .owner = {"_PollLikeSelector", "_PollLikeSelector", "EpollSelector",
                  "EpollSelector", "_BaseSelectorImpl", "EpollSelector",
                  "BaseSelector"},
        .timeout = sel_epoll_timeout,
        .poller_timeout = &fs_epoll_timeout,
        .modify_poller = 1,
        .bool_warn_ctl = 1,
        .per_key = 1,
        .has_fileno = 1,
        .selector_cls = epoll_cls,
    },
    {
        .index = 1,
        .name = "PollSelector",
        .type_name = "fastsel.PollSelector",
        .ops = &fs_poll_backend,
        .owner = {"_PollLikeSelector", "_PollLikeSelector",
                  "_PollLikeSelector", "_BaseSelectorImpl",
                  "_BaseSelectorImpl", "PollSelector", "BaseSelector"},
        .timeout = sel_poll_timeout,
        .poller_timeout = &fs_poll_timeout,
        .modify_poller = 1,
        .bool_warn_ctl = 1,
        .unregister_missing = 1,
        .per_key = 1,
        .selector_cls = poll_cls,
    },
    {
        .index = 2,
        .name = "SelectSelector",
        .type_name = "fastsel.SelectSelector",
        .ops = &fs_select_backend,
        .owner = {"SelectSelector", "_BaseSelectorImpl", "SelectSelector",
                  "_BaseSelectorImpl", "_BaseSelectorImpl", "SelectSelector",
                  "BaseSelector"},
        .timeout = sel_max0_timeout,
        .poller_timeout = &fs_select_timeout,
        .bool_warn_select = 1,
        .per_key = 1,
        /* no _selector_cls */
    },
    {
        .index = 3,
        .name = "KqueueSelector",
        .type_name = "fastsel.KqueueSelector",
#ifdef FS_HAVE_KQUEUE
        .ops = &fs_kqueue_backend,
#endif
        .owner = {"KqueueSelector", "_BaseSelectorImpl", "KqueueSelector",
                  "KqueueSelector", "_BaseSelectorImpl", "KqueueSelector",
                  "BaseSelector"},
        .timeout = sel_max0_timeout,
        .poller_timeout = &fs_kqueue_timeout,
        .per_key = 2,           /* a read and a write filter */
        .has_fileno = 1,
        .selector_cls = kqueue_cls,
    },
};
