/* cogvideox keys: the service's projects and API keys.
 *
 *   cogvideox keys create --store PATH [--key-file PATH] [--mode signature|key-only] [--name NAME] [--json]
 *   cogvideox keys list --store PATH [--json]
 *   cogvideox keys revoke APIKEY --store PATH [--key-file PATH]
 *
 * create prints the new project once (with --json exactly {"projectid", "apikey", "apisecret"}; no apisecret in
 * key-only mode). The secret is stored sealed with AES-256-GCM under the server key (--key-file, default PATH.key; mode 0600, created
 * on first use), since the server needs it in clear to check signatures; it is never printed again. The API key is
 * stored as its keyed hash (cvx_svc_apikey_hash): list shows the hash, revoke takes the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "service/auth.h"
#include "service/store.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cogvideox keys create --store PATH [--key-file PATH] [--mode signature|key-only] [--name NAME]\n"
               "                              [--json]\n"
               "       cogvideox keys list --store PATH [--json]\n"
               "       cogvideox keys revoke APIKEY --store PATH [--key-file PATH]\n"
               "A key is a project of `cogvideox serve` with the same --store. create prints its API key once (and, in\n"
               "signature mode, its secret): keep them, only a hash of the key is stored. --store is an SQLite file or a\n"
               "PostgreSQL URL / libpq keyword string, as serve's; --key-file names the server key (default STORE.key;\n"
               "required with PostgreSQL), as serve's --key-file does.\n"
               "  signature (default)  every call carries the key, a nonce and an HMAC-SHA256 signature made with\n"
               "                       the secret (x-api-key, x-nonce, x-signature): the secret never travels, and a\n"
               "                       copied Run, Cancel or Kill cannot be replayed. The web page asks for the key\n"
               "                       and the secret and signs in the browser.\n"
               "  key-only             the key alone authenticates (x-api-key); the page takes the key with the secret\n"
               "                       left empty. Simpler for scripts on a trusted network, weaker anywhere else.\n"
               "example: cogvideox keys create --store tasks.db --name me\n"
               "         cogvideox serve --model models/tiny --store tasks.db --outputs outputs --listen 127.0.0.1:8080\n");
}

typedef struct {
    int json;
    json_t *list;
} list_ctx;

static void print_project(const cvx_svc_project *p, void *ud) {
    list_ctx *c = ud;
    const char *mode = p->mode == CVX_SVC_MODE_KEY_ONLY ? "key-only" : "signature";
    if (c->json) {
        char id[32];
        snprintf(id, sizeof id, "%lld", p->id);
        json_array_append_new(c->list, json_pack("{s:s, s:s, s:s, s:s, s:I, s:b}", "projectid", id, "name", p->name,
                                                 "apikeyhash", p->apikey, "mode", mode, "created",
                                                 (json_int_t)p->created, "revoked", p->revoked));
        return;
    }
    char when[32] = "?";
    time_t t = (time_t)p->created;
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char shown[40]; /* the stored hash, shortened: the keys themselves are not kept */
    snprintf(shown, sizeof shown, "%.14s...", p->apikey);
    printf("%-6lld %-20s %-10s %-8s %s %s\n", p->id, shown, mode, p->revoked ? "revoked" : "active", when, p->name);
}

/* A new API key (32 characters from the CSPRNG) and the form the store keeps: its keyed hash. */
static int make_key(const uint8_t server_key[32], char clear[33], char stored[72]) {
    if (cvx_svc_random_token(clear, 32)) return -1;
    cvx_svc_apikey_hash(server_key, clear, stored);
    return 0;
}

int cvx_cmd_keys(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    const char *cmd = argv[1], *store_path = NULL, *key_file = NULL, *mode = "signature", *name = "", *apikey = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--store") && i + 1 < argc) store_path = argv[++i];
        else if (!strcmp(a, "--key-file") && i + 1 < argc) key_file = argv[++i];
        else if (!strcmp(a, "--mode") && i + 1 < argc) mode = argv[++i];
        else if (!strcmp(a, "--name") && i + 1 < argc) name = argv[++i];
        else if (a[0] != '-' && !apikey) apikey = a;
        else {
            CVX_CLI_UNKNOWN("keys", a, "--store", "--key-file", "--mode", "--name", "--json", "--help");
            usage(stderr);
            return 1;
        }
    }
    int is_create = !strcmp(cmd, "create"), is_list = !strcmp(cmd, "list"), is_revoke = !strcmp(cmd, "revoke");
    if (!is_create && !is_list && !is_revoke) {
        fprintf(stderr, "cogvideox keys: unknown command '%s'\n", cmd);
        usage(stderr);
        return 1;
    }
    if (!key_file && store_path && cvx_svc_store_is_postgres(store_path) && strcmp(cmd, "list")) {
        fprintf(stderr, "cogvideox keys %s: a PostgreSQL store needs --key-file PATH (the server key that serve is "
                        "given)\n", cmd);
        return 1;
    }
    if (key_file && strlen(key_file) >= 1200) {
        fprintf(stderr, "cogvideox keys: --key-file is too long\n");
        return 1;
    }
    if (!store_path) {
        fprintf(stderr, "cogvideox keys %s: --store PATH is required\n", cmd);
        return 1;
    }
    if (is_revoke != (apikey != NULL)) {
        fprintf(stderr, is_revoke ? "cogvideox keys revoke: which APIKEY?\n" : "cogvideox keys %s: unexpected %s\n",
                cmd, apikey);
        return 1;
    }
    int key_only = 0;
    if (!strcmp(mode, "key-only")) key_only = 1;
    else if (strcmp(mode, "signature")) {
        fprintf(stderr, "cogvideox keys: --mode is signature or key-only, not %s\n", mode);
        return 1;
    }
    if (strlen(name) >= sizeof ((cvx_svc_project *)0)->name) {
        fprintf(stderr, "cogvideox keys: --name is too long\n");
        return 1;
    }
    char err[1024];
    cvx_svc_store *store = NULL;
    if (cvx_svc_store_open(&store, store_path, err, sizeof err)) {
        fprintf(stderr, "cogvideox keys: %s\n", err);
        return 2;
    }
    int rc = 0;
    if (is_list) {
        list_ctx c = {json, json_array()};
        if (!json) printf("%-6s %-20s %-10s %-8s %-20s %s\n", "id", "apikey hash", "mode", "state", "created", "name");
        if (cvx_svc_store_project_list(store, print_project, &c, err, sizeof err) < 0) {
            fprintf(stderr, "cogvideox keys: %s\n", err);
            rc = 2;
        } else if (json) {
            char *text = json_dumps(c.list, JSON_INDENT(2));
            if (text) printf("%s\n", text);
            free(text);
        }
        json_decref(c.list);
    } else if (is_revoke) {
        uint8_t server_key[32];
        char keypath[1200], hashed[72];
        if (key_file) snprintf(keypath, sizeof keypath, "%s", key_file);
        else cvx_svc_keyfile_path(store_path, keypath, sizeof keypath);
        int r = cvx_svc_server_key_open(store, keypath, server_key, err, sizeof err);
        if (r == 0) {
            cvx_svc_apikey_hash(server_key, apikey, hashed);
            r = cvx_svc_store_project_revoke(store, hashed, err, sizeof err);
        }
        if (r < 0) fprintf(stderr, "cogvideox keys: %s\n", err), rc = 2;
        else if (r == 0) fprintf(stderr, "cogvideox keys revoke: no project has the API key %s\n", apikey), rc = 1;
        else printf("revoked %s\n", apikey);
    } else {
        cvx_svc_project p;
        memset(&p, 0, sizeof p);
        char secret[33] = "", apikey_clear[33] = "";
        uint8_t server_key[32];
        char keypath[1200];
        if (key_file) snprintf(keypath, sizeof keypath, "%s", key_file);
        else cvx_svc_keyfile_path(store_path, keypath, sizeof keypath);
        snprintf(p.name, sizeof p.name, "%s", name);
        p.mode = key_only ? CVX_SVC_MODE_KEY_ONLY : CVX_SVC_MODE_SIGNATURE;
        p.created = (long long)time(NULL);
        if (cvx_svc_server_key_open(store, keypath, server_key, err, sizeof err)) {
            fprintf(stderr, "cogvideox keys: %s\n", err);
            rc = 2;
        } else if (make_key(server_key, apikey_clear, p.apikey) || (!key_only && cvx_svc_random_token(secret, 32))) {
            fprintf(stderr, "cogvideox keys: no random numbers available\n");
            rc = 2;
        } else if (!key_only && cvx_svc_seal(server_key, p.apikey, secret, p.secret_enc, sizeof p.secret_enc,
                                             &p.secret_enc_len)) {
            fprintf(stderr, "cogvideox keys: cannot encrypt the secret\n");
            rc = 2;
        } else if (cvx_svc_store_project_add(store, &p, err, sizeof err)) {
            fprintf(stderr, "cogvideox keys: %s\n", err);
            rc = 2;
        } else {
            char id[32];
            snprintf(id, sizeof id, "%lld", p.id);
            if (json) {
                json_t *o = key_only ? json_pack("{s:s, s:s}", "projectid", id, "apikey", apikey_clear)
                                     : json_pack("{s:s, s:s, s:s}", "projectid", id, "apikey", apikey_clear,
                                                 "apisecret", secret);
                char *text = o ? json_dumps(o, JSON_PRESERVE_ORDER) : NULL;
                if (text) printf("%s\n", text);
                free(text);
                json_decref(o);
            } else {
                printf("projectid: %s\napikey:    %s\n", id, apikey_clear);
                if (!key_only) printf("apisecret: %s   (shown once: keep it now)\n", secret);
                printf("mode:      %s\n", key_only ? "key-only" : "signature");
            }
        }
        memset(secret, 0, sizeof secret);
        memset(apikey_clear, 0, sizeof apikey_clear);
        memset(server_key, 0, sizeof server_key);
    }
    cvx_svc_store_close(store);
    return rc;
}
