#ifndef CVX_IO_EMBEDDED_H
#define CVX_IO_EMBEDDED_H
#include <stddef.h>

/* The real T5 spiece.model (data/t5/spiece.model), embedded at build time. */
const unsigned char *cvx_embedded_t5_spiece(size_t *size);

#endif
