/* cogvideox golden [--dump DIR] [--threads N] [--verbose] [--precision fp32|bf16] [--bf16-tolerances FILE]
 * CASE_DIR... */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "golden/golden.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: cogvideox golden [--dump DIR] [--threads N] [--verbose] [--precision fp32|bf16] PATH...\n"
            "Runs golden cases (folders with case.json or cases.json, in the formats of shared/golden) and compares\n"
            "against the reference implementation's numbers as each case's \"check\" object says. PATH may be a\n"
            "case folder, a component folder or the golden root. Prints PASS/FAIL/SKIP per case. Exit codes:\n"
            "0 every case passed or was skipped, 1 bad arguments, 2 a case folder that cannot be read, 3 a case FAILed.\n"
            "example: cogvideox golden tests/data/golden\n"
            "  --dump DIR     write what was computed to DIR/<case>.safetensors (DIR/<set>.json for tokenizer sets)\n"
            "  --threads N    worker threads (default: all cores)\n"
            "  --verbose      print every compared tensor\n"
            "  --precision P  fp32 (default: the reference path, the cases' own tolerances) or bf16: the t5,\n"
            "                 transformer, pipeline, e2e and vae cases run the bf16 path and are held to the bf16 bound\n"
            "                 of the tolerance table (docs/bf16-tolerances.md); other components run in fp32\n"
            "  --bf16-tolerances FILE  the table to use instead of the built-in one\n");
}

int cvx_cmd_golden(int argc, char **argv) {
    cvx_golden_options opt = {NULL, 0, 0, NULL, CVX_PRECISION_FP32, NULL};
    const char *paths[256];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--dump") && i + 1 < argc) {
            opt.dump_dir = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            long long v;
            if (cvx_cli_parse_int(argv[++i], 1, 1024, &v) != 0) {
                fprintf(stderr, "cogvideox golden: --threads needs a number from 1 to 1024\n");
                return 1;
            }
            opt.threads = (int)v;
        } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            const char *v = argv[++i];
            int p = cvx_precision_from_name(v);
            if (p < 0) {
                fprintf(stderr, "cogvideox golden: --precision must be fp32 or bf16, got '%s'\n", v);
                return 1;
            }
            opt.precision = (cvx_precision)p;
        } else if (!strcmp(argv[i], "--bf16-tolerances") && i + 1 < argc) {
            opt.bf16_tolerances = argv[++i];
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            opt.verbose = 1;
        } else if (argv[i][0] == '-') {
            CVX_CLI_UNKNOWN("golden", argv[i], "--dump", "--threads", "--verbose", "--precision", "--bf16-tolerances",
                            "--help");
            usage(stderr);
            return 1;
        } else if (n < 256) {
            paths[n++] = argv[i];
        }
    }
    if (n == 0) {
        usage(stderr);
        return 1;
    }
    int fails = cvx_golden_run(paths, n, &opt);
    if (fails < 0) return 2;
    return fails ? 3 : 0;
}
