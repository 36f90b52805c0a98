/* cogvideox download REPO -o DIR [--revision R] [--token T] [--endpoint URL] [--all] [--quiet]
 *
 * Fetches a model folder from the Hugging Face hub (src/io/hub.h): by default only what a CogVideoXPipeline
 * folder is loaded from, then opens the folder with cvx_model_open to prove it is usable.
 * Exit codes: 0 ok, 1 bad arguments, 2 network / verification / model errors, 130 cancelled (SIGINT/SIGTERM;
 * partial files are kept, and the next run resumes them). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/log.h"
#include "io/hub.h"
#include "io/model.h"

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: cogvideox download REPO -o DIR [--revision R] [--token T] [--endpoint URL] [--all] [--quiet]\n"
            "Downloads a model folder from the Hugging Face hub (e.g. THUDM/CogVideoX-2b), resumably; sizes and\n"
            "checksums are verified against the hub's listing.\n"
            "  -o, --output DIR   the folder to fill (created); files already there and correct are kept\n"
            "  --revision R       branch, tag or commit (default main)\n"
            "  --token T          access token for private or gated repositories (default: $HF_TOKEN)\n"
            "  --endpoint URL     the hub (default: $HF_ENDPOINT, else " CVX_HUB_DEFAULT_ENDPOINT ")\n"
            "  --all              every file of the repository, not only what a CogVideoX pipeline needs\n"
            "  -q, --quiet        no progress output\n"
            "Exit codes: 0 ok, 1 bad arguments, 2 network or verification error, 130 interrupted (run again to\n"
            "resume).\n"
            "example: cogvideox download THUDM/CogVideoX-2b -o models/CogVideoX-2b\n");
}

static const char *clock_str(double s, char *buf, size_t size) {
    if (s < 0 || s > 359999) return snprintf(buf, size, "--:--"), buf;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

typedef struct {
    int quiet, tty;
    int last_decile; /* plain output: a line per 10% of a file */
    int bar_open;
    char unreachable[512]; /* the first attempt's message when the hub cannot be reached */
} progress_state;

/* A host that does not resolve or refuses the connection will not answer a retry either: stop at once (the retries
 * stay for 5xx answers and dropped transfers). */
static int unreachable(const char *msg) {
    return msg && (strstr(msg, "resolve host") || strstr(msg, "Could not resolve") || strstr(msg, "Couldn't connect") ||
                   strstr(msg, "Connection refused") || strstr(msg, "Failed to connect"));
}

static void progress(const cvx_hub_progress *p, void *user_data) {
    progress_state *ps = user_data;
    if (p->event == CVX_HUB_RETRY && unreachable(p->message)) {
        snprintf(ps->unreachable, sizeof ps->unreachable, "%s", p->message);
        g_stop = 1;
        return;
    }
    if (ps->quiet) return;
    char a[32], b[32], c[32], d[32];
    if (p->event == CVX_HUB_LISTED) {
        fprintf(stderr, "%d files, %s\n", p->count, cvx_format_bytes(p->total, a, sizeof a));
        return;
    }
    if (p->event == CVX_HUB_RETRY) {
        if (ps->bar_open) fputc('\n', stderr), ps->bar_open = 0;
        fprintf(stderr, "retrying in %.1f s (attempt %d failed): %s\n", p->retry_in_s, p->attempt, p->message);
        return;
    }
    if (ps->tty) {
        /* One line redrawn in place: overall percentage, bytes, rate, time left, the current file. */
        double rate = p->elapsed_s > 0.2 ? p->received / p->elapsed_s : 0;
        double left = rate > 0 && p->total >= p->done ? (p->total - p->done) / rate : -1;
        int pct = p->total ? (int)(p->done * 100 / p->total) : 100;
        int width = 20, fill = pct * width / 100;
        char bar[32], line[512];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        snprintf(line, sizeof line, "[%s] %3d%% %s / %s  %s/s  ETA %s  %d/%d %s", bar, pct,
                 cvx_format_bytes(p->done, a, sizeof a), cvx_format_bytes(p->total, b, sizeof b), cvx_format_bytes((uint64_t)rate, c, sizeof c),
                 clock_str(left, d, sizeof d), p->index + 1, p->count, p->file);
        /* One terminal row, so that "\r" redraws it instead of scrolling. */
        struct winsize ws;
        int cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 ? ws.ws_col : 80;
        if ((int)strlen(line) > cols - 1) line[cols - 1] = 0;
        fprintf(stderr, "\r%s\033[K", line);
        fflush(stderr);
        ps->bar_open = 1;
        if (p->event == CVX_HUB_FILE_DONE && p->index + 1 == p->count) fputc('\n', stderr), ps->bar_open = 0;
        return;
    }
    switch (p->event) {
    case CVX_HUB_FILE_START:
        ps->last_decile = p->file_total ? (int)(p->file_done * 10 / p->file_total) : 0;
        if (p->file_done)
            fprintf(stderr, "[%d/%d] %s: resuming at %s of %s\n", p->index + 1, p->count, p->file,
                    cvx_format_bytes(p->file_done, a, sizeof a), cvx_format_bytes(p->file_total, b, sizeof b));
        else
            fprintf(stderr, "[%d/%d] %s (%s)\n", p->index + 1, p->count, p->file, cvx_format_bytes(p->file_total, a, sizeof a));
        break;
    case CVX_HUB_FILE_BYTES: {
        int dec = p->file_total ? (int)(p->file_done * 10 / p->file_total) : 0;
        if (dec != ps->last_decile && dec < 10)
            fprintf(stderr, "[%d/%d] %s: %d%% (%s of %s)\n", p->index + 1, p->count, p->file, dec * 10,
                    cvx_format_bytes(p->file_done, a, sizeof a), cvx_format_bytes(p->file_total, b, sizeof b));
        ps->last_decile = dec;
        break;
    }
    case CVX_HUB_FILE_DONE:
        fprintf(stderr, "[%d/%d] %s: done, verified (%s of %s overall, %.1f s)\n", p->index + 1, p->count, p->file,
                cvx_format_bytes(p->done, a, sizeof a), cvx_format_bytes(p->total, b, sizeof b), p->elapsed_s);
        break;
    case CVX_HUB_FILE_PRESENT:
        fprintf(stderr, "[%d/%d] %s: already present and verified\n", p->index + 1, p->count, p->file);
        break;
    default:
        break;
    }
}

int cvx_cmd_download(int argc, char **argv) {
    cvx_hub_params p = cvx_hub_params_default();
    const char *repo = NULL, *out = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            out = v, i++;
        } else if (!strcmp(a, "--revision") && v) {
            if (!*v) {
                fprintf(stderr, "cogvideox download: --revision needs a branch, tag or commit\n");
                return 1;
            }
            p.revision = v, i++;
        } else if (!strcmp(a, "--token") && v) {
            p.token = v, i++;
        } else if (!strcmp(a, "--endpoint") && v) {
            p.endpoint = v, i++;
        } else if (!strcmp(a, "--all")) {
            p.all_files = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-') {
            CVX_CLI_UNKNOWN("download", a, "-o", "--output", "--revision", "--token", "--endpoint", "--all", "--quiet", "--help");
            usage(stderr);
            return 1;
        } else if (!repo) {
            repo = a;
        } else {
            fprintf(stderr, "cogvideox download: more than one repository ('%s' and '%s')\n", repo, a);
            return 1;
        }
    }
    if (!repo || !out) {
        fprintf(stderr, "cogvideox download: %s\n", !repo ? "no repository (e.g. THUDM/CogVideoX-2b)" : "no output folder (-o DIR)");
        usage(stderr);
        return 1;
    }
    if (!cvx_hub_valid_repo_id(repo)) {
        fprintf(stderr, "cogvideox download: '%s' is not a repository id (expected owner/name, e.g. THUDM/CogVideoX-2b)\n",
                repo);
        return 1;
    }

    progress_state ps = {quiet, isatty(STDERR_FILENO), 0, 0, ""};
    p.progress = progress;
    p.user_data = &ps;
    p.cancel = (const volatile int *)&g_stop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    cvx_error err = {0};
    cvx_hub_result res;
    double t0 = cvx_time_seconds();
    cvx_status st = cvx_hub_download(repo, out, &p, &res, &err);
    if (ps.bar_open) fputc('\n', stderr);
    if (st == CVX_ERR_CANCELLED && ps.unreachable[0]) {
        const char *ep = p.endpoint ? p.endpoint : getenv("HF_ENDPOINT");
        fprintf(stderr,
                "cogvideox download: cannot reach %s: %s\n"
                "  offline? behind a proxy (https_proxy)? a mirror: --endpoint URL or $HF_ENDPOINT; or copy the model\n"
                "  folder from a machine that has it (model_index.json, tokenizer/, text_encoder/, transformer/, vae/,\n"
                "  scheduler/) and pass it to -m\n",
                ep && *ep ? ep : CVX_HUB_DEFAULT_ENDPOINT, ps.unreachable);
        return 2;
    }
    if (st == CVX_ERR_CANCELLED) {
        fprintf(stderr, "cogvideox download: interrupted; run the same command again to resume\n");
        return 130;
    }
    if (st) {
        fprintf(stderr, "cogvideox download: %s\n", cvx_error_message(&err));
        return st == CVX_ERR_INVALID_ARGUMENT ? 1 : 2;
    }
    double secs = cvx_time_seconds() - t0;
    /* hub weights replaced whatever make-model had written here: its random-weights marker goes too */
    char marker[4200];
    snprintf(marker, sizeof marker, "%s/%s", out, CVX_RANDOM_WEIGHTS_MARKER);
    unlink(marker);
    char a[32], b[32];
    printf("downloaded %s%s%s into %s: %d files (%s), %d fetched, %d already present; %s received in %.1f s\n", repo,
           res.commit[0] ? " @ " : "", res.commit, out, res.n_files, cvx_format_bytes(res.bytes, a, sizeof a), res.n_fetched,
           res.n_present, cvx_format_bytes(res.received, b, sizeof b), secs);
    if (p.all_files) {
        /* Every file was asked for: the repository need not be a pipeline folder; say whether it is one. */
        char idx[4096];
        snprintf(idx, sizeof idx, "%s/model_index.json", out);
        if (access(idx, F_OK) != 0) return 0;
    }
    cvx_model *m = NULL;
    st = cvx_model_open(&m, out, NULL, &err);
    if (st) {
        fprintf(stderr, "cogvideox download: the downloaded folder does not open as a model: %s\n", cvx_error_message(&err));
        return 2;
    }
    printf("%s opens as a %s folder (%d components, weights checked)\n", out, m->pipeline_class, m->n_comp);
    cvx_model_close(m);
    return 0;
}
