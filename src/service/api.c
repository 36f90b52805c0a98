/* The endpoints of WIRO_API.md: Run, Task/Detail, Task/Cancel, Task/Kill, Task/List, Task/InputOutputDelete,
 * Tool/List, Tool/Detail; the validation of Run's inputs (the task object is task_view.c's). Answers carry `result` and `errors` at the
 * top level; numbers inside task objects are strings; business errors are HTTP 200 with result false. */
#include "service/api.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "service/body.h"
#include "service/inputs.h"

static const char *DEFAULT_PROMPT =
    "A sprawling futuristic city illuminated by neon lights, with flying cars zipping through the air. The skyline is "
    "filled with towering skyscrapers, and holographic advertisements flicker on every corner. The camera zooms "
    "through the streets, capturing the hustle and bustle of a technologically advanced society.";
/* Inputs Run does not know are echoed in `parameters` up to this many bytes in all (name + JSON text of each, in
 * body order); the rest are dropped, so a task's stored inputs stay small whatever the body limit. */
#define EXTRA_INPUTS_MAX 16384
/* Task/List: at most this many tasks per page, and a page stops before its JSON passes LIST_BYTES_MAX. */
#define LIST_LIMIT_MAX 100
#define LIST_BYTES_MAX (2 << 20)

void cvx_svc_reply_error(cvx_svc_reply *rp, int http_status, int code, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rp->status = http_status;
    json_decref(rp->body);
    rp->body = json_pack("{s:b, s:[{s:i, s:s}]}", "result", 0, "errors", "code", code, "message", msg);
}

/* A store that failed (PostgreSQL restarting or out of reach, a full disk): 503 with Retry-After, in the error
 * contract; nothing was changed, so the client may send the call again. */
static void store_failed(cvx_svc_reply *rp, const char *what) {
    cvx_svc_reply_error(rp, 503, 0, "%s The service's store is unavailable; try again.", what);
    rp->retry_after_s = 5;
}

static json_t *num_str(long long v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    return json_string(b);
}

/* ---- Run ---- */

static int ok_callback_url(const char *u) {
    size_t len = strlen(u);
    if (len > 2048) return 0;
    const char *rest;
    if (!strncasecmp(u, "http://", 7)) rest = u + 7;
    else if (!strncasecmp(u, "https://", 8)) rest = u + 8;
    else return 0;
    size_t auth_len = strcspn(rest, "/?#");
    if (auth_len == 0 || memchr(rest, '@', auth_len)) return 0; /* no host, or credentials in the URL */
    for (const char *c = u; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) return 0;
    return 1;
}

/* 1 when the URL's host is an internal destination: localhost (and *.localhost) or an IP literal that
 * cvx_svc_addr_internal refuses. Names are checked again at delivery, against every address they resolve to. */
static int internal_callback_host(const char *u) {
    const char *rest = strstr(u, "://") + 3;
    size_t auth_len = strcspn(rest, "/?#");
    char host[300];
    if (auth_len >= sizeof host) return 0;
    memcpy(host, rest, auth_len);
    host[auth_len] = 0;
    char *h = host;
    if (*h == '[') { /* [v6]:port */
        h++;
        char *close = strchr(h, ']');
        if (close) *close = 0;
    } else {
        char *colon = strchr(h, ':');
        if (colon) *colon = 0;
    }
    size_t hl = strlen(h);
    while (hl && h[hl - 1] == '.') h[--hl] = 0; /* "localhost." */
    if (!strcasecmp(h, "localhost") || (hl > 10 && !strcasecmp(h + hl - 10, ".localhost"))) return 1;
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, h, &a4.sin_addr) == 1) return cvx_svc_addr_internal((struct sockaddr *)&a4);
    if (inet_pton(AF_INET6, h, &a6.sin6_addr) == 1) return cvx_svc_addr_internal((struct sockaddr *)&a6);
    return 0;
}

static int bad_number(cvx_svc_reply *rp, const char *name) {
    cvx_svc_reply_error(rp, 200, 0, "Request parameter [%s] must be integer or float", name);
    return -1;
}

static int get_int(const cvx_svc_request *rq, cvx_svc_reply *rp, const char *name, long long def, long long lo,
                   long long hi, long long *out) {
    int r = cvx_svc_field_int(rq->fields, name, out);
    if (r < 0) return bad_number(rp, name);
    if (r == 0) *out = def;
    if (*out < lo || *out > hi) {
        cvx_svc_reply_error(rp, 200, 0, "Request parameter [%s] must be between %lld and %lld", name, lo, hi);
        return -1;
    }
    return 0;
}

static int get_text(const cvx_svc_request *rq, cvx_svc_reply *rp, const char *name, size_t max, const char **out,
                    char *buf, size_t buf_size) {
    int r = cvx_svc_field_text(rq->fields, name, out, buf, buf_size);
    if (r < 0) {
        cvx_svc_reply_error(rp, 200, 0, "Request parameter [%s] must be text", name);
        return -1;
    }
    if (r == 0) *out = NULL;
    if (*out && strlen(*out) > max) {
        cvx_svc_reply_error(rp, 200, 0, "Request parameter [%s] must be at most %zu bytes long", name, max);
        return -1;
    }
    return 0;
}

static int slug_matches(const cvx_svc *svc, const char *owner, size_t owner_len, const char *project) {
    return strlen(svc->slug_owner) == owner_len && !strncasecmp(owner, svc->slug_owner, owner_len) &&
           !strcasecmp(project, svc->slug_project);
}

/* The inputs stored with a task and echoed in `parameters`: every input Run reads, as received, and the others up
 * to EXTRA_INPUTS_MAX bytes in all. A new reference. */
static json_t *stored_inputs(const json_t *fields, int takes_image) {
    /* inputImage is an input of an image-to-video model only: a t2v model keeps it as any other unknown field */
    static const char *known[] = {"prompt", "negativePrompt", "steps", "scale", "seed", "numFrames", "width",
                                  "height", "fps", "precision", "cache", "scheduler", "dynamicCfg", "callbackUrl",
                                  "projectid", "inputImage"};
    const size_t n_known = sizeof known / sizeof known[0] - (takes_image ? 0 : 1);
    json_t *out = json_object();
    if (!out) return NULL;
    size_t extra = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)fields, key, v) {
        int is_known = 0;
        for (size_t i = 0; i < n_known && !is_known; i++) is_known = !strcmp(key, known[i]);
        if (!is_known) {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            size_t len = strlen(key) + (text ? strlen(text) : 0);
            free(text);
            if (!text || extra + len > EXTRA_INPUTS_MAX) continue;
            extra += len;
        }
        json_object_set(out, key, v);
    }
    return out;
}

/* The inputImage of Run for a model that takes one: a file part named inputImage, or an http(s) URL in the field
 * (fetched here, under the limits of inputs.h); its bytes must decode to a picture, whose size goes to *fw x *fh.
 * 0 (*data malloc'ed, *size bytes) or -1 (an error was replied). */
static int run_image(const cvx_svc_request *rq, cvx_svc_reply *rp, void **data, size_t *size, int *fw, int *fh) {
    const cvx_svc *svc = rq->svc;
    *data = NULL;
    *size = 0;
    char why[600];
    if (rq->n_files > 0 && strcmp(rq->files[0].name, "inputImage")) {
        cvx_svc_reply_error(rp, 200, 0, "Request parameter [%.64s] is a file; this model takes a file only as [inputImage]",
                            rq->files[0].name);
        return -1;
    }
    if (rq->n_files > 0) {
        const cvx_svc_body_file *f = &rq->files[0];
        if (f->size > CVX_SVC_INPUT_MAX) {
            cvx_svc_reply_error(rp, 200, 0, "Request parameter [inputImage] must be at most %u bytes (it has %zu)",
                                CVX_SVC_INPUT_MAX, f->size);
            return -1;
        }
        if (f->size == 0) {
            cvx_svc_reply_error(rp, 200, 0, "Request parameter [inputImage] is empty");
            return -1;
        }
        *data = malloc(f->size);
        if (!*data) {
            cvx_svc_reply_error(rp, 500, 0, "Out of memory.");
            return -1;
        }
        memcpy(*data, f->data, f->size);
        *size = f->size;
    } else {
        const char *url;
        char b[64];
        if (get_text(rq, rp, "inputImage", 2048, &url, b, sizeof b)) return -1;
        if (!url) {
            cvx_svc_reply_error(rp, 200, 0, "Request parameter [inputImage] required");
            return -1;
        }
        if (!ok_callback_url(url)) {
            cvx_svc_reply_error(rp, 200, 0,
                                "Request parameter [inputImage] must be a file part or an http or https URL without "
                                "credentials");
            return -1;
        }
        if (!svc->cfg.allow_private_inputs && internal_callback_host(url)) {
            cvx_svc_reply_error(rp, 200, 0,
                                "Request parameter [inputImage] must not point to a loopback, link-local or private "
                                "address");
            return -1;
        }
        const long long project = rq->project->id;
        const int busy = cvx_svc_input_fetch_begin(rq->svc, project);
        if (busy) {
            cvx_svc_reply_error(rp, 429, 96, "%s; send the image as a file part, or try again in a few seconds.",
                                busy == 1 ? "This project's image URL is already being fetched"
                                          : "Too many image URLs are being fetched");
            rp->retry_after_s = 5;
            return -1;
        }
        const int fetched = cvx_svc_input_fetch(svc, url, data, size, why, sizeof why);
        cvx_svc_input_fetch_end(rq->svc, project);
        if (fetched) {
            cvx_svc_reply_error(rp, 200, 0, "Request parameter [inputImage] %s", why);
            return -1;
        }
    }
    cvx_frames fr;
    if (cvx_svc_input_decode(*data, *size, &fr, why, sizeof why)) {
        cvx_svc_reply_error(rp, 200, 0, "Request parameter [inputImage] %s", why);
        free(*data);
        *data = NULL;
        return -1;
    }
    *fw = fr.width;
    *fh = fr.height;
    cvx_frames_free(&fr);
    return 0;
}

static void api_run(const cvx_svc_request *rq, cvx_svc_reply *rp) {
    cvx_svc *svc = rq->svc;
    const cvx_svc_model_limits *L = &svc->cfg.limits;
    const cvx_model_info *M = &svc->cfg.model; /* the engine's minimums and multiples */
    const char *rest = rq->path_rest; /* "{owner}/{model}" */
    const char *slash = strchr(rest, '/');
    if (!slash || strchr(slash + 1, '/') || !slug_matches(svc, rest, (size_t)(slash - rest), slash + 1)) {
        cvx_svc_reply_error(rp, 200, 1, "slug-owner-project-not-exist");
        return;
    }
    const char *prompt, *negative, *callback;
    char b1[64], b2[64], b3[64];
    if (get_text(rq, rp, "prompt", L->max_prompt_bytes, &prompt, b1, sizeof b1)) return;
    if (!prompt) {
        cvx_svc_reply_error(rp, 200, 0, "Request parameter [prompt] required");
        return;
    }
    long long steps, frames, width, height, fps;
    if (get_int(rq, rp, "steps", L->default_steps, M->min_steps, L->max_steps, &steps)) return;
    double scale = L->default_scale;
    int r = cvx_svc_field_double(rq->fields, "scale", &scale);
    if (r < 0) return (void)bad_number(rp, "scale");
    if (scale < M->min_guidance_scale || scale > L->max_scale) {
        cvx_svc_reply_error(rp, 200, 0, "Request parameter [scale] must be between %g and %g",
                            (double)M->min_guidance_scale, L->max_scale);
        return;
    }
    unsigned long long seed = M->default_seed;
    r = cvx_svc_field_u64(rq->fields, "seed", &seed);
    if (r < 0) {
        long long neg;
        if (cvx_svc_field_int(rq->fields, "seed", &neg) == 1) /* a number, just not a seed */
            cvx_svc_reply_error(rp, 200, 0, "Request parameter [seed] must be between 0 and %" PRIu64, UINT64_MAX);
        else
            bad_number(rp, "seed");
        return;
    }
    if (get_text(rq, rp, "negativePrompt", L->max_prompt_bytes, &negative, b2, sizeof b2)) return;
    if (get_int(rq, rp, "numFrames", L->default_frames, M->min_frames, L->max_frames, &frames)) return;
    if ((frames - M->min_frames) % M->frames_step) {
        cvx_svc_reply_error(rp, 200, 0, "Request parameter [numFrames] must be %dN+1 (%d, %d, %d, ..., %d)",
                            M->frames_step, M->min_frames, M->min_frames + M->frames_step,
                            M->min_frames + 2 * M->frames_step, L->max_frames);
        return;
    }
    /* an image-to-video model's width and height default to the image's (checked below, once it is read) */
    const int takes_image = cvx_svc_takes_image(svc);
    long long given;
    const int width_given = cvx_svc_field_int(rq->fields, "width", &given) != 0;
    const int height_given = cvx_svc_field_int(rq->fields, "height", &given) != 0;
    if (get_int(rq, rp, "width", L->default_width, M->min_size, L->max_width, &width)) return;
    if (get_int(rq, rp, "height", L->default_height, M->min_size, L->max_height, &height)) return;
    if (width % M->size_multiple || height % M->size_multiple) {
        cvx_svc_reply_error(rp, 200, 0, "Request parameter [%s] must be a multiple of %d",
                            width % M->size_multiple ? "width" : "height", M->size_multiple);
        return;
    }
    if (get_int(rq, rp, "fps", L->default_fps, M->min_fps, L->max_fps, &fps)) return;
    const char *prec_text;
    char b4[64];
    if (get_text(rq, rp, "precision", 64, &prec_text, b4, sizeof b4)) return;
    cvx_precision precision = svc->cfg.precision; /* absent or empty: the server's */
    if (prec_text && *prec_text) {
        int pr = !strcasecmp(prec_text, "bf16")   ? CVX_PRECISION_BF16
                 : !strcasecmp(prec_text, "fp32") ? CVX_PRECISION_FP32
                                                  : -1;
        if (pr < 0) {
            cvx_svc_reply_error(rp, 200, 0, "Request parameter [precision] must be bf16 or fp32");
            return;
        }
        if (pr == CVX_PRECISION_BF16 && !svc->cfg.allow_bf16) {
            cvx_svc_reply_error(rp, 200, 0,
                                "Request parameter [precision] must be fp32 on this server (its CPU has no bf16 dot "
                                "products)");
            return;
        }
        precision = (cvx_precision)pr;
    }
    /* step skipping: absent or empty is off; the one parser generate --cache uses */
    const char *cache_text;
    char b5[64], cache[400];
    if (get_text(rq, rp, "cache", 256, &cache_text, b5, sizeof b5)) return;
    cvx_cache_params cache_params;
    memset(&cache_params, 0, sizeof cache_params);
    if (cache_text && *cache_text) {
        char why[256];
        if (cvx_cache_parse(cache_text, &cache_params, why, sizeof why) != CVX_OK) {
            cvx_svc_reply_error(rp, 200, 0,
                                "Request parameter [cache] must be off or teacache[:THRESHOLD[:C4,C3,C2,C1,C0]]: %s",
                                why);
            return;
        }
    }
    cvx_cache_format(&cache_params, cache, sizeof cache);
    /* [ours] the scheduler and the cosine guidance schedule, as generate's --scheduler and --dynamic-cfg; absent or
     * empty: the model folder's scheduler, no dynamic CFG */
    const char *sched_text, *dyn_text, *scheduler = "";
    char b6[64], b7[64];
    if (get_text(rq, rp, "scheduler", 64, &sched_text, b6, sizeof b6)) return;
    if (sched_text && *sched_text) {
        if (!strcasecmp(sched_text, "ddim")) scheduler = "ddim";
        else if (!strcasecmp(sched_text, "dpm")) scheduler = "dpm";
        else {
            cvx_svc_reply_error(rp, 200, 0, "Request parameter [scheduler] must be ddim or dpm");
            return;
        }
    }
    int dynamic_cfg = 0;
    if (get_text(rq, rp, "dynamicCfg", 64, &dyn_text, b7, sizeof b7)) return;
    if (dyn_text && *dyn_text) {
        if (!strcasecmp(dyn_text, "true") || !strcmp(dyn_text, "1")) dynamic_cfg = 1;
        else if (strcasecmp(dyn_text, "false") && strcmp(dyn_text, "0")) {
            cvx_svc_reply_error(rp, 200, 0, "Request parameter [dynamicCfg] must be true or false");
            return;
        }
    }
    if (get_text(rq, rp, "callbackUrl", 4096, &callback, b3, sizeof b3)) return;
    if (callback && !ok_callback_url(callback)) {
        cvx_svc_reply_error(rp, 200, 0,
                            "Request parameter [callbackUrl] must be an http or https URL without credentials");
        return;
    }
    if (callback && !svc->cfg.allow_private_callbacks && internal_callback_host(callback)) {
        cvx_svc_reply_error(rp, 200, 0,
                            "Request parameter [callbackUrl] must not point to a loopback, link-local or private "
                            "address");
        return;
    }

    /* image-to-video: the image, a file part or a URL, decoded here (a bad one is refused before anything is
     * stored) and stored with the task as the bytes received */
    void *image = NULL;
    size_t image_size = 0;
    if (takes_image) {
        int fw = 0, fh = 0;
        if (run_image(rq, rp, &image, &image_size, &fw, &fh)) return;
        if (!width_given) width = fw;
        if (!height_given) height = fh;
        if (fw != width || fh != height) {
            cvx_svc_reply_error(rp, 200, 0,
                                "Request parameter [inputImage] must be a %lldx%lld image (the video's width x "
                                "height); it is %dx%d",
                                width, height, fw, fh);
            free(image);
            return;
        }
        if (width < M->min_size || width > L->max_width || height < M->min_size || height > L->max_height ||
            width % M->size_multiple || height % M->size_multiple) {
            cvx_svc_reply_error(rp, 200, 0,
                                "Request parameter [inputImage] is %dx%d; the video's width and height (the image's "
                                "unless given) must be multiples of %d from %d to %dx%d",
                                fw, fh, M->size_multiple, M->min_size, (int)L->max_width, (int)L->max_height);
            free(image);
            return;
        }
    }

    cvx_svc_task t;
    memset(&t, 0, sizeof t);
    char key[33], seed_text[32];
    snprintf(seed_text, sizeof seed_text, "%llu", seed);
    if (cvx_svc_uuid(t.uuid) || cvx_svc_random_token(t.token, 30) || cvx_svc_random_token(key, 32)) {
        cvx_svc_reply_error(rp, 500, 0, "No random numbers available.");
        free(image);
        return;
    }
    /* the precision is resolved here, once: the task keeps it across restarts and a change of the server's
     * default, as its checkpoints (whose parameter digest includes it) require; the cache setting is stored in
     * its canonical form in the same way */
    json_t *gen = json_pack("{s:s, s:s, s:i, s:f, s:s, s:i, s:i, s:i, s:i, s:s, s:s, s:s}", "prompt", prompt,
                            "negative_prompt", negative ? negative : "", "steps", (int)steps, "guidance_scale", scale,
                            "seed", seed_text, "num_frames", (int)frames, "width", (int)width, "height", (int)height,
                            "fps", (int)fps, "precision", cvx_precision_name(precision), "cache", cache, "output_key",
                            key);
    if (gen && *scheduler) json_object_set_new(gen, "scheduler", json_string(scheduler));
    if (gen && dynamic_cfg) json_object_set_new(gen, "dynamic_cfg", json_true());
    json_t *inputs = stored_inputs(rq->fields, takes_image);
    t.params = inputs ? json_dumps(inputs, JSON_COMPACT) : NULL;
    json_decref(inputs);
    t.gen = gen ? json_dumps(gen, JSON_COMPACT) : NULL;
    json_decref(gen);
    t.callbackurl = strdup(callback ? callback : "");
    t.project = rq->project->id;
    snprintf(t.slugowner, sizeof t.slugowner, "%s", svc->slug_owner);
    snprintf(t.slugproject, sizeof t.slugproject, "%s", svc->slug_project);
    t.createtime = cvx_svc_now_s();
    char err[256];
    int share = svc->cfg.project_queue_limit > 0 ? svc->cfg.project_queue_limit : (svc->cfg.queue_limit + 1) / 2;
    cvx_svc_add_limits limits = {.queue_limit = svc->cfg.queue_limit,
                                 .project_queue_limit = share,
                                 .project_runs_per_min = svc->cfg.project_runs_per_min};
    int refused = 0;
    int added = t.params && t.gen && t.callbackurl
                    ? cvx_svc_store_task_add_input(svc->store, &t, &limits, &refused, image, image_size, err,
                                                   sizeof err)
                    : -1;
    free(image);
    if (added < 0) {
        cvx_svc_log(svc, CVX_LOG_ERROR, "Run: %s", err);
        store_failed(rp, "The task could not be stored.");
    } else if (added == 0 && refused == CVX_SVC_REFUSED_RATE) {
        cvx_svc_reply_error(rp, 429, 96, "Too many Runs for this project (%d per minute); try again later.",
                            svc->cfg.project_runs_per_min);
        rp->retry_after_s = 60;
    } else if (added == 0 && refused == CVX_SVC_REFUSED_PROJECT_QUEUE) {
        cvx_svc_reply_error(rp, 429, 96,
                            "Your project has %d tasks waiting or running, its share of the queue; try again later.",
                            share);
        rp->retry_after_s = 30;
    } else if (added == 0) {
        cvx_svc_reply_error(rp, 429, 96, "The queue is full (%d tasks); try again later.", svc->cfg.queue_limit);
        rp->retry_after_s = 30;
    } else {
        cvx_svc_log(svc, CVX_LOG_INFO,
                    "task %lld: queued for project %lld (%lld steps, %lldx%lld, %lld frames, %s, cache %s)", t.id,
                    t.project, steps, width, height, frames, cvx_precision_name(precision), cache);
        rp->status = 200;
        rp->body = json_pack("{s:[], s:o, s:s, s:b}", "errors", "taskid", num_str(t.id), "socketaccesstoken", t.token,
                             "result", 1);
        cvx_svc_wake_worker(svc);
    }
    cvx_svc_task_clear(&t);
}

/* ---- task lookups ---- */

/* Finds the caller's task from tasktoken / socketaccesstoken / taskid: 1 found (t filled), 0 an error was replied. */
static int find_task(const cvx_svc_request *rq, cvx_svc_reply *rp, cvx_svc_task *t) {
    const char *token = NULL;
    char buf[64];
    if (cvx_svc_field_text(rq->fields, "tasktoken", &token, buf, sizeof buf) != 1 &&
        cvx_svc_field_text(rq->fields, "socketaccesstoken", &token, buf, sizeof buf) != 1)
        token = NULL;
    long long id = 0;
    int has_id = 0;
    if (!token) {
        const char *idtext;
        char ib[64];
        if (cvx_svc_field_text(rq->fields, "taskid", &idtext, ib, sizeof ib) == 1) {
            has_id = 1;
            if (cvx_svc_field_int(rq->fields, "taskid", &id) != 1) id = -1; /* not a number: no such task */
        }
    }
    if (!token && !has_id) {
        cvx_svc_reply_error(rp, 200, 0, "taskid or socketaccesstoken is required");
        return 0;
    }
    char err[256];
    int r = id < 0 ? 0 : cvx_svc_store_task_get(rq->svc->store, id, token, t, err, sizeof err);
    if (r < 0) {
        cvx_svc_log(rq->svc, CVX_LOG_ERROR, "task lookup: %s", err);
        store_failed(rp, "The task could not be read.");
        return 0;
    }
    /* another project's task gets the answer of an unknown one: task ids are sequential, and a different answer
     * would tell which ids exist */
    if (r == 1 && t->project != rq->project->id) {
        cvx_svc_task_clear(t);
        r = 0;
    }
    if (r == 0) {
        cvx_svc_reply_error(rp, 200, 1, "There is no task yet.");
        return 0;
    }
    return 1;
}

static void reply_tasklist(const cvx_svc_request *rq, cvx_svc_reply *rp, const cvx_svc_task *t, int with_total) {
    rp->status = 200;
    rp->body = json_pack("{s:[], s:[o], s:b}", "errors", "tasklist", cvx_svc_task_json(rq->svc, t, rq->base_url),
                         "result", 1);
    if (with_total) json_object_set_new(rp->body, "total", json_string("1"));
}

static void api_detail(const cvx_svc_request *rq, cvx_svc_reply *rp) {
    cvx_svc_task t;
    if (!find_task(rq, rp, &t)) return;
    reply_tasklist(rq, rp, &t, 1);
    cvx_svc_task_clear(&t);
}

/* Re-reads a task after a change, publishes its status and answers with it. */
static void answer_changed(const cvx_svc_request *rq, cvx_svc_reply *rp, cvx_svc_task *t) {
    char err[256];
    long long id = t->id;
    cvx_svc_task_clear(t);
    if (cvx_svc_store_task_get(rq->svc->store, id, NULL, t, err, sizeof err) != 1) {
        store_failed(rp, "The task could not be read.");
        return;
    }
    cvx_svc_publish_status(rq->svc, t);
    if (t->callbackurl && t->callbackurl[0]) cvx_svc_wake_callbacks(rq->svc);
    reply_tasklist(rq, rp, t, 0);
    cvx_svc_task_clear(t);
}

static void api_cancel(const cvx_svc_request *rq, cvx_svc_reply *rp) {
    cvx_svc_task t;
    if (!find_task(rq, rp, &t)) return;
    if (!strcmp(t.status, CVX_SVC_S_CANCEL)) { /* idempotent: WiroKit retries Cancel */
        reply_tasklist(rq, rp, &t, 0);
        cvx_svc_task_clear(&t);
        return;
    }
    char err[256];
    int r = cvx_svc_store_task_cancel(rq->svc->store, t.id, 1, cvx_svc_now_s(), err, sizeof err);
    if (r < 0) {
        cvx_svc_log(rq->svc, CVX_LOG_ERROR, "Cancel: %s", err);
        store_failed(rp, "The task could not be cancelled.");
    } else if (r == 0) {
        cvx_svc_reply_error(rp, 200, 1, "Task is not in a cancellable state.");
    } else {
        cvx_svc_log(rq->svc, CVX_LOG_INFO, "task %lld: cancelled", t.id);
        answer_changed(rq, rp, &t);
    }
    cvx_svc_task_clear(&t);
}

static void api_kill(const cvx_svc_request *rq, cvx_svc_reply *rp) {
    cvx_svc *svc = rq->svc;
    cvx_svc_task t;
    if (!find_task(rq, rp, &t)) return;
    if (!strcmp(t.status, CVX_SVC_S_CANCEL)) {
        reply_tasklist(rq, rp, &t, 0);
        cvx_svc_task_clear(&t);
        return;
    }
    char err[256];
    int r = cvx_svc_store_task_cancel(svc->store, t.id, 0, cvx_svc_now_s(), err, sizeof err);
    if (r < 0) {
        cvx_svc_log(svc, CVX_LOG_ERROR, "Kill: %s", err);
        store_failed(rp, "Task could not be killed.");
    } else if (r == 0) {
        cvx_svc_reply_error(rp, 200, 1, "Task could not be killed: %s", "the task has already ended");
    } else {
        if (atomic_load(&svc->running_task) == t.id) atomic_store(&svc->kill_requested, 1);
        cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: killed", t.id);
        answer_changed(rq, rp, &t);
    }
    cvx_svc_task_clear(&t);
}

/* About the size of a task's JSON in a listing: its variable parts plus the fixed fields. */
static size_t task_json_bytes(const cvx_svc_task *t) {
    size_t n = 2048;
    const char *parts[] = {t->params, t->debugoutput, t->debugerror, t->callbackurl};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (parts[i]) n += strlen(parts[i]) * 2; /* escapes: most text grows little, control bytes six-fold */
    return n;
}

static void api_list(const cvx_svc_request *rq, cvx_svc_reply *rp) {
    cvx_svc *svc = rq->svc;
    long long start, limit;
    if (get_int(rq, rp, "start", 0, 0, INT64_MAX / 2, &start)) return;
    if (get_int(rq, rp, "limit", 20, 1, 1000, &limit)) return;
    if (limit > LIST_LIMIT_MAX) limit = LIST_LIMIT_MAX; /* a page holds at most 100 tasks */
    const char *order = NULL;
    char b[64];
    int desc = 1;
    if (cvx_svc_field_text(rq->fields, "order", &order, b, sizeof b) == 1) {
        if (!strcasecmp(order, "ASC")) desc = 0;
        else if (strcasecmp(order, "DESC")) {
            cvx_svc_reply_error(rp, 200, 0, "Request parameter [order] must be ASC or DESC");
            return;
        }
    }
    long long ids[LIST_LIMIT_MAX], total = 0;
    char err[256];
    int count = cvx_svc_store_task_ids(svc->store, rq->project->id, desc, start, (int)limit, &total, ids, err,
                                       sizeof err);
    if (count < 0) {
        cvx_svc_log(svc, CVX_LOG_ERROR, "List: %s", err);
        store_failed(rp, "The tasks could not be read.");
        return;
    }
    /* each task is read on its own (the store's lock is held per row, not for the page) and the page stops before
     * it passes LIST_BYTES_MAX, with at least one task */
    json_t *list = json_array();
    size_t bytes = 0;
    for (int i = 0; i < count; i++) {
        cvx_svc_task t;
        int r = cvx_svc_store_task_get(svc->store, ids[i], NULL, &t, err, sizeof err);
        if (r < 0) {
            json_decref(list);
            cvx_svc_log(svc, CVX_LOG_ERROR, "List: %s", err);
            store_failed(rp, "The tasks could not be read.");
            return;
        }
        if (r == 0) continue;
        size_t tb = task_json_bytes(&t);
        int full = json_array_size(list) > 0 && bytes + tb > LIST_BYTES_MAX;
        if (!full) {
            json_array_append_new(list, cvx_svc_task_json(svc, &t, rq->base_url));
            bytes += tb;
        }
        cvx_svc_task_clear(&t);
        if (full) break;
    }
    rp->status = 200;
    rp->body = json_pack("{s:o, s:[], s:o, s:b}", "total", num_str(total), "errors", "tasklist", list, "result", 1);
}

static void api_io_delete(const cvx_svc_request *rq, cvx_svc_reply *rp) {
    cvx_svc_task t;
    if (!find_task(rq, rp, &t)) return;
    if (!cvx_svc_status_final(t.status)) {
        cvx_svc_reply_error(rp, 200, 0, "Task must be completed or cancelled before deleting files");
        cvx_svc_task_clear(&t);
        return;
    }
    char err[256];
    if (t.out_key[0] && !t.out_deleted) {
        if (cvx_svc_remove_output(rq->svc, t.out_key, t.id, 0)) cvx_svc_log(rq->svc, CVX_LOG_WARN, "task %lld: output files not all removed", t.id);
        if (cvx_svc_store_output_deleted(rq->svc->store, t.id, err, sizeof err) < 0) {
            store_failed(rp, "The outputs could not be deleted.");
            cvx_svc_task_clear(&t);
            return;
        }
    }
    if (cvx_svc_store_input_delete(rq->svc->store, t.id, err, sizeof err) < 0) {
        store_failed(rp, "The inputs could not be deleted.");
        cvx_svc_task_clear(&t);
        return;
    }
    cvx_svc_task_clear(&t);
    rp->status = 200;
    rp->body = json_pack("{s:b, s:[]}", "result", 1, "errors");
}

/* ---- Tool ---- */

static json_t *param_item(const char *id, const char *type, const char *label, int required, json_t *def, json_t *min,
                          json_t *max, json_t *step, const char *note) {
    return json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:s}", "id", id, "type", type, "label", label,
                     "required", required, "default", def, "min", min ? min : json_null(), "max",
                     max ? max : json_null(), "step", step ? step : json_null(), "note", note);
}

static json_t *tool_json(const cvx_svc *svc, int with_params) {
    const cvx_svc_model_limits *L = &svc->cfg.limits;
    const cvx_model_info *M = &svc->cfg.model;
    char title[160];
    snprintf(title, sizeof title, "%s", svc->slug_project);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s], s:[s, s]}", "id", "1", "title", title, "slugowner",
                          svc->slug_owner, "slugproject", svc->slug_project, "description", cvx_svc_model_description(svc),
                          "categories", cvx_svc_takes_image(svc) ? "image-to-video" : "text-to-video", "tags", "video", "cogvideox");
    json_object_set_new(o, "model", cvx_svc_model_json(M)); /* what is really served (the page's header) */
    if (!with_params) return o;
    char b[64];
    json_t *items = json_array();
    if (cvx_svc_takes_image(svc)) {
        json_t *img = param_item("inputImage", "fileinput", "Input image", 1, json_string(""), NULL,
                                 json_integer(CVX_SVC_INPUT_MAX), NULL,
                                 "The first frame: a picture FFmpeg decodes (PNG, JPEG, WebP, ...) of the video's "
                                 "width x height (which default to the image's), as a multipart file part or an "
                                 "http(s) URL the server fetches. max: bytes.");
        json_object_set_new(img, "accept", json_string("image/*"));
        json_object_set_new(img, "sources", json_pack("[s, s]", "file", "url"));
        json_array_append_new(items, img);
    }
    json_array_append_new(items, param_item("prompt", "textarea", "Prompt", 1, json_string(DEFAULT_PROMPT), NULL,
                                            json_integer((json_int_t)L->max_prompt_bytes), NULL,
                                            "What the video shows; tokens beyond 226 are dropped, as the reference "
                                            "pipeline does. max: bytes."));
    json_array_append_new(items, param_item("negativePrompt", "textarea", "Negative prompt", 0, json_string(""), NULL,
                                            json_integer((json_int_t)L->max_prompt_bytes), NULL,
                                            "What the video should not show (classifier-free guidance's other half)."));
    snprintf(b, sizeof b, "%d", L->default_steps);
    json_array_append_new(items, param_item("steps", "number", "Steps", 0, json_string(b), json_integer(M->min_steps),
                                            json_integer(L->max_steps), json_integer(1), "Denoising steps."));
    snprintf(b, sizeof b, "%.1f", L->default_scale);
    json_array_append_new(items, param_item("scale", "float", "Guidance scale", 0, json_string(b),
                                            json_real(M->min_guidance_scale), json_real(L->max_scale), json_real(0.1),
                                            "Classifier-free guidance scale."));
    snprintf(b, sizeof b, "%llu", (unsigned long long)M->default_seed);
    json_array_append_new(items, param_item("seed", "text", "Seed", 0, json_string(b), json_integer(0),
                                            json_string("18446744073709551615"), NULL,
                                            "Integer seed of the CPU generator (its low 32 bits, as torch)."));
    snprintf(b, sizeof b, "%d", L->default_frames);
    json_array_append_new(items, param_item("numFrames", "number", "Frames", 0, json_string(b),
                                            json_integer(M->min_frames), json_integer(L->max_frames),
                                            json_integer(M->frames_step), "4N+1 frames."));
    /* image-to-video: the size defaults to the image's ("" = not given) */
    const int img = cvx_svc_takes_image(svc);
    const char *size_note = img ? "Pixels, a multiple of 16; default: the input image's." : "Pixels, a multiple of 16.";
    snprintf(b, sizeof b, "%d", L->default_width);
    json_array_append_new(items, param_item("width", "number", "Width", 0, json_string(img ? "" : b),
                                            json_integer(M->min_size), json_integer(L->max_width),
                                            json_integer(M->size_multiple), size_note));
    snprintf(b, sizeof b, "%d", L->default_height);
    json_array_append_new(items, param_item("height", "number", "Height", 0, json_string(img ? "" : b),
                                            json_integer(M->min_size), json_integer(L->max_height),
                                            json_integer(M->size_multiple), size_note));
    snprintf(b, sizeof b, "%d", L->default_fps);
    json_array_append_new(items, param_item("fps", "number", "Frames per second", 0, json_string(b), json_integer(M->min_fps),
                                            json_integer(L->max_fps), json_integer(1), "Of the MP4 file."));
    json_t *prec = param_item("precision", "select", "Precision", 0, json_string(cvx_precision_name(svc->cfg.precision)),
                              NULL, NULL, NULL,
                              "Matrix products in bf16 (f32 accumulation; about 2.5-3x faster where the CPU has bf16 "
                              "dot products) or fp32 (the reference path). Default: the server's.");
    json_object_set_new(prec, "options", svc->cfg.allow_bf16 ? json_pack("[s, s]", "bf16", "fp32") : json_pack("[s]", "fp32"));
    json_array_append_new(items, prec);
    json_t *cache = param_item("cache", "select", "Step cache", 0, json_string("off"), NULL, NULL, NULL,
                               "TeaCache step skipping: steps whose time embedding changed little reuse the last "
                               "computed step's transformer residual. teacache:0.1 is the published 'slow' setting "
                               "(about 1.3-1.5x), teacache:0.2 'fast' (about 2x, visibly worse); any "
                               "teacache[:THRESHOLD[:C4,C3,C2,C1,C0]] is accepted. Default: off.");
    json_object_set_new(cache, "options", json_pack("[s, s, s]", "off", "teacache:0.1", "teacache:0.2"));
    json_array_append_new(items, cache);
    json_t *sched = param_item("scheduler", "select", "Scheduler", 0, json_string(M->default_scheduler), NULL, NULL,
                               NULL,
                               "The sampler: ddim (CogVideoX DDIM, the 2b's) or dpm (CogVideoX DPM, the 5b's). "
                               "Default: the model folder's.");
    json_object_set_new(sched, "options", json_pack("[s, s]", "ddim", "dpm"));
    json_array_append_new(items, sched);
    json_t *dyn = param_item("dynamicCfg", "select", "Dynamic CFG", 0, json_string("false"), NULL, NULL, NULL,
                             "A cosine schedule of the guidance scale over the steps (use_dynamic_cfg; the 5b "
                             "model card uses it with dpm). Default: false.");
    json_object_set_new(dyn, "options", json_pack("[s, s]", "false", "true"));
    json_array_append_new(items, dyn);
    json_object_set_new(o, "parameters", json_pack("[{s:s, s:o}]", "title", "Inputs", "items", items));
    return o;
}

static void api_tool_list(const cvx_svc_request *rq, cvx_svc_reply *rp) {
    rp->status = 200;
    rp->body = json_pack("{s:s, s:[], s:[o], s:b}", "total", "1", "errors", "tool", tool_json(rq->svc, 0), "result", 1);
}

static void api_tool_detail(const cvx_svc_request *rq, cvx_svc_reply *rp) {
    const char *owner = NULL, *project = NULL;
    char b1[64], b2[64];
    int ho = cvx_svc_field_text(rq->fields, "slugowner", &owner, b1, sizeof b1) == 1;
    int hp = cvx_svc_field_text(rq->fields, "slugproject", &project, b2, sizeof b2) == 1;
    if ((ho && strcasecmp(owner, rq->svc->slug_owner)) || (hp && strcasecmp(project, rq->svc->slug_project))) {
        cvx_svc_reply_error(rp, 200, 1, "slug-owner-project-not-exist");
        return;
    }
    rp->status = 200;
    rp->body = json_pack("{s:[], s:[o], s:b}", "errors", "tool", tool_json(rq->svc, 1), "result", 1);
}

const cvx_svc_route cvx_svc_routes[] = {
    {"/v1/Run/", CVX_SVC_ROUTE_AUTH | CVX_SVC_ROUTE_STATE | CVX_SVC_ROUTE_PREFIX, api_run},
    {"/v1/Task/Detail", CVX_SVC_ROUTE_AUTH, api_detail},
    {"/v1/Task/Cancel", CVX_SVC_ROUTE_AUTH | CVX_SVC_ROUTE_STATE, api_cancel},
    {"/v1/Task/Kill", CVX_SVC_ROUTE_AUTH | CVX_SVC_ROUTE_STATE, api_kill},
    {"/v1/Task/List", CVX_SVC_ROUTE_AUTH, api_list},
    {"/v1/Task/InputOutputDelete", CVX_SVC_ROUTE_AUTH | CVX_SVC_ROUTE_STATE, api_io_delete},
    {"/v1/Tool/List", CVX_SVC_ROUTE_AUTH, api_tool_list},
    {"/v1/Tool/Detail", CVX_SVC_ROUTE_AUTH, api_tool_detail},
};
const int cvx_svc_route_count = (int)(sizeof cvx_svc_routes / sizeof cvx_svc_routes[0]);
