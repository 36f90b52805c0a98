/* The cogvideox command line: one binary, one file per subcommand (src/cli/cmd_<name>.c), each an
 * `int cvx_cmd_<name>(int argc, char **argv)` returning the process exit code (argv[0] is the subcommand). */
#ifndef CVX_CLI_CLI_H
#define CVX_CLI_CLI_H

/* Declared weak so a subcommand file can be added without touching main.c's table. */
#define CVX_CLI_COMMANDS(XX)                                                                         \
    XX(info, "info", "describe a model folder (info DIR) or this CPU (info --cpu)")                   \
    XX(make_model, "make-model", "write a random-weight model folder (--preset tiny|cogvideox-2b)")   \
    XX(golden, "golden", "run golden cases from the reference implementation")                       \
    XX(tokenize, "tokenize", "tokenize a prompt with the model's T5 tokenizer")                       \
    XX(encode, "encode", "run the T5 text encoder on a prompt")                                       \
    XX(generate, "generate", "generate a video from a prompt")                                        \
    XX(serve, "serve", "run the Wiro-compatible task service")                                        \
    XX(worker, "worker", "run a worker of the task service without HTTP (beside serve --no-worker)")  \
    XX(keys, "keys", "manage the service's API keys")                                                 \
    XX(store, "store", "copy the service's store to another backend or place (store copy)")           \
    XX(download, "download", "download a model folder from a hub")                                   \
    XX(bench, "bench", "measure peaks, kernels, a block, a generation or the bf16 deviation\n"                    \
       "              (bench peak|gemm|attention|block|generate|deviation)")

#define CVX__CLI_DECL(fn, name, help) int cvx_cmd_##fn(int argc, char **argv) __attribute__((weak));
CVX_CLI_COMMANDS(CVX__CLI_DECL)
#undef CVX__CLI_DECL

/* Parses a --threads value; returns -1 on error. */
int cvx_cli_parse_int(const char *s, long long min, long long max, long long *out);

/* Edit distance of two short words, and the candidate within 1-3 edits of word (NULL if none): "did you mean". */
int cvx_cli_distance(const char *a, const char *b);
const char *cvx_cli_suggest(const char *word, const char *const *candidates, int n);
/* "cogvideox CMD: unknown option 'ARG' (did you mean --x?)", or "option 'ARG' needs a value" for a known flag given
 * without its value. */
void cvx_cli_unknown_option(const char *cmd, const char *arg, const char *const *flags, int n);
#define CVX_CLI_UNKNOWN(cmd, arg, ...)                                                                          \
    do {                                                                                                       \
        static const char *const cvx__flags[] = {__VA_ARGS__};                                                 \
        cvx_cli_unknown_option(cmd, arg, cvx__flags, (int)(sizeof cvx__flags / sizeof cvx__flags[0]));         \
    } while (0)

/* Output checks run before a model is loaded; each prints "cogvideox CMD: FLAG PATH: ..." and returns the exit code
 * (0 ok, 1 a name the command cannot write, e.g. the wrong extension, 2 an I/O failure).
 * cvx_cli_check_output_dir creates the folder (and its parents) when missing and probes it with a temporary file;
 * cvx_cli_check_output_file wants the extension ext (case-insensitive), a writable file if one exists, and creates
 * its folder. */
int cvx_cli_check_output_dir(const char *cmd, const char *flag, const char *dir);
int cvx_cli_check_output_file(const char *cmd, const char *flag, const char *path, const char *ext, const char *kind);
/* A model folder that does not exist, is not a folder or has no model_index.json: a message that says how to get one
 * ("cogvideox CMD: ..."), exit code 2; 0 when it looks like a pipeline folder. */
int cvx_cli_check_model_dir(const char *cmd, const char *dir);
/* Joins the processes of an mpirun launch (core/dist.h; one process outside one): 0, or the message
 * ("cogvideox CMD: ...") and exit code 1 (a launch this build cannot serve, or MPI failing to start). */
int cvx_cli_dist_init(const char *cmd);

#endif
