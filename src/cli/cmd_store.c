/* cogvideox store: operations on the service's store.
 *
 *   cogvideox store copy --from STORE --to STORE
 *
 * copy moves a store to another backend or place, e.g. a single machine's SQLite file into PostgreSQL
 * (docs/API.md): every project, task and nonce, ids kept, in one transaction on the destination, which must be
 * empty (a fresh SQLite file, or a PostgreSQL database without projects or tasks). The API secrets stay sealed with
 * the source's server key: give the destination's serve and keys that key file (--key-file). Output files are not
 * in the store: they stay in the --outputs folder. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "service/store.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cogvideox store copy --from STORE --to STORE\n"
               "A STORE is an SQLite file or a PostgreSQL database (postgresql://..., postgres://... or a libpq keyword\n"
               "string such as \"host=/run/postgresql dbname=cogvideox\"), as for serve --store. copy writes every\n"
               "project, task and nonce of --from into --to, which must hold no project and no task, in one\n"
               "transaction. The secrets stay sealed with the source's server key: run serve and keys on the\n"
               "destination with that file (--key-file STORE.key of the source). Outputs stay in the --outputs folder.\n"
               "example: cogvideox store copy --from tasks.db --to postgresql://cvx@db.internal/cogvideox\n");
}

int cvx_cmd_store(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "copy")) {
        fprintf(stderr, "cogvideox store: unknown operation '%s' (copy)\n", argv[1]);
        usage(stderr);
        return 1;
    }
    const char *from = NULL, *to = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--from") && i + 1 < argc) from = argv[++i];
        else if (!strcmp(a, "--to") && i + 1 < argc) to = argv[++i];
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            CVX_CLI_UNKNOWN("store copy", a, "--from", "--to", "--help");
            usage(stderr);
            return 1;
        }
    }
    if (!from || !to) {
        fprintf(stderr, "cogvideox store copy: --from and --to are required\n");
        usage(stderr);
        return 1;
    }
    if (!strcmp(from, to)) {
        fprintf(stderr, "cogvideox store copy: --from and --to name the same store\n");
        return 1;
    }
    char err[1024];
    cvx_svc_store *src = NULL, *dst = NULL;
    if (cvx_svc_store_open(&src, from, err, sizeof err)) {
        fprintf(stderr, "cogvideox store copy: --from: %s\n", err);
        return 2;
    }
    if (cvx_svc_store_open(&dst, to, err, sizeof err)) {
        fprintf(stderr, "cogvideox store copy: --to: %s\n", err);
        cvx_svc_store_close(src);
        return 2;
    }
    long long projects, tasks, nonces;
    int r = cvx_svc_store_copy(src, dst, &projects, &tasks, &nonces, err, sizeof err);
    cvx_svc_store_close(src);
    cvx_svc_store_close(dst);
    if (r) {
        fprintf(stderr, "cogvideox store copy: %s (nothing was written)\n", err);
        return 2;
    }
    /* a PostgreSQL connection string may hold a password: it is not repeated */
    printf("copied %lld projects, %lld tasks and %lld nonces from %s to %s\n", projects, tasks, nonces,
           cvx_svc_store_is_postgres(from) ? "the PostgreSQL database" : from,
           cvx_svc_store_is_postgres(to) ? "the PostgreSQL database" : to);
    return 0;
}
