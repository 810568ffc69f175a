/* pyver.c - the version table: what differs between CPython versions, one
 * row per version (see pyver.h for what each column means). */
#include "pyver.h"

static const char PYTIME_OLD[] =
    "timestamp too large to convert to C _PyTime_t";
static const char PYTIME_13[] = "timestamp too large to convert to C PyTime_t";
static const char TIME_T[] = "timestamp out of range for platform time_t";
static const char PYTIME_RANGE[] = "timestamp out of range for C PyTime_t";

/* Rows in version order; the last row whose minor is <= the running one
 * applies, so a new CPython that changes nothing needs no row at all. */
static const fs_pyver rows[] = {
    {.minor = 9,
     .time_int_overflow = PYTIME_OLD, .time_float_overflow = PYTIME_OLD,
     .int_refuses_float = 1,
     .timeout_rule = FS_TIMEOUT_INT_OR_FLOAT, .ushort_rule = FS_USHORT_LONG},
    {.minor = 10,
     .time_int_overflow = PYTIME_OLD, .time_float_overflow = PYTIME_OLD,
     .kw_nonstr_error = 1, .qualified_names = 1,
     .timeout_rule = FS_TIMEOUT_INT_OR_FLOAT, .ushort_rule = FS_USHORT_LONG},
    /* 3.11 changed the float text in a bugfix release: NULL, see
     * fs_pyver_init() */
    {.minor = 11,
     .time_int_overflow = PYTIME_OLD, .time_float_overflow = NULL,
     .kw_nonstr_error = 1, .qualified_names = 1,
     .timeout_rule = FS_TIMEOUT_INT_OR_FLOAT, .ushort_rule = FS_USHORT_LONG},
    {.minor = 12,
     .time_int_overflow = PYTIME_OLD, .time_float_overflow = TIME_T,
     .kw_nonstr_error = 1, .qualified_names = 1,
     .timeout_rule = FS_TIMEOUT_INT_OR_FLOAT, .ushort_rule = FS_USHORT_LONG},
    {.minor = 13,
     .time_int_overflow = PYTIME_13, .time_float_overflow = TIME_T,
     .kw_nonstr_error = 1, .kw_suggest = 1, .qualified_names = 1,
     .bool_fd_warns = 1, .map_own_get = 1,
     .timeout_rule = FS_TIMEOUT_INT_OR_FLOAT, .ushort_rule = FS_USHORT_LONG},
    {.minor = 14,
     .time_int_overflow = PYTIME_RANGE, .time_float_overflow = PYTIME_RANGE,
     .kw_nonstr_error = 1, .kw_suggest = 1, .qualified_names = 1,
     .bool_fd_warns = 1, .map_own_get = 1,
     .timeout_rule = FS_TIMEOUT_INT_OR_FLOAT, .ushort_rule = FS_USHORT_INDEX,
     .epollwakeup = 1},
    {.minor = 15,
     .time_int_overflow = PYTIME_RANGE, .time_float_overflow = PYTIME_RANGE,
     .kw_nonstr_error = 1, .kw_suggest = 1, .qualified_names = 1,
     .bool_fd_warns = 1, .map_own_get = 1,
     .timeout_rule = FS_TIMEOUT_REAL, .ushort_rule = FS_USHORT_INDEX,
     .epollwakeup = 1, .bitwise_warn = 1, .poll_ppoll = 1,
     .close_raises = 1},
};

const fs_pyver *fs_ver = &rows[0];
static const char *float_overflow = PYTIME_OLD;

int
fs_pyver_init(void)
{
#if PY_VERSION_HEX >= 0x030B0000
    unsigned long v = Py_Version;   /* the interpreter, not our headers */
#else
    unsigned long v = PY_VERSION_HEX;
#endif
    int major = (int)((v >> 24) & 0xff), minor = (int)((v >> 16) & 0xff);
    const fs_pyver *row = &rows[0];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (major > 3 || rows[i].minor <= minor) {
            row = &rows[i];
        }
    }
    /* 3.11.3 (gh-97786, backported in February 2023) made the float path
     * of the PyTime conversions report time_t's text; 3.11.0-3.11.2 report
     * the PyTime_t one. */
    float_overflow = row->time_float_overflow;
    if (float_overflow == NULL) {
        float_overflow = ((v >> 8) & 0xff) >= 3 ? TIME_T : PYTIME_OLD;
    }
    fs_ver = row;
    return 0;
}

const char *
fs_pyver_float_overflow(void)
{
    return float_overflow;
}
