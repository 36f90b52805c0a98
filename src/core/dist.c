/* core/dist.h on MPI (CVX_HAVE_MPI, set by the build when it finds MPI), or a single process. */
#include "core/dist.h"

#include <stdlib.h>
#include <string.h>

#ifdef CVX_HAVE_MPI
#include <mpi.h>
#endif

struct cvx_dist {
    int rank, size;
#ifdef CVX_HAVE_MPI
    MPI_Comm comm;
    int owned; /* from a split: freed with the handle */
#endif
};

static cvx_dist g_world = {0, 1
#ifdef CVX_HAVE_MPI
                           ,
                           MPI_COMM_NULL, 0
#endif
};
static uint64_t g_bytes_sent;
static double g_seconds; /* inside collectives (waiting for the other ranks included) */

int cvx_dist_supported(void) {
#ifdef CVX_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int cvx_dist_launched_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            char *end;
            long n = strtol(v, &end, 10);
            if (!*end && n >= 1 && n <= 1 << 20) return (int)n;
        }
    }
    return 1;
}

const cvx_dist *cvx_dist_world(void) { return &g_world; }
int cvx_dist_rank(const cvx_dist *d) { return d ? d->rank : 0; }
int cvx_dist_size(const cvx_dist *d) { return d ? d->size : 1; }
uint64_t cvx_dist_bytes_sent(void) { return g_bytes_sent; }
double cvx_dist_seconds(void) { return g_seconds; }

#ifdef CVX_HAVE_MPI

static int g_initialized_here;

static double now_s(void) { return MPI_Wtime(); }

static cvx_status mpi_fail(cvx_error *err, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return cvx_fail(err, CVX_ERR_IO, "MPI %s failed: %s", what, msg);
}

cvx_status cvx_dist_init(int *argc, char ***argv, cvx_error *err) {
    int done = 0;
    MPI_Initialized(&done);
    if (!done) {
        if (cvx_dist_launched_size() <= 1) return CVX_OK; /* not under a launcher: one process, no MPI at all */
        int provided = 0;
        /* serialized: one thread at a time communicates, not always the main one (serve's worker thread) */
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "initialisation");
        g_initialized_here = 1;
        if (provided < MPI_THREAD_SERIALIZED)
            return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                            "this MPI library does not let another thread than the main one communicate "
                            "(MPI_THREAD_SERIALIZED)");
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    g_world.comm = MPI_COMM_WORLD;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
    return CVX_OK;
}

void cvx_dist_finalize(void) {
    if (!g_initialized_here) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    g_initialized_here = 0;
}

void cvx_dist_abort(int code) {
    if (g_world.size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

cvx_status cvx_dist_split(const cvx_dist *d, int color, int key, cvx_dist **out, cvx_error *err) {
    *out = NULL;
    cvx_dist *n = calloc(1, sizeof *n);
    if (!n) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    if (d->size == 1) {
        n->size = 1;
        n->comm = d->comm;
        *out = n;
        return CVX_OK;
    }
    int rc = MPI_Comm_split(d->comm, color, key, &n->comm);
    if (rc != MPI_SUCCESS) {
        free(n);
        return mpi_fail(err, rc, "communicator split");
    }
    n->owned = 1;
    MPI_Comm_set_errhandler(n->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(n->comm, &n->rank);
    MPI_Comm_size(n->comm, &n->size);
    *out = n;
    return CVX_OK;
}

void cvx_dist_free(cvx_dist *d) {
    if (!d) return;
    if (d->owned) MPI_Comm_free(&d->comm);
    free(d);
}

/* MPI counts are int: large transfers go in pieces of at most 1 GiB. */
#define CHUNK ((size_t)1 << 30)

cvx_status cvx_dist_bcast(const cvx_dist *d, void *buf, size_t bytes, int root, cvx_error *err) {
    if (d->size == 1) return CVX_OK;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t n = bytes - off < CHUNK ? bytes - off : CHUNK;
        double t_ = now_s();
        int rc = MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, root, d->comm);
        g_seconds += now_s() - t_;
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "broadcast");
    }
    if (d->rank == root) g_bytes_sent += (uint64_t)bytes * (uint64_t)(d->size - 1);
    return CVX_OK;
}

cvx_status cvx_dist_sendrecv(const cvx_dist *d, const void *send, void *recv, size_t bytes, int peer, cvx_error *err) {
    if (peer == d->rank) {
        memcpy(recv, send, bytes);
        return CVX_OK;
    }
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t n = bytes - off < CHUNK ? bytes - off : CHUNK;
        double t_ = now_s();
        int rc = MPI_Sendrecv((const char *)send + off, (int)n, MPI_BYTE, peer, 17, (char *)recv + off, (int)n, MPI_BYTE,
                              peer, 17, d->comm, MPI_STATUS_IGNORE);
        g_seconds += now_s() - t_;
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "exchange");
    }
    g_bytes_sent += bytes;
    return CVX_OK;
}

/* The v-collectives take int counts and displacements: each transfer is checked to fit (the engine's largest,
 * one CFG half's q, k or v of a full-size video, is 137 MB). */
static int to_ints(const int64_t *v, int n, int *out) {
    for (int i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] > 0x7fffffff) return -1;
        out[i] = (int)v[i];
    }
    return 0;
}

cvx_status cvx_dist_alltoallv(const cvx_dist *d, const void *send, const int64_t *scount, const int64_t *sdispl,
                              void *recv, const int64_t *rcount, const int64_t *rdispl, cvx_error *err) {
    if (d->size == 1) {
        memcpy((char *)recv + rdispl[0], (const char *)send + sdispl[0], (size_t)scount[0]);
        return CVX_OK;
    }
    int n = d->size;
    int *buf = calloc((size_t)(4 * n), sizeof(int));
    if (!buf) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    if (to_ints(scount, n, buf) || to_ints(sdispl, n, buf + n) || to_ints(rcount, n, buf + 2 * n) ||
        to_ints(rdispl, n, buf + 3 * n)) {
        free(buf);
        return cvx_fail(err, CVX_ERR_SHAPE, "MPI all-to-all: a transfer above 2 GiB");
    }
    double t_ = now_s();
    int rc = MPI_Alltoallv(send, buf, buf + n, MPI_BYTE, recv, buf + 2 * n, buf + 3 * n, MPI_BYTE, d->comm);
    g_seconds += now_s() - t_;
    free(buf);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-to-all");
    for (int j = 0; j < n; j++)
        if (j != d->rank) g_bytes_sent += (uint64_t)scount[j];
    return CVX_OK;
}

cvx_status cvx_dist_allgatherv(const cvx_dist *d, void *recv, const int64_t *count, const int64_t *displ,
                               cvx_error *err) {
    if (d->size == 1) return CVX_OK;
    int n = d->size;
    int *buf = calloc((size_t)(2 * n), sizeof(int));
    if (!buf) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    if (to_ints(count, n, buf) || to_ints(displ, n, buf + n)) {
        free(buf);
        return cvx_fail(err, CVX_ERR_SHAPE, "MPI all-gather: a transfer above 2 GiB");
    }
    double t_ = now_s();
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, recv, buf, buf + n, MPI_BYTE, d->comm);
    g_seconds += now_s() - t_;
    free(buf);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-gather");
    g_bytes_sent += (uint64_t)count[d->rank] * (uint64_t)(n - 1);
    return CVX_OK;
}

cvx_status cvx_dist_allreduce_sum(const cvx_dist *d, double *values, int64_t n, cvx_error *err) {
    if (d->size == 1) return CVX_OK;
    if (n > 0x7fffffff) return cvx_fail(err, CVX_ERR_SHAPE, "MPI all-reduce: too many values");
    double t_ = now_s();
    int rc = MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_DOUBLE, MPI_SUM, d->comm);
    g_seconds += now_s() - t_;
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-reduce");
    g_bytes_sent += (uint64_t)n * sizeof(double);
    return CVX_OK;
}

cvx_status cvx_dist_barrier(const cvx_dist *d, cvx_error *err) {
    if (d->size == 1) return CVX_OK;
    double t_ = now_s();
    int rc = MPI_Barrier(d->comm);
    g_seconds += now_s() - t_;
    return rc == MPI_SUCCESS ? CVX_OK : mpi_fail(err, rc, "barrier");
}

#else /* one process */

cvx_status cvx_dist_init(int *argc, char ***argv, cvx_error *err) {
    (void)argc, (void)argv;
    int n = cvx_dist_launched_size();
    if (n > 1)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                        "started as one of %d processes (mpirun), but this build has no MPI support: it would "
                        "compute the same video %d times. Install Debian's libopenmpi-dev and rebuild, or run "
                        "without mpirun", n, n);
    return CVX_OK;
}

void cvx_dist_finalize(void) {}
void cvx_dist_abort(int code) { (void)code; }

cvx_status cvx_dist_split(const cvx_dist *d, int color, int key, cvx_dist **out, cvx_error *err) {
    (void)d, (void)color, (void)key;
    *out = calloc(1, sizeof **out);
    if (!*out) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    (*out)->size = 1;
    return CVX_OK;
}

void cvx_dist_free(cvx_dist *d) { free(d); }

cvx_status cvx_dist_bcast(const cvx_dist *d, void *buf, size_t bytes, int root, cvx_error *err) {
    (void)d, (void)buf, (void)bytes, (void)root, (void)err;
    return CVX_OK;
}

cvx_status cvx_dist_sendrecv(const cvx_dist *d, const void *send, void *recv, size_t bytes, int peer, cvx_error *err) {
    (void)d, (void)peer, (void)err;
    memcpy(recv, send, bytes);
    return CVX_OK;
}

cvx_status cvx_dist_alltoallv(const cvx_dist *d, const void *send, const int64_t *scount, const int64_t *sdispl,
                              void *recv, const int64_t *rcount, const int64_t *rdispl, cvx_error *err) {
    (void)d, (void)rcount, (void)err;
    memcpy((char *)recv + rdispl[0], (const char *)send + sdispl[0], (size_t)scount[0]);
    return CVX_OK;
}

cvx_status cvx_dist_allgatherv(const cvx_dist *d, void *recv, const int64_t *count, const int64_t *displ,
                               cvx_error *err) {
    (void)d, (void)recv, (void)count, (void)displ, (void)err;
    return CVX_OK;
}

cvx_status cvx_dist_allreduce_sum(const cvx_dist *d, double *values, int64_t n, cvx_error *err) {
    (void)d, (void)values, (void)n, (void)err;
    return CVX_OK;
}

cvx_status cvx_dist_barrier(const cvx_dist *d, cvx_error *err) {
    (void)d, (void)err;
    return CVX_OK;
}

#endif
