#include "testlib.h"

#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cvx_test_failures = 0;
int cvx_test_checks = 0;

int cvx_test_finish(const char *name) {
    printf("%s: %d checks: %d passed, %d failed\n", name, cvx_test_checks, cvx_test_checks - cvx_test_failures,
           cvx_test_failures);
    return cvx_test_failures ? 1 : 0;
}

const char *cvx_test_tmpdir(char *buf, size_t size) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, size, "%s/cvx-test-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(buf);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

void cvx_test_rmtree(const char *path) {
    if (path) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *cvx_test_shared_golden(void) {
    struct stat st;
    return stat("../shared/golden", &st) == 0 && S_ISDIR(st.st_mode) ? "../shared/golden" : NULL;
}
