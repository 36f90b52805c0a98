/* The processes of one generation: MPI (Debian's OpenMPI) when the build found it, otherwise a single process.
 *
 * `mpirun -np N cogvideox generate …` starts N processes; cvx_dist_init joins them into the world, and the engine
 * splits the world into its groups (CFG halves, sequence-parallel groups: docs/performance.md, issue 17). Every
 * collective here moves raw bytes; the engine calls them at the same points on every rank of a communicator. The
 * bytes this process sent are counted (cvx_dist_bytes_sent) for --json's comm_bytes and the benchmarks.
 *
 * Without MPI support the world is one process; such a build started by mpirun with N > 1 (the launcher's
 * environment says so) is refused by cvx_dist_init rather than running N copies of the same video. */
#ifndef CVX_CORE_DIST_H
#define CVX_CORE_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct cvx_dist cvx_dist;

/* Whether this build can run over several processes. */
int cvx_dist_supported(void);
/* The number of processes the launcher started (mpirun's / a PMI launcher's environment), 1 outside one. */
int cvx_dist_launched_size(void);
/* Joins the launcher's processes (MPI_Init_thread, serialized: one thread at a time communicates). Idempotent.
 * Fails (CVX_ERR_INVALID_ARGUMENT, a message naming the cause) for a launch of N > 1 processes in a build without
 * MPI, or when MPI cannot start. Outside a launcher it does nothing: the world is this process. */
cvx_status cvx_dist_init(int *argc, char ***argv, cvx_error *err);
/* Leaves MPI (once, at exit of main; nothing without it). */
void cvx_dist_finalize(void);
/* Ends every process of the job after an error this rank cannot share (MPI_Abort); returns without MPI. */
void cvx_dist_abort(int code);

/* The world: all processes of the job (one without MPI). Valid after cvx_dist_init, or a single process. */
const cvx_dist *cvx_dist_world(void);
int cvx_dist_rank(const cvx_dist *d);
int cvx_dist_size(const cvx_dist *d);
/* A sub-communicator: the ranks with the same color, ordered by key (MPI_Comm_split). Collective over d. */
cvx_status cvx_dist_split(const cvx_dist *d, int color, int key, cvx_dist **out, cvx_error *err);
void cvx_dist_free(cvx_dist *d);

/* Collectives, in bytes. Each fails with CVX_ERR_IO and a message in err when MPI reports an error. */
cvx_status cvx_dist_bcast(const cvx_dist *d, void *buf, size_t bytes, int root, cvx_error *err);
/* Exchanges `bytes` with `peer` (send from send, receive into recv; they must not overlap). */
cvx_status cvx_dist_sendrecv(const cvx_dist *d, const void *send, void *recv, size_t bytes, int peer, cvx_error *err);
/* Every rank sends scount[j] bytes at send + sdispl[j] to rank j and receives rcount[j] bytes at recv + rdispl[j]. */
cvx_status cvx_dist_alltoallv(const cvx_dist *d, const void *send, const int64_t *scount, const int64_t *sdispl,
                              void *recv, const int64_t *rcount, const int64_t *rdispl, cvx_error *err);
/* Rank j's count[j] bytes (its own at recv + displ[rank]) end up at recv + displ[j] on every rank. */
cvx_status cvx_dist_allgatherv(const cvx_dist *d, void *recv, const int64_t *count, const int64_t *displ,
                               cvx_error *err);
/* Sums n doubles over the ranks, in place (the same on every rank). */
cvx_status cvx_dist_allreduce_sum(const cvx_dist *d, double *values, int64_t n, cvx_error *err);
/* Waits for every rank of d. */
cvx_status cvx_dist_barrier(const cvx_dist *d, cvx_error *err);

/* Bytes this process has sent to other processes since it started (all communicators), and the seconds it spent in
 * the collectives (transfers and waiting for the other ranks). */
uint64_t cvx_dist_bytes_sent(void);
double cvx_dist_seconds(void);

#endif
