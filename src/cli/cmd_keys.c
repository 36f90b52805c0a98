/* cogvideox keys: the service's projects and API keys.
 *
 *   cogvideox keys create --store PATH [--mode signature|key-only] [--name NAME] [--json]
 *   cogvideox keys list --store PATH [--json]
 *   cogvideox keys revoke APIKEY --store PATH
 *
 * create prints the new project once (with --json exactly {"projectid", "apikey", "apisecret"}; no apisecret in
 * key-only mode). The secret is stored sealed with AES-256-GCM under the server key PATH.key (mode 0600, created
 * on first use), since the server needs it in clear to check signatures; it is never printed again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "service/auth.h"
#include "service/store.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cogvideox keys create --store PATH [--mode signature|key-only] [--name NAME] [--json]\n"
               "       cogvideox keys list --store PATH [--json]\n"
               "       cogvideox keys revoke APIKEY --store PATH\n");
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
                                                 "apikey", p->apikey, "mode", mode, "created", (json_int_t)p->created,
                                                 "revoked", p->revoked));
        return;
    }
    char when[32] = "?";
    time_t t = (time_t)p->created;
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%-6lld %-34s %-10s %-8s %s %s\n", p->id, p->apikey, mode, p->revoked ? "revoked" : "active", when,
           p->name);
}

int cvx_cmd_keys(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1], *store_path = NULL, *mode = "signature", *name = "", *apikey = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--store") && i + 1 < argc) store_path = argv[++i];
        else if (!strcmp(a, "--mode") && i + 1 < argc) mode = argv[++i];
        else if (!strcmp(a, "--name") && i + 1 < argc) name = argv[++i];
        else if (a[0] != '-' && !apikey) apikey = a;
        else {
            fprintf(stderr, "cogvideox keys: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    int is_create = !strcmp(cmd, "create"), is_list = !strcmp(cmd, "list"), is_revoke = !strcmp(cmd, "revoke");
    if (!is_create && !is_list && !is_revoke) {
        fprintf(stderr, "cogvideox keys: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    if (!store_path) {
        fprintf(stderr, "cogvideox keys %s: --store PATH is required\n", cmd);
        return 2;
    }
    if (is_revoke != (apikey != NULL)) {
        fprintf(stderr, is_revoke ? "cogvideox keys revoke: which APIKEY?\n" : "cogvideox keys %s: unexpected %s\n",
                cmd, apikey);
        return 2;
    }
    int key_only = 0;
    if (!strcmp(mode, "key-only")) key_only = 1;
    else if (strcmp(mode, "signature")) {
        fprintf(stderr, "cogvideox keys: --mode is signature or key-only, not %s\n", mode);
        return 2;
    }
    if (strlen(name) >= sizeof ((cvx_svc_project *)0)->name) {
        fprintf(stderr, "cogvideox keys: --name is too long\n");
        return 2;
    }
    char err[1024];
    cvx_svc_store *store = NULL;
    if (cvx_svc_store_open(&store, store_path, err, sizeof err)) {
        fprintf(stderr, "cogvideox keys: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (is_list) {
        list_ctx c = {json, json_array()};
        if (!json) printf("%-6s %-34s %-10s %-8s %-20s %s\n", "id", "apikey", "mode", "state", "created", "name");
        if (cvx_svc_store_project_list(store, print_project, &c, err, sizeof err) < 0) {
            fprintf(stderr, "cogvideox keys: %s\n", err);
            rc = 1;
        } else if (json) {
            char *text = json_dumps(c.list, JSON_INDENT(2));
            if (text) printf("%s\n", text);
            free(text);
        }
        json_decref(c.list);
    } else if (is_revoke) {
        int r = cvx_svc_store_project_revoke(store, apikey, err, sizeof err);
        if (r < 0) fprintf(stderr, "cogvideox keys: %s\n", err), rc = 1;
        else if (r == 0) fprintf(stderr, "cogvideox keys revoke: no project has the API key %s\n", apikey), rc = 1;
        else printf("revoked %s\n", apikey);
    } else {
        cvx_svc_project p;
        memset(&p, 0, sizeof p);
        char secret[33] = "";
        uint8_t server_key[32];
        char keypath[1200];
        cvx_svc_keyfile_path(store_path, keypath, sizeof keypath);
        snprintf(p.name, sizeof p.name, "%s", name);
        p.mode = key_only ? CVX_SVC_MODE_KEY_ONLY : CVX_SVC_MODE_SIGNATURE;
        p.created = (long long)time(NULL);
        if (cvx_svc_server_key_open(store, keypath, server_key, err, sizeof err)) {
            fprintf(stderr, "cogvideox keys: %s\n", err);
            rc = 1;
        } else if (cvx_svc_random_token(p.apikey, 32) || (!key_only && cvx_svc_random_token(secret, 32))) {
            fprintf(stderr, "cogvideox keys: no random numbers available\n");
            rc = 1;
        } else if (!key_only && cvx_svc_seal(server_key, p.apikey, secret, p.secret_enc, sizeof p.secret_enc,
                                             &p.secret_enc_len)) {
            fprintf(stderr, "cogvideox keys: cannot encrypt the secret\n");
            rc = 1;
        } else if (cvx_svc_store_project_add(store, &p, err, sizeof err)) {
            fprintf(stderr, "cogvideox keys: %s\n", err);
            rc = 1;
        } else {
            char id[32];
            snprintf(id, sizeof id, "%lld", p.id);
            if (json) {
                json_t *o = key_only ? json_pack("{s:s, s:s}", "projectid", id, "apikey", p.apikey)
                                     : json_pack("{s:s, s:s, s:s}", "projectid", id, "apikey", p.apikey, "apisecret",
                                                 secret);
                char *text = o ? json_dumps(o, JSON_PRESERVE_ORDER) : NULL;
                if (text) printf("%s\n", text);
                free(text);
                json_decref(o);
            } else {
                printf("projectid: %s\napikey:    %s\n", id, p.apikey);
                if (!key_only) printf("apisecret: %s   (shown once: keep it now)\n", secret);
                printf("mode:      %s\n", key_only ? "key-only" : "signature");
            }
        }
        memset(secret, 0, sizeof secret);
        memset(server_key, 0, sizeof server_key);
    }
    cvx_svc_store_close(store);
    return rc;
}
