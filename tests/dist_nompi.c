/* core/dist.c as a build without MPI compiles it (CVX_HAVE_MPI unset, whatever this build found): outside a
 * launcher the world is one process; started as one of N > 1 processes (the launcher's environment) it refuses,
 * naming the cause, instead of computing the same video N times. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"

static int fails;
#define CHECK(c)                                                             \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
            fails++;                                                         \
        }                                                                    \
    } while (0)

int main(void) {
    cvx_error err;
    cvx_error_clear(&err);
    unsetenv("OMPI_COMM_WORLD_SIZE"), unsetenv("PMI_SIZE"), unsetenv("PMIX_SIZE"), unsetenv("MPI_LOCALNRANKS");
    unsetenv("SLURM_NTASKS");
    CHECK(!cvx_dist_supported());
    CHECK(cvx_dist_launched_size() == 1);
    CHECK(cvx_dist_init(NULL, NULL, &err) == CVX_OK);
    CHECK(cvx_dist_size(cvx_dist_world()) == 1 && cvx_dist_rank(cvx_dist_world()) == 0);
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    CHECK(cvx_dist_launched_size() == 2);
    CHECK(cvx_dist_init(NULL, NULL, &err) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "no MPI support") != NULL);
    printf("%s\n", err.message);
    unsetenv("OMPI_COMM_WORLD_SIZE");
    setenv("PMI_SIZE", "4", 1);
    cvx_error_clear(&err);
    CHECK(cvx_dist_init(NULL, NULL, &err) == CVX_ERR_INVALID_ARGUMENT);
    setenv("PMI_SIZE", "1", 1);
    CHECK(cvx_dist_init(NULL, NULL, &err) == CVX_OK);
    /* one process: the collectives are copies or nothing */
    float a[3] = {1, 2, 3}, b[3] = {0};
    CHECK(cvx_dist_sendrecv(cvx_dist_world(), a, b, sizeof a, 0, &err) == CVX_OK && !memcmp(a, b, sizeof a));
    CHECK(cvx_dist_bytes_sent() == 0);
    printf("dist_nompi: %s\n", fails ? "FAILED" : "all checks passed");
    return fails != 0;
}
