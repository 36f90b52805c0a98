/* cogvideox serve: the Wiro-compatible task service (src/service/service.h) around one engine.
 *
 *   cogvideox serve --model DIR --store PATH --outputs DIR --listen HOST:PORT [--public-url URL]
 *                   [--slug OWNER/MODEL] [--threads N] [--precision auto|bf16|fp32]
 *                   [--http-threads N] [--queue-limit N] [--run-rate N] [--retention-days N] [--body-limit BYTES]
 *                   [--max-attempts N] [--nonce-window SECONDS] [--callback-backoff-ms MS]
 *                   [--allow-private-callbacks]
 *
 * Prints "listening on http://HOST:PORT" on stdout once it accepts requests (PORT 0 picks a free port, which the
 * line tells). SIGINT/SIGTERM stop it gracefully: the running generation is re-queued with its checkpoint. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cogvideox.h"
#include "service/service.h"
#include "service/store.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: cogvideox serve --model DIR --store PATH|URL --outputs DIR --listen HOST:PORT [options]\n"
            "  --model DIR              diffusers CogVideoX folder (cogvideox make-model / download)\n"
            "  --store PATH|URL         SQLite store, created on first use; its server key is PATH.key (0600);\n"
            "                           or PostgreSQL: postgresql://..., postgres://... or a libpq keyword\n"
            "                           string (host=... dbname=...), with --key-file\n"
            "  --key-file PATH          the server key that seals the API secrets, instead of STORE.key\n"
            "                           (required with PostgreSQL: every node is given the same file)\n"
            "  --outputs DIR            where videos are written and served from (/files/...)\n"
            "  --listen HOST:PORT       IPv4 address and port (port 0: any free port)\n"
            "  --public-url URL         base of outputs[].url (default: http://<request Host>)\n"
            "  --slug OWNER/MODEL       the model's name in /v1/Run/OWNER/MODEL (default THUDM/CogVideoX-2b)\n"
            "  --threads N              math threads of the engine (default: all cores)\n"
            "  --precision P            auto|bf16|fp32: of tasks whose input does not say (default auto = bf16\n"
            "                           where the kernels have bf16 dot products or AMX, else fp32; here: %s);\n"
            "                           bf16 on a CPU without them is refused\n"
            "  --http-threads N         HTTP threads (default 4)\n"
            "  --queue-limit N          tasks waiting or running before Run answers 429 (default 100)\n"
            "  --max-connections-per-ip N  HTTP connections one client address may hold (default 64)\n"
            "  --project-queue-limit N  of those, one project's (default: half of --queue-limit, rounded up)\n"
            "  --run-rate N             Runs per project per minute before Run answers 429 (default 30, 0: no limit)\n"
            "  --retention-days N       delete output files after N days; records stay (default: keep)\n"
            "  --body-limit BYTES       largest request body (default 1048576)\n"
            "  --max-attempts N         a task interrupted N times by crashes fails (default 3)\n"
            "  --nonce-window SECONDS   state-changing calls need a nonce of unix time within now +- this (default 900)\n"
            "  --callback-backoff-ms MS first callback retry delay, doubled per try (default 1000)\n"
            "  --allow-private-callbacks  let callbackUrl reach loopback, link-local and private addresses\n"
            "  --no-worker              an API node only: tasks wait for `cogvideox worker` on the same store\n"
            "example: cogvideox keys create --store tasks.db\n"
            "         cogvideox serve --model models/tiny --store tasks.db --outputs outputs --listen 127.0.0.1:8080\n"
            "         then open http://127.0.0.1:8080/ and enter the key (and secret) that keys create printed\n",
            cvx_precision_name(cvx_precision_default()));
}

typedef struct {
    cvx_engine *engine;
} real_engine;

static cvx_status real_generate(void *ctx, const cvx_generate_params *p, char *err, size_t err_size) {
    real_engine *re = ctx;
    cvx_status st = cvx_generate(re->engine, p, NULL);
    if (st != CVX_OK) snprintf(err, err_size, "%s", cvx_engine_last_error(re->engine));
    return st;
}

static int parse_listen(const char *s, char *host, size_t host_size, int *port) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= host_size) return -1;
    long long p;
    if (cvx_cli_parse_int(colon + 1, 0, 65535, &p)) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    *port = (int)p;
    return 0;
}

static void worker_usage(FILE *f) {
    fprintf(f,
            "usage: cogvideox worker --model DIR --store PATH|URL --outputs DIR [--threads N] [--name NAME]\n"
            "                        [--precision P] [--max-attempts N]\n"
            "A worker without HTTP: it claims the tasks that API nodes (serve --no-worker) accept into the same\n"
            "store, generates them with its engine and records their progress, checkpoints and results there; a\n"
            "Kill or Cancel recorded by an API node stops it within about a second. --outputs is where its videos\n"
            "go: the API node serves them from its own --outputs, so both name the same folder (one host, or a\n"
            "shared one). --name is its name in /healthz (default <hostname>:<pid>). Run one worker per store:\n"
            "several need the leases of issue 15, not built yet.\n"
            "example: cogvideox serve --no-worker --model models/tiny --store tasks.db --outputs outputs --listen 127.0.0.1:8080\n"
            "         cogvideox worker --model models/tiny --store tasks.db --outputs outputs\n");
}

/* serve (worker = 0) and worker (1): one parser, one start. */
static int serve_or_work(int argc, char **argv, int worker) {
    const char *cmd = worker ? "worker" : "serve";
    cvx_svc_config cfg = cvx_svc_config_default();
    cfg.no_http = worker;
    const char *model = NULL, *listen = NULL, *slug = NULL;
    long long threads = 0;
    char host[256], owner[64], project[64];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (worker) {
                worker_usage(stdout);
                return 0;
            }
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--allow-private-callbacks")) {
            cfg.allow_private_callbacks = 1;
            continue;
        }
        static const char *const serve_only[] = {"--listen", "--public-url", "--slug", "--http-threads", "--queue-limit",
                                                 "--max-connections-per-ip", "--project-queue-limit", "--run-rate",
                                                 "--retention-days", "--body-limit", "--nonce-window",
                                                 "--callback-backoff-ms", "--allow-private-callbacks", "--key-file"};
        for (size_t k = 0; worker && k < sizeof serve_only / sizeof serve_only[0]; k++)
            if (!strcmp(a, serve_only[k])) {
                fprintf(stderr, "cogvideox worker: %s is serve's (a worker has no HTTP and needs no server key)\n", a);
                return 1;
            }
        if (!strcmp(a, "--no-worker") && !worker) {
            cfg.no_worker = 1;
            continue;
        }
        if (i + 1 >= argc) {
            CVX_CLI_UNKNOWN("serve", a, "--model", "--store", "--key-file", "--outputs", "--listen", "--public-url", "--slug", "--threads", "--precision", "--http-threads", "--queue-limit", "--max-connections-per-ip", "--project-queue-limit", "--run-rate", "--retention-days", "--body-limit", "--max-attempts", "--nonce-window", "--callback-backoff-ms", "--allow-private-callbacks", "--no-worker", "--name", "--help");
            usage(stderr);
            return 1;
        }
        const char *v = argv[++i];
        long long n;
        int bad = 0;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--store")) cfg.store_path = v;
        else if (!strcmp(a, "--key-file")) cfg.key_file = v;
        else if (!strcmp(a, "--name") && worker) cfg.worker_name = v;
        else if (!strcmp(a, "--outputs")) cfg.outputs_dir = v;
        else if (!strcmp(a, "--listen")) listen = v;
        else if (!strcmp(a, "--public-url")) cfg.public_url = v;
        else if (!strcmp(a, "--slug")) slug = v;
        else if (!strcmp(a, "--threads")) bad = cvx_cli_parse_int(v, 1, 1024, &threads);
        else if (!strcmp(a, "--precision")) {
            int pr = !strcmp(v, "auto") ? (int)cvx_precision_default() : cvx_precision_from_name(v);
            bad = pr < 0;
            if (!bad) cfg.precision = (cvx_precision)pr;
            if (!bad && !cvx_precision_native(cfg.precision)) {
                fprintf(stderr,
                        "cogvideox %s: --precision bf16 needs bf16 dot products (AVX512-BF16 or AMX); the kernel "
                        "path in use is %s, where emulated bf16 is slower than fp32: use --precision fp32 or auto\n",
                        cmd, cvx_isa_name(cvx_isa_active()));
                return 1;
            }
        }
        else if (!strcmp(a, "--http-threads")) bad = cvx_cli_parse_int(v, 1, 64, &n), cfg.http_threads = (int)n;
        else if (!strcmp(a, "--queue-limit")) bad = cvx_cli_parse_int(v, 1, 1000000, &n), cfg.queue_limit = (int)n;
        else if (!strcmp(a, "--max-connections-per-ip"))
            bad = cvx_cli_parse_int(v, 1, 100000, &n), cfg.max_connections_per_ip = (int)n;
        else if (!strcmp(a, "--project-queue-limit"))
            bad = cvx_cli_parse_int(v, 1, 1000000, &n), cfg.project_queue_limit = (int)n;
        else if (!strcmp(a, "--run-rate")) bad = cvx_cli_parse_int(v, 0, 1000000, &n), cfg.project_runs_per_min = (int)n;
        else if (!strcmp(a, "--retention-days")) bad = cvx_cli_parse_int(v, 0, 100000, &n), cfg.retention_days = (int)n;
        else if (!strcmp(a, "--body-limit")) bad = cvx_cli_parse_int(v, 1024, 1 << 30, &n), cfg.body_limit = (size_t)n;
        else if (!strcmp(a, "--max-attempts")) bad = cvx_cli_parse_int(v, 1, 1000, &n), cfg.max_attempts = (int)n;
        else if (!strcmp(a, "--nonce-window")) bad = cvx_cli_parse_int(v, 1, 1LL << 40, &n), cfg.nonce_window_s = n;
        else if (!strcmp(a, "--callback-backoff-ms"))
            bad = cvx_cli_parse_int(v, 1, 3600000, &n), cfg.callback_backoff_ms = (int)n;
        else {
            CVX_CLI_UNKNOWN("serve", a, "--model", "--store", "--key-file", "--outputs", "--listen", "--public-url", "--slug", "--threads", "--precision", "--http-threads", "--queue-limit", "--max-connections-per-ip", "--project-queue-limit", "--run-rate", "--retention-days", "--body-limit", "--max-attempts", "--nonce-window", "--callback-backoff-ms", "--allow-private-callbacks", "--no-worker", "--name", "--help");
            usage(stderr);
            return 1;
        }
        if (bad) {
            fprintf(stderr, "cogvideox %s: bad value for %s: %s\n", cmd, a, v);
            return 1;
        }
    }
    if (worker && !listen) listen = "127.0.0.1:0"; /* (a worker listens nowhere) */
    if (!model || !cfg.store_path || !cfg.outputs_dir || !listen) {
        fprintf(stderr, "cogvideox %s: --model, --store, --outputs%s are required\n", cmd, worker ? "" : " and --listen");
        if (worker) worker_usage(stderr);
        else usage(stderr);
        return 1;
    }
    if (parse_listen(listen, host, sizeof host, &cfg.port)) {
        fprintf(stderr, "cogvideox %s: --listen wants HOST:PORT (e.g. 127.0.0.1:8080), not %s\n", cmd, listen);
        return 1;
    }
    cfg.listen_host = host;
    if (slug) {
        const char *sl = strchr(slug, '/');
        if (!sl || sl == slug || !sl[1] || strchr(sl + 1, '/') || (size_t)(sl - slug) >= sizeof owner ||
            strlen(sl + 1) >= sizeof project) {
            fprintf(stderr, "cogvideox %s: --slug wants OWNER/MODEL, not %s\n", cmd, slug);
            return 1;
        }
        memcpy(owner, slug, (size_t)(sl - slug));
        owner[sl - slug] = 0;
        snprintf(project, sizeof project, "%s", sl + 1);
        cfg.slug_owner = owner;
        cfg.slug_project = project;
    }
    if (cfg.public_url && strncmp(cfg.public_url, "http://", 7) && strncmp(cfg.public_url, "https://", 8)) {
        fprintf(stderr, "cogvideox %s: --public-url must start with http:// or https://\n", cmd);
        return 1;
    }
    int orc = cvx_cli_check_output_dir("serve", "--outputs", cfg.outputs_dir);
    if (orc) return orc;
    char err[1024];
    if ((orc = cvx_cli_check_model_dir("serve", model)) != 0) return orc;
    if (cvx_svc_limits_from_model(&cfg.limits, model, err, sizeof err)) {
        fprintf(stderr, "cogvideox %s: %s\n", cmd, err);
        return 2;
    }

    /* signals go to sigwait below; every thread started from here inherits the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    real_engine re = {0};
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = (int)threads;
    if (cvx_engine_open(&re.engine, model, &ep, err, sizeof err) != CVX_OK) {
        fprintf(stderr, "cogvideox %s: %s\n", cmd, err);
        return 2;
    }
    cfg.engine.generate = real_generate;
    cfg.engine.ctx = &re;
    cvx_svc *svc = NULL;
    if (cvx_svc_start(&svc, &cfg, err, sizeof err)) {
        fprintf(stderr, "cogvideox %s: %s\n", cmd, err);
        cvx_engine_close(re.engine);
        return 2;
    }
    if (worker)
        printf("worker on a %s store (model %s, precision %s)\n", cvx_svc_store_is_postgres(cfg.store_path) ? "PostgreSQL" : "SQLite",
               model, cvx_precision_name(cfg.precision));
    else
        printf("listening on http://%s:%d (model %s as %s/%s, precision %s%s)\n", host, cvx_svc_port(svc), model,
               cfg.slug_owner, cfg.slug_project, cvx_precision_name(cfg.precision), cfg.no_worker ? ", no worker" : "");
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "cogvideox %s: %s: stopping\n", cmd, sig == SIGINT ? "SIGINT" : "SIGTERM");
    cvx_svc_stop(svc);
    cvx_engine_close(re.engine);
    return 0;
}

int cvx_cmd_serve(int argc, char **argv) { return serve_or_work(argc, argv, 0); }

int cvx_cmd_worker(int argc, char **argv) { return serve_or_work(argc, argv, 1); }
