/* A minimal test harness: CHECK records a failure and goes on; main returns cvx_test_finish(). */
#ifndef CVX_TESTS_TESTLIB_H
#define CVX_TESTS_TESTLIB_H

#include <stdio.h>

extern int cvx_test_failures;
extern int cvx_test_checks;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        cvx_test_checks++;                                                            \
        if (!(cond)) {                                                                \
            cvx_test_failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)

#define CHECK_MSG(cond, ...)                                                          \
    do {                                                                              \
        cvx_test_checks++;                                                            \
        if (!(cond)) {                                                                \
            cvx_test_failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

/* Prints "N passed, N failed" for the checks and returns the exit code. */
int cvx_test_finish(const char *name);
/* A fresh temporary directory (mkdtemp under $TMPDIR or /tmp); the caller removes it with cvx_test_rmtree. */
const char *cvx_test_tmpdir(char *buf, size_t size);
void cvx_test_rmtree(const char *path);
/* Path of the shared golden root ("../shared/golden") if it exists, else NULL. */
const char *cvx_test_shared_golden(void);

#endif
