/* WebSocket frames for the tests' clients (test_service's, tools/ws_follow): a masked text frame out, one frame in. */
#ifndef CVX_TESTS_WS_FRAME_H
#define CVX_TESTS_WS_FRAME_H

#include <stdint.h>

/* Sends text as one masked text frame (its length in the shortest form, as RFC 6455 requires): 0, or -1. */
int cvx_test_ws_send_text(int fd, const char *text);
/* Reads one frame: its opcode in *op and its payload (malloc'ed, NUL-terminated, *len bytes; at most 16 MiB) in
 * *payload: 0, or -1 (EOF, timeout, too long, out of memory; nothing to free). */
int cvx_test_ws_read_frame(int fd, int *op, char **payload, uint64_t *len);

#endif
