/* Load test of the task service's HTTP side: the server runs in this process with a stand-in engine that finishes
 * at once (so the figures are the HTTP threads, auth, store and JSON, not the model), and C client threads with
 * keep-alive libcurl handles send signed Task/Detail calls, then Run calls, for a fixed time each. Prints requests/s,
 * latency percentiles and the process's CPU time per request (server and clients together: it moves far less than
 * req/s when other work shares the cores) per endpoint.
 *
 *   bench_service [--clients N] [--seconds S] [--http-threads N] [--key-only] [--only detail|healthz|run]
 *                 [--store CONNINFO] [--nodes N] [--output-bytes N]
 *
 * --only runs one phase (interleaved A/B runs of two builds spend their time on the phase compared).
 * --store names a PostgreSQL database (an empty one: the bench adds a project and tasks) instead of a temporary SQLite
 * file; --nodes N starts N API nodes on the store in this process (the first with the worker, the others
 * serve --no-worker) and the clients take them in turn (client i talks to node i mod N), as behind a load balancer.
 * --output-bytes N makes the stand-in's video N bytes and adds a phase that downloads it (GET /files/...): from the
 * outputs folder with SQLite, from the database with PostgreSQL. --only output runs that phase alone.
 *
 * Loopback only; the default store is a temporary SQLite file (synchronous=FULL, so Run's rate is bounded by fsync). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "service/auth.h"
#include "service/service.h"
#include "service/store.h"

/* CPU seconds of the whole process (server and clients): steadier than req/s when other work shares the cores */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long g_output_bytes = 11; /* --output-bytes: the size of the first "video" the stand-in writes (the warm-up's) */

static cvx_status instant_generate(void *ctx, const cvx_generate_params *p, char *err, size_t n) {
    char part[1200];
    snprintf(part, sizeof part, "%s.part", p->output_path);
    FILE *f = fopen(part, "wb");
    if (!f) return CVX_ERR_IO;
    static atomic_int made;
    if (g_output_bytes <= 11 || atomic_fetch_add(&made, 1) > 0) fputs("not a video", f); /* the warm-up's only */
    else { /* bytes that do not compress, as a video's */
        unsigned long long x = 88172645463325252ull;
        for (long i = 0; i < g_output_bytes; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            fputc((int)(x & 0xff), f);
        }
    }
    fclose(f);
    rename(part, p->output_path);
    return CVX_OK;
}

#define MAX_NODES 8

typedef struct {
    const char *url, *body, *apikey, *secret, *range;
    double seconds;
    atomic_llong *nonce;
    double *lat;
    size_t n, cap;
    long errors;
} worker;

static size_t sink(char *p, size_t s, size_t n, void *ud) { return s * n; }

static void *client_main(void *arg) {
    worker *w = arg;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    if (w->body[0]) curl_easy_setopt(c, CURLOPT_POSTFIELDS, w->body);
    else curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    double end = now_s() + w->seconds;
    while (now_s() < end) {
        char k[128], nn[64], s[128];
        struct curl_slist *h = NULL;
        snprintf(k, sizeof k, "x-api-key: %s", w->apikey);
        h = curl_slist_append(h, k);
        h = curl_slist_append(h, "Content-Type: application/json");
        if (w->range) h = curl_slist_append(h, w->range);
        if (w->secret[0]) {
            char ns[32], sig[65];
            snprintf(ns, sizeof ns, "%lld", atomic_fetch_add(w->nonce, 1));
            cvx_svc_signature(w->apikey, w->secret, ns, sig);
            snprintf(nn, sizeof nn, "x-nonce: %s", ns);
            snprintf(s, sizeof s, "x-signature: %s", sig);
            h = curl_slist_append(h, nn);
            h = curl_slist_append(h, s);
        }
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        double t0 = now_s();
        CURLcode rc = curl_easy_perform(c);
        double dt = now_s() - t0;
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_slist_free_all(h);
        if (rc != CURLE_OK || code != (w->range ? 206 : 200)) {
            w->errors++;
            continue;
        }
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4096;
            w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
        }
        w->lat[w->n++] = dt;
    }
    curl_easy_cleanup(c);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int g_nodes = 1, g_ports[MAX_NODES];

/* path on node i mod nodes for client i */
static const char *g_range; /* a Range header for the phase's requests (NULL: none) */

static void phase(const char *name, const char *path, const char *body, int clients, double seconds,
                  const char *apikey, const char *secret, atomic_llong *nonce) {
    worker *w = calloc((size_t)clients, sizeof *w);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    char(*urls)[160] = calloc((size_t)g_nodes, sizeof *urls);
    for (int k = 0; k < g_nodes; k++) snprintf(urls[k], sizeof urls[k], "http://127.0.0.1:%d%s", g_ports[k], path);
    double t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < clients; i++) {
        w[i] = (worker){.url = urls[i % g_nodes], .body = body, .apikey = apikey, .secret = secret, .seconds = seconds,
                        .nonce = nonce, .range = g_range};
        pthread_create(&th[i], NULL, client_main, &w[i]);
    }
    size_t total = 0;
    long errors = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n;
        errors += w[i].errors;
    }
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof *all);
        k += w[i].n;
        free(w[i].lat);
    }
    qsort(all, total, sizeof *all, cmp);
#define PCT(p) (total ? all[(size_t)((p) / 100.0 * (double)(total - 1))] * 1e3 : 0.0)
    printf("%-12s clients %3d  %8.0f req/s  p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  max %7.2f ms  cpu %6.1f us/req"
           "  errors %ld\n",
           name, clients, total / wall, PCT(50), PCT(90), PCT(99), PCT(100), total ? cpu / (double)total * 1e6 : 0.0,
           errors);
    fflush(stdout);
    free(all);
    free(w);
    free(th);
    free(urls);
}

int main(int argc, char **argv) {
    int clients = 16, http_threads = 4, key_only = 0;
    const char *only = NULL, *pg = NULL;
    double seconds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--clients") && i + 1 < argc) clients = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--http-threads") && i + 1 < argc) http_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--key-only")) key_only = 1;
        else if (!strcmp(argv[i], "--store") && i + 1 < argc) pg = argv[++i];
        else if (!strcmp(argv[i], "--nodes") && i + 1 < argc) g_nodes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--output-bytes") && i + 1 < argc) g_output_bytes = atol(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "detail") || !strcmp(argv[i + 1], "healthz") || !strcmp(argv[i + 1], "run") ||
                  !strcmp(argv[i + 1], "output")))
            only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_service [--clients N] [--seconds S] [--http-threads N] [--key-only]"
                            " [--only detail|healthz|run|output] [--store CONNINFO] [--nodes N] [--output-bytes N]\n");
            return 2;
        }
    }
    if (clients < 1 || clients > 1024 || seconds <= 0 || g_nodes < 1 || g_nodes > MAX_NODES) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char dir[] = "/tmp/cvx-bench-service-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char store[1024], outputs[256], err[512], kp[300];
    if (pg) snprintf(store, sizeof store, "%s", pg);
    else snprintf(store, sizeof store, "%s/b.db", dir);
    snprintf(outputs, sizeof outputs, "%s/out", dir);
    snprintf(kp, sizeof kp, "%s/server.key", dir);
    cvx_svc_config cfg = cvx_svc_config_default();
    cfg.store_path = store;
    cfg.outputs_dir = outputs;
    cfg.http_threads = http_threads;
    cfg.queue_limit = 0;
    cfg.project_runs_per_min = 0; /* the per-project Run rate limit would cap the Run phase: throughput is measured */
    cfg.engine.generate = instant_generate;
    cfg.logger.level = CVX_LOG_ERROR;
    cfg.key_file = kp;
    cvx_svc *svcs[MAX_NODES] = {0};
    for (int k = 0; k < g_nodes; k++) {
        cfg.no_worker = k > 0;
        if (cvx_svc_start(&svcs[k], &cfg, err, sizeof err)) {
            fprintf(stderr, "bench_service: %s\n", err);
            return 1;
        }
        g_ports[k] = cvx_svc_port(svcs[k]);
    }
    /* a project, as `keys create` makes it */
    cvx_svc_store *st;
    uint8_t key[32];
    cvx_svc_project p;
    memset(&p, 0, sizeof p);
    char secret[33] = "";
    cvx_svc_random_token(p.apikey, 32);
    p.mode = key_only ? CVX_SVC_MODE_KEY_ONLY : CVX_SVC_MODE_SIGNATURE;
    if (!key_only) cvx_svc_random_token(secret, 32);
    if (cvx_svc_store_open(&st, store, err, sizeof err) || cvx_svc_keyfile_load(kp, 1, key, err, sizeof err) ||
        (!key_only && cvx_svc_seal(key, p.apikey, secret, p.secret_enc, sizeof p.secret_enc, &p.secret_enc_len)) ||
        cvx_svc_store_project_add(st, &p, err, sizeof err)) {
        fprintf(stderr, "bench_service: %s\n", err);
        return 1;
    }
    cvx_svc_store_close(st);
    /* Nonces are unix milliseconds counting up from now: state-changing calls refuse a nonce outside now ± the
     * nonce window (docs/API.md). */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    atomic_llong nonce = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    char body[128];
    /* one finished task to read */
    int nodes = g_nodes;
    g_nodes = 1;
    phase("warm-up Run", "/v1/Run/THUDM/CogVideoX-2b", "{\"prompt\":\"bench\",\"steps\":1}", 1, 0.2, p.apikey, secret,
          &nonce);
    g_nodes = nodes;
    cvx_svc_store *rd;
    long long ids[1] = {0}, total = 0;
    char file[200] = "";
    if (cvx_svc_store_open(&rd, store, err, sizeof err) == 0) {
        cvx_svc_store_task_ids(rd, p.id, 0, 0, 1, &total, ids, err, sizeof err);
        cvx_svc_task t;
        for (int tries = 0; tries < 100; tries++) { /* the warm-up task's video */
            if (cvx_svc_store_task_get(rd, ids[0], NULL, &t, err, sizeof err) == 1) {
                if (t.out_name[0]) snprintf(file, sizeof file, "/files/%s/%s", t.out_key, t.out_name);
                cvx_svc_task_clear(&t);
            }
            if (file[0]) break;
            usleep(20000);
        }
        cvx_svc_store_close(rd);
    }
    snprintf(body, sizeof body, "{\"taskid\":\"%lld\"}", ids[0]);
    printf("cogvideox serve load test: %s store, %d API node%s, %d HTTP threads each, %s auth, %d clients, %.0f s per"
           " phase, %ld cores\n",
           (cvx_svc_store_is_postgres(store) ? "PostgreSQL" : "SQLite"), g_nodes, g_nodes > 1 ? "s" : "", http_threads,
           key_only ? "key-only" : "signature", clients, seconds, sysconf(_SC_NPROCESSORS_ONLN));
    if (!only || !strcmp(only, "detail"))
        phase("Task/Detail", "/v1/Task/Detail", body, clients, seconds, p.apikey, secret, &nonce);
    if (!only || !strcmp(only, "healthz")) phase("GET healthz", "/healthz", "", clients, seconds, "-", "", &nonce);
    if (!only || !strcmp(only, "run"))
        phase("Run", "/v1/Run/THUDM/CogVideoX-2b", "{\"prompt\":\"a bench\",\"steps\":1}", clients, seconds, p.apikey,
              secret, &nonce);
    if (g_output_bytes > 11 && file[0] && (!only || !strcmp(only, "output"))) {
        char name[64];
        /* with PostgreSQL, Range requests (bytes=0-: the whole video) are read from the database, as long as no
         * whole-file GET has put the video in the node's cache; then whole-file GETs, from the cache */
        if (cvx_svc_store_is_postgres(store)) {
            snprintf(name, sizeof name, "GET %.1fMB db", (double)g_output_bytes / 1e6);
            g_range = "Range: bytes=0-";
            phase(name, file, "", clients, seconds, "-", "", &nonce);
            g_range = NULL;
        }
        snprintf(name, sizeof name, "GET %.1fMB %s", (double)g_output_bytes / 1e6,
                 cvx_svc_store_is_postgres(store) ? "cache" : "file");
        phase(name, file, "", clients, seconds, "-", "", &nonce);
    }
    for (int k = g_nodes - 1; k >= 0; k--) cvx_svc_stop(svcs[k]);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "bench_service: could not remove %s\n", dir);
    curl_global_cleanup();
    return 0;
}
