/* Output paths checked before any model is loaded: a generation that runs for hours must not fail at its last
 * second because its folder is missing or read-only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/dist.h"
#include "core/fs.h"

/* Creates a file in dir and removes it: the one test that also holds for root and read-only mounts. */
static int probe_dir(const char *dir) {
    char probe[4200];
    if (snprintf(probe, sizeof probe, "%s/.cogvideox-write-test-XXXXXX", dir) >= (int)sizeof probe) return ENAMETOOLONG;
    int fd = mkstemp(probe);
    if (fd < 0) return errno;
    close(fd);
    unlink(probe);
    return 0;
}

/* file: the output file whose folder dir is, or NULL when dir itself is the output */
static int check_dir(const char *cmd, const char *flag, const char *dir, const char *file) {
    struct stat sb;
    int existed = stat(dir, &sb) == 0;
    if (existed && !S_ISDIR(sb.st_mode)) {
        if (file) fprintf(stderr, "cogvideox %s: %s %s: %s is not a folder\n", cmd, flag, file, dir);
        else fprintf(stderr, "cogvideox %s: %s %s: exists and is not a folder\n", cmd, flag, dir);
        return 2;
    }
    int rc = existed ? 0 : cvx_mkdirs(dir);
    if (rc == 0) rc = probe_dir(dir);
    if (rc != 0) {
        if (file)
            fprintf(stderr, "cogvideox %s: %s %s: cannot %s its folder %s: %s\n", cmd, flag, file,
                    existed ? "write into" : "create", dir, strerror(rc));
        else
            fprintf(stderr, "cogvideox %s: %s %s: cannot %s the folder: %s\n", cmd, flag, dir,
                    existed ? "write into" : "create", strerror(rc));
        return 2;
    }
    return 0;
}

int cvx_cli_check_output_dir(const char *cmd, const char *flag, const char *dir) {
    return check_dir(cmd, flag, dir, NULL);
}

int cvx_cli_check_output_file(const char *cmd, const char *flag, const char *path, const char *ext, const char *kind) {
    size_t n = strlen(path), e = strlen(ext);
    if (n <= e || strcasecmp(path + n - e, ext) != 0 || path[n - e - 1] == '/') {
        const char *dot = strrchr(path, '.');
        fprintf(stderr, "cogvideox %s: %s %s: this output is written as %s; name it *%s%s%s%s\n", cmd, flag, path, kind,
                ext, dot && !strchr(dot, '/') ? " (not " : "", dot && !strchr(dot, '/') ? dot : "",
                dot && !strchr(dot, '/') ? ")" : "");
        return 1;
    }
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "cogvideox %s: %s %s: is a folder\n", cmd, flag, path);
            return 2;
        }
        int fd = open(path, O_WRONLY);
        if (fd < 0) {
            fprintf(stderr, "cogvideox %s: %s %s: cannot write the file: %s\n", cmd, flag, path, strerror(errno));
            return 2;
        }
        close(fd);
    }
    char *dir = strdup(path);
    if (!dir) return 2;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir) d = "/";
    else if (slash) *slash = '\0', d = dir;
    int rc = check_dir(cmd, flag, d, path);
    free(dir);
    return rc;
}

/* A model folder that is not one says so and says where to get one, before the loader's own messages. */
int cvx_cli_check_model_dir(const char *cmd, const char *dir) {
    static const char hint[] = "get one with 'cogvideox download THUDM/CogVideoX-2b -o DIR' (the real weights) or "
                               "'cogvideox make-model --preset tiny -o DIR' (random weights, for trying things out)";
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        fprintf(stderr, "cogvideox %s: model folder %s does not exist (%s); %s\n", cmd, dir, strerror(errno), hint);
        return 2;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "cogvideox %s: %s is not a folder: a model is a diffusers CogVideoX pipeline folder; %s\n", cmd,
                dir, hint);
        return 2;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "cogvideox %s: %s is not a CogVideoX pipeline folder (model_index.json missing); %s\n", cmd, dir,
                hint);
        return 2;
    }
    return 0;
}

int cvx_cli_dist_init(const char *cmd) {
    cvx_error err;
    cvx_error_clear(&err);
    if (cvx_dist_init(NULL, NULL, &err) == CVX_OK) return 0;
    fprintf(stderr, "cogvideox %s: %s\n", cmd, err.message);
    return 1;
}
