/* The statuses of a task (WIRO_API.md), in lifecycle order, as one table: the name clients and the store see, the
 * ordinal a WebSocket session orders events by (it skips one at or below what it sent; both final statuses share the
 * last ordinal, after task_error), and the store's column that records when the task reached it (task_output, a
 * step, has none). The names are macros of their own so that the store's SQL can be assembled from them. */
#ifndef CVX_SERVICE_STATUS_H
#define CVX_SERVICE_STATUS_H

#include <string.h>

#define CVX_SVC_S_QUEUE "task_queue"
#define CVX_SVC_S_ACCEPT "task_accept"
#define CVX_SVC_S_PREPROCESS_START "task_preprocess_start"
#define CVX_SVC_S_PREPROCESS_END "task_preprocess_end"
#define CVX_SVC_S_ASSIGN "task_assign"
#define CVX_SVC_S_START "task_start"
#define CVX_SVC_S_OUTPUT "task_output"
#define CVX_SVC_S_END "task_end"
#define CVX_SVC_S_POSTPROCESS_START "task_postprocess_start"
#define CVX_SVC_S_POSTPROCESS_END "task_postprocess_end"
#define CVX_SVC_S_CANCEL "task_cancel"

/* X(id, name, ordinal, time column) */
#define CVX_SVC_STATUS_MAP(X)                                                                                      \
    X(QUEUE, CVX_SVC_S_QUEUE, 0, "createtime")                                                                     \
    X(ACCEPT, CVX_SVC_S_ACCEPT, 1, "accepttime")                                                                   \
    X(PREPROCESS_START, CVX_SVC_S_PREPROCESS_START, 2, "preprocessstarttime")                                     \
    X(PREPROCESS_END, CVX_SVC_S_PREPROCESS_END, 3, "preprocessendtime")                                           \
    X(ASSIGN, CVX_SVC_S_ASSIGN, 4, "assigntime")                                                                   \
    X(START, CVX_SVC_S_START, 5, "starttime")                                                                      \
    X(OUTPUT, CVX_SVC_S_OUTPUT, 6, NULL)                                                                           \
    X(END, CVX_SVC_S_END, 7, "endtime")                                                                            \
    X(POSTPROCESS_START, CVX_SVC_S_POSTPROCESS_START, 8, "postprocessstarttime")                                  \
    X(POSTPROCESS_END, CVX_SVC_S_POSTPROCESS_END, 10, "postprocessendtime")                                       \
    X(CANCEL, CVX_SVC_S_CANCEL, 10, "canceltime")

typedef enum {
#define CVX_SVC_STATUS_ENUM(id, name, ordinal, column) CVX_SVC_STATUS_##id,
    CVX_SVC_STATUS_MAP(CVX_SVC_STATUS_ENUM)
#undef CVX_SVC_STATUS_ENUM
    CVX_SVC_STATUS_COUNT
} cvx_svc_status;

/* The event ordinals: one per status (CVX_SVC_EV_QUEUE, ...), a task_error frame's, and the final statuses'. */
enum {
#define CVX_SVC_STATUS_EVENT(id, name, ordinal, column) CVX_SVC_EV_##id = ordinal,
    CVX_SVC_STATUS_MAP(CVX_SVC_STATUS_EVENT)
#undef CVX_SVC_STATUS_EVENT
    CVX_SVC_EV_ERROR = 9,
    CVX_SVC_EV_FINAL = 10
};

/* SQL conditions on tasks.status: not final (cancelled or done), and claimed by a worker (neither queued nor final). */
#define CVX_SVC_SQL_NOT_FINAL "status NOT IN ('" CVX_SVC_S_CANCEL "','" CVX_SVC_S_POSTPROCESS_END "')"
#define CVX_SVC_SQL_RUNNING                                                                                        \
    "status NOT IN ('" CVX_SVC_S_QUEUE "','" CVX_SVC_S_CANCEL "','" CVX_SVC_S_POSTPROCESS_END "')"

static inline const char *cvx_svc_status_name(cvx_svc_status s) {
    static const char *const names[] = {
#define CVX_SVC_STATUS_NAME(id, name, ordinal, column) name,
        CVX_SVC_STATUS_MAP(CVX_SVC_STATUS_NAME)
#undef CVX_SVC_STATUS_NAME
    };
    return (unsigned)s < CVX_SVC_STATUS_COUNT ? names[s] : "";
}

static inline const char *cvx_svc_status_time_column(cvx_svc_status s) {
    static const char *const columns[] = {
#define CVX_SVC_STATUS_COLUMN(id, name, ordinal, column) column,
        CVX_SVC_STATUS_MAP(CVX_SVC_STATUS_COLUMN)
#undef CVX_SVC_STATUS_COLUMN
    };
    return (unsigned)s < CVX_SVC_STATUS_COUNT ? columns[s] : NULL;
}

/* The status named `name`, or -1. */
static inline int cvx_svc_status_parse(const char *name) {
    for (int s = 0; s < CVX_SVC_STATUS_COUNT; s++)
        if (!strcmp(name, cvx_svc_status_name((cvx_svc_status)s))) return s;
    return -1;
}

/* The event ordinal of a status name (an unknown name counts as final: nothing follows it). */
static inline int cvx_svc_status_ordinal(const char *name) {
    static const int ordinals[] = {
#define CVX_SVC_STATUS_ORDINAL(id, name, ordinal, column) ordinal,
        CVX_SVC_STATUS_MAP(CVX_SVC_STATUS_ORDINAL)
#undef CVX_SVC_STATUS_ORDINAL
    };
    int s = cvx_svc_status_parse(name);
    return s < 0 ? CVX_SVC_EV_FINAL : ordinals[s];
}

/* 1 for task_cancel and task_postprocess_end (nothing changes a task after them). */
static inline int cvx_svc_status_final(const char *name) {
    int s = cvx_svc_status_parse(name);
    return s == CVX_SVC_STATUS_CANCEL || s == CVX_SVC_STATUS_POSTPROCESS_END;
}

#endif
