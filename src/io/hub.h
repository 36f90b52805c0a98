/* Hugging Face hub download: the file list of a model repository from the hub's API, then each file over
 * HTTP(S) with libcurl — resumable, verified, atomically renamed into place.
 *
 * What the hub serves (huggingface_hub hf_api.py model_info / RepoSibling / BlobLfsInfo, file_download.py
 * hf_hub_url / get_hf_file_metadata / http_get, utils/_http.py hf_raise_for_status, constants.py):
 *   GET {endpoint}/api/models/{repo_id}/revision/{quote(revision, safe="")}?blobs=true
 *     → {"sha": "<commit>", "siblings": [{"rfilename": "vae/config.json", "size": 833, "blobId": "<git oid>"},
 *        {"rfilename": "vae/diffusion_pytorch_model.safetensors", "size": N, "blobId": "<oid of the pointer>",
 *         "lfs": {"sha256": "<hex>", "size": N, "pointerSize": 135}}, ...]}
 *   GET {endpoint}/{repo_id}/resolve/{commit}/{quote(path, safe="/")}
 *     → the bytes (regular git files), or a 302 to a CDN (LFS files) whose pre-signed URL needs no token;
 *       a relative 307 for renamed repositories. Ranges ("Range: bytes=N-") give 206 + Content-Range; a
 *       server that ignores them answers 200 with the whole file.
 *   Errors: 401/404 with "X-Error-Code: RepoNotFound" (401 when no token was sent: a private repository is
 *   not revealed), "RevisionNotFound", "EntryNotFound", 403 "GatedRepo"; "X-Error-Message" says more.
 *   Authentication: "Authorization: Bearer <token>" ($HF_TOKEN); the endpoint is $HF_ENDPOINT
 *   (default https://huggingface.co).
 *
 * Files are taken from the listing's commit (not the branch name), so a push during the download cannot mix
 * two revisions. Verification: the size for every file; the sha256 of LFS files; the git blob id
 * (sha1 of "blob <size>\0" + content) of regular files. Redirects are followed by hand (at most 10 hops,
 * http/https only, never https → http) and the token is sent only to the endpoint's own origin
 * (scheme, host, port), so it cannot leak to a CDN or any other host whatever libcurl's version does with
 * custom headers. Transfers resume from DIR/.cache/cogvideox/download/<path>.<oid>.incomplete (keyed by the
 * content id, so a partial file of another revision is never continued). */
#ifndef CVX_IO_HUB_H
#define CVX_IO_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "cogvideox.h"
#include "core/error.h"

#define CVX_HUB_DEFAULT_ENDPOINT "https://huggingface.co"

typedef struct {
    char *path;     /* repo-relative, "/"-separated: "transformer/config.json" (validated: no "..", no "/x") */
    uint64_t size;  /* bytes */
    int has_size;   /* the listing gave the size */
    char blob_id[41]; /* the git object id (hex), "" when unknown */
    int lfs;          /* stored with git LFS: sha256 is its content hash */
    char sha256[65];  /* hex, lowercase */
} cvx_hub_file;

typedef struct {
    char *endpoint;  /* without a trailing "/" */
    char *repo_id;   /* "THUDM/CogVideoX-2b" */
    char *revision;  /* as asked ("main") */
    char *commit;    /* what the revision pointed to ("sha"), or the revision itself when the API gave none */
    cvx_hub_file *files;
    size_t n_files;
} cvx_hub_listing;

typedef enum {
    CVX_HUB_LISTED = 0,   /* the listing arrived: count/total describe the selected files */
    CVX_HUB_FILE_START,   /* a file begins (file_done > 0 when it resumes) */
    CVX_HUB_FILE_BYTES,   /* bytes arrived (at most every progress_interval_s) */
    CVX_HUB_FILE_DONE,    /* verified and in place */
    CVX_HUB_FILE_PRESENT, /* already there with the right size and hash: not fetched */
    CVX_HUB_RETRY         /* a transient failure: `message` says what; the next attempt follows after a pause */
} cvx_hub_event;

typedef struct {
    cvx_hub_event event;
    const char *file;    /* repo path; NULL for CVX_HUB_LISTED */
    int index, count;    /* this file (0-based) of the selected ones */
    uint64_t file_done;  /* bytes of this file on disk */
    uint64_t file_total; /* its size (0 when unknown) */
    uint64_t done;       /* bytes over all selected files (present ones count as done) */
    uint64_t total;      /* size of all selected files */
    uint64_t received;   /* bytes received over the network in this run */
    double elapsed_s;    /* since the download began */
    int attempt;         /* CVX_HUB_RETRY: the attempt that failed (1-based) */
    double retry_in_s;   /* CVX_HUB_RETRY: the pause before the next one */
    const char *message; /* CVX_HUB_RETRY: why */
} cvx_hub_progress;

typedef void (*cvx_hub_progress_fn)(const cvx_hub_progress *p, void *user_data);

typedef struct {
    const char *endpoint; /* NULL: $HF_ENDPOINT, else CVX_HUB_DEFAULT_ENDPOINT */
    const char *token;    /* NULL: $HF_TOKEN (none when unset or empty); "" sends no token */
    const char *revision; /* NULL: "main" (a branch, tag or commit) */
    int all_files;        /* 0: only what a CogVideoXPipeline folder needs (cvx_hub_wanted); 1: every file */
    int max_retries;      /* transient failures in a row (no new bytes in between) per request: 5 */
    double retry_base_s;  /* first pause; doubles per failure in a row, at most retry_max_s: 1 */
    double retry_max_s;   /* 30 */
    long connect_timeout_s; /* 30 */
    long stall_timeout_s;   /* a transfer with no byte for this long fails (and is retried): 60 */
    double progress_interval_s; /* 0.1 */
    cvx_hub_progress_fn progress;
    void *user_data;
    const volatile int *cancel; /* non-zero stops the download (CVX_ERR_CANCELLED; partial files are kept) */
} cvx_hub_params;

cvx_hub_params cvx_hub_params_default(void);

typedef struct {
    char commit[65]; /* the listing's commit ("" when the API gave none) */
    int n_files;      /* selected */
    int n_fetched;    /* downloaded in this run */
    int n_present;    /* already complete on disk */
    uint64_t bytes;   /* size of the selected files */
    uint64_t received; /* bytes received over the network */
} cvx_hub_result;

/* The default selection: the files a CogVideoXPipeline folder is loaded from — model_index.json,
 * <component>/config.json, scheduler/scheduler_config.json, tokenizer/<anything>, and
 * <component>/<name>.safetensors with its <name>.safetensors.index.json. */
int cvx_hub_wanted(const char *path);

/* "owner/name" (or a bare legacy "name"): letters, digits, "-", "_", "."; no "--" or ".." , no leading or
 * trailing "-" / "."; at most 96 characters per part as the hub enforces. */
int cvx_hub_valid_repo_id(const char *repo_id);

/* Fetches the listing of repo_id at params->revision. Errors: CVX_ERR_INVALID_ARGUMENT (repo id, endpoint),
 * CVX_ERR_NOT_FOUND (repository / revision), CVX_ERR_IO (network, HTTP, authentication),
 * CVX_ERR_FORMAT (a listing that is not what the hub serves). *out is NULL on failure. */
cvx_status cvx_hub_list(const char *repo_id, const cvx_hub_params *params, cvx_hub_listing **out, cvx_error *err);
void cvx_hub_listing_free(cvx_hub_listing *l);
/* Parses the listing request's JSON answer (what cvx_hub_list does after the request). Errors are
 * CVX_ERR_FORMAT naming `where`; file paths are checked for safety when a file is downloaded. */
cvx_status cvx_hub_listing_parse(const char *json, size_t len, const char *endpoint, const char *repo_id,
                                 const char *revision, const char *where, cvx_hub_listing **out, cvx_error *err);

/* Downloads one file of a listing into dir/<path> (resume, retries, verification, atomic rename). A file
 * already complete there is verified and kept. Verification failures (CVX_ERR_MISMATCH) name the file and
 * leave neither the final nor the partial file. received (may be NULL) gets the bytes received. */
cvx_status cvx_hub_download_file(const cvx_hub_listing *l, const cvx_hub_file *f, const char *dir,
                                 const cvx_hub_params *params, uint64_t *received, cvx_error *err);

/* Lists repo_id and downloads the selected files into dir (created). res may be NULL. */
cvx_status cvx_hub_download(const char *repo_id, const char *dir, const cvx_hub_params *params,
                            cvx_hub_result *res, cvx_error *err);

/* Where a file's partial download lives: dir/.cache/cogvideox/download/<path>.<oid>.incomplete. */
void cvx_hub_partial_path(char *buf, size_t size, const char *dir, const cvx_hub_file *f);

#endif
