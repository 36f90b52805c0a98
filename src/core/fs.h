/* Small filesystem helpers shared by the model folder code, the engine, the hub downloader and make-model. */
#ifndef CVX_CORE_FS_H
#define CVX_CORE_FS_H

/* "a/b" in a malloc'd string (caller frees); NULL when out of memory. */
char *cvx_path_join(const char *a, const char *b);
/* mkdir -p: creates path and its missing parents (mode 0755). Returns 0, or an errno value (ENAMETOOLONG for a
 * path over 4095 bytes, ENOTDIR when something that is not a folder is in the way). */
int cvx_mkdirs(const char *path);

#endif
