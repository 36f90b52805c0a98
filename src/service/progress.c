/* The progress hub (not the Hugging Face hub of io/hub.c): the worker publishes a task's events once, every
 * WebSocket session subscribed to that task gets a copy in its own bounded queue and is woken through an eventfd.
 * A slow session loses progress frames (never a lifecycle or terminal one) instead of slowing the worker down. */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "service/internal.h"

/* Per-session backlog; a generation has at most a few hundred steps. */
#define SUB_QUEUE_MAX 1024

struct cvx_svc_sub {
    cvx_svc_progress *progress;
    long long task_id;
    int fd;
    cvx_svc_event *q;
    size_t head, count;
    cvx_svc_sub *next;
};

typedef struct last_output {
    long long task_id;
    int step;
    char *text;
} last_output;

struct cvx_svc_progress {
    pthread_mutex_t mu;
    cvx_svc_sub *subs;
    last_output last; /* one worker: one running task at a time */
};

cvx_svc_progress *cvx_svc_progress_new(void) {
    cvx_svc_progress *h = calloc(1, sizeof *h);
    if (h) pthread_mutex_init(&h->mu, NULL);
    return h;
}

static void sub_free(cvx_svc_sub *s) {
    for (size_t i = 0; i < s->count; i++) free(s->q[(s->head + i) % SUB_QUEUE_MAX].text);
    free(s->q);
    if (s->fd >= 0) close(s->fd);
    free(s);
}

void cvx_svc_progress_free(cvx_svc_progress *h) {
    if (!h) return;
    while (h->subs) {
        cvx_svc_sub *s = h->subs;
        h->subs = s->next;
        sub_free(s);
    }
    free(h->last.text);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

cvx_svc_sub *cvx_svc_progress_subscribe(cvx_svc_progress *h, long long task_id, int max_per_task, int *full) {
    *full = 0;
    cvx_svc_sub *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->progress = h;
    s->task_id = task_id;
    s->q = calloc(SUB_QUEUE_MAX, sizeof *s->q);
    s->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->q || s->fd < 0) {
        sub_free(s);
        return NULL;
    }
    pthread_mutex_lock(&h->mu);
    int count = 0;
    for (cvx_svc_sub *o = h->subs; o; o = o->next) count += o->task_id == task_id;
    if (max_per_task > 0 && count >= max_per_task) {
        pthread_mutex_unlock(&h->mu);
        sub_free(s);
        *full = 1;
        return NULL;
    }
    s->next = h->subs;
    h->subs = s;
    pthread_mutex_unlock(&h->mu);
    return s;
}

void cvx_svc_progress_unsubscribe(cvx_svc_progress *h, cvx_svc_sub *s) {
    if (!s) return;
    pthread_mutex_lock(&h->mu);
    for (cvx_svc_sub **p = &h->subs; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
    sub_free(s);
}

int cvx_svc_sub_fd(const cvx_svc_sub *s) { return s->fd; }

int cvx_svc_sub_pop(cvx_svc_sub *s, cvx_svc_event *ev) {
    uint64_t drain;
    pthread_mutex_lock(&s->progress->mu);
    int got = 0;
    if (s->count) {
        *ev = s->q[s->head];
        s->head = (s->head + 1) % SUB_QUEUE_MAX;
        s->count--;
        got = 1;
    }
    if (!s->count && read(s->fd, &drain, sizeof drain) < 0) { /* nothing was signalled: fine */
    }
    pthread_mutex_unlock(&s->progress->mu);
    return got;
}

/* Drops the oldest progress frame to make room; 0 when the queue holds only frames that must not be lost. */
static int make_room(cvx_svc_sub *s) {
    for (size_t i = 0; i < s->count; i++) {
        size_t k = (s->head + i) % SUB_QUEUE_MAX;
        if (s->q[k].ordinal != CVX_SVC_EV_OUTPUT) continue;
        free(s->q[k].text);
        for (size_t j = i; j + 1 < s->count; j++)
            s->q[(s->head + j) % SUB_QUEUE_MAX] = s->q[(s->head + j + 1) % SUB_QUEUE_MAX];
        s->count--;
        return 1;
    }
    return 0;
}

void cvx_svc_progress_publish(cvx_svc_progress *h, long long task_id, int ordinal, int step, int terminal, const char *text) {
    pthread_mutex_lock(&h->mu);
    if (ordinal == CVX_SVC_EV_OUTPUT) {
        char *copy = strdup(text);
        if (copy) {
            free(h->last.text);
            h->last.text = copy;
            h->last.task_id = task_id;
            h->last.step = step;
        }
    } else if (terminal && h->last.task_id == task_id) {
        free(h->last.text);
        memset(&h->last, 0, sizeof h->last);
    }
    for (cvx_svc_sub *s = h->subs; s; s = s->next) {
        if (s->task_id != task_id) continue;
        if (s->count == SUB_QUEUE_MAX && (ordinal == CVX_SVC_EV_OUTPUT || !make_room(s))) continue;
        char *copy = strdup(text);
        if (!copy) continue;
        s->q[(s->head + s->count) % SUB_QUEUE_MAX] =
            (cvx_svc_event){.text = copy, .ordinal = ordinal, .step = step, .terminal = terminal};
        s->count++;
        uint64_t one = 1;
        if (write(s->fd, &one, sizeof one) < 0) { /* the counter is saturated: the session is awake anyway */
        }
    }
    pthread_mutex_unlock(&h->mu);
}

char *cvx_svc_progress_last_output(cvx_svc_progress *h, long long task_id, int *step) {
    pthread_mutex_lock(&h->mu);
    char *r = NULL;
    if (h->last.task_id == task_id && h->last.text) {
        r = strdup(h->last.text);
        *step = h->last.step;
    }
    pthread_mutex_unlock(&h->mu);
    return r;
}

void cvx_svc_progress_forget(cvx_svc_progress *h, long long task_id) {
    pthread_mutex_lock(&h->mu);
    if (h->last.task_id == task_id) {
        free(h->last.text);
        memset(&h->last, 0, sizeof h->last);
    }
    pthread_mutex_unlock(&h->mu);
}
