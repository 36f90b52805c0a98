#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cogvideox.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
#define CVX__CLI_ROW(fn, name, help) {name, cvx_cmd_##fn, help},
    CVX_CLI_COMMANDS(CVX__CLI_ROW)
#undef CVX__CLI_ROW
};

int cvx_cli_parse_int(const char *s, long long min, long long max, long long *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: cogvideox <command> [options]\n       cogvideox --version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].fn) fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'cogvideox help <command>' or 'cogvideox <command> --help' describes a command's options;\n"
               "options take their value as --flag value or --flag=value.\n"
               "exit codes: 0 ok, 1 bad arguments (with the usage), 2 a model, file or I/O failure, 130 interrupted.\n"
               "example: cogvideox make-model --preset tiny -o models/tiny &&\n"
               "         cogvideox generate -m models/tiny -p \"a red fox in the snow\" -o fox.mp4\n");
}

/* Levenshtein distance, for "did you mean" (short words only). */
int cvx_cli_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[n][m];
}

const char *cvx_cli_suggest(const char *word, const char *const *candidates, int n) {
    const char *best = NULL;
    int best_d = 99;
    for (int i = 0; i < n; i++) {
        int d = cvx_cli_distance(word, candidates[i]);
        if (d < best_d) best_d = d, best = candidates[i];
    }
    size_t len = strlen(word);
    return best && best_d <= (len > 6 ? 2 : 1) + (len > 12) ? best : NULL;
}

void cvx_cli_unknown_option(const char *cmd, const char *arg, const char *const *flags, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(arg, flags[i])) {
            fprintf(stderr, "cogvideox %s: option '%s' needs a value\n", cmd, arg);
            return;
        }
    const char *s = cvx_cli_suggest(arg, flags, n);
    fprintf(stderr, "cogvideox %s: unknown option '%s'%s%s%s\n", cmd, arg, s ? " (did you mean " : "", s ? s : "",
            s ? "?)" : "");
}

/* --flag=value becomes --flag value for every subcommand (GNU style), up to a "--" that ends the options. */
static char **split_equals(int argc, char **argv, int *out_argc) {
    char **v = malloc(sizeof(char *) * (size_t)(2 * argc + 1));
    if (!v) return NULL;
    int n = 0, options = 1;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        char *eq = options && i > 0 && a[0] == '-' && a[1] == '-' && a[2] ? strchr(a, '=') : NULL;
        if (options && !strcmp(a, "--")) options = 0;
        if (eq && eq > a + 2) {
            *eq = '\0'; /* argv's strings are ours to change */
            v[n++] = a;
            v[n++] = eq + 1;
        } else {
            v[n++] = a;
        }
    }
    v[n] = NULL;
    *out_argc = n;
    return v;
}

static int run(const command *c, int argc, char **argv) {
    if (!c->fn) {
        fprintf(stderr, "cogvideox: '%s' is not built into this version yet\n", c->name);
        return 2;
    }
    int n = 0;
    char **v = split_equals(argc, argv, &n);
    if (!v) return c->fn(argc, argv);
    int rc = c->fn(n, v);
    free(v);
    return rc;
}

static const command *find(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) return &commands[i];
    return NULL;
}

static int unknown_command(const char *name) {
    const char *names[sizeof commands / sizeof commands[0]];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) names[i] = commands[i].name;
    const char *s = cvx_cli_suggest(name, names, (int)(sizeof commands / sizeof commands[0]));
    fprintf(stderr, "cogvideox: unknown command '%s'%s%s%s\n\n", name, s ? " (did you mean '" : "", s ? s : "",
            s ? "'?)" : "");
    usage(stderr);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("cogvideox %s\n", cvx_version());
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc > 2 && strcmp(argv[1], "help") == 0) { /* help SUBCOMMAND = SUBCOMMAND --help */
            const command *c = find(argv[2]);
            if (!c) return unknown_command(argv[2]);
            char *hv[3] = {argv[2], "--help", NULL};
            return run(c, 2, hv);
        }
        usage(stdout);
        return 0;
    }
    const command *c = find(argv[1]);
    if (!c) return unknown_command(argv[1]);
    return run(c, argc - 1, argv + 1);
}
