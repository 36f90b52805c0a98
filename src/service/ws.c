/* Live progress over WebSocket (WIRO_API.md "WebSocket"): GET /v1/socket is upgraded by libmicrohttpd, framed by
 * wslay, and served by one thread per session (at most max_websockets). The client sends
 * {"type":"task_info","tasktoken":...}; the session subscribes to the task in the hub, replays its current status
 * (the outputs when it is done), then streams the lifecycle events and one task_output per denoising step, and
 * closes after task_postprocess_end or task_cancel. Unknown token: one task_error frame with result false, then
 * close. Limits: max_websockets sessions in all and max_websockets_per_ip from one address (503 at the upgrade),
 * max_websockets_per_task on one task (a task_error frame, then close), ws_info_timeout_ms to send task_info. No auth headers (WiroKit sends none): the 30-character token is the credential, as on Wiro. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wslay/wslay.h>

#include "service/internal.h"

#define WS_MAX_IN 65536            /* a task_info frame is tiny */
#define WS_CLOSE_TIMEOUT_MS 5000   /* time for the peer to answer our close */
#define WS_PING_MS 25000

typedef struct {
    cvx_svc *svc;
    int fd;
    struct MHD_UpgradeResponseHandle *urh;
    char *extra;                   /* bytes MHD read past the request head */
    size_t extra_len, extra_off;
    wslay_event_context_ptr ctx;
    char token[64];
    char ip[48];                   /* the client's address (per-address count) */
    int has_request, bad_request;  /* a task_info frame arrived / something else did */
    cvx_svc_sub *sub;
    long long task_id;
    int last_ordinal, last_step;
    long long polled_ms; /* the last read of the task from the store (poll_store) */
    int closing;                   /* no more frames will be queued */
    uint16_t close_code;
    int close_queued;              /* the close frame is queued (after every data frame went out) */
    long long close_deadline;
} session;

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
    session *s = ud;
    if (s->extra_off < s->extra_len) {
        size_t n = s->extra_len - s->extra_off;
        if (n > len) n = len;
        memcpy(buf, s->extra + s->extra_off, n);
        s->extra_off += n;
        return (ssize_t)n;
    }
    ssize_t r;
    do r = recv(s->fd, buf, len, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        wslay_event_set_error(ctx, (errno == EAGAIN || errno == EWOULDBLOCK) ? WSLAY_ERR_WOULDBLOCK
                                                                              : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (r == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud) {
    session *s = ud;
    ssize_t r;
    do r = send(s->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        wslay_event_set_error(ctx, (errno == EAGAIN || errno == EWOULDBLOCK) ? WSLAY_ERR_WOULDBLOCK
                                                                              : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
    session *s = ud;
    if (arg->opcode != WSLAY_TEXT_FRAME || s->has_request) return; /* pings are answered by wslay */
    json_t *m = json_loadb((const char *)arg->msg, arg->msg_length, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    const char *tok = json_string_value(json_object_get(m, "tasktoken"));
    if (type && !strcmp(type, "task_info") && tok && strlen(tok) < sizeof s->token) {
        snprintf(s->token, sizeof s->token, "%s", tok);
        s->has_request = 1;
    } else {
        s->bad_request = 1;
    }
    json_decref(m);
}

static void queue_text(session *s, const char *text) {
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)text, strlen(text)};
    wslay_event_queue_msg(s->ctx, &msg);
}

/* wslay sends control frames before queued data frames: the close goes into the queue only once the data frames
 * before it are out (see session_main). */
static void start_close(session *s, uint16_t code) {
    if (s->closing) return;
    s->closing = 1;
    s->close_code = code;
    s->close_deadline = cvx_svc_now_ms() + WS_CLOSE_TIMEOUT_MS;
}

/* Looks the task up, subscribes and replays its current status. */
static void begin(session *s) {
    cvx_svc *svc = s->svc;
    cvx_svc_task t;
    char err[256];
    int r = cvx_svc_store_task_get(svc->store, 0, s->token, &t, err, sizeof err);
    if (r != 1) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "task_error", "id", "0", "tasktoken", s->token,
                              "message", r < 0 ? "The task could not be read." : "There is no task yet.", "result", 0);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (text) queue_text(s, text);
        free(text);
        start_close(s, 1000);
        return;
    }
    s->task_id = t.id;
    /* subscribe before reading the state again, so nothing falls between the replay and the stream */
    int full = 0;
    s->sub = cvx_svc_progress_subscribe(svc->progress, t.id, svc->cfg.max_websockets_per_task, &full);
    if (full) {
        char *text = cvx_svc_event_text("task_error", &t, json_string("Too many WebSocket sessions for this task."), 0);
        if (text) queue_text(s, text);
        free(text);
        cvx_svc_task_clear(&t);
        start_close(s, 1008);
        return;
    }
    cvx_svc_task_clear(&t);
    if (!s->sub || cvx_svc_store_task_get(svc->store, s->task_id, NULL, &t, err, sizeof err) != 1) {
        start_close(s, 1011);
        return;
    }
    int ord = cvx_svc_status_ordinal(t.status);
    char *text = NULL;
    s->last_step = 0;
    if (ord == CVX_SVC_EV_OUTPUT) {
        text = cvx_svc_progress_last_output(svc->progress, t.id, &s->last_step);
        if (!text && t.progress[0]) { /* another process generates it: its last frame is in the store */
            text = strdup(t.progress);
            s->last_step = t.progress_step;
        }
        if (!text) { /* the step's frame is gone (the task is finishing): say it is running */
            text = cvx_svc_event_text(CVX_SVC_S_START, &t, NULL, 1);
            ord = CVX_SVC_EV_START;
        }
    } else if (!strcmp(t.status, CVX_SVC_S_POSTPROCESS_END)) {
        char base[512];
        cvx_svc_default_base(svc, base, sizeof base);
        text = cvx_svc_event_text(t.status, &t, cvx_svc_outputs_json(svc, &t, base), 1);
    } else {
        text = cvx_svc_event_text(t.status, &t, NULL, 1);
    }
    s->last_ordinal = ord;
    if (text) queue_text(s, text);
    free(text);
    if (ord == CVX_SVC_EV_FINAL) start_close(s, 1000);
    cvx_svc_task_clear(&t);
}

static void pump_events(session *s) {
    cvx_svc_event ev;
    while (!s->closing && cvx_svc_sub_pop(s->sub, &ev) == 1) {
        int skip = ev.ordinal < s->last_ordinal || (ev.ordinal == s->last_ordinal && ev.ordinal != CVX_SVC_EV_OUTPUT) ||
                   (ev.ordinal == CVX_SVC_EV_OUTPUT && ev.step <= s->last_step);
        if (!skip) {
            queue_text(s, ev.text);
            s->last_ordinal = ev.ordinal;
            if (ev.ordinal == CVX_SVC_EV_OUTPUT) s->last_step = ev.step;
            if (ev.terminal) start_close(s, 1000);
        }
        free(ev.text);
    }
}

static void queue_frame(int seq, const char *frame, void *ud) {
    session *s = ud;
    if (seq <= s->last_step || s->closing) return;
    queue_text(s, frame);
    s->last_step = seq;
    s->last_ordinal = CVX_SVC_EV_OUTPUT;
}

/* A task that another process generates (a worker beside this API node or on another host, issue 15): its status
 * and the frames of its steps are read from the store at most once a second and sent as the hub would send them (the
 * same skip rules): every step's frame in order, then a later status. */
static void poll_store(session *s) {
    cvx_svc *svc = s->svc;
    long long now = cvx_svc_now_ms();
    if (now - s->polled_ms < 1000 && now >= s->polled_ms) return;
    s->polled_ms = now;
    if (atomic_load(&svc->running_task) == s->task_id) return; /* this process's worker: the hub has its events */
    cvx_svc_task t;
    char err[256];
    if (cvx_svc_store_task_get(svc->store, s->task_id, NULL, &t, err, sizeof err) != 1) return;
    int ord = cvx_svc_status_ordinal(t.status);
    /* the steps recorded since the last poll (a task that ended may still have some this session did not see) */
    if (s->last_ordinal <= CVX_SVC_EV_OUTPUT && ord >= CVX_SVC_EV_OUTPUT)
        cvx_svc_store_task_frames(svc->store, s->task_id, s->last_step, queue_frame, s, err, sizeof err);
    char *text = NULL;
    if (ord == CVX_SVC_EV_OUTPUT) {
        if (t.progress[0] && (s->last_ordinal < ord || t.progress_step > s->last_step)) { /* (frames purged) */
            text = strdup(t.progress);
            s->last_step = t.progress_step;
        }
    } else if (ord > s->last_ordinal) {
        json_t *msg = NULL;
        if (!strcmp(t.status, CVX_SVC_S_POSTPROCESS_END)) {
            char base[512];
            cvx_svc_default_base(svc, base, sizeof base);
            msg = cvx_svc_outputs_json(svc, &t, base);
        }
        text = cvx_svc_event_text(t.status, &t, msg, 1);
    }
    if (text) {
        queue_text(s, text);
        s->last_ordinal = ord;
        if (ord == CVX_SVC_EV_FINAL) start_close(s, 1000);
    }
    free(text);
    cvx_svc_task_clear(&t);
}

/* The client address of a connection as text ("" when unknown). */
static void client_ip(struct MHD_Connection *conn, char *out, size_t size) {
    out[0] = 0;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)size);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)size);
}

/* Sessions of an address (mu held). */
static int ip_count(cvx_svc *svc, const char *ip) {
    for (int i = 0; i < CVX_SVC_WS_IP_SLOTS; i++)
        if (svc->ws_ips[i].n && !strcmp(svc->ws_ips[i].ip, ip)) return svc->ws_ips[i].n;
    return 0;
}

/* One more session of an address (mu held); -1 when no slot is free. */
static int ip_take(cvx_svc *svc, const char *ip) {
    int free_slot = -1;
    for (int i = 0; i < CVX_SVC_WS_IP_SLOTS; i++) {
        if (svc->ws_ips[i].n && !strcmp(svc->ws_ips[i].ip, ip)) {
            svc->ws_ips[i].n++;
            return 0;
        }
        if (!svc->ws_ips[i].n && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) return -1;
    snprintf(svc->ws_ips[free_slot].ip, sizeof svc->ws_ips[free_slot].ip, "%s", ip);
    svc->ws_ips[free_slot].n = 1;
    return 0;
}

static void ip_release(cvx_svc *svc, const char *ip) {
    for (int i = 0; i < CVX_SVC_WS_IP_SLOTS; i++)
        if (svc->ws_ips[i].n && !strcmp(svc->ws_ips[i].ip, ip)) {
            svc->ws_ips[i].n--;
            return;
        }
}

static int ip_full(const cvx_svc *svc, const char *ip) {
    return svc->cfg.max_websockets_per_ip > 0 && ip_count((cvx_svc *)svc, ip) >= svc->cfg.max_websockets_per_ip;
}

static void *session_main(void *arg) {
    session *s = arg;
    cvx_svc *svc = s->svc;
    long long t0 = cvx_svc_now_ms(), last_ping = t0;
    for (;;) {
        long long now = cvx_svc_now_ms();
        if (atomic_load(&svc->stopping)) start_close(s, 1001);
        if (!s->has_request && !s->closing && now - t0 > svc->cfg.ws_info_timeout_ms) start_close(s, 1008);
        if (s->closing && now > s->close_deadline) break;
        if (!s->closing && s->sub && now - last_ping > WS_PING_MS) {
            struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"", 0};
            wslay_event_queue_msg(s->ctx, &ping);
            last_ping = now;
        }
        if (wslay_event_want_write(s->ctx) && wslay_event_send(s->ctx) != 0) break;
        if (s->closing && !s->close_queued && wslay_event_get_queued_msg_count(s->ctx) == 0) {
            wslay_event_queue_close(s->ctx, s->close_code, NULL, 0);
            s->close_queued = 1;
            if (wslay_event_send(s->ctx) != 0) break;
        }
        int want_read = wslay_event_want_read(s->ctx), want_write = wslay_event_want_write(s->ctx);
        if (!want_read && !want_write) break;
        struct pollfd pfd[2] = {{.fd = s->fd, .events = (short)((want_read ? POLLIN : 0) | (want_write ? POLLOUT : 0))},
                                {.fd = s->sub ? cvx_svc_sub_fd(s->sub) : -1, .events = POLLIN}};
        /* bytes MHD already read are not visible to poll */
        int timeout = s->extra_off < s->extra_len ? 0 : 250;
        int pr = poll(pfd, 2, timeout);
        if (pr < 0 && errno != EINTR) break;
        if ((pfd[0].revents & (POLLIN | POLLERR | POLLHUP)) || s->extra_off < s->extra_len) {
            if (wslay_event_recv(s->ctx) != 0) break;
        }
        if (s->bad_request && !s->has_request) {
            start_close(s, 1008);
            s->bad_request = 0;
        }
        if (s->has_request && !s->sub && !s->closing) begin(s);
        if (s->sub) pump_events(s);
        if (s->sub && !s->closing) poll_store(s);
    }
    cvx_svc_progress_unsubscribe(svc->progress, s->sub);
    wslay_event_context_free(s->ctx);
    MHD_upgrade_action(s->urh, MHD_UPGRADE_ACTION_CLOSE);
    pthread_mutex_lock(&svc->mu);
    svc->websockets--;
    ip_release(svc, s->ip);
    pthread_cond_broadcast(&svc->websockets_done);
    pthread_mutex_unlock(&svc->mu);
    free(s->extra);
    free(s);
    return NULL;
}

static void on_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
                       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh) {
    cvx_svc *svc = cls;
    session *s = calloc(1, sizeof *s);
    struct wslay_event_callbacks cbs = {on_recv, on_send, NULL, NULL, NULL, NULL, on_msg};
    int ok = s != NULL;
    if (ok) {
        s->svc = svc;
        s->fd = sock;
        s->urh = urh;
        if (extra_in_size) {
            s->extra = malloc(extra_in_size);
            ok = s->extra != NULL;
            if (ok) memcpy(s->extra, extra_in, extra_in_size);
            s->extra_len = extra_in_size;
        }
    }
    ok = ok && wslay_event_context_server_init(&s->ctx, &cbs, s) == 0;
    if (ok) wslay_event_config_set_max_recv_msg_length(s->ctx, WS_MAX_IN);
    if (s) client_ip(conn, s->ip, sizeof s->ip);
    pthread_mutex_lock(&svc->mu);
    ok = ok && svc->websockets < svc->cfg.max_websockets && !atomic_load(&svc->stopping) && !ip_full(svc, s->ip) &&
         ip_take(svc, s->ip) == 0;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (ok) {
        svc->websockets++;
        if (pthread_create(&th, &attr, session_main, s)) {
            svc->websockets--;
            ip_release(svc, s->ip);
            ok = 0;
        }
    }
    pthread_attr_destroy(&attr);
    pthread_mutex_unlock(&svc->mu);
    if (!ok) {
        if (s) {
            if (s->ctx) wslay_event_context_free(s->ctx);
            free(s->extra);
            free(s);
        }
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
    }
}

static int header_has_token(const char *value, const char *token) {
    if (!value) return 0;
    size_t tl = strlen(token);
    for (const char *p = value; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        size_t l = strcspn(p, ", \t");
        if (l == tl && !strncasecmp(p, token, tl)) return 1;
        p += l;
    }
    return 0;
}

int cvx_svc_ws_handle(cvx_svc *svc, struct MHD_Connection *conn) {
    const char *upgrade = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Upgrade");
    const char *connection = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connection");
    const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    const char *version = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    const char *msg = NULL;
    unsigned status = 400;
    if (!upgrade || strcasecmp(upgrade, "websocket") || !header_has_token(connection, "upgrade") || !key ||
        strlen(key) != 24)
        msg = "{\"result\":false,\"errors\":[{\"code\":0,\"message\":\"WebSocket upgrade expected.\"}]}";
    else if (!version || strcmp(version, "13"))
        msg = "{\"result\":false,\"errors\":[{\"code\":0,\"message\":\"Sec-WebSocket-Version 13 expected.\"}]}";
    else {
        char ip[48];
        client_ip(conn, ip, sizeof ip);
        pthread_mutex_lock(&svc->mu);
        int all = atomic_load(&svc->stopping) || svc->websockets >= svc->cfg.max_websockets, mine = ip_full(svc, ip);
        pthread_mutex_unlock(&svc->mu);
        if (all) msg = "{\"result\":false,\"errors\":[{\"code\":96,\"message\":\"Too many WebSocket sessions.\"}]}";
        else if (mine)
            msg = "{\"result\":false,\"errors\":[{\"code\":96,\"message\":\"Too many WebSocket sessions from this "
                  "address.\"}]}";
        if (all || mine) status = 503;
    }
    struct MHD_Response *r;
    if (msg) {
        r = MHD_create_response_from_buffer(strlen(msg), (void *)msg, MHD_RESPMEM_PERSISTENT);
        if (!r) return 0;
        MHD_add_response_header(r, "Content-Type", "application/json");
        if (status == 400) MHD_add_response_header(r, "Sec-WebSocket-Version", "13");
    } else {
        char accept[32];
        cvx_svc_ws_accept(key, accept);
        r = MHD_create_response_for_upgrade(on_upgrade, svc);
        if (!r) return 0;
        MHD_add_response_header(r, "Upgrade", "websocket");
        MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
        status = MHD_HTTP_SWITCHING_PROTOCOLS;
    }
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret == MHD_YES;
}
