/* ws_frame.h */
#include "ws_frame.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

int cvx_test_ws_send_text(int fd, const char *text) {
    size_t len = strlen(text);
    uint8_t hdr[4] = {0x81, 0, 0, 0};
    size_t hl;
    if (len < 126) {
        hdr[1] = (uint8_t)(0x80 | len);
        hl = 2;
    } else {
        hdr[1] = 0x80 | 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        hl = 4;
    }
    const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t *buf = malloc(hl + 4 + len);
    if (!buf) return -1;
    memcpy(buf, hdr, hl);
    memcpy(buf + hl, mask, 4);
    for (size_t i = 0; i < len; i++) buf[hl + 4 + i] = (uint8_t)text[i] ^ mask[i % 4];
    ssize_t w = write(fd, buf, hl + 4 + len);
    free(buf);
    return w == (ssize_t)(hl + 4 + len) ? 0 : -1;
}

static int read_full(int fd, uint8_t *b, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

int cvx_test_ws_read_frame(int fd, int *op, char **payload, uint64_t *len) {
    uint8_t h[2], e[8];
    if (read_full(fd, h, 2)) return -1;
    uint64_t l = h[1] & 0x7f;
    if (l == 126) {
        if (read_full(fd, e, 2)) return -1;
        l = ((uint64_t)e[0] << 8) | e[1];
    } else if (l == 127) {
        if (read_full(fd, e, 8)) return -1;
        l = 0;
        for (int i = 0; i < 8; i++) l = (l << 8) | e[i];
    }
    if (l > (1u << 24)) return -1;
    uint8_t *p = malloc(l + 1);
    if (!p) return -1;
    if (read_full(fd, p, l)) {
        free(p);
        return -1;
    }
    p[l] = 0;
    *op = h[0] & 0x0f;
    *payload = (char *)p;
    *len = l;
    return 0;
}
